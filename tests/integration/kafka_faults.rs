//! Exactly once through Kafka-side faults, against the real `skidder
//! indexer` process: the broker restarting mid-ingestion, consumer-group
//! rebalances both ways (a second indexer joins, then leaves by SIGTERM),
//! SIGTERM while the indexer is busy with a large backlog, and the leader
//! of the partitions being read killed on a three-broker cluster. Each test
//! ends with every record in Kafka found exactly once through the searcher.
//! Seeds are printed; `SKIDDER_FAULTS_SEED` replays a run.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};

use crate::exactly_once::{
    checkpoints, post_mortem, produce, tally, wait_stored, LocalRun, Pace, Searcher, Tally,
    INDEXER_CONFIG,
};
use crate::support::{http_get, metric, sigterm, Guard};

const READ: &str = "skidder_indexer_stage_records_in_total{stage=\"kafka_reader\"}";
const SKIPPED: &str = "skidder_indexer_replay_skipped_records_total";
const REBUILT: &str = "skidder_indexer_replayed_blocks_total";
const KAFKA_ERRORS: &str = "skidder_indexer_kafka_errors_total";

fn scrape(port: u16) -> String {
    http_get(port, "/metrics").unwrap_or_default()
}

/// Waits until `done` holds, failing with the logs after `timeout` or if
/// an indexer in `running` dies by itself.
fn wait_for(
    what: &str,
    timeout: Duration,
    running: &mut [&mut Guard],
    logs: &Path,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        for child in running.iter_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                post_mortem(logs);
                panic!("an indexer died by itself while waiting for {what}: {status}");
            }
        }
        if Instant::now() >= deadline {
            post_mortem(logs);
            panic!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERMs an indexer and waits for it to exit (a hang fails the test).
fn stop(child: &mut Guard, logs: &Path) -> ExitStatus {
    sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            post_mortem(logs);
            panic!("the indexer did not exit within 120 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bytes an indexer holds between reading and storing: its queues,
/// open blocks and uploads.
fn in_flight_bytes(metrics: &str) -> u64 {
    [
        "skidder_indexer_queue_bytes",
        "skidder_indexer_open_block_bytes",
        "skidder_indexer_uploading_bytes",
    ]
    .iter()
    .flat_map(|name| {
        metrics.lines().filter(move |l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
    })
    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    .sum::<f64>() as u64
}

/// How many lines of an indexer's log contain `needle`.
fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Checks the searcher's count of each id against `expected` (how many
/// Kafka records hold it). On a mismatch, prints the first wrong ids with
/// the blocks that hold them, and the end of every log.
fn assert_exactly_once(
    seen: &HashMap<u64, u32>,
    expected: &HashMap<u64, u32>,
    store: &Path,
    seed: u64,
    logs: &Path,
) {
    let (mut lost, mut duplicated, mut wrong) = (0u64, 0u64, Vec::new());
    for (&id, &n) in expected {
        let s = seen.get(&id).copied().unwrap_or(0);
        lost += n.saturating_sub(s) as u64;
        duplicated += s.saturating_sub(n) as u64;
        if s != n {
            wrong.push(id);
        }
    }
    let unknown = seen.keys().filter(|id| !expected.contains_key(id)).count();
    let found: u64 = seen.values().map(|&n| n as u64).sum();
    eprintln!(
        "searcher: {found} records found, {} expected: {lost} lost, {duplicated} duplicated",
        expected.values().map(|&n| n as u64).sum::<u64>()
    );
    if lost + duplicated > 0 || unknown > 0 {
        wrong.sort_unstable();
        wrong.truncate(10);
        let blocks = blocks_holding(store, &wrong);
        for id in &wrong {
            eprintln!(
                "id {id}: {} in Kafka, found {} times, in blocks {:?}",
                expected[id],
                seen.get(id).copied().unwrap_or(0),
                blocks.get(id)
            );
        }
        post_mortem(logs);
    }
    assert_eq!(unknown, 0, "ids never produced came back");
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "seed {seed}: records lost or duplicated"
    );
}

/// Every produced record exactly once, for a broker that stored each
/// message once ([`tally`], as the crash test counts).
pub(crate) fn assert_each_once(
    seen: &HashMap<u64, u32>,
    produced: u64,
    store: &Path,
    seed: u64,
    logs: &Path,
) {
    let found = tally(seen, produced);
    eprintln!(
        "searcher: {} of {produced} records found, {} lost, {} duplicated",
        found.found, found.lost, found.duplicated
    );
    let exact = Tally {
        found: produced,
        lost: 0,
        duplicated: 0,
    };
    if found != exact {
        // Names the wrong ids and their blocks, prints the logs, fails.
        let once: HashMap<u64, u32> = (1..=produced).map(|id| (id, 1)).collect();
        assert_exactly_once(seen, &once, store, seed, logs);
    }
    assert_eq!(found, exact, "seed {seed}: lost or duplicated records");
}

/// The blocks (index files under a local store) that hold each of `ids`,
/// read with `skidder inspect --dump`. Only for diagnosing a failure.
fn blocks_holding(store: &Path, ids: &[u64]) -> HashMap<u64, Vec<String>> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "idx") {
                out.push(p);
            }
        }
    }
    let mut indexes = Vec::new();
    walk(store, &mut indexes);
    let mut found: HashMap<u64, Vec<String>> = HashMap::new();
    for idx in indexes {
        let out = std::process::Command::new(crate::support::BIN)
            .args(["inspect", "--dump"])
            .arg(&idx)
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(record) = v["line"]
                .as_str()
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            else {
                continue;
            };
            if let Some(id) = record["id"].as_u64().filter(|id| ids.contains(id)) {
                let name = idx.strip_prefix(store).unwrap_or(&idx);
                found
                    .entry(id)
                    .or_default()
                    .push(name.display().to_string());
            }
        }
    }
    found
}

/// Every record id in `topic` with the (partition, offset) of each Kafka
/// message holding it, read back from the broker up to the end offsets
/// `ends`.
pub(crate) fn read_topic(
    bootstrap: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
) -> HashMap<u64, Vec<(i32, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-faults-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut next: HashMap<i32, i64> = ends.keys().map(|&p| (p, 0)).collect();
    let mut ids: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
    let mut read = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while next.iter().any(|(p, n)| n < &ends[p]) {
        assert!(
            Instant::now() < deadline,
            "could not read the topic back: at {next:?} of {ends:?}"
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        next.insert(m.partition(), m.offset() + 1);
        // A record is its offset: one delivered again is not another copy.
        if !read.insert((m.partition(), m.offset())) {
            continue;
        }
        for line in m.payload().unwrap_or_default().split(|&b| b == b'\n') {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            ids.entry(v["id"].as_u64().unwrap())
                .or_default()
                .push((m.partition(), m.offset()));
        }
    }
    ids
}

/// How many times Kafka holds each id, read back from the topic; fails if
/// it lost an acknowledged record. A producer retry can store a message
/// twice (the broker wrote it, then died before answering): both copies
/// are Kafka records, and the indexer must store each, so the truth is
/// what Kafka holds.
fn kafka_truth(
    bootstrap: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
    produced: u64,
) -> HashMap<u64, u32> {
    let copies = read_topic(bootstrap, topic, ends);
    let twice: Vec<_> = copies.iter().filter(|(_, at)| at.len() > 1).collect();
    if !twice.is_empty() {
        eprintln!("ids Kafka holds more than once, at (partition, offset): {twice:?}");
    }
    let in_kafka: HashMap<u64, u32> = copies
        .iter()
        .map(|(&id, at)| (id, at.len() as u32))
        .collect();
    let missing = (1..=produced).filter(|i| !in_kafka.contains_key(i)).count();
    assert_eq!(missing, 0, "the broker lost acknowledged records");
    eprintln!(
        "{produced} records produced, {} in Kafka ({} ids twice by producer retries)",
        in_kafka.values().map(|&n| n as u64).sum::<u64>(),
        twice.len()
    );
    in_kafka
}

// ---------------------------------------------------------------------------
// 1. Broker restart mid-ingestion
// ---------------------------------------------------------------------------

const RESTART_TOPIC: &str = "restart";
const RESTART_PARTITIONS: i32 = 4;
const RESTART_RECORDS: u64 = 3_000;
/// Broker outages: the first a graceful stop (SIGTERM), the second a crash
/// (SIGKILL, requests cut mid-way).
const RESTARTS: [bool; 2] = [false, true];

#[test]
fn broker_restart_mid_ingestion_loses_and_duplicates_nothing() {
    let seed = seed_from_env("SKIDDER_FAULTS_SEED");
    let mut rng = SeededRng::new(seed);

    // Kafka keeps its log on disk, so it survives the restarts.
    let mut kafka = KafkaBroker::start();
    kafka.create_topic(RESTART_TOPIC, RESTART_PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();
    let pace = Pace {
        every: 10,
        pause_ms: 200,
    };
    // The producer rides out each outage on librdkafka's retries (a
    // message may wait up to `message.timeout.ms`, 300 s by default).
    let t0 = Instant::now();
    let producer = produce(
        bootstrap.clone(),
        RESTART_TOPIC,
        seed,
        1,
        RESTART_RECORDS,
        pace,
    );

    let local = LocalRun::new(INDEXER_CONFIG);
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let run = local.run(&bootstrap, RESTART_TOPIC, "restart");
    let port = free_port();
    let log = logs.path().join("indexer.log");
    let mut child = run.start(port, &log, &[]);

    // One indexer runs through every outage: it must neither die nor lose
    // its place.
    let mut read_before_last = 0;
    for (i, &hard) in RESTARTS.iter().enumerate() {
        let before = metric(&scrape(port), READ);
        wait_for(
            "the indexer reading",
            Duration::from_secs(60),
            &mut [&mut child],
            logs.path(),
            || metric(&scrape(port), READ) > before,
        );
        std::thread::sleep(Duration::from_millis(500 + rng.next() % 1500));
        let read = metric(&scrape(port), READ);
        let stored = checkpoints(dir.path(), RESTART_TOPIC, RESTART_PARTITIONS);
        assert!(
            !producer.is_finished(),
            "the producer finished before restart {}: the outage would not be mid-ingestion",
            i + 1
        );
        read_before_last = read;
        kafka.restart(hard, Duration::from_secs(2));
        eprintln!(
            "restart {} ({}) at {:?}: indexer had read {read} messages, checkpoints {stored:?}",
            i + 1,
            if hard { "SIGKILL" } else { "SIGTERM" },
            t0.elapsed(),
        );
    }
    // It reads again from the restarted broker: past what it had read
    // before the outage, as the producer was still producing then. (Not
    // past what it has read by now: it may have caught up with a producer
    // that finished during the outage, and then reads nothing more.)
    let before = read_before_last;
    wait_for(
        "the indexer reading after the last restart",
        Duration::from_secs(60),
        &mut [&mut child],
        logs.path(),
        || metric(&scrape(port), READ) > before,
    );
    let reading_again = t0.elapsed();
    let (ends, produced) = producer.join().unwrap();
    let all_produced = t0.elapsed();
    wait_stored(
        dir.path(),
        RESTART_TOPIC,
        &ends,
        &mut [&mut child],
        logs.path(),
        Duration::from_secs(300),
    );
    let m = scrape(port);
    let status = stop(&mut child, logs.path());
    assert!(status.success(), "SIGTERM must exit 0: {status}");

    eprintln!(
        "reading again after the last restart at {reading_again:?}, all produced at \
         {all_produced:?}, all stored at {:?}",
        t0.elapsed()
    );
    let in_kafka = kafka_truth(&bootstrap, RESTART_TOPIC, &ends, produced);
    eprintln!(
        "{} broker restarts ({} SIGTERM, {} SIGKILL); end offsets {ends:?}",
        RESTARTS.len(),
        RESTARTS.iter().filter(|hard| !**hard).count(),
        RESTARTS.iter().filter(|hard| **hard).count(),
    );
    eprintln!(
        "indexer: {} rebalances, {} Kafka errors, {} replayed records skipped, {} blocks rebuilt",
        log_count(&log, "partitions revoked"),
        metric(&m, KAFKA_ERRORS),
        metric(&m, SKIPPED),
        metric(&m, REBUILT),
    );
    // Each Kafka record exactly once; when the broker stored every message
    // once, that is each produced record exactly once.
    let seen = Searcher::start(store).count_ids();
    assert_exactly_once(&seen, &in_kafka, dir.path(), seed, logs.path());
}

// ---------------------------------------------------------------------------
// 2. Rebalances both ways
// ---------------------------------------------------------------------------

const REBALANCE_TOPIC: &str = "rebalance";
const REBALANCE_PARTITIONS: i32 = 6;
const REBALANCE_RECORDS: u64 = 40_000;
/// How many times a second indexer joins and then leaves.
const VISITS: usize = 3;

#[test]
fn rebalances_both_ways_lose_and_duplicate_nothing() {
    let seed = seed_from_env("SKIDDER_FAULTS_SEED");
    let mut rng = SeededRng::new(seed);

    let kafka = KafkaBroker::start();
    kafka.create_topic(REBALANCE_TOPIC, REBALANCE_PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();
    let pace = Pace {
        every: 10,
        pause_ms: 15,
    };
    let producer = produce(
        bootstrap.clone(),
        REBALANCE_TOPIC,
        seed,
        1,
        REBALANCE_RECORDS,
        pace,
    );

    let local = LocalRun::new(INDEXER_CONFIG);
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let run = local.run(&bootstrap, REBALANCE_TOPIC, "rebalance");

    let first_port = free_port();
    let first_log = logs.path().join("first.log");
    let mut first = run.start(first_port, &first_log, &[]);
    wait_for(
        "the first indexer reading",
        Duration::from_secs(60),
        &mut [&mut first],
        logs.path(),
        || metric(&scrape(first_port), READ) > 0,
    );

    let (mut skipped, mut rebuilt, mut mid_ingestion) = (0, 0, 0);
    for visit in 1..=VISITS {
        // A second member joins: the first gives up some partitions.
        let revoked_before = log_count(&first_log, "partitions revoked");
        let assigned_before = log_count(&first_log, "partition assigned");
        let port = free_port();
        let log = logs.path().join(format!("visitor-{visit}.log"));
        let mut second = run.start(port, &log, &[]);
        wait_for(
            "the second indexer taking partitions",
            Duration::from_secs(60),
            &mut [&mut first, &mut second],
            logs.path(),
            || metric(&scrape(port), READ) > 0,
        );
        // The visitor reads only after its whole assignment; the first
        // indexer must have logged the rest of the partitions too.
        let taken = log_count(&log, "partition assigned");
        let keep = REBALANCE_PARTITIONS as usize - taken.min(REBALANCE_PARTITIONS as usize);
        wait_for(
            "the first indexer keeping the other partitions",
            Duration::from_secs(60),
            &mut [&mut first, &mut second],
            logs.path(),
            || log_count(&first_log, "partition assigned") >= assigned_before + keep,
        );
        let kept = log_count(&first_log, "partition assigned");
        std::thread::sleep(Duration::from_millis(500 + rng.next() % 2000));
        if !producer.is_finished() {
            mid_ingestion += 1;
        }

        // It leaves by SIGTERM: the first takes every partition back.
        let m = scrape(port);
        let read = metric(&m, READ);
        skipped += metric(&m, SKIPPED);
        rebuilt += metric(&m, REBUILT);
        let revoked_after_join = log_count(&first_log, "partitions revoked");
        let status = stop(&mut second, logs.path());
        assert!(
            status.success(),
            "visitor {visit}: SIGTERM must exit 0: {status}"
        );
        wait_for(
            "the first indexer taking every partition back",
            Duration::from_secs(60),
            &mut [&mut first],
            logs.path(),
            || log_count(&first_log, "partition assigned") >= kept + REBALANCE_PARTITIONS as usize,
        );
        eprintln!(
            "visit {visit}: the visitor took {taken} of {REBALANCE_PARTITIONS} partitions, read \
             {read} messages and left; the first indexer revoked {} times, checkpoints {:?}",
            log_count(&first_log, "partitions revoked") - revoked_before,
            checkpoints(dir.path(), REBALANCE_TOPIC, REBALANCE_PARTITIONS),
        );
        assert!(
            revoked_after_join > revoked_before,
            "visit {visit}: the first indexer never gave up partitions"
        );
        assert!(
            taken > 0 && taken < REBALANCE_PARTITIONS as usize,
            "visit {visit}: the visitor took {taken} partitions"
        );
    }

    let (ends, produced) = producer.join().unwrap();
    wait_stored(
        dir.path(),
        REBALANCE_TOPIC,
        &ends,
        &mut [&mut first],
        logs.path(),
        Duration::from_secs(300),
    );
    let m = scrape(first_port);
    skipped += metric(&m, SKIPPED);
    rebuilt += metric(&m, REBUILT);
    let status = stop(&mut first, logs.path());
    assert!(status.success(), "SIGTERM must exit 0: {status}");
    let rebalances = log_count(&first_log, "partitions revoked");
    eprintln!(
        "{VISITS} visits ({mid_ingestion} left mid-ingestion), {rebalances} rebalances seen by \
         the first indexer, {produced} records over {REBALANCE_PARTITIONS} partitions: \
         {skipped} replayed records skipped, {rebuilt} blocks rebuilt"
    );
    assert_each_once(
        &Searcher::start(store).count_ids(),
        produced,
        dir.path(),
        seed,
        logs.path(),
    );
    // A handover stores and commits everything taken, so the next owner
    // has no unsure block to rebuild. (Skipped records are fine: librdkafka
    // may re-deliver offsets, which the reader drops.)
    assert_eq!(rebuilt, 0, "a clean handover must leave nothing to rebuild");
}

// ---------------------------------------------------------------------------
// 3. SIGTERM under heavy load
// ---------------------------------------------------------------------------

const LOAD_TOPIC: &str = "load";
const LOAD_PARTITIONS: i32 = 4;
const LOAD_RECORDS: u64 = 100_000;
const STOPS: usize = 5;

#[test]
fn sigterm_under_heavy_load_exits_0_and_loses_and_duplicates_nothing() {
    let seed = seed_from_env("SKIDDER_FAULTS_SEED");
    let mut rng = SeededRng::new(seed);

    let kafka = KafkaBroker::start();
    kafka.create_topic(LOAD_TOPIC, LOAD_PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();
    // The whole backlog first, as fast as the broker takes it.
    let no_pause = Pace {
        every: 0,
        pause_ms: 0,
    };
    let started = Instant::now();
    let (ends, produced) = produce(
        bootstrap.clone(),
        LOAD_TOPIC,
        seed,
        1,
        LOAD_RECORDS,
        no_pause,
    )
    .join()
    .unwrap();
    let messages: i64 = ends.values().sum();
    eprintln!(
        "backlog: {produced} records in {messages} messages, produced in {:?}",
        started.elapsed()
    );

    let local = LocalRun::new(INDEXER_CONFIG);
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let run = local.run(&bootstrap, LOAD_TOPIC, "load");

    let (mut skipped, mut rebuilt, mut busy) = (0, 0, 0);
    for i in 1..=STOPS {
        let port = free_port();
        let mut child = run.start(port, &logs.path().join(format!("run-{i}.log")), &[]);
        // SIGTERM once this run has read a random share of the backlog: it
        // is then reading as fast as it can, with blocks open, compressing
        // and uploading.
        // (Or once everything is stored, should a fast reader make the
        // backlog run out: that stop counts as not busy. Still only once
        // its metrics answer: the signal handlers are in place by then.)
        let target = 500 + rng.next() % 2500;
        wait_for(
            "the indexer reading its share",
            Duration::from_secs(60),
            &mut [&mut child],
            logs.path(),
            || {
                let m = scrape(port);
                !m.is_empty()
                    && (metric(&m, READ) >= target
                        || checkpoints(dir.path(), LOAD_TOPIC, LOAD_PARTITIONS) == ends)
            },
        );
        let m = scrape(port);
        skipped += metric(&m, SKIPPED);
        rebuilt += metric(&m, REBUILT);
        let in_flight = in_flight_bytes(&m);
        if in_flight > 0 {
            busy += 1;
        }
        let status = stop(&mut child, logs.path());
        assert!(status.success(), "stop {i}: SIGTERM must exit 0: {status}");
        eprintln!(
            "stop {i}: SIGTERM after {} messages read, {in_flight} bytes in flight \
             (queues, open blocks, uploads): exited 0",
            metric(&m, READ),
        );
    }
    assert!(busy > 0, "no SIGTERM found the indexer busy");

    let port = free_port();
    let mut child = run.start(port, &logs.path().join("final.log"), &[]);
    // Everything may be stored already: its metrics (and so its signal
    // handlers) must be up before the SIGTERM.
    wait_for(
        "the indexer's metrics",
        Duration::from_secs(60),
        &mut [&mut child],
        logs.path(),
        || !scrape(port).is_empty(),
    );
    wait_stored(
        dir.path(),
        LOAD_TOPIC,
        &ends,
        &mut [&mut child],
        logs.path(),
        Duration::from_secs(300),
    );
    let m = scrape(port);
    skipped += metric(&m, SKIPPED);
    rebuilt += metric(&m, REBUILT);
    let status = stop(&mut child, logs.path());
    assert!(status.success(), "SIGTERM must exit 0: {status}");
    eprintln!(
        "{STOPS} SIGTERMs ({busy} with data in flight), {produced} records: {skipped} replayed \
         records skipped, {rebuilt} blocks rebuilt"
    );
    assert_each_once(
        &Searcher::start(store).count_ids(),
        produced,
        dir.path(),
        seed,
        logs.path(),
    );
    // SIGTERM stores and commits everything taken, so the next run has no
    // unsure block to rebuild.
    assert_eq!(rebuilt, 0, "a clean stop must leave nothing to rebuild");
}

// ---------------------------------------------------------------------------
// 4. Leader failover on a three-broker cluster
// ---------------------------------------------------------------------------

const FAILOVER_TOPIC: &str = "failover";
const FAILOVER_PARTITIONS: i32 = 3;
const FAILOVERS: usize = 3;

#[test]
fn leader_killed_on_a_three_broker_cluster_loses_and_duplicates_nothing() {
    let seed = seed_from_env("SKIDDER_FAULTS_SEED");
    let mut rng = SeededRng::new(seed);
    // Replication factor 3, at least 2 in sync: a node down loses nothing.
    let mut kafka = KafkaBroker::start_cluster(3);
    kafka.create_topic(FAILOVER_TOPIC, FAILOVER_PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();
    let t0 = Instant::now();
    let producer = produce(
        bootstrap.clone(),
        FAILOVER_TOPIC,
        seed,
        1,
        8_000,
        // About a minute of producing: longer than the failovers take.
        Pace {
            every: 10,
            pause_ms: 150,
        },
    );
    let local = LocalRun::new(INDEXER_CONFIG);
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let run = local.run(&bootstrap, FAILOVER_TOPIC, "failover");
    let port = free_port();
    let log = logs.path().join("indexer.log");
    let mut child = run.start(port, &log, &[]);

    // One indexer through every failover: it must recover by itself.
    for i in 0..FAILOVERS {
        let before = metric(&scrape(port), READ);
        wait_for(
            "the indexer reading",
            Duration::from_secs(90),
            &mut [&mut child],
            logs.path(),
            || metric(&scrape(port), READ) > before,
        );
        std::thread::sleep(Duration::from_millis(500 + rng.next() % 1500));
        let partition = (rng.next() % FAILOVER_PARTITIONS as u64) as i32;
        let leader = kafka
            .leader_of(FAILOVER_TOPIC, partition)
            .expect("the partition has a leader");
        let read = metric(&scrape(port), READ);
        assert!(
            !producer.is_finished(),
            "the producer finished before failover {}: it would not be mid-ingestion",
            i + 1
        );
        kafka.restart_node(leader, true, Duration::from_secs(3));
        eprintln!(
            "failover {}: killed node {} (leader of partition {partition}) at {:?}, \
             the indexer had read {read} messages",
            i + 1,
            leader + 1,
            t0.elapsed()
        );
    }
    let (ends, produced) = producer.join().unwrap();
    wait_stored(
        dir.path(),
        FAILOVER_TOPIC,
        &ends,
        &mut [&mut child],
        logs.path(),
        Duration::from_secs(300),
    );
    let m = scrape(port);
    let status = stop(&mut child, logs.path());
    assert!(status.success(), "SIGTERM must exit 0: {status}");
    eprintln!(
        "indexer: {} rebalances, {} Kafka errors, {} replayed records skipped, all stored at {:?}",
        log_count(&log, "partitions revoked"),
        metric(&m, KAFKA_ERRORS),
        metric(&m, SKIPPED),
        t0.elapsed()
    );
    let in_kafka = kafka_truth(&bootstrap, FAILOVER_TOPIC, &ends, produced);
    let seen = Searcher::start(store).count_ids();
    assert_exactly_once(&seen, &in_kafka, dir.path(), seed, logs.path());
}
