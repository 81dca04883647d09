//! The ruler end to end: real Apache log lines go through Apache Kafka
//! and the real indexer (flushing every second); `skidder searcher
//! --rules-dir` evaluates a tenant's rule file every second and sends
//! alerts to Debian's Alertmanager and recorded series to Debian's
//! Prometheus (remote-write receiver on).
//!
//! - An alert on "more than 5 error lines in 15 s" reaches Alertmanager
//!   (checked through its API), with the rule's labels and its annotation
//!   filled in; the time from producing the lines to Alertmanager having
//!   it is printed (not asserted). Once the errors leave the window, it
//!   resolves: Alertmanager no longer lists it as active.
//! - The recorded series appears in Prometheus's query API with the
//!   counts produced.
//! - Grafana's rule and alert APIs show it, per tenant.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use serde_json::Value;
use skidder_common::testing::{free_port, shared_data_dir, KafkaBroker};

use crate::support::{
    get_json, start_prometheus, stop_clean, tenant_get, wait_http, Guard, TestProducer, BIN,
};

const RULES: &str = r#"
groups:
  - name: web
    interval: 1s
    rules:
      - alert: WebErrors
        expr: sum by (level) (count_over_time({__app__="web", level="error"}[15s])) > 5
        for: 2s
        labels: { severity: page }
        annotations: { summary: "{{ $value }} {{ $labels.level }} lines in 15s" }
      - record: web:lines:count1h
        expr: sum by (level) (count_over_time({__app__="web"}[1h]))
"#;

/// Alertmanager's active WebErrors alerts.
fn am_alerts(port: u16) -> Vec<Value> {
    get_json(&format!(
        "http://127.0.0.1:{port}/api/v2/alerts?active=true"
    ))
    .as_array()
    .unwrap()
    .iter()
    .filter(|a| a["labels"]["alertname"] == "WebErrors")
    .cloned()
    .collect()
}

#[test]
fn rules_alert_through_alertmanager_and_record_into_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = KafkaBroker::start();
    kafka.create_topic("acme", 2);

    // Alertmanager and Prometheus, Debian's, on free ports.
    let am_port = free_port();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let _am = Guard(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian's; bash .ci/run installs it)"),
    );
    let prom_port = free_port();
    let _prom = start_prometheus(&dir.path().join("prom"), prom_port);
    wait_http(am_port, "/-/ready", "alertmanager");

    // The indexer: tenant from the topic, a block every second.
    let store = format!("file://{}", dir.path().join("store").display());
    std::fs::write(
        dir.path().join("indexer.toml"),
        "[parse]\ntimestamp_fields = [\"ts\"]\napp = { template = \"{app}\" }\ntenant = \"topic\"\n\
         label_fields = [\"level\"]\n[blocks]\nflush_interval_secs = 1\n",
    )
    .unwrap();
    let metrics_port = free_port();
    let mut indexer = Guard(
        Command::new(BIN)
            .args(["indexer", "--config"])
            .arg(dir.path().join("indexer.toml"))
            .args(["--kafka-brokers", &kafka.bootstrap(), "--topics", "acme"])
            .args(["--store", &store])
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );

    // The searcher with its ruler: acme's rule file.
    std::fs::create_dir_all(dir.path().join("rules/acme")).unwrap();
    std::fs::write(dir.path().join("rules/acme/web.yaml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("searcher.toml"),
        format!(
            "[ruler]\nalertmanager_url = \"http://127.0.0.1:{am_port}\"\n\
             remote_write_url = \"http://127.0.0.1:{prom_port}/api/v1/write\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _searcher = Guard(
        Command::new(BIN)
            .args(["searcher", "--multi-tenant", "--config"])
            .arg(dir.path().join("searcher.toml"))
            .arg("--rules-dir")
            .arg(dir.path().join("rules"))
            .args(["--store", &store])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    wait_http(port, "/ready", "searcher");

    // 300 info lines of web, and 40 of api that no rule counts.
    let lines: Vec<String> =
        std::fs::read_to_string(shared_data_dir().join("elastic/apache_access.log"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    let mut producer = TestProducer::new(&kafka.bootstrap());
    let send = |producer: &mut TestProducer, app: &str, level: &str, i: usize| {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let rec = serde_json::json!({"ts": now_ms, "app": app, "level": level, "message": lines[i % lines.len()]});
        producer.send("acme", app, rec.to_string().as_bytes(), now_ms);
    };
    for i in 0..300 {
        send(&mut producer, "web", "info", i);
    }
    for i in 0..40 {
        send(&mut producer, "api", "error", i);
    }
    producer.inner.flush(Duration::from_secs(30)).unwrap();
    // No alert yet: api's errors are not web's.
    std::thread::sleep(Duration::from_secs(4));
    assert!(am_alerts(am_port).is_empty());

    // Ten error lines of web: the alert must reach Alertmanager.
    let produced = Instant::now();
    for i in 0..10 {
        send(&mut producer, "web", "error", 1000 + i);
    }
    producer.finish();
    let alert = loop {
        if let Some(a) = am_alerts(am_port).into_iter().next() {
            break a;
        }
        assert!(
            produced.elapsed() < Duration::from_secs(60),
            "no alert reached Alertmanager"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let fired_after = produced.elapsed();
    eprintln!(
        "produce-to-Alertmanager: {} ms (flush 1 s, interval 1 s, for 2 s)",
        fired_after.as_millis()
    );
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(alert["labels"]["level"], "error", "{alert}");
    assert_eq!(
        alert["annotations"]["summary"], "10 error lines in 15s",
        "{alert}"
    );
    assert!(
        fired_after >= Duration::from_secs(2),
        "fired before its `for`"
    );

    // Grafana's APIs: the tenant sees its rule firing; another sees none.
    let (status, body) = tenant_get(port, "/prometheus/api/v1/alerts", "acme");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["alerts"][0]["state"], "firing", "{v}");
    assert_eq!(v["data"]["alerts"][0]["value"], "10", "{v}");
    let (_, body) = tenant_get(port, "/prometheus/api/v1/rules", "acme");
    let v: Value = serde_json::from_str(&body).unwrap();
    let rules = &v["data"]["groups"][0]["rules"];
    assert_eq!(rules[0]["state"], "firing", "{v}");
    assert_eq!(
        (rules[0]["health"].as_str(), rules[1]["health"].as_str()),
        (Some("ok"), Some("ok")),
        "{v}"
    );
    assert_eq!(rules[1]["type"], "recording", "{v}");
    let (status, body) = tenant_get(port, "/loki/api/v1/rules", "acme");
    assert_eq!(status, 200);
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&body).unwrap();
    assert_eq!(yaml["web"][0]["name"].as_str(), Some("web"), "{body}");
    assert_eq!(tenant_get(port, "/loki/api/v1/rules", "globex").0, 404);
    let (_, body) = tenant_get(port, "/prometheus/api/v1/alerts", "globex");
    assert!(body.contains(r#""alerts":[]"#), "{body}");

    // The recorded series, in Prometheus.
    let query = |level: &str| -> Option<f64> {
        let v = get_json(&format!(
            "http://127.0.0.1:{prom_port}/api/v1/query?query=web:lines:count1h%7Blevel%3D%22{level}%22%7D"
        ));
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let started = Instant::now();
    while (query("info"), query("error")) != (Some(300.0), Some(10.0)) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "recorded series: info {:?}, error {:?}",
            query("info"),
            query("error")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The errors leave the 15 s window: the alert resolves.
    let started = Instant::now();
    while !am_alerts(am_port).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the alert never resolved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, body) = tenant_get(port, "/prometheus/api/v1/alerts", "acme");
    assert!(body.contains(r#""alerts":[]"#), "{body}");
    stop_clean(&mut indexer);
}
