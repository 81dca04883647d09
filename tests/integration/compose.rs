//! `docker-compose.yml`, checked without a Docker engine (there is none
//! here). Debian's `docker-compose config` must accept the file. Then each
//! service runs as a process on 127.0.0.1, with the command line,
//! environment and mounted files the file gives it, and the compose
//! network's names (`kafka:9092`, `searcher:7280`, …) mapped to local
//! addresses:
//!
//! - `kafka` is Apache Kafka, and the address the indexer is given must be
//!   one the broker's settings advertise;
//! - `minio` is moto, with the credentials the other services use;
//! - `create-bucket` runs its own script with the real AWS CLI;
//! - `indexer`, `searcher` and `compactor` are `skidder`;
//! - `prometheus` is Debian's Prometheus, on `deploy/prometheus/`;
//! - `grafana` cannot run here (no image, and its code is AGPL), so its
//!   provisioning is checked instead: through the data sources it
//!   provisions, with the headers it would send, the searcher finds every
//!   record and Prometheus answers; the dashboards are where it looks.
//!
//! Real log lines produced to Kafka must come back once each, and on the
//! real Prometheus every dashboard query must return data and every alert
//! rule must evaluate (`observability::check_on_prometheus`).
//!
//! The one change to the shipped settings: blocks are cut after 2 s
//! rather than 120 s, so that the test does not wait two minutes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skidder_common::testing::{free_port, KafkaBroker, MotoServer};

use crate::support::{aws, found_once, http_get, metric, produce_ids, stop_clean, Guard, BIN};

const RECORDS: u64 = 3_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn docker_compose_config(file: &Path) -> (bool, String) {
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .output()
        .expect(
            "docker-compose missing: run `bash .ci/run`, which installs Debian's docker-compose",
        );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text)
}

#[test]
fn docker_compose_accepts_the_file_and_refuses_a_broken_one() {
    let (ok, report) = docker_compose_config(&root().join("docker-compose.yml"));
    assert!(ok, "docker-compose config:\n{report}");
    // The check has teeth: a dependency on a service that is not there.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    std::fs::write(
        &broken,
        "services:\n  a:\n    image: busybox\n    depends_on: [missing]\n",
    )
    .unwrap();
    let (ok, report) = docker_compose_config(&broken);
    assert!(!ok, "a broken file validated: {report}");
}

/// The compose network on 127.0.0.1: each `service:port` another service
/// names, and each `0.0.0.0:port` a service binds, as a local address.
#[derive(Default)]
struct Network {
    /// `service:port` → `127.0.0.1:port`.
    names: Vec<(String, String)>,
    /// Per service, `0.0.0.0:port` → `127.0.0.1:port`.
    binds: BTreeMap<String, Vec<(String, String)>>,
}

impl Network {
    fn name(&mut self, at: &str, local: String) {
        self.names.push((at.to_owned(), local));
    }

    /// Gives `service` a free local port for its container port `port`.
    fn bind(&mut self, service: &str, port: u16) -> u16 {
        let local = free_port();
        self.name(&format!("{service}:{port}"), format!("127.0.0.1:{local}"));
        self.binds
            .entry(service.to_owned())
            .or_default()
            .push((format!("0.0.0.0:{port}"), format!("127.0.0.1:{local}")));
        local
    }

    /// `text` as `service` sees it here.
    fn rewrite(&self, service: &str, text: &str) -> String {
        let mut out = text.to_owned();
        let binds = self.binds.get(service).into_iter().flatten();
        for (from, to) in self.names.iter().chain(binds) {
            out = out.replace(from, to);
        }
        out
    }
}

/// Every `0.0.0.0:<port>` in `text`.
fn bound_ports(text: &str) -> Vec<u16> {
    text.match_indices("0.0.0.0:")
        .filter_map(|(at, m)| {
            let digits: String = text[at + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// A service's mounts: its host path (in the repository) and where the
/// container sees it.
fn mounts(svc: &Value) -> Vec<(PathBuf, String)> {
    svc["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut parts = v.as_str().unwrap().split(':');
            let host = parts.next().unwrap();
            let at = parts.next().unwrap().to_owned();
            (root().join(host.trim_start_matches("./")), at)
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Everything a service reads: its command, environment and mounted
/// files, as text (to find the ports it binds).
fn service_text(svc: &Value) -> String {
    let mut text = format!(
        "{} {} {}",
        svc["command"], svc["entrypoint"], svc["environment"]
    );
    for (host, _) in mounts(svc) {
        let files: Vec<PathBuf> = if host.is_dir() {
            std::fs::read_dir(&host)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .collect()
        } else {
            vec![host]
        };
        for f in files {
            text.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
    }
    text
}

/// Copies a mount's file or folder to `to`, each file's text through
/// `rewrite`.
fn copy_mount(host: &Path, to: &Path, rewrite: &dyn Fn(&str) -> String) {
    if host.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(host).unwrap() {
            let p = e.unwrap().path();
            copy_mount(&p, &to.join(p.file_name().unwrap()), rewrite);
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, rewrite(&std::fs::read_to_string(host).unwrap())).unwrap();
    }
}

/// Starts `name` as compose would start its container: `program` is what
/// its image runs; the arguments are its `entrypoint` (after the program)
/// or its `command`, then `extra`. Its container's files are under
/// `dir/<name>`; `edit` may change the text of its mounted files and
/// arguments beyond the network's addresses.
fn start(
    name: &str,
    svc: &Value,
    net: &Network,
    dir: &Path,
    program: &Path,
    extra: &[String],
    edit: &dyn Fn(&str) -> String,
) -> Guard {
    let home = dir.join(name);
    let rewrite = |text: &str| edit(&net.rewrite(name, text));
    // The container's file system is `home`: mounts are copied there, and
    // any other absolute path in an argument (a data folder) lands there.
    for (host, at) in mounts(svc) {
        copy_mount(&host, &home.join(at.trim_start_matches('/')), &rewrite);
    }
    let relocate = |arg: &str| -> String {
        let arg = rewrite(arg);
        match arg.split_once("=/") {
            Some((flag, path)) if flag.starts_with("--") => {
                format!("{flag}={}", home.join(path).display())
            }
            _ => match arg.strip_prefix('/') {
                Some(path) => home.join(path).display().to_string(),
                None => arg,
            },
        }
    };
    let mut args = strings(&svc["entrypoint"]);
    if args.is_empty() {
        args = strings(&svc["command"]);
    } else {
        args.remove(0);
    }
    if args.first().is_some_and(|a| a == "skidder") {
        args.remove(0);
    }
    let mut cmd = Command::new(program);
    cmd.args(args.iter().map(|a| relocate(a)))
        .args(extra)
        .current_dir(&home)
        .env_clear();
    std::fs::create_dir_all(&home).unwrap();
    for (k, v) in std::env::vars() {
        if k == "HOME" || k.starts_with("LD_") {
            cmd.env(k, v);
        }
    }
    // The image's tools: the AWS CLI's folder first.
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env(
        "PATH",
        format!("{}:{path}", aws().parent().unwrap().display()),
    );
    for (k, v) in svc["environment"].as_object().into_iter().flatten() {
        let v = v
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string());
        cmd.env(k, rewrite(&v));
    }
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Guard(cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}")))
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Waits until `path` on `port` answers 200, while `child` runs.
fn wait_http(name: &str, child: &mut Guard, port: u16, path: &str, dir: &Path) {
    let started = Instant::now();
    while !http_get(port, path).is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited ({status}):\n{}", log_of(dir, name));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: {path} never answered 200:\n{}",
            log_of(dir, name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_compose_stack_runs_as_processes_and_prometheus_charts_it() {
    let file = yaml(&root().join("docker-compose.yml"));
    let services = file["services"].as_object().unwrap();
    let svc = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    };
    let env = |name: &str, key: &str| svc(name)["environment"][key].as_str().map(str::to_owned);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // Kafka: the indexer's brokers are an address the broker advertises.
    let brokers = env("indexer", "SKIDDER_KAFKA_BROKERS").unwrap();
    let advertised = env("kafka", "KAFKA_ADVERTISED_LISTENERS").unwrap();
    assert!(
        advertised
            .split(',')
            .any(|l| l.split_once("://").map(|(_, at)| at) == Some(brokers.as_str())),
        "the indexer is told {brokers}; the broker advertises {advertised}"
    );
    // Object storage: every service's keys are the server's.
    let user = env("minio", "MINIO_ROOT_USER").unwrap();
    let password = env("minio", "MINIO_ROOT_PASSWORD").unwrap();
    for (name, s) in services {
        if let Some(key) = s["environment"]["AWS_ACCESS_KEY_ID"].as_str() {
            assert_eq!(key, user, "{name}'s access key");
            assert_eq!(
                s["environment"]["AWS_SECRET_ACCESS_KEY"].as_str(),
                Some(password.as_str()),
                "{name}'s secret key"
            );
        }
    }
    for name in ["indexer", "searcher", "compactor"] {
        assert_eq!(
            svc(name)["depends_on"]["create-bucket"]["condition"],
            "service_completed_successfully",
            "{name} starts once the bucket exists"
        );
    }

    let kafka = KafkaBroker::start();
    let moto = MotoServer::start();
    let mut net = Network::default();
    net.name(&brokers, kafka.bootstrap());
    net.name("minio:9000", moto.endpoint().replace("http://", ""));
    let mut ports: BTreeMap<String, u16> = BTreeMap::new();
    for name in ["indexer", "searcher", "compactor"] {
        for port in bound_ports(&service_text(svc(name))) {
            ports.insert(format!("{name}:{port}"), net.bind(name, port));
        }
    }
    // Prometheus listens on its default port, 9090.
    let prometheus_port = net.bind("prometheus", 9090);
    let unchanged = |t: &str| t.to_owned();

    // The bucket, by the one-shot service's own script.
    let mut create = start(
        "create-bucket",
        svc("create-bucket"),
        &net,
        dir,
        Path::new("sh"),
        &[],
        &unchanged,
    );
    let started = Instant::now();
    let status = loop {
        if let Some(s) = create.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "create-bucket never finished:\n{}",
            log_of(dir, "create-bucket")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{}", log_of(dir, "create-bucket"));

    // The indexer and the searcher. The topic: compose's Kafka creates it
    // on first use; here it is made with two partitions.
    let topics = std::fs::read_to_string(root().join("deploy/indexer.toml")).unwrap();
    assert!(topics.contains(r#"topics = ["logs"]"#));
    kafka.create_topic("logs", 2);
    let quick_blocks = |t: &str| {
        if t.contains("flush_interval_secs = 120") {
            t.replace("flush_interval_secs = 120", "flush_interval_secs = 2")
        } else {
            t.to_owned()
        }
    };
    let mut indexer = start(
        "indexer",
        svc("indexer"),
        &net,
        dir,
        Path::new(BIN),
        &[],
        &quick_blocks,
    );
    let mut searcher = start(
        "searcher",
        svc("searcher"),
        &net,
        dir,
        Path::new(BIN),
        &[],
        &unchanged,
    );
    let indexer_metrics = ports["indexer:9464"];
    wait_http("indexer", &mut indexer, indexer_metrics, "/metrics", dir);
    wait_http(
        "searcher",
        &mut searcher,
        ports["searcher:7280"],
        "/ready",
        dir,
    );
    produce_ids(&kafka.bootstrap(), "logs", RECORDS);

    // Grafana's Loki data source, as provisioned: its URL and headers.
    let provisioning = mounts(svc("grafana"))
        .into_iter()
        .find(|(_, at)| at == "/etc/grafana/provisioning")
        .expect("grafana mounts its provisioning")
        .0;
    let datasources = yaml(&provisioning.join("datasources/skidder.yml"));
    let source = |kind: &str| {
        datasources["datasources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} data source"))
            .clone()
    };
    let loki = source("loki");
    let loki_url = net.rewrite("grafana", loki["url"].as_str().unwrap());
    let mut headers = Vec::new();
    for i in 1..10 {
        if let Some(h) = loki["jsonData"][format!("httpHeaderName{i}")].as_str() {
            let v = loki["secureJsonData"][format!("httpHeaderValue{i}")]
                .as_str()
                .unwrap_or_default();
            headers.push((h.to_owned(), v.to_owned()));
        }
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        found_once(&loki_url, &headers, RECORDS),
        (RECORDS, RECORDS),
        "each record once through Grafana's data source:\n{}",
        log_of(dir, "indexer")
    );
    // A query the searcher refuses, so that its dashboards see a 4xx.
    let refused = ureq::get(format!("{loki_url}/loki/api/v1/query_range"))
        .query("query", "{")
        .call();
    assert!(refused.is_err(), "an unparsable query is refused");

    // The compactor, once there is data: a pass with retention.
    let mut compactor = start(
        "compactor",
        svc("compactor"),
        &net,
        dir,
        Path::new(BIN),
        &[],
        &unchanged,
    );
    let compactor_metrics = ports["compactor:9465"];
    wait_http(
        "compactor",
        &mut compactor,
        compactor_metrics,
        "/metrics",
        dir,
    );
    let started = Instant::now();
    loop {
        let page = http_get(compactor_metrics, "/metrics").unwrap_or_default();
        if metric(&page, r#"skidder_retention_passes_total{result="ok"}"#) >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no retention pass:\n{page}\n{}",
            log_of(dir, "compactor")
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Prometheus, on deploy/prometheus as mounted, storing in its folder.
    let mut prometheus = start(
        "prometheus",
        svc("prometheus"),
        &net,
        dir,
        Path::new("prometheus"),
        &[format!("--web.listen-address=127.0.0.1:{prometheus_port}")],
        &unchanged,
    );
    wait_http(
        "prometheus",
        &mut prometheus,
        prometheus_port,
        "/-/ready",
        dir,
    );
    // Grafana's Prometheus data source reaches it.
    let prometheus_url = net.rewrite("grafana", source("prometheus")["url"].as_str().unwrap());
    assert_eq!(
        prometheus_url,
        format!("http://127.0.0.1:{prometheus_port}")
    );
    let scrape = yaml(&root().join("deploy/prometheus/prometheus.yml"))["global"]
        ["scrape_interval"]
        .as_str()
        .unwrap()
        .to_owned();
    let scrape_secs = humantime::parse_duration(&scrape).unwrap().as_secs();
    crate::observability::check_on_prometheus(
        prometheus_port,
        scrape_secs,
        Duration::from_secs(6 * scrape_secs),
    );

    // Grafana's dashboards folder holds the dashboards.
    let dashboards = yaml(&provisioning.join("dashboards/skidder.yml"));
    let path = dashboards["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let (host, _) = mounts(svc("grafana"))
        .into_iter()
        .find(|(_, at)| at == path)
        .expect("grafana mounts the dashboards where its provider looks");
    assert_eq!(host, root().join("deploy/grafana"));

    for (name, child) in [
        ("indexer", &mut indexer),
        ("searcher", &mut searcher),
        ("compactor", &mut compactor),
    ] {
        stop_clean(child);
        eprintln!("{name} stopped cleanly");
    }
}
