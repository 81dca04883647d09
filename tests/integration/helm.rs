//! The Helm chart (`deploy/helm/skidder`), rendered by real Helm and then
//! run. `helm lint --strict` must pass with the defaults and with every
//! option on, and values that cannot work must be refused. Then each
//! rendered Deployment is started as the kubelet would start its pod,
//! as a process on 127.0.0.1: its command and arguments, its environment
//! (Secret references resolved from the rendered Secret) and its config
//! files (from the rendered ConfigMap, at the path it mounts them). They
//! run against Apache Kafka and moto: every probe must answer 200, real
//! log lines produced to Kafka must come back once each through the port
//! the searcher's Service names, and the compactor must finish a pass with
//! retention. The PrometheusRule and dashboard ConfigMaps must carry the
//! files in `deploy/`, and the Prometheus job names the pods get must be
//! the ones the dashboards and alert rules use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use skidder_common::storage::S3Store;
use skidder_common::testing::{free_port, KafkaBroker, MotoServer};

use crate::support::{found_once, http_get, metric, produce_ids, stop_clean, Guard, BIN};

const TOPIC: &str = "helm-logs";
const RECORDS: u64 = 3_000;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/skidder")
}

/// Runs `helm` with `args`: whether it succeeded, its standard output,
/// and everything it printed (Helm logs to standard error).
fn helm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("helm")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("helm missing: run `bash .ci/run`, which builds it into ~/.cache/skidder/bin");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, all)
}

/// Every document of a multi-document YAML stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}:\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The rendered objects of one kind, by name.
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> BTreeMap<String, &'a Value> {
    docs.iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_owned(), d))
        .collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A rendered Deployment, started as a process the way the kubelet starts
/// its pod's only container.
struct Pod {
    name: String,
    container: Value,
    child: Guard,
}

impl Pod {
    fn start(deployment: &Value, docs: &[Value], root: &Path, logs: &Path) -> Pod {
        let name = deployment["metadata"]["name"].as_str().unwrap().to_owned();
        let spec = &deployment["spec"]["template"]["spec"];
        let containers = spec["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}: one container");
        let c = &containers[0];
        // Mounted ConfigMaps become directories under `root`; paths in the
        // arguments are moved there with them.
        let config_maps = of_kind(docs, "ConfigMap");
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let volume = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("{name}: mount of an undeclared volume {m}"));
            let dir = root.join(&name).join(m["name"].as_str().unwrap());
            if volume["emptyDir"].is_object() {
                std::fs::create_dir_all(&dir).unwrap();
                mounts.push((m["mountPath"].as_str().unwrap().to_owned(), dir));
                continue;
            }
            let cm_name = volume["configMap"]["name"].as_str().unwrap();
            let cm = config_maps
                .get(cm_name)
                .unwrap_or_else(|| panic!("{name} mounts ConfigMap {cm_name}, never rendered"));
            for (file, text) in cm["data"].as_object().unwrap() {
                write(&dir.join(file), text.as_str().unwrap());
            }
            mounts.push((m["mountPath"].as_str().unwrap().to_owned(), dir));
        }
        let relocate = |arg: &str| -> String {
            for (at, dir) in &mounts {
                if let Some(rest) = arg.strip_prefix(at.as_str()) {
                    return format!("{}{rest}", dir.display());
                }
            }
            arg.to_owned()
        };
        let command: Vec<&str> = c["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(command, ["skidder"], "{name}: the image's binary");
        let args: Vec<String> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| relocate(v.as_str().expect("arguments are strings")))
            .collect();
        let secrets = of_kind(docs, "Secret");
        let mut cmd = Command::new(BIN);
        cmd.args(&args).env_clear();
        for (k, v) in std::env::vars() {
            if k == "PATH" || k == "HOME" || k.starts_with("LD_") {
                cmd.env(k, v);
            }
        }
        for e in c["env"].as_array().unwrap() {
            let key = e["name"].as_str().unwrap();
            let value = if let Some(v) = e["value"].as_str() {
                v.to_owned()
            } else {
                let r = &e["valueFrom"]["secretKeyRef"];
                let secret = secrets
                    .get(r["name"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("{name}: {key} refers to a Secret never rendered"));
                secret["stringData"][r["key"].as_str().unwrap()]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {key}: no such key in the Secret"))
                    .to_owned()
            };
            cmd.env(key, relocate(&value));
        }
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let child = Guard(cmd.spawn().unwrap());
        Pod {
            name,
            container: c.clone(),
            child,
        }
    }

    /// The container port a probe or Service names (by name or number).
    fn port(&self, port: &Value) -> u16 {
        if let Some(n) = port.as_u64() {
            return n as u16;
        }
        let wanted = port.as_str().unwrap();
        self.container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == wanted)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("{}: no port named {wanted}", self.name)) as u16
    }

    /// Waits until each HTTP probe the container declares answers 200.
    fn wait_probes(&mut self, logs: &Path) {
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &self.container[probe]["httpGet"];
            if get.is_null() {
                continue;
            }
            let port = self.port(&get["port"]);
            let path = get["path"].as_str().unwrap();
            let started = Instant::now();
            loop {
                if let Ok(r) = http_get(port, path) {
                    if r.starts_with("HTTP/1.1 200") {
                        break;
                    }
                }
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!(
                        "{} exited ({status}):\n{}",
                        self.name,
                        log_of(logs, &self.name)
                    );
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{}: {probe} {path} on {port} never answered 200:\n{}",
                    self.name,
                    log_of(logs, &self.name)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn log_of(logs: &Path, name: &str) -> String {
    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default()
}

/// Values for a release on this machine: the test's Kafka and moto, its
/// ports, short block and compaction intervals, and every option on.
fn test_values(bootstrap: &str, moto: &str, ports: [u16; 3]) -> String {
    let [metrics, http, compactor] = ports;
    format!(
        r#"
store:
  url: s3://helm/skidder
  s3: {{endpoint: "{moto}", region: us-east-1}}
  credentials: {{accessKeyId: test, secretAccessKey: test}}
kafka:
  brokers: "{bootstrap}"
  topics: [{TOPIC}]
  groupId: helm-test
indexer:
  replicas: 1
  metricsPort: {metrics}
  config: |
    [parse]
    timestamp_fields = ["ts"]
    app = {{ template = "{{service}}" }}
    tenant = {{ fixed = "default" }}
    label_fields = ["service", "level"]
    [blocks]
    flush_interval_secs = 2
searcher:
  port: {http}
  autoscaling: {{enabled: true, minReplicas: 1, maxReplicas: 3}}
compactor:
  metricsPort: {compactor}
  every: 20s
  settle: 1s
  grace: 1m
retention:
  enabled: true
  policy: |
    [retention]
    default = "30d"
podMonitor: {{enabled: true}}
serviceMonitor: {{enabled: true}}
prometheusRule: {{enabled: true}}
grafanaDashboards: {{enabled: true}}
"#
    )
}

/// The configuration the chart ships by default is one the binaries
/// accept: each file of its ConfigMap parses and validates.
#[test]
fn the_default_values_render_configs_the_binaries_accept() {
    let c = chart();
    let (ok, rendered, out) = helm(&["template", "logs", c.to_str().unwrap()]);
    assert!(ok, "helm template:\n{out}");
    let docs = documents(&rendered);
    let config = of_kind(&docs, "ConfigMap")["logs-skidder-config"]["data"].clone();
    let text = |file: &str| {
        config[file]
            .as_str()
            .unwrap_or_else(|| panic!("no {file}"))
            .to_owned()
    };
    let indexer = skidder_indexer::config::IndexerConfig::from_toml(&text("indexer.toml")).unwrap();
    indexer.validate().unwrap();
    let searcher: skidder_searcher::config::SearcherConfig =
        skidder_common::service::parse_toml(&text("searcher.toml"), "searcher.toml").unwrap();
    searcher.validate().unwrap();
    let retention: skidder_indexer::retention::PolicyFile =
        skidder_common::service::parse_toml(&text("retention.toml"), "retention.toml").unwrap();
    assert!(
        retention.retention.default.is_some(),
        "the default policy keeps 30 days"
    );
    // Without static keys no Secret is made and no pod refers to one: the
    // pods use their own AWS identity.
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(!rendered.contains("secretKeyRef"));
}

#[test]
fn values_that_cannot_work_are_refused() {
    let c = chart();
    let c = c.to_str().unwrap();
    for (set, says) in [
        (
            "store.credentials.accessKeyId=AKIA",
            "secretAccessKey is required",
        ),
        ("store.url=", "store.url is required"),
        ("kafka.brokers=", "kafka.brokers is required"),
    ] {
        let (ok, _, out) = helm(&["template", "t", c, "--set", set]);
        assert!(!ok, "--set {set} rendered:\n{out}");
        assert!(out.contains(says), "--set {set}: {out}");
    }
}

#[test]
fn the_chart_renders_and_its_workloads_run_against_kafka_and_s3() {
    let c = chart();
    let c = c.to_str().unwrap();
    let (ok, _, out) = helm(&["lint", "--strict", c]);
    assert!(ok, "helm lint, default values:\n{out}");

    let moto = MotoServer::start();
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(S3Store::new("helm", "skidder/", &moto.s3_config()));
    rt.block_on(store.create_bucket()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let values = dir.path().join("values.yaml");
    write(
        &values,
        &test_values(&kafka.bootstrap(), &moto.endpoint(), ports),
    );
    let values = values.to_str().unwrap();
    let (ok, _, out) = helm(&["lint", "--strict", c, "-f", values]);
    assert!(ok, "helm lint, every option on:\n{out}");
    let (ok, rendered, out) = helm(&["template", "logs", c, "-n", "observability", "-f", values]);
    assert!(ok, "helm template:\n{out}");
    let docs = documents(&rendered);

    // What Prometheus and Grafana get: the files in deploy/, and job names
    // the dashboards and rules know.
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let rules = of_kind(&docs, "PrometheusRule");
    let want_rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy.join("prometheus/skidder-alerts.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules.values().next().unwrap()["spec"], want_rules);
    let mut dashboards = BTreeSet::new();
    for cm in of_kind(&docs, "ConfigMap").values() {
        if cm["metadata"]["labels"]["grafana_dashboard"] != "1" {
            continue;
        }
        for (file, text) in cm["data"].as_object().unwrap() {
            let want: Value = serde_json::from_str(
                &std::fs::read_to_string(deploy.join("grafana").join(file)).unwrap(),
            )
            .unwrap();
            let got: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
            assert_eq!(got, want, "dashboard {file}");
            dashboards.insert(file.clone());
        }
    }
    let shipped: BTreeSet<String> = std::fs::read_dir(deploy.join("grafana"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json"))
        .collect();
    assert_eq!(dashboards, shipped, "every shipped dashboard, once");
    let monitors = of_kind(&docs, "PodMonitor");
    let job_label = monitors.values().next().unwrap()["spec"]["jobLabel"]
        .as_str()
        .unwrap();
    let deployments = of_kind(&docs, "Deployment");
    let jobs: BTreeSet<String> = deployments
        .values()
        .map(|d| {
            d["spec"]["template"]["metadata"]["labels"][job_label]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let prometheus_yml = std::fs::read_to_string(deploy.join("prometheus/prometheus.yml")).unwrap();
    let documented: BTreeSet<String> = prometheus_yml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(jobs, documented, "the pods' job names");

    // The ServiceMonitor's Services: the same job names, each selecting a
    // Deployment's pods, on a port the monitor scrapes (checked on the
    // running pods below).
    let monitor = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    let monitor = monitor.values().next().unwrap()["spec"].clone();
    let scraped: BTreeSet<&str> = monitor["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_str().unwrap())
        .collect();
    let services = of_kind(&docs, "Service");
    let selects = |labels: &Value, selector: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    let job_label = monitor["jobLabel"].as_str().unwrap();
    let mut monitored: Vec<(String, &str, String)> = Vec::new();
    for svc in services.values() {
        let labels = &svc["metadata"]["labels"];
        if !selects(labels, &monitor["selector"]["matchLabels"]) || labels[job_label].is_null() {
            continue;
        }
        let port = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| scraped.contains(p["name"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{svc}: no port the ServiceMonitor scrapes"));
        let (deployment, _) = deployments
            .iter()
            .find(|(_, d)| {
                selects(
                    &d["spec"]["template"]["metadata"]["labels"],
                    &svc["spec"]["selector"],
                )
            })
            .unwrap_or_else(|| panic!("{svc}: selects no pods"));
        monitored.push((
            deployment.clone(),
            port["targetPort"].as_str().unwrap(),
            labels[job_label].as_str().unwrap().to_owned(),
        ));
    }
    let monitored_jobs: BTreeSet<String> = monitored.iter().map(|m| m.2.clone()).collect();
    assert_eq!(monitored_jobs, documented, "the ServiceMonitor's job names");

    // The searcher's autoscaler drives its Deployment, which leaves its
    // replica count to it.
    let hpas = of_kind(&docs, "HorizontalPodAutoscaler");
    let hpa = &hpas.values().next().expect("an HPA for the searchers")["spec"];
    assert_eq!(hpa["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["scaleTargetRef"]["apiVersion"], "apps/v1");
    let target = hpa["scaleTargetRef"]["name"].as_str().unwrap();
    assert_eq!(target, "logs-skidder-searcher");
    assert!(deployments[target]["spec"]["replicas"].is_null());
    assert_eq!(
        (hpa["minReplicas"].as_u64(), hpa["maxReplicas"].as_u64()),
        (Some(1), Some(3))
    );

    // Every Deployment, run.
    assert_eq!(
        deployments.keys().cloned().collect::<Vec<_>>(),
        [
            "logs-skidder-compactor",
            "logs-skidder-indexer",
            "logs-skidder-searcher"
        ]
    );
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut pods: BTreeMap<String, Pod> = deployments
        .iter()
        .map(|(name, d)| (name.clone(), Pod::start(d, &docs, dir.path(), &logs)))
        .collect();
    for pod in pods.values_mut() {
        pod.wait_probes(&logs);
    }
    for (deployment, port, job) in &monitored {
        let port = pods[deployment].port(&Value::from(*port));
        let page = http_get(port, "/metrics").unwrap();
        assert!(
            page.contains("# TYPE skidder_"),
            "{job}'s Service port: {page}"
        );
    }
    produce_ids(&kafka.bootstrap(), TOPIC, RECORDS);

    // Through the Service: its port, to the searcher pod's targetPort.
    let services = of_kind(&docs, "Service");
    let svc = services["logs-skidder-searcher"];
    let svc_port = &svc["spec"]["ports"][0];
    let searcher = &pods["logs-skidder-searcher"];
    let port = searcher.port(&svc_port["targetPort"]);
    assert_eq!(svc_port["port"].as_u64(), Some(port as u64));
    assert_eq!(
        found_once(&format!("http://127.0.0.1:{port}"), &[], RECORDS),
        (RECORDS, RECORDS),
        "each record once through the searcher's Service:\n{}",
        log_of(&logs, "logs-skidder-indexer")
    );

    // The compactor's passes, retention included, on its metrics port.
    let compactor = &pods["logs-skidder-compactor"];
    let metrics_port = compactor.port(&Value::from("metrics"));
    let started = Instant::now();
    loop {
        let page = http_get(metrics_port, "/metrics").unwrap_or_default();
        let passed = |name: &str| {
            page.lines()
                .any(|l| l.starts_with(name) && l.contains(r#"result="ok""#) && !l.ends_with(" 0"))
        };
        if passed("skidder_compactor_passes_total") && passed("skidder_retention_passes_total") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the compactor finished no pass with retention:\n{page}\n{}",
            log_of(&logs, "logs-skidder-compactor")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let indexer_page = http_get(
        pods["logs-skidder-indexer"].port(&Value::from("metrics")),
        "/metrics",
    )
    .unwrap();
    assert!(metric(&indexer_page, "skidder_indexer_blocks_written_total") > 0);
    for pod in pods.values_mut() {
        stop_clean(&mut pod.child);
    }
}
