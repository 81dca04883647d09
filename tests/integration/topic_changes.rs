//! The topic changes under the indexer, on Apache Kafka with the real
//! `skidder indexer`. Records deleted before they were indexed (retention;
//! here `kafka-delete-records`, which moves the log start the same way)
//! are counted and logged, and everything after them is indexed once. A
//! topic deleted and re-created, whose offsets start again below what is
//! stored, stops the indexer with the cause and the remedy in its log,
//! rather than skipping the new records in silence. Retention that
//! overtakes a running indexer is counted the same way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skidder_common::testing::{free_port, seed_from_env, KafkaBroker};

use crate::exactly_once::{
    post_mortem, produce, wait_stored, LocalRun, Pace, Searcher, INDEXER_CONFIG,
};
use crate::kafka_faults::read_topic;
use crate::support::{http_get, metric, signal, stop_clean};

const TOPIC: &str = "changes";
const DELETED: &str = "skidder_indexer_kafka_deleted_unindexed_records_total";

#[test]
fn deleted_records_are_counted_and_a_recreated_topic_stops_the_indexer() {
    let seed = seed_from_env("SKIDDER_FAULTS_SEED");
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, 1);
    let bootstrap = kafka.bootstrap();
    let local = LocalRun::new(INDEXER_CONFIG);
    let run = local.run(&bootstrap, TOPIC, "changes");
    let logs = local.logs.path();
    let pace = Pace {
        every: 0,
        pause_ms: 0,
    };

    // 1. Indexed up to here.
    let (first_ends, _) = produce(bootstrap.clone(), TOPIC, seed, 1, 1_000, pace)
        .join()
        .unwrap();
    let mut child = run.start(free_port(), &logs.join("first.log"), &[]);
    let timeout = Duration::from_secs(120);
    wait_stored(
        local.dir.path(),
        TOPIC,
        &first_ends,
        &mut [&mut child],
        logs,
        timeout,
    );
    stop_clean(&mut child);

    // 2. More arrives while no indexer runs, and the older half of it is
    // deleted before any indexer reads it.
    let (ends, _) = produce(bootstrap.clone(), TOPIC, seed + 1, 1_001, 1_000, pace)
        .join()
        .unwrap();
    let mut offsets = read_topic(&bootstrap, TOPIC, &ends);
    let (indexed, end) = (first_ends[&0], ends[&0]);
    let cut = indexed + (end - indexed) / 2;
    kafka.delete_records(TOPIC, 0, cut);
    let port = free_port();
    let mut child = run.start(port, &logs.join("second.log"), &[]);
    wait_stored(
        local.dir.path(),
        TOPIC,
        &ends,
        &mut [&mut child],
        logs,
        timeout,
    );
    let deleted = metric(&http_get(port, "/metrics").unwrap_or_default(), DELETED);
    let log = std::fs::read_to_string(logs.join("second.log")).unwrap();
    assert_eq!(deleted, (cut - indexed) as u64, "{DELETED}");
    assert!(
        log.contains("deleted records before they were indexed"),
        "the log must say so:\n{log}"
    );

    // 3. Retention overtakes the running indexer: while it is frozen (as a
    // slow or paused consumer would be), more arrives and the older half
    // of that is deleted. Woken, its fetch position is gone; the jump to
    // the log start is counted. A fetch it had in flight when frozen may
    // still bring the first record (the broker answers it while the
    // indexer sleeps); the one record sent ahead and the pause after it
    // leave everything after it to the deletion.
    signal(&child, "-STOP");
    produce(bootstrap.clone(), TOPIC, seed + 3, 2_001, 1, pace)
        .join()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    let (later_ends, produced) = produce(bootstrap.clone(), TOPIC, seed + 4, 2_002, 999, pace)
        .join()
        .unwrap();
    // Read before the deletion, for where each id was.
    offsets.extend(read_topic(&bootstrap, TOPIC, &later_ends));
    let later_cut = end + (later_ends[&0] - end) / 2;
    kafka.delete_records(TOPIC, 0, later_cut);
    signal(&child, "-CONT");
    wait_stored(
        local.dir.path(),
        TOPIC,
        &later_ends,
        &mut [&mut child],
        logs,
        timeout,
    );
    let before = deleted;
    let started = Instant::now();
    let deleted = loop {
        let n = metric(&http_get(port, "/metrics").unwrap_or_default(), DELETED);
        // Settled from librdkafka's statistics, every 5 s.
        if n > before || started.elapsed() > Duration::from_secs(60) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    stop_clean(&mut child);

    // Every record Kafka still held, once; the deleted ones, nowhere. Of
    // those deleted mid-stream, the ones read before the deletion are
    // found once; each offset never read is counted.
    let seen = Searcher::start(&local.store).count_ids();
    let gone = |at: &[(i32, i64)]| at.iter().all(|&(_, o)| (indexed..cut).contains(&o));
    let overtaken = |at: &[(i32, i64)]| at.iter().all(|&(_, o)| (end..later_cut).contains(&o));
    let (mut wrong, mut deleted_found) = (Vec::new(), 0);
    let mut unread = std::collections::BTreeSet::new();
    for id in 1..=produced {
        let n = seen.get(&id).copied().unwrap_or(0);
        match offsets.get(&id) {
            Some(at) if gone(at) => deleted_found += n,
            Some(at) if overtaken(at) && n == 0 => unread.extend(at.iter().map(|&(_, o)| o)),
            _ if n != 1 => wrong.push((id, n)),
            _ => {}
        }
    }
    eprintln!(
        "{produced} records; {} deleted before a start (offsets {indexed}..{cut}), counted; \
         {} of offsets {end}..{later_cut} deleted before the running indexer read them, \
         {} counted; found {} ids, {} wrong, {deleted_found} deleted ones found",
        cut - indexed,
        unread.len(),
        deleted - before,
        seen.len(),
        wrong.len()
    );
    if !wrong.is_empty() || deleted_found > 0 {
        post_mortem(logs);
    }
    assert!(
        wrong.is_empty(),
        "seed {seed}: (id, times found): {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(deleted_found, 0, "deleted records found");
    assert!(
        !unread.is_empty(),
        "the deletion overtook nothing: no proof"
    );
    assert_eq!(
        deleted - before,
        unread.len() as u64,
        "{DELETED} after a deletion mid-stream"
    );

    // 4. The topic is deleted and re-created: its offsets start again at
    // 0, far below what is stored.
    kafka.delete_topic(TOPIC);
    kafka.create_topic(TOPIC, 1);
    let (new_ends, _): (HashMap<i32, i64>, u64) =
        produce(bootstrap.clone(), TOPIC, seed + 2, 5_001, 100, pace)
            .join()
            .unwrap();
    assert!(
        new_ends[&0] < end,
        "the new topic must end below what is stored"
    );
    let log = logs.join("recreated.log");
    let mut child = run.start(free_port(), &log, &[]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            post_mortem(logs);
            panic!("the indexer read on over a re-created topic");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "it must stop with an error: {status}");
    assert!(
        text.contains("deleted and re-created")
            && text.contains("_ledger/topic=changes/partition=0/"),
        "the log must give the cause and the remedy:\n{text}"
    );
}
