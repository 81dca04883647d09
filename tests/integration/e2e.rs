//! End-to-end: every file under `../shared/data` goes through a real Kafka
//! broker (Apache Kafka) and the real `skidder indexer` process into a real S3
//! server (moto). Then every object must follow the layout, pass
//! `skidder inspect`, and reading all blocks back must give each input
//! record exactly once, with the right time, tenant, app and labels, all
//! computed here independently of the indexer. `skidder pack` then packs
//! the indexes, and a `skidder searcher` reading the packs must answer
//! LogQL queries exactly as the input says.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::storage::{list_all, S3Store};
use skidder_common::testing::{free_port, KafkaBroker, MotoServer};

use crate::support::{agent, dump, http_get, inspect, metric, sigterm, Guard, TestProducer, BIN};

const BASE_TS_MS: i64 = 1_700_000_000_000;

/// What a record must look like when read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Expected {
    line: String,
    time_ns: i64,
    tenant: String,
    app: String,
    labels: BTreeMap<String, String>,
}

fn data_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("the shared data set must exist")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if name != "LICENSE" && !name.ends_with(".md") {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&skidder_common::testing::shared_data_dir(), &mut out);
    assert!(out.len() > 50, "expected the shared data set");
    out
}

/// The expectation for one input line, from the test's own reading of the
/// config below: app = `_path`, labels = `event_type` and `proto`,
/// time = `ts` (epoch seconds or RFC 3339), else the Kafka timestamp.
fn expect(line: &str, kafka_ts_ms: i64) -> Expected {
    let json = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .filter(|v| v.is_object());
    let mut e = Expected {
        line: line.to_owned(),
        time_ns: kafka_ts_ms * 1_000_000,
        tenant: "logs".into(),
        app: "unknown".into(),
        labels: BTreeMap::new(),
    };
    if let Some(v) = json {
        match v.get("ts") {
            Some(serde_json::Value::Number(n)) => {
                let ts = n.as_f64().unwrap();
                let secs = ts.trunc();
                e.time_ns = secs as i64 * 1_000_000_000 + ((ts - secs) * 1e6).round() as i64 * 1000;
            }
            Some(serde_json::Value::String(s)) => {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                    e.time_ns = t.timestamp_nanos_opt().unwrap();
                }
            }
            _ => {}
        }
        if let Some(p) = v.get("_path").and_then(|p| p.as_str()) {
            e.app = p.to_owned();
        }
        for k in ["event_type", "proto"] {
            if let Some(s) = v.get(k).and_then(|x| x.as_str()) {
                e.labels.insert(k.to_owned(), s.to_owned());
            }
        }
    }
    e
}

#[test]
fn kafka_to_s3_every_record_exactly_once() {
    let moto = MotoServer::start();
    let kafka = KafkaBroker::start();
    kafka.create_topic("logs", 4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(S3Store::new("logs", "skidder/", &moto.s3_config()));
    rt.block_on(s3.create_bucket()).unwrap();

    // Produce: JSON files several records to a message, text one line each.
    let mut producer = TestProducer::new(&kafka.bootstrap());
    let mut expected: Vec<Expected> = Vec::new();
    let mut messages = 0u64;
    for (file_no, path) in data_files().iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let is_json = lines.first().is_some_and(|l| l.starts_with('{'));
        let per_message = if is_json && file_no % 2 == 0 { 3 } else { 1 };
        for chunk in lines.chunks(per_message) {
            let ts = BASE_TS_MS + messages as i64;
            let payload = chunk.join("\n");
            let key = format!("{file_no}");
            producer.send("logs", &key, payload.as_bytes(), ts);
            messages += 1;
            expected.extend(chunk.iter().map(|l| expect(l, ts)));
        }
    }
    producer.finish();

    // Index with the real binary.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        r#"
[parse]
timestamp_fields = ["ts"]
app = { template = "{_path}" }
tenant = "topic"
label_fields = ["event_type", "proto"]
[blocks]
target_bytes = 1048576
flush_interval_secs = 3
[upload]
checkpoint_interval_secs = 1
"#,
    )
    .unwrap();
    let metrics_port = free_port();
    let mut indexer = Guard(
        Command::new(BIN)
            .args(["indexer", "--config", config.path().to_str().unwrap()])
            .args([
                "--kafka-brokers",
                &kafka.bootstrap(),
                "--topics",
                "logs",
                "--group-id",
                "e2e",
            ])
            .args([
                "--store",
                "s3://logs/skidder",
                "--s3-endpoint",
                &moto.endpoint(),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Wait until every record is stored, reading the indexer's own metrics.
    let want = expected.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut metrics_text = String::new();
    loop {
        assert!(
            indexer.try_wait().unwrap().is_none(),
            "indexer exited early"
        );
        if let Ok(body) = http_get(metrics_port, "/metrics") {
            metrics_text = body;
            if metric(
                &metrics_text,
                "skidder_indexer_stage_records_out_total{stage=\"uploader\"}",
            ) >= want
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out; metrics:\n{metrics_text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for name in [
        "skidder_indexer_queue_bytes",
        "skidder_indexer_kafka_pauses_total",
        "skidder_indexer_upload_duration_seconds",
        "skidder_indexer_blocks_written_total",
        "skidder_indexer_index_bytes_written_total",
        "skidder_indexer_consumer_lag_records",
    ] {
        assert!(metrics_text.contains(name), "metric {name} missing");
    }
    assert!(metric(&metrics_text, "skidder_indexer_plain_text_records_total") > 0);
    // Every block costs the uploader three PUTs (ledger, data, index),
    // and each assigned partition a ledger LIST and an epoch claim PUT.
    let requests = |op: &str, caller: &str| {
        let name = format!(r#"skidder_store_requests_total{{caller="{caller}",op="{op}"}}"#);
        metric(&metrics_text, &name)
    };
    let blocks = metric(&metrics_text, "skidder_indexer_blocks_written_total");
    assert!(blocks > 0);
    assert!(
        requests("put", "uploader") >= 3 * blocks,
        "{} PUTs for {blocks} blocks",
        requests("put", "uploader")
    );
    assert!(requests("put_if_absent", "assignment") >= 1 && requests("list", "assignment") >= 1);

    // SIGTERM: flush, commit, exit 0.
    sigterm(indexer.id());
    let exit = indexer.wait().unwrap();
    assert!(exit.success(), "indexer exited with {exit}");

    // Layout.
    let objects = rt.block_on(list_all(&s3, "")).unwrap();
    let layout = regex_lite(&objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>());
    assert!(
        layout.blocks > 0 && layout.blocks == layout.indexes,
        "{layout:?}"
    );
    // The indexer packed the indexes of the hours it wrote, as it went.
    let hours_with = |f: &dyn Fn(&str) -> bool| -> std::collections::BTreeSet<String> {
        objects
            .iter()
            .filter(|o| f(&o.key))
            .map(|o| o.key.split('/').take(3).collect::<Vec<_>>().join("/"))
            .collect()
    };
    assert!(layout.tail_packs > 0, "{layout:?}");
    assert_eq!(
        hours_with(&|k| k.contains("/_tail.")),
        hours_with(&|k| k.ends_with(".idx")),
        "an hour without a tail pack"
    );

    // Every object validates.
    let store_args = [
        "--store",
        "s3://logs/skidder",
        "--s3-endpoint",
        &moto.endpoint(),
    ];
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let out = inspect(&store_args, &creds, &[]);
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Read everything back: exactly the input, once each.
    let mut got: HashMap<Expected, i64> = HashMap::new();
    for v in dump(&store_args, &creds) {
        let labels = v["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        *got.entry(Expected {
            line: v["line"].as_str().unwrap().to_owned(),
            time_ns: v["time_ns"].as_str().unwrap().parse().unwrap(),
            tenant: v["tenant"].as_str().unwrap().to_owned(),
            app: v["app"].as_str().unwrap().to_owned(),
            labels,
        })
        .or_default() += 1;
    }
    let mut want_counts: HashMap<Expected, i64> = HashMap::new();
    for e in expected.iter().cloned() {
        *want_counts.entry(e).or_default() += 1;
    }
    let mut missing = 0;
    let mut shown = 0;
    for (e, n) in &want_counts {
        let g = got.get(e).copied().unwrap_or(0);
        if g != *n {
            missing += 1;
            if shown < 5 {
                shown += 1;
                eprintln!("want {n}, got {g}: {e:?}");
            }
        }
    }
    let extra = got.keys().filter(|e| !want_counts.contains_key(e)).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "records lost, duplicated or altered"
    );

    // Pack every hour's indexes, as `skidder pack` would once they settle;
    // a second pass finds nothing to do.
    for pass in 0..2 {
        let out = Command::new(BIN)
            .arg("pack")
            .args(store_args)
            .args(["--since", "200000h", "--settle", "0s"])
            .envs(creds)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pack pass {pass} failed: {log}");
        let packed = log.contains("packed an hour's indexes");
        assert_eq!(packed, pass == 0, "pass {pass}: {log}");
    }
    // On a timer it waits between passes and stops cleanly on SIGTERM.
    let log_path =
        std::env::temp_dir().join(format!("skidder-pack-every-{}.log", std::process::id()));
    let mut timer = Guard(
        Command::new(BIN)
            .arg("pack")
            .args(store_args)
            .args(["--since", "200000h", "--settle", "0s", "--every", "1h"])
            .envs(creds)
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("pack pass done")
    {
        assert!(timer.try_wait().unwrap().is_none(), "pack --every exited");
        assert!(Instant::now() < deadline, "no pack pass within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        timer.try_wait().unwrap().is_none(),
        "pack --every exited after its first pass: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    sigterm(timer.id());
    assert!(timer.wait().unwrap().success());
    let _ = std::fs::remove_file(&log_path);
    let objects = rt.block_on(list_all(&s3, "")).unwrap();
    let with_packs = regex_lite(&objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>());
    assert!(with_packs.packs > 0, "{with_packs:?}");
    assert_eq!(with_packs.tail_packs, 0, "packed hours keep no tail pack");
    assert!(with_packs.slices > 0, "{with_packs:?}");
    // `inspect --all` reads the packs too: every member is its index.
    let out = inspect(&store_args, &creds, &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inspect failed: {log}");
    assert!(
        log.contains(&format!(
            "{} index packs read, 0 packed indexes out of date; {} sliced blooms read, 0 sliced filters out of date",
            with_packs.packs, with_packs.slices
        )),
        "{log}"
    );
    assert_eq!(
        (with_packs.blocks, with_packs.indexes),
        (layout.blocks, layout.indexes)
    );

    // The read path: `skidder searcher` over the same S3 data, asked in
    // LogQL over Loki's HTTP API; answers computed here from the input.
    // It reads the packs; the answers must not change.
    let sliced_hours: Vec<i64> = objects
        .iter()
        .filter(|o| o.key.ends_with(".slices"))
        .filter_map(|o| hour_of_prefix(&o.key))
        .collect();
    assert!(!sliced_hours.is_empty());
    search_checks(&moto, &expected, sliced_hours[0]);
}

/// Which input records a query must return.
type Wanted<'a> = dyn Fn(&Expected) -> bool + 'a;

/// Lines of the input that a predicate selects, with their time span.
fn want_lines(expected: &[Expected], f: impl Fn(&Expected) -> bool) -> (Vec<String>, i64, i64) {
    let hits: Vec<&Expected> = expected.iter().filter(|e| f(e)).collect();
    let mut lines: Vec<String> = hits.iter().map(|e| e.line.clone()).collect();
    lines.sort();
    let lo = hits.iter().map(|e| e.time_ns).min().unwrap_or(0);
    let hi = hits.iter().map(|e| e.time_ns).max().unwrap_or(0);
    (lines, lo, hi)
}

fn field(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get(key)?.as_str().map(str::to_owned)
}

/// The hour (since the epoch) of a key under `tenant=…/dt=…/hour=…/`.
fn hour_of_prefix(key: &str) -> Option<i64> {
    let dt = key.split("/dt=").nth(1)?.get(..10)?;
    let hh: i64 = key.split("/hour=").nth(1)?.get(..2)?.parse().ok()?;
    let day = chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
    let secs = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some(secs / 3600 + hh)
}

fn search_checks(moto: &MotoServer, expected: &[Expected], sliced_hour: i64) {
    let port = free_port();
    let mut searcher = Guard(
        Command::new(BIN)
            .args([
                "searcher",
                "--store",
                "s3://logs/skidder",
                "--s3-endpoint",
                &moto.endpoint(),
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SKIDDER_MULTI_TENANT", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let agent = agent();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.get(format!("{base}/ready")).call().is_err() {
        assert!(searcher.try_wait().unwrap().is_none(), "searcher exited");
        assert!(Instant::now() < deadline, "searcher never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ask = |path: &str, params: &[(&str, String)]| -> serde_json::Value {
        let mut req = agent
            .get(format!("{base}{path}"))
            .header("X-Scope-OrgID", "logs");
        for (k, v) in params {
            req = req.query(*k, v);
        }
        let mut resp = req.call().unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status(), 200, "{path} {params:?}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let lines_of = |v: &serde_json::Value| -> Vec<String> {
        let mut out: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p[1].as_str().unwrap().to_owned())
            })
            .collect();
        out.sort();
        out
    };

    // First, while the searcher's cache is cold: a whole word of a line in
    // an hour with sliced blooms. The hour's blocks are ruled out with
    // ranged GETs of the slices before any index is read, and every line
    // holding the word must still come back.
    let hour_ns = 3_600_000_000_000i64;
    let (start, end) = (sliced_hour * hour_ns, (sliced_hour + 1) * hour_ns);
    let in_hour: Vec<&Expected> = expected
        .iter()
        .filter(|e| (start..end).contains(&e.time_ns))
        .collect();
    let word = in_hour
        .iter()
        .flat_map(|e| e.line.split(' '))
        .find(|w| w.len() >= 6 && w.bytes().all(|b| b.is_ascii_alphabetic()))
        .expect("a plain word in the sliced hour")
        .to_owned();
    let needle = format!(" {word} ");
    let mut want: Vec<String> = in_hour
        .iter()
        .filter(|e| e.line.contains(&needle))
        .map(|e| e.line.clone())
        .collect();
    want.sort();
    let v = ask(
        "/loki/api/v1/query_range",
        &[
            ("query", format!(r#"{{__app__=~".+"}} |= "{needle}""#)),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", "5000".into()),
        ],
    );
    assert!(!want.is_empty() && want.len() < 5000, "{needle}");
    assert_eq!(lines_of(&v), want, "{needle} in the sliced hour");

    // A needle in JSON lines, as a line filter and as a field filter.
    // The rarest queried domain: a needle, not a haystack.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in expected.iter().filter(|e| e.app == "dns") {
        if let Some(q) = field(&e.line, "query") {
            *counts.entry(q).or_default() += 1;
        }
    }
    let domain = counts
        .iter()
        .filter(|(d, _)| d.len() > 8)
        .min_by_key(|(d, n)| (**n, (*d).clone()))
        .unwrap()
        .0
        .clone();
    let needle_cases: [(String, Box<Wanted<'_>>); 4] = [
        (
            format!(r#"{{__app__="dns"}} | query="{domain}""#),
            Box::new(|e: &Expected| {
                e.app == "dns" && field(&e.line, "query").as_deref() == Some(domain.as_str())
            }),
        ),
        (
            format!(r#"{{__app__="dns"}} |= "{domain}""#),
            Box::new(|e: &Expected| e.app == "dns" && e.line.contains(domain.as_str())),
        ),
        (
            r#"{event_type="alert"} |~ "ET (POLICY|SCAN)""#.to_owned(),
            Box::new(|e: &Expected| {
                e.labels.get("event_type").map(String::as_str) == Some("alert")
                    && (e.line.contains("ET POLICY") || e.line.contains("ET SCAN"))
            }),
        ),
        (
            r#"{__app__="unknown"} |= "Invalid user" != "admin""#.to_owned(),
            Box::new(|e: &Expected| {
                e.app == "unknown" && e.line.contains("Invalid user") && !e.line.contains("admin")
            }),
        ),
    ];
    for (query, pred) in &needle_cases {
        let (want, lo, hi) = want_lines(expected, pred);
        assert!(
            !want.is_empty() && want.len() < 5000,
            "{query}: {} expected",
            want.len()
        );
        let v = ask(
            "/loki/api/v1/query_range",
            &[
                ("query", query.clone()),
                ("start", lo.to_string()),
                ("end", (hi + 1).to_string()),
                ("limit", "5000".into()),
            ],
        );
        assert_eq!(lines_of(&v), want, "{query}");
    }

    // A metric query: every dns record counted once, by one window spanning them.
    let (want, lo, hi) = want_lines(expected, |e| e.app == "dns");
    let range_s = (hi - lo) / 1_000_000_000 + 2;
    let v = ask(
        "/loki/api/v1/query",
        &[
            (
                "query",
                format!(r#"sum(count_over_time({{__app__="dns"}}[{range_s}s]))"#),
            ),
            ("time", (hi + 1_000_000_000).to_string()),
        ],
    );
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"][0]["value"][1].as_str().unwrap(),
        want.len().to_string()
    );

    // Label values come from the stored streams.
    let v = ask(
        "/loki/api/v1/label/__app__/values",
        &[("start", lo.to_string()), ("end", (hi + 1).to_string())],
    );
    assert!(v["data"].as_array().unwrap().iter().any(|a| a == "dns"));
    let mut resp = agent.get(format!("{base}/metrics")).call().unwrap();
    let metrics_text = resp.body_mut().read_to_string().unwrap();
    assert!(
        metric(
            &metrics_text,
            r#"skidder_searcher_index_packs_read_total{result="ok"}"#
        ) > 0,
        "the searcher read no index pack"
    );
    assert!(
        metric(
            &metrics_text,
            r#"skidder_searcher_sliced_blooms_read_total{result="ok"}"#
        ) > 0,
        "the searcher pruned with no sliced blooms"
    );
    // The same reads, counted as store requests by step of the read path.
    let requests = |op: &str, caller: &str| {
        let name = format!(r#"skidder_store_requests_total{{caller="{caller}",op="{op}"}}"#);
        metric(&metrics_text, &name)
    };
    assert!(
        requests("get", "packs")
            >= metric(
                &metrics_text,
                r#"skidder_searcher_index_packs_read_total{result="ok"}"#
            )
    );
    // Hours are listed alone or, closed hours of a day, in runs.
    let lists = requests("list", "listing") + requests("list", "listing_runs");
    assert!(requests("get_range", "slices") > 0 && lists > 0);
    sigterm(searcher.id());
    assert!(searcher.wait().unwrap().success());
}

#[derive(Debug, Default)]
struct Layout {
    blocks: usize,
    indexes: usize,
    packs: usize,
    tail_packs: usize,
    slices: usize,
}

/// Checks each key against the layout in docs/FORMAT.md.
fn regex_lite(keys: &[String]) -> Layout {
    let mut l = Layout::default();
    for k in keys {
        if k.starts_with("_ledger/") {
            let ok = k.starts_with("_ledger/topic=logs/partition=") && k.ends_with(".json");
            assert!(ok, "bad ledger key {k}");
            continue;
        }
        let parts: Vec<&str> = k.split('/').collect();
        if parts.len() == 4 && parts[3].starts_with("_index.") && parts[3].ends_with(".pack") {
            l.packs += 1;
            continue;
        }
        if parts.len() == 4 && parts[3].starts_with("_tail.") && parts[3].ends_with(".pack") {
            l.tail_packs += 1;
            continue;
        }
        // An hour's sliced blooms, or a day's (beside its hour folders).
        let own = parts.len() == 4 || (parts.len() == 3 && parts[1].starts_with("dt="));
        let name = parts[parts.len() - 1];
        if own && name.starts_with("_blooms.") && name.ends_with(".slices") {
            l.slices += 1;
            continue;
        }
        assert_eq!(parts.len(), 5, "bad key {k}");
        assert!(parts[0].starts_with("tenant="), "{k}");
        let dt = parts[1]
            .strip_prefix("dt=")
            .unwrap_or_else(|| panic!("{k}"));
        assert!(
            dt.len() == 10 && dt.as_bytes()[4] == b'-' && dt.as_bytes()[7] == b'-',
            "{k}"
        );
        let hour = parts[2]
            .strip_prefix("hour=")
            .unwrap_or_else(|| panic!("{k}"));
        assert!(hour.len() == 2 && hour.parse::<u32>().unwrap() < 24, "{k}");
        assert!(parts[3].starts_with("app="), "{k}");
        let file: Vec<&str> = parts[4].split('.').collect();
        assert_eq!(file.len(), 5, "{k}");
        assert_eq!(file[0], "logs");
        file[1].parse::<i32>().unwrap();
        assert_eq!(file[2].len(), 20);
        // The epoch the indexer claimed for the partition.
        assert!(file[3].len() == 11 && file[3].starts_with('e'), "{k}");
        match file[4] {
            "seq" => l.blocks += 1,
            "idx" => l.indexes += 1,
            other => panic!("unexpected suffix {other} in {k}"),
        }
    }
    l
}
