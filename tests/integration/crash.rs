//! `kill -9` the real indexer process at random moments while it ingests
//! from tansu, restart it each time, and check that in the end every record
//! is stored exactly once. The seed is printed; set `SKIDDER_CRASH_SEED` to
//! replay a run. Issue 5's soak test scales this up.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::format::ledger::Checkpoint;
use skidder_common::testing::{free_port, TansuBroker};

use crate::support::{dump, http_get, metric, sigterm, Guard, TestProducer, BIN};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 4;
const RECORDS: u64 = 40_000;
const KILLS: usize = 6;

/// A seeded generator: the same seed gives the same run.
struct Rng(rand::rngs::StdRng);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            seed,
        ))
    }
    fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }
}

/// Starts an indexer whose log goes to `log`, for the post-mortem.
fn start_indexer(
    kafka: &TansuBroker,
    config: &Path,
    store: &str,
    metrics_port: u16,
    log: &Path,
) -> Guard {
    Guard(
        Command::new(BIN)
            .args(["indexer", "--config", config.to_str().unwrap()])
            .args(["--kafka-brokers", &kafka.bootstrap(), "--topics", TOPIC])
            .args(["--group-id", "crash", "--store", store])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("SKIDDER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Prints the end of every indexer log, to see what a failed run did.
fn post_mortem(logs: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("==== {} (last 40 of {} lines)", f.display(), lines.len());
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
    }
}

/// The stored checkpoint of each partition.
fn checkpoints(dir: &Path) -> HashMap<i32, i64> {
    (0..PARTITIONS)
        .filter_map(|p| {
            let path = dir.join(format!(
                "_ledger/topic={TOPIC}/partition={p}/checkpoint.json"
            ));
            let c: Checkpoint = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            Some((p, c.next_offset))
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let seed = std::env::var("SKIDDER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (replay with SKIDDER_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);

    let kafka = TansuBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS as u32);
    // The producer runs through the kills, so they land mid-ingestion.
    let producer = {
        let (bootstrap, mut rng) = (kafka.bootstrap(), Rng::new(seed ^ 0x5EED));
        std::thread::spawn(move || {
            let mut producer = TestProducer::new(&bootstrap);
            let (mut id, mut msg) = (0u64, 0u64);
            while id < RECORDS {
                // One to three records a message, over a few apps and hours.
                let n = 1 + rng.next() % 3;
                let lines: Vec<String> = (0..n)
                    .map(|_| {
                        id += 1;
                        let app = ["api", "web", "db"][(rng.next() % 3) as usize];
                        let ts = 1_700_000_000 + (rng.next() % 7200) as i64;
                        format!(r#"{{"id":{id},"app":"{app}","ts":{ts},"msg":"event number {id} in {app}"}}"#)
                    })
                    .collect();
                msg += 1;
                producer.send(
                    TOPIC,
                    &(msg % 64).to_string(),
                    lines.join("\n").as_bytes(),
                    1_700_000_000_000,
                );
                if msg % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
            (producer.finish(), id)
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        r#"
[kafka]
commit_interval_ms = 200
batch_messages = 500
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[blocks]
target_bytes = 32768
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#,
    )
    .unwrap();

    let (mut skipped, mut rebuilt) = (0, 0);
    for kill in 0..KILLS {
        let port = free_port();
        let log = logs.path().join(format!("run-{kill}.log"));
        let mut child = start_indexer(&kafka, config.path(), &store, port, &log);
        // Wait until this process reads (the last victim's session must
        // expire first), then kill it at a random moment.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            let m = http_get(port, "/metrics").unwrap_or_default();
            if metric(
                &m,
                "skidder_indexer_stage_records_in_total{stage=\"kafka_reader\"}",
            ) > 0
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 2500));
        let m = http_get(port, "/metrics").unwrap_or_default();
        skipped += metric(&m, "skidder_indexer_replay_skipped_records_total");
        rebuilt += metric(&m, "skidder_indexer_replayed_blocks_total");
        assert!(
            child.try_wait().unwrap().is_none(),
            "indexer died by itself"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!(
            "kill {} after {:?}: checkpoints {:?}",
            kill + 1,
            started.elapsed(),
            checkpoints(dir.path())
        );
    }
    let (ends, produced) = producer.join().unwrap();

    // A last run until every partition's checkpoint reaches its end offset.
    let metrics_port = free_port();
    let mut child = start_indexer(
        &kafka,
        config.path(),
        &store,
        metrics_port,
        &logs.path().join("final.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while checkpoints(dir.path()) != ends || http_get(metrics_port, "/metrics").is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "indexer died by itself"
        );
        if Instant::now() >= deadline {
            post_mortem(logs.path());
            panic!(
                "seed {seed}: never caught up: {:?} vs {ends:?}",
                checkpoints(dir.path())
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = http_get(metrics_port, "/metrics").unwrap_or_default();
    skipped += metric(&metrics, "skidder_indexer_replay_skipped_records_total");
    rebuilt += metric(&metrics, "skidder_indexer_replayed_blocks_total");
    eprintln!("{KILLS} kills, {produced} records: {skipped} replayed records skipped, {rebuilt} blocks rebuilt");
    sigterm(child.id());
    assert!(child.wait().unwrap().success(), "SIGTERM must exit 0");

    let mut seen: HashMap<u64, u32> = HashMap::new();
    for v in dump(&["--store", &store], &[]) {
        let line: serde_json::Value = serde_json::from_str(v["line"].as_str().unwrap()).unwrap();
        *seen.entry(line["id"].as_u64().unwrap()).or_default() += 1;
    }
    let lost_ids: Vec<u64> = (1..=produced)
        .filter(|i| !seen.contains_key(i))
        .take(10)
        .collect();
    if !lost_ids.is_empty() || seen.values().any(|&n| n > 1) {
        post_mortem(logs.path());
        eprintln!("first lost ids: {lost_ids:?}");
    }
    let lost = (1..=produced).filter(|i| !seen.contains_key(i)).count();
    let duplicated = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "seed {seed}: lost or duplicated records"
    );
    assert_eq!(
        seen.len() as u64,
        produced,
        "no records beyond those produced"
    );
}
