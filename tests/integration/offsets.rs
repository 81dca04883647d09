//! Lookup by Kafka offset, end to end: real loghub lines go through Apache
//! Kafka and the real indexer into moto, each message of one to three
//! records spread over three apps; the first message of partition 0 has
//! a line too long to store, which the indexer dead-letters. Then
//! `skidder search --offset` on a random sample of offsets must return
//! exactly the records of each message (told apart by the `msg` and
//! `line` fields the test wrote into them), over small blocks, over the
//! searcher's HTTP endpoint, and again after `skidder compact` merged the
//! blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseRecord, Producer};
use serde_json::Value;
use skidder_common::testing::{free_port, shared_data_dir, KafkaBroker, MotoServer};

use crate::support::{http_get, sigterm, wait_checkpointed, wait_stored, Guard, TestProducer, BIN};

const APPS: [&str; 3] = ["web", "api", "db"];
const MESSAGES: usize = 600;
const MAX_LINE: usize = 4096;

/// One stored record as the lookup reports it: (msg, line, app).
type Rec = (u64, u64, String);

fn creds() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
}

/// `skidder search --offset` as JSON; `how` is `--store …` or `--url …`.
fn lookup(how: &[&str], partition: i32, offset: i64) -> Value {
    let out = Command::new(BIN)
        .arg("search")
        .args(how)
        .args(["--tenant", "logs", "--output", "json"])
        .arg("--offset")
        .arg(format!("logs:{partition}:{offset}"))
        .envs(creds())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lookup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The records of an answer, sorted, and its dead letters' lines.
fn records_of(answer: &Value) -> (Vec<Rec>, Vec<(u64, String)>) {
    let data = &answer["data"];
    assert_eq!(
        data["unresolved_blocks"].as_array().map(Vec::len),
        Some(0),
        "{answer}"
    );
    let mut recs: Vec<Rec> = data["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let line: Value = serde_json::from_str(r["line"].as_str().unwrap()).unwrap();
            (
                line["msg"].as_u64().unwrap(),
                line["line"].as_u64().unwrap(),
                r["labels"]["__app__"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    recs.sort();
    let dead = data["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (recs, dead)
}

#[test]
fn each_offset_returns_exactly_the_records_of_its_message() {
    let moto = MotoServer::start();
    let kafka = KafkaBroker::start();
    kafka.create_topic("logs", 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = rt.block_on(skidder_common::storage::S3Store::new(
        "logs",
        "",
        &moto.s3_config(),
    ));
    rt.block_on(s3.create_bucket()).unwrap();

    let text = std::fs::read_to_string(shared_data_dir().join("loghub/Apache_2k.log")).unwrap();
    let mut source = text.lines().filter(|l| !l.trim().is_empty()).cycle();
    // Two hours ago: a settled hour, which the compactor will take.
    let ts = chrono::Utc::now().timestamp_millis() - 2 * 3_600_000;
    let record = |msg: usize, line: usize, text: &str| {
        serde_json::json!({"msg": msg, "line": line, "app": APPS[line % 3], "text": text})
            .to_string()
    };
    // What each message should become: its stored records, by message.
    let mut want: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
    let mut producer = TestProducer::new(&kafka.bootstrap());
    // Message 0, first on partition 0 (offset 0): a stored line and one
    // too long to store.
    let long = record(0, 1, &"x".repeat(MAX_LINE));
    let first = format!("{}\n{long}", record(0, 0, source.next().unwrap()));
    let send = |p: &mut TestProducer, partition: i32, payload: &str| {
        let rec = BaseRecord::<(), [u8]>::to("logs")
            .payload(payload.as_bytes())
            .partition(partition)
            .timestamp(ts);
        p.inner.send(rec).map_err(|(e, _)| e).unwrap();
        p.sent += 1;
    };
    send(&mut producer, 0, &first);
    producer.inner.flush(Duration::from_secs(30)).unwrap();
    want.insert(0, vec![(0, 0, "web".into())]);
    for msg in 1..MESSAGES {
        let lines = 1 + msg % 3;
        let payload: Vec<String> = (0..lines)
            .map(|l| record(msg, l, source.next().unwrap()))
            .collect();
        send(&mut producer, (msg % 2) as i32, &payload.join("\n"));
        want.insert(
            msg as u64,
            (0..lines)
                .map(|l| (msg as u64, l as u64, APPS[l % 3].to_owned()))
                .collect(),
        );
        if msg % 100 == 0 {
            producer.inner.flush(Duration::from_secs(30)).unwrap();
        }
    }
    let ends = producer.finish();
    let total: usize = want.values().map(Vec::len).sum();

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            r#"
[parse]
app = {{ template = "{{app}}" }}
tenant = "topic"
max_line_bytes = {MAX_LINE}
[blocks]
target_bytes = 30000
flush_interval_secs = 2
[upload]
checkpoint_interval_secs = 1
"#
        ),
    )
    .unwrap();
    let store = ["--store", "s3://logs/", "--s3-endpoint", &moto.endpoint()];
    let metrics_port = free_port();
    let mut indexer = Guard(
        Command::new(BIN)
            .args(["indexer", "--config", config.path().to_str().unwrap()])
            .args(["--kafka-brokers", &kafka.bootstrap(), "--topics", "logs"])
            .args(["--group-id", "offsets"])
            .args(store)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .envs(creds())
            .env("SKIDDER_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_stored(metrics_port, total as u64, Duration::from_secs(300));
    assert!(indexer.try_wait().unwrap().is_none(), "indexer exited");
    wait_checkpointed(&rt, &s3, &["logs"], 2, MESSAGES as i64);
    sigterm(indexer.id());
    assert!(indexer.wait().unwrap().success());

    // Every message's offset, found by looking up every offset of
    // partition 1 and a random sample of partition 0's.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut sample: Vec<(i32, i64)> = (0..ends[&1]).map(|o| (1, o)).collect();
    sample.retain(|_| rng.random_bool(0.1));
    sample.push((0, 0));
    sample.extend((0..20).map(|_| (0, rng.random_range(1..ends[&0]))));
    sample.sort();
    sample.dedup();
    let mut seen = BTreeSet::new();
    let mut answers = Vec::new();
    for &(p, o) in &sample {
        let answer = lookup(&store, p, o);
        let (recs, dead) = records_of(&answer);
        let msg = recs.first().map(|r| r.0).expect("a record for each offset");
        assert_eq!(Some(&recs), want.get(&msg), "offset {p}:{o}");
        assert_eq!(msg % 2, p as u64, "message {msg} on partition {p}");
        assert!(seen.insert(msg), "message {msg} at two offsets");
        // Only message 0 has a dead letter: its second line.
        let want_dead = match msg {
            0 => vec![(1, "line_too_long".to_string())],
            _ => Vec::new(),
        };
        assert_eq!(dead, want_dead, "offset {p}:{o}");
        answers.push(((p, o), recs));
    }
    assert!(seen.contains(&0) && seen.len() > 40, "{seen:?}");
    // An offset past the end has nothing.
    let (none, _) = records_of(&lookup(&store, 1, ends[&1] + 5));
    assert!(none.is_empty());

    // The same over HTTP, from a searcher.
    let port = free_port();
    let mut searcher = Guard(
        Command::new(BIN)
            .args(["searcher", "--multi-tenant", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(store)
            .envs(creds())
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while http_get(port, "/ready").is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}");
    for ((p, o), recs) in answers.iter().take(10) {
        let answer = lookup(&["--url", &url], *p, *o);
        assert_eq!(&records_of(&answer).0, recs, "HTTP {p}:{o}");
    }
    let _ = searcher.kill();

    // After compaction, the compacted blocks answer the same.
    let out = Command::new(BIN)
        .arg("compact")
        .args(store)
        .args(["--settle", "0s", "--grace", "0s", "--min-blocks", "2"])
        .envs(creds())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = rt
        .block_on(skidder_common::storage::list_all(&s3, "tenant="))
        .unwrap();
    assert!(
        keys.iter().any(|k| k.key.contains("/compacted.")),
        "nothing compacted: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ((p, o), recs) in answers.iter().take(25) {
        let answer = lookup(&store, *p, *o);
        let blocks: Vec<&str> = answer["data"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["block"].as_str().unwrap())
            .collect();
        assert!(
            blocks.iter().all(|b| b.contains("/compacted.")),
            "{blocks:?}"
        );
        assert_eq!(&records_of(&answer).0, recs, "compacted {p}:{o}");
    }
}
