//! The hostile-record corpus (`tests/data/hostile/`, see its README) through
//! the whole pipeline: Apache Kafka, the real indexer on a local store, then the
//! searcher. Every record is either found by the searcher where the indexer
//! put it, or refused by a documented limit: then it is counted by reason
//! and its bytes lie whole under `_deadletter/`. Nothing panics, and no
//! tenant or app value escapes or shares its folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use skidder_common::format::layout::{decode_component, valid_tenant};
use skidder_common::testing::{free_port, KafkaBroker};

use crate::exactly_once::{spawn_searcher, wait_stored, LocalRun};
use crate::support::{agent, dump, http_get, metric, sigterm, TestProducer};

const TOPIC: &str = "hostile";
const KAFKA_TS_MS: i64 = 1_700_000_000_000;
const PODS: usize = 100_000;
const APPS: usize = 2_000;

/// One message of the corpus and what must become of it: `stored`, or the
/// reason it is refused.
struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: String,
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .map(|p| Case {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            expect: p.extension().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&p).unwrap(),
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 20, "the corpus is missing from {dir:?}");
    cases
}

/// Every file under `root`, as paths relative to it.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

fn logql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `query_range` for one tenant: (status, body).
fn query(url: &str, tenant: &str, q: &str, start: i64, end: i64) -> (u16, serde_json::Value) {
    let mut resp = agent()
        .get(format!("{url}/loki/api/v1/query_range"))
        .header("X-Scope-OrgID", tenant)
        .query("query", q)
        .query("start", start.to_string())
        .query("end", end.to_string())
        .query("limit", "100")
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// The lines of a streams answer.
fn lines_of(body: &serde_json::Value) -> Vec<String> {
    body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().into_iter().flatten())
        .map(|v| v[1].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn hostile_records_are_stored_and_found_or_refused_whole() {
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, 1);
    let cases = corpus();
    let mut producer = TestProducer::with_max_message_bytes(&kafka.bootstrap(), 200 << 20);
    for c in &cases {
        producer.send(TOPIC, &c.name, &c.bytes, KAFKA_TS_MS);
    }
    // Too large to commit: a 10 MB record, a 100 MB message of 100k
    // records with 100k label sets, and 2,000 apps in one message.
    let big = format!(r#"{{"msg":"hostile-big {}"}}"#, "x".repeat(10 << 20));
    producer.send(TOPIC, "big", big.as_bytes(), KAFKA_TS_MS);
    let pad = "p".repeat(960);
    let mut pods = String::with_capacity(PODS * 1024);
    for i in 0..PODS {
        writeln!(
            pods,
            r#"{{"msg":"pods {i} {pad}","app":"pods","pod":"pod-{i}"}}"#
        )
        .unwrap();
    }
    producer.send(TOPIC, "pods", pods.as_bytes(), KAFKA_TS_MS);
    let mut apps = String::new();
    for i in 0..APPS {
        writeln!(apps, r#"{{"msg":"apps {i}","app":"app-{i}-ü/.."}}"#).unwrap();
    }
    producer.send(TOPIC, "apps", apps.as_bytes(), KAFKA_TS_MS);
    let ends = producer.finish();
    eprintln!(
        "sent {} corpus messages, 10 MB, 100 MB and 2,000-app messages",
        cases.len()
    );

    let local = LocalRun::new(
        r#"
[kafka]
commit_interval_ms = 200
[parse]
tenant = { field = "tenant" }
label_fields = ["pod"]
[blocks]
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#,
    );
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let bootstrap = kafka.bootstrap();
    let run = local.run(&bootstrap, TOPIC, "hostile");
    let port = free_port();
    let mut indexer = run.start(port, &logs.path().join("indexer.log"), &[]);
    wait_stored(
        dir.path(),
        TOPIC,
        &ends,
        &mut [&mut indexer],
        logs.path(),
        Duration::from_secs(300),
    );
    let metrics = http_get(port, "/metrics").unwrap();
    sigterm(indexer.id());
    assert!(indexer.wait().unwrap().success(), "SIGTERM must exit 0");

    // Refused records: counted by reason, and whole under `_deadletter/`.
    let mut files = Vec::new();
    walk(dir.path(), dir.path(), &mut files);
    let dead: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|f| f.starts_with("_deadletter/"))
        .map(|f| (f.clone(), std::fs::read(dir.path().join(f)).unwrap()))
        .collect();
    let mut refused: Vec<(&str, &[u8])> = cases
        .iter()
        .filter(|c| c.expect != "stored")
        .map(|c| (c.expect.as_str(), c.bytes.trim_ascii()))
        .collect();
    refused.push(("line_too_long", big.as_bytes()));
    for (reason, bytes) in &refused {
        assert!(
            dead.iter()
                .any(|(k, v)| k.ends_with(&format!(".{reason}")) && v == bytes),
            "no dead letter for a {reason} record of {} bytes; have {:?}",
            bytes.len(),
            dead.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        dead.len(),
        refused.len(),
        "one dead letter per refused record"
    );
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for (reason, _) in &refused {
        *by_reason.entry(reason).or_default() += 1;
    }
    for (reason, n) in &by_reason {
        let name = format!("skidder_indexer_refused_records_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&metrics, &name), *n, "{name}");
    }

    // Stored records: every one in the store once.
    let records = dump(&["--store", store], &[]);
    let stored_cases: Vec<&Case> = cases.iter().filter(|c| c.expect == "stored").collect();
    assert_eq!(
        records.len(),
        stored_cases.len() + PODS + APPS,
        "every record not refused is stored once"
    );
    let pods_seen: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["app"] == "pods")
        .map(|r| r["labels"]["pod"].as_str().unwrap())
        .collect();
    assert_eq!(pods_seen.len(), PODS, "100k label sets, all kept apart");

    // Object keys: inside their folders, decodable, one folder per value.
    let mut folders: BTreeSet<(String, String)> = BTreeSet::new();
    for f in files.iter().filter(|f| f.starts_with("tenant=")) {
        let seg: Vec<&str> = f.split('/').collect();
        // The indexer's tail packs of each hour, beside its app folders.
        if seg.len() == 4 && seg[3].starts_with("_tail.") && seg[3].ends_with(".pack") {
            continue;
        }
        assert_eq!(seg.len(), 5, "{f}");
        assert!(seg.iter().all(|s| *s != ".." && *s != "."), "{f}");
        let tenant = decode_component(seg[0].strip_prefix("tenant=").unwrap()).unwrap();
        let app = decode_component(seg[3].strip_prefix("app=").unwrap()).unwrap();
        assert!(valid_tenant(&tenant), "{f}");
        folders.insert((tenant, app));
    }
    assert!(files.iter().all(|f| f.starts_with("tenant=")
        || f.starts_with("_ledger/")
        || f.starts_with("_deadletter/")));
    let streams: BTreeSet<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["tenant"].as_str().unwrap().to_owned(),
                r["app"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        folders, streams,
        "each (tenant, app) has exactly its own folder"
    );
    for app in [
        "a/b",
        "a%2Fb",
        "..",
        "../../etc/passwd",
        "x=y",
        "ünïcødé-日本",
    ] {
        assert!(
            streams.iter().any(|(_, a)| a == app),
            "app {app:?} kept as is"
        );
    }

    // Through the searcher: each corpus record where the indexer put it.
    let (searcher, url) = spawn_searcher(&["--multi-tenant", "--store", store], &[]);
    for c in &stored_cases {
        let marker = format!("hostile{}", &c.name[..2]);
        let r = records
            .iter()
            .find(|r| r["line"].as_str().unwrap().contains(&marker))
            .unwrap_or_else(|| panic!("{}: not stored", c.name));
        let t: i64 = r["time_ns"].as_str().unwrap().parse().unwrap();
        let (tenant, app) = (r["tenant"].as_str().unwrap(), r["app"].as_str().unwrap());
        let q = format!(
            "{{__app__={}}} |= {}",
            logql_string(app),
            logql_string(&marker)
        );
        let (status, body) = query(&url, tenant, &q, t, t + 1);
        assert_eq!(status, 200, "{}: {q}: {body}", c.name);
        assert_eq!(
            lines_of(&body),
            [r["line"].as_str().unwrap()],
            "{}: {q} at {t}",
            c.name
        );
    }
    let t = KAFKA_TS_MS * 1_000_000;
    let (status, body) = query(&url, "default", r#"{pod="pod-77777"}"#, t, t + 1);
    assert_eq!(status, 200, "{body}");
    let got = lines_of(&body);
    assert!(got.len() == 1 && got[0].contains("pods 77777 "), "{got:?}");
    let (status, body) = query(&url, "default", r#"{__app__="app-1234-ü/.."}"#, t, t + 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        lines_of(&body),
        [r#"{"msg":"apps 1234","app":"app-1234-ü/.."}"#]
    );
    drop(searcher);
    eprintln!(
        "hostile: {} corpus records ({} stored, {} refused) + 10 MB record + {PODS} pods + {APPS} apps; \
         dead letters {by_reason:?}; {} objects",
        cases.len(),
        stored_cases.len(),
        cases.len() - stored_cases.len(),
        files.len()
    );
}
