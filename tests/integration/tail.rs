//! Live tail against Apache Kafka and the real searcher: `skidder
//! searcher --tail-indexer-config` reads the indexer's topics itself
//! (tenant = topic, as the indexer config says), and serves Loki's
//! `/loki/api/v1/tail` websocket.
//!
//! Two tenants tail at once, over websockets as logcli and Grafana open
//! them, and a third tail runs through `skidder search --tail`. Records
//! produced during the tails (real Apache log lines) must arrive at each
//! exactly as its query filters them: its tenant's only, each once, in
//! produce order per stream. The produce-to-tail latency is printed (not
//! asserted). A tenant past `max_per_tenant` tails is refused with 429.
//! A burst of 2,000 records into a searcher that holds 50 lines per client
//! is partly sent and partly reported in `dropped_entries`, each record
//! exactly once one way or the other.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use serde_json::Value;
use skidder_common::testing::{free_port, shared_data_dir, KafkaBroker};
use tungstenite::client::IntoClientRequest;

use crate::support::{http_get, Guard, TestProducer, BIN};

const PER_TENANT: usize = 1500;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What one tail received: (arrival ms, labels, line), in arrival order.
type Received = Arc<Mutex<Vec<(i64, BTreeMap<String, String>, String)>>>;

/// Opens a tail websocket and collects its lines on a thread; `Err` with
/// the HTTP status if the handshake is refused. Dropped entries fail the
/// test.
fn open_tail(port: u16, tenant: &str, query: &str) -> Result<Received, u16> {
    open_tail_with_drops(port, tenant, query, None)
}

/// Dropped entries reported to a tail: (labels, timestamp in ns).
type Drops = Arc<Mutex<Vec<(BTreeMap<String, String>, i64)>>>;

fn open_tail_with_drops(
    port: u16,
    tenant: &str,
    query: &str,
    drops: Option<Drops>,
) -> Result<Received, u16> {
    let mut url = format!("ws://127.0.0.1:{port}/loki/api/v1/tail?");
    form_urlencoded::Serializer::for_suffix(&mut url, 0)
        .append_pair("query", query)
        .append_pair("limit", "100");
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Scope-OrgID", tenant.parse().unwrap());
    let (mut socket, _) = match tungstenite::connect(req) {
        Ok(s) => s,
        Err(tungstenite::Error::Http(resp)) => return Err(resp.status().as_u16()),
        Err(e) => panic!("tail handshake: {e}"),
    };
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        while let Ok(msg) = socket.read() {
            let tungstenite::Message::Text(text) = msg else {
                continue;
            };
            let at = now_ms();
            let body: Value = serde_json::from_str(&text).unwrap();
            match &drops {
                None => assert!(body.get("dropped_entries").is_none(), "{body}"),
                Some(d) => {
                    for e in body["dropped_entries"].as_array().into_iter().flatten() {
                        d.lock().unwrap().push((
                            serde_json::from_value(e["labels"].clone()).unwrap(),
                            e["timestamp"].as_str().unwrap().parse().unwrap(),
                        ));
                    }
                }
            }
            let mut g = g.lock().unwrap();
            for s in body["streams"].as_array().unwrap() {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(s["stream"].clone()).unwrap();
                for v in s["values"].as_array().unwrap() {
                    g.push((at, labels.clone(), v[1].as_str().unwrap().to_owned()));
                }
            }
        }
    });
    Ok(got)
}

fn apache_lines() -> Vec<String> {
    std::fs::read_to_string(shared_data_dir().join("elastic/apache_access.log"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The records of one tenant: JSON with `seq`, an app (the message key,
/// so each app's records keep their order in one partition), a level and
/// a real Apache access line.
fn record(tenant: &str, seq: usize, line: &str) -> (String, Value) {
    let app = ["web", "api", "audit"][seq % 3];
    let rec = serde_json::json!({
        "ts": now_ms(),
        "app": app,
        "level": if seq.is_multiple_of(5) { "warn" } else { "info" },
        "tenant": tenant,
        "seq": seq,
        "message": line,
    });
    (app.to_owned(), rec)
}

#[test]
fn live_tails_see_their_tenants_filtered_records_in_order() {
    let kafka = KafkaBroker::start();
    for t in ["acme", "globex"] {
        kafka.create_topic(t, 3);
    }
    let dir = tempfile::tempdir().unwrap();
    let indexer_cfg = dir.path().join("indexer.toml");
    std::fs::write(
        &indexer_cfg,
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopics = [\"acme\", \"globex\"]\n\
             [parse]\ntimestamp_fields = [\"ts\"]\napp = {{ template = \"{{app}}\" }}\n\
             tenant = \"topic\"\nlabel_fields = [\"level\"]\n",
            kafka.bootstrap()
        ),
    )
    .unwrap();
    let searcher_cfg = dir.path().join("searcher.toml");
    std::fs::write(&searcher_cfg, "[tail]\nmax_per_tenant = 2\n").unwrap();
    let port = free_port();
    let _searcher = Guard(
        Command::new(BIN)
            .args(["searcher", "--multi-tenant", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(&searcher_cfg)
            .arg("--store")
            .arg(format!("file://{}", dir.path().join("store").display()))
            .arg("--tail-indexer-config")
            .arg(&indexer_cfg)
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while http_get(port, "/ready").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "searcher not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let web_get = r#"{__app__="web"} |= "GET" | json | level="info""#;
    let acme = open_tail(port, "acme", web_get).unwrap();
    let globex = open_tail(port, "globex", r#"{__app__=~".+"}"#).unwrap();
    let cli_out: Received = Arc::default();
    let mut cli = Guard(
        Command::new(BIN)
            .args(["search", "--tail", "--tenant", "acme", "--output", "json"])
            .arg("--url")
            .arg(format!("http://127.0.0.1:{port}"))
            .arg(web_get)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    {
        let out = cli.stdout.take().unwrap();
        let c = cli_out.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let body: Value = serde_json::from_str(&l).unwrap();
                let mut c = c.lock().unwrap();
                for s in body["streams"].as_array().unwrap() {
                    for v in s["values"].as_array().unwrap() {
                        c.push((now_ms(), BTreeMap::new(), v[1].as_str().unwrap().to_owned()));
                    }
                }
            }
        });
    }
    let started = Instant::now();
    while !http_get(port, "/metrics")
        .unwrap()
        .contains("skidder_searcher_tails_active 3")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the CLI's tail never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A third tail of acme is one too many.
    assert_eq!(
        open_tail(port, "acme", r#"{__app__="api"}"#).err(),
        Some(429)
    );

    // Warm up: the feed assigns partitions at their end when the first
    // tail opens. Produce markers to every partition until every tail has
    // seen one, so nothing below is produced before the tails listen.
    let mut producer = TestProducer::with_config(&kafka.bootstrap(), &[("linger.ms", "2")]);
    let started = Instant::now();
    loop {
        for t in ["acme", "globex"] {
            for p in 0..3 {
                let marker = serde_json::json!({"ts": now_ms(), "app": "web", "level": "info", "message": "GET warmup"});
                producer.send_to(t, p, marker.to_string().as_bytes());
            }
        }
        producer.inner.flush(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let seen = |r: &Received| r.lock().unwrap().iter().any(|x| x.2.contains("warmup"));
        if seen(&acme) && seen(&globex) && seen(&cli_out) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the tails never saw a record"
        );
    }
    std::thread::sleep(Duration::from_millis(500));

    // The records, paced over about 3 s, both tenants interleaved.
    let lines = apache_lines();
    let mut want: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for i in 0..PER_TENANT {
        for t in ["acme", "globex"] {
            let (app, rec) = record(t, i, &lines[(i * 7 + t.len()) % lines.len()]);
            producer.send(t, &app, rec.to_string().as_bytes(), now_ms());
            want.entry(t).or_default().push(rec);
        }
        if i.is_multiple_of(50) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    producer.finish();
    let want_acme: Vec<&Value> = want["acme"]
        .iter()
        .filter(|r| {
            r["app"] == "web"
                && r["message"].as_str().unwrap().contains("GET")
                && r["level"] == "info"
        })
        .collect();
    let want_globex: Vec<&Value> = want["globex"].iter().collect();
    assert!(
        want_acme.len() > 100,
        "{} acme lines to tail",
        want_acme.len()
    );

    let real = |r: &Received| -> Vec<(i64, BTreeMap<String, String>, Value)> {
        r.lock()
            .unwrap()
            .iter()
            .filter(|x| !x.2.contains("warmup"))
            .map(|x| (x.0, x.1.clone(), serde_json::from_str(&x.2).unwrap()))
            .collect()
    };
    let started = Instant::now();
    while real(&acme).len() < want_acme.len()
        || real(&globex).len() < want_globex.len()
        || real(&cli_out).len() < want_acme.len()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tails incomplete: acme {}/{}, globex {}/{}, cli {}/{}",
            real(&acme).len(),
            want_acme.len(),
            real(&globex).len(),
            want_globex.len(),
            real(&cli_out).len(),
            want_acme.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut latencies = Vec::new();
    for (name, got, want) in [
        ("acme", real(&acme), &want_acme),
        ("globex", real(&globex), &want_globex),
        ("cli", real(&cli_out), &want_acme),
    ] {
        assert_eq!(got.len(), want.len(), "{name}: every line once, no other");
        // Each stream's lines in produce order.
        let mut streams: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (_, labels, rec) in &got {
            assert_eq!(
                rec["tenant"],
                if name == "globex" { "globex" } else { "acme" }
            );
            if name != "cli" {
                assert_eq!(
                    labels.get("__app__").map(String::as_str),
                    rec["app"].as_str()
                );
                assert_eq!(
                    labels.get("level").map(String::as_str),
                    rec["level"].as_str()
                );
            }
            let key = format!("{}/{}", rec["app"], rec["level"]);
            streams
                .entry(key)
                .or_default()
                .push(rec["seq"].as_u64().unwrap());
        }
        for (k, seqs) in &streams {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{name} {k}: out of order"
            );
        }
        let mut got_seqs: Vec<u64> = got.iter().map(|x| x.2["seq"].as_u64().unwrap()).collect();
        let mut want_seqs: Vec<u64> = want.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        got_seqs.sort_unstable();
        want_seqs.sort_unstable();
        assert_eq!(got_seqs, want_seqs, "{name}: exactly the query's lines");
        if name != "cli" {
            latencies.extend(got.iter().map(|x| x.0 - x.2["ts"].as_i64().unwrap()));
        }
    }
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    eprintln!(
        "produce-to-tail latency over {} lines: median {} ms, p90 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pct(50),
        pct(90),
        pct(99),
        pct(100)
    );
    let metrics = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("skidder_searcher_tails_active 3"),
        "{metrics}"
    );
}
