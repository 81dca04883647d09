//! A pipeline stage that dies must stop the indexer, never hang it
//! (`indexer/src/queue.rs`: a stage's end closes its queues).
//!
//! Each stage in turn panics at its crash point (`STAGE_POINTS` in
//! `indexer/src/failpoints.rs`, armed with the `panic` action) while the
//! real `skidder indexer` process ingests. The process must exit by itself,
//! non-zero, naming the stage in its log. After the last death, one clean
//! run stores the rest, and every record is found exactly once through the
//! searcher: a dead stage committed no offset past what was stored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};
use skidder_indexer::failpoints::STAGE_POINTS;

use crate::exactly_once::{
    post_mortem, produce, wait_stored, LocalRun, Pace, Searcher, INDEXER_CONFIG,
};
use crate::kafka_faults::assert_each_once;
use crate::support::sigterm;

const TOPIC: &str = "death";
const PARTITIONS: i32 = 2;
/// Far beyond a healthy unwind (about a second); past it the indexer hangs.
const EXIT_BOUND: Duration = Duration::from_secs(60);

#[test]
fn each_stage_that_panics_stops_the_indexer_and_a_restart_loses_and_duplicates_nothing() {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let mut rng = SeededRng::new(seed);
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS as u32);
    let local = LocalRun::new(INDEXER_CONFIG);
    let bootstrap = kafka.bootstrap();
    let run = local.run(&bootstrap, TOPIC, "death");
    let logs = local.logs.path();
    let pace = Pace {
        every: 10,
        pause_ms: 5,
    };
    let per_run = 4_000;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut produced = 0;
    for (i, (stage, point)) in STAGE_POINTS.iter().enumerate() {
        let chunk = produce(
            bootstrap.clone(),
            TOPIC,
            seed + i as u64,
            produced + 1,
            per_run,
            pace,
        );
        let log = logs.join(format!("{stage}.log"));
        // Fires after a few passes, so the stage dies with work in flight.
        let spec = format!("{point}={}*off->panic", 2 + rng.below(6));
        let mut child = run.start(free_port(), &log, &[("FAILPOINTS", spec.clone())]);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > EXIT_BOUND {
                child.kill().unwrap();
                child.wait().unwrap();
                post_mortem(logs);
                panic!("seed {seed}: {spec}: the indexer hung after {stage} died");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (chunk_ends, last) = chunk.join().unwrap();
        for (p, e) in chunk_ends {
            let end = ends.entry(p).or_default();
            *end = (*end).max(e);
        }
        produced = last;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "{stage}: {spec}: exited {status} after {:?}",
            started.elapsed()
        );
        // Exited by itself with an error, not killed by a signal.
        if status.success() || status.code().is_none() {
            post_mortem(logs);
        }
        assert_eq!(status.code(), Some(1), "seed {seed}: {spec}: {status}");
        let cause = format!("stage {stage} failed: panicked");
        assert!(
            text.contains(&cause),
            "seed {seed}: {spec}: the log must name the cause ({cause:?}):\n{}",
            text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }

    let port = free_port();
    let mut child = run.start(port, &logs.join("final.log"), &[]);
    wait_stored(
        local.dir.path(),
        TOPIC,
        &ends,
        &mut [&mut child],
        logs,
        Duration::from_secs(300),
    );
    sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "seed {seed}: SIGTERM must exit 0: {status}"
    );

    let seen = Searcher::start(&local.store).count_ids();
    assert_each_once(&seen, produced, local.dir.path(), seed, logs);
}
