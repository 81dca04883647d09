//! What real Kafka producers send, through Apache Kafka and the real
//! `skidder indexer`: batches in every compression codec and from the
//! idempotent producer, transactions committed and aborted (with kills in
//! between), and the consumer lag Kafka's own group tool reports.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};

use crate::backpressure::stalled_s3;
use crate::exactly_once::{
    post_mortem, wait_stored, LocalRun, Searcher, APPS, BASE_SECS, INDEXER_CONFIG,
};
use crate::support::{dump, http_get, stop_clean, Guard, TestProducer, BIN};

/// The producers of the shapes test: (name, librdkafka properties).
const SHAPES: [(&str, &[(&str, &str)]); 5] = [
    ("gzip", &[("compression.type", "gzip")]),
    ("snappy", &[("compression.type", "snappy")]),
    ("lz4", &[("compression.type", "lz4")]),
    ("zstd", &[("compression.type", "zstd")]),
    (
        "idempotent",
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "none"),
        ],
    ),
];

/// What a record of the shapes test must come back as.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    time_ns: i64,
    tenant: String,
    app: String,
    level: String,
}

/// Record `id` of the shapes test: its JSON line and what it must come
/// back as.
fn shaped(id: u64) -> (String, Expected) {
    let ts = BASE_SECS + (id % 7200) as i64;
    let e = Expected {
        time_ns: ts * 1_000_000_000,
        tenant: format!("tenant-{}", id % 3),
        app: format!("app-{}", id % 5),
        level: ["info", "warn", "error"][(id % 7 % 3) as usize].to_owned(),
    };
    let line = format!(
        r#"{{"id":{id},"ts":{ts},"tenant":"{}","app":"{}","level":"{}","msg":"shaped record {id}"}}"#,
        e.tenant, e.app, e.level
    );
    (line, e)
}

#[test]
fn batched_producers_in_every_codec_and_the_idempotent_one_come_back_exactly_once() {
    const PARTITIONS: u32 = 3;
    const MESSAGES: u64 = 800;
    let seed = seed_from_env("SKIDDER_SHAPES_SEED");
    let kafka = KafkaBroker::start();
    kafka.create_topic("shapes", PARTITIONS);
    let local = LocalRun::new(
        r#"
[kafka]
commit_interval_ms = 200
[parse]
tenant = { field = "tenant" }
label_fields = ["level"]
[blocks]
target_bytes = 65536
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#,
    );
    let bootstrap = kafka.bootstrap();
    let run = local.run(&bootstrap, "shapes", "shapes");
    let mut indexer = run.start(free_port(), &local.logs.path().join("indexer.log"), &[]);

    // Every producer at once, so batches of every codec interleave in each
    // partition; each message holds one to four records.
    let producers: Vec<_> = SHAPES
        .iter()
        .enumerate()
        .map(|(i, &(_, config))| {
            let bootstrap = bootstrap.clone();
            std::thread::spawn(move || {
                let mut rng = SeededRng::new(seed ^ i as u64);
                let mut producer = TestProducer::with_config(&bootstrap, config);
                let mut ids = Vec::new();
                for m in 0..MESSAGES {
                    let n = 1 + rng.below(4) as u64;
                    let lines: Vec<String> = (0..n)
                        .map(|k| {
                            let id = (i as u64 * MESSAGES + m) * 4 + k + 1;
                            ids.push(id);
                            shaped(id).0
                        })
                        .collect();
                    producer.send(
                        "shapes",
                        &m.to_string(),
                        lines.join("\n").as_bytes(),
                        BASE_SECS * 1000,
                    );
                }
                (producer.finish(), ids)
            })
        })
        .collect();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut expected: HashMap<u64, Expected> = HashMap::new();
    for p in producers {
        let (chunk_ends, ids) = p.join().unwrap();
        for (p, e) in chunk_ends {
            let end = ends.entry(p).or_default();
            *end = (*end).max(e);
        }
        expected.extend(ids.into_iter().map(|id| (id, shaped(id).1)));
    }
    wait_stored(
        local.dir.path(),
        "shapes",
        &ends,
        &mut [&mut indexer],
        local.logs.path(),
        Duration::from_secs(300),
    );
    stop_clean(&mut indexer);

    let mut found: HashMap<u64, u32> = HashMap::new();
    let mut wrong = Vec::new();
    for v in dump(&["--store", &local.store], &[]) {
        let line: serde_json::Value = serde_json::from_str(v["line"].as_str().unwrap()).unwrap();
        let id = line["id"].as_u64().unwrap();
        *found.entry(id).or_default() += 1;
        let got = Expected {
            time_ns: v["time_ns"].as_str().unwrap().parse().unwrap(),
            tenant: v["tenant"].as_str().unwrap().to_owned(),
            app: v["app"].as_str().unwrap().to_owned(),
            level: v["labels"]["level"].as_str().unwrap_or_default().to_owned(),
        };
        match expected.get(&id) {
            Some(e) if *e == got => {}
            e => wrong.push(format!("id {id}: expected {e:?}, stored {got:?}")),
        }
    }
    let lost = expected.keys().filter(|id| !found.contains_key(id)).count();
    let duplicated = found.values().filter(|&&n| n > 1).count();
    eprintln!(
        "{} records from {} producers ({}): {lost} lost, {duplicated} duplicated, {} wrong",
        expected.len(),
        SHAPES.len(),
        SHAPES.map(|s| s.0).join(", "),
        wrong.len()
    );
    if lost + duplicated + wrong.len() > 0 {
        post_mortem(local.logs.path());
    }
    assert_eq!((lost, duplicated), (0, 0), "seed {seed}: lost, duplicated");
    assert!(
        wrong.is_empty(),
        "seed {seed}: {}",
        wrong[..wrong.len().min(5)].join("\n")
    );
}

/// Transactions of the transactions test, and records in each.
const TRANSACTIONS: u64 = 40;
const PER_TRANSACTION: u64 = 150;

#[test]
fn aborted_transactions_are_never_indexed_and_committed_ones_once_across_kills() {
    const PARTITIONS: i32 = 2;
    let seed = seed_from_env("SKIDDER_TXN_SEED");
    let mut rng = SeededRng::new(seed);
    let kafka = KafkaBroker::start();
    kafka.create_topic("txn", PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();

    // A transactional producer: about a third of its transactions abort.
    // The last one commits, so the end offsets are its deliveries'.
    let mut producer = TestProducer::with_config(
        &bootstrap,
        &[("transactional.id", "skidder-test"), ("acks", "all")],
    );
    let timeout = Duration::from_secs(30);
    producer.inner.init_transactions(timeout).unwrap();
    let (mut committed, mut aborted) = (Vec::new(), Vec::new());
    let mut id = 0;
    for t in 0..TRANSACTIONS {
        producer.inner.begin_transaction().unwrap();
        let first = id + 1;
        for k in 0..PER_TRANSACTION {
            id += 1;
            let app = APPS[(id % 3) as usize];
            let ts = BASE_SECS + rng.below(7200) as i64;
            let line = format!(r#"{{"id":{id},"app":"{app}","ts":{ts},"msg":"transaction {t}"}}"#);
            producer.send_to("txn", (k % PARTITIONS as u64) as i32, line.as_bytes());
        }
        // Every record reaches the broker before the transaction ends, so
        // an aborted one leaves real records (and a marker) in the log.
        producer.inner.flush(timeout).unwrap();
        if t + 1 < TRANSACTIONS && rng.below(3) == 0 {
            producer.inner.abort_transaction(timeout).unwrap();
            aborted.extend(first..=id);
        } else {
            producer.inner.commit_transaction(timeout).unwrap();
            committed.extend(first..=id);
        }
    }
    let ends = producer.finish();
    assert!(!aborted.is_empty(), "seed {seed}: no transaction aborted");

    // Kill the indexer a few times mid-ingestion, at a random moment or at
    // a crash point, then let a last one finish.
    let local = LocalRun::new(INDEXER_CONFIG);
    let run = local.run(&bootstrap, "txn", "txn");
    let logs = local.logs.path();
    let points = ["uploader::after_data", "uploader::after_checkpoint"];
    for kill in 0..4 {
        let env: Vec<(&str, String)> = (kill % 2 == 1)
            .then(|| {
                (
                    "FAILPOINTS",
                    format!("{}={}*off->return", points[kill / 2], rng.below(4)),
                )
            })
            .into_iter()
            .collect();
        let mut child = run.start(free_port(), &logs.join(format!("run-{kill}.log")), &env);
        std::thread::sleep(Duration::from_millis(1500 + rng.below(1500) as u64));
        let _ = child.kill();
        child.wait().unwrap();
    }
    let mut last = run.start(free_port(), &logs.join("final.log"), &[]);
    wait_stored(
        local.dir.path(),
        "txn",
        &ends,
        &mut [&mut last],
        logs,
        Duration::from_secs(300),
    );
    stop_clean(&mut last);

    let seen = Searcher::start(&local.store).count_ids();
    let lost = committed.iter().filter(|i| !seen.contains_key(i)).count();
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    let indexed_aborted = aborted.iter().filter(|i| seen.contains_key(i)).count();
    eprintln!(
        "{} committed and {} aborted records in {TRANSACTIONS} transactions: \
         {lost} lost, {duplicated} duplicated, {indexed_aborted} aborted found",
        committed.len(),
        aborted.len()
    );
    if lost + duplicated + indexed_aborted > 0 {
        post_mortem(logs);
    }
    assert_eq!(
        (lost, duplicated, indexed_aborted),
        (0, 0, 0),
        "seed {seed}: lost, duplicated, aborted records found"
    );
}

#[test]
fn consumer_lag_agrees_with_kafkas_group_tool() {
    const PARTITIONS: i32 = 2;
    let kafka = KafkaBroker::start();
    kafka.create_topic("lag", PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();
    let mut producer = TestProducer::new(&bootstrap);
    for i in 0..3_000u64 {
        let line = format!(r#"{{"msg":"lag {i}"}}"#);
        producer.send_to("lag", (i % PARTITIONS as u64) as i32, line.as_bytes());
    }
    let ends = producer.finish();

    // The group has committed part of each partition...
    let committed: BTreeMap<i32, i64> = [(0, 300), (1, 700)].into();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "lag")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (&p, &o) in &committed {
        tpl.add_partition_offset("lag", p, Offset::Offset(o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    drop(c);

    // ...and an indexer of that group reads on, but its store accepts
    // nothing, so nothing more is committed: the lag holds still.
    let metrics_port = free_port();
    let mut indexer = Guard(
        std::process::Command::new(BIN)
            .args(["indexer", "--kafka-brokers", &bootstrap, "--topics", "lag"])
            .args(["--group-id", "lag", "--store", "s3://logs/lag"])
            .args([
                "--s3-endpoint",
                &format!("http://127.0.0.1:{}", stalled_s3()),
            ])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("SKIDDER_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lag_of = |m: &str, p: i32| -> i64 {
        let labels = [format!("partition=\"{p}\""), "topic=\"lag\"".to_owned()];
        m.lines()
            .find(|l| {
                l.starts_with("skidder_indexer_consumer_lag_records{")
                    && labels.iter().all(|x| l.contains(x.as_str()))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    // librdkafka reports statistics every 5 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        assert!(indexer.try_wait().unwrap().is_none(), "the indexer exited");
        let m = http_get(metrics_port, "/metrics").unwrap_or_default();
        let lags: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, lag_of(&m, p))).collect();
        if lags.values().all(|&l| l > 0) {
            break lags;
        }
        assert!(Instant::now() < deadline, "no lag reported:\n{m}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // Kafka's own view: TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    let described = kafka.describe_group("lag");
    let theirs: BTreeMap<i32, i64> = described
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(1) != Some(&"lag") {
                return None;
            }
            Some((f.get(2)?.parse().ok()?, f.get(5)?.parse().ok()?))
        })
        .collect();
    let expected: BTreeMap<i32, i64> = committed.iter().map(|(&p, &o)| (p, ends[&p] - o)).collect();
    let _ = indexer.kill();
    assert_eq!(theirs, expected, "Kafka's tool:\n{described}");
    assert_eq!(
        ours, theirs,
        "skidder_indexer_consumer_lag_records against Kafka's tool"
    );
}
