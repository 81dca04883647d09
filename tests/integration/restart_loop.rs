//! A Kubernetes restart loop with default settings: the real indexer is
//! `kill -9`ed and restarted at once, again and again, while it ingests
//! from Apache Kafka. Each killed process stays in the consumer group until
//! its session times out (Skidder's default `session.timeout.ms`, 10 s),
//! and one killed mid-rebalance holds that rebalance's assignment until
//! then, so each can cost one session timeout. The last indexer must own
//! every partition within that bound and lose and duplicate nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};

use crate::exactly_once::{post_mortem, produce, wait_stored, LocalRun, Pace, Searcher};
use crate::kafka_faults::assert_each_once;
use crate::support::stop_clean;

const TOPIC: &str = "restart-loop";
const PARTITIONS: u32 = 4;
const KILLS: usize = 6;
/// Skidder's default session timeout, which the config below keeps.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// One session timeout per dead member, plus the rebalances and the
/// checkpoints read from the store.
const OWN_BOUND: Duration = Duration::from_secs(10 * KILLS as u64 + 30);

/// Small blocks and frequent commits, so kills land mid-work; no Kafka
/// property is set, so the group runs on Skidder's defaults.
const CONFIG: &str = r#"
[kafka]
commit_interval_ms = 200
batch_messages = 500
[blocks]
target_bytes = 32768
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#;

fn assigned(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("partition assigned")
        .count()
}

#[test]
fn a_restart_loop_with_default_settings_recovers_within_the_session_timeout() {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let mut rng = SeededRng::new(seed);
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS);
    let bootstrap = kafka.bootstrap();
    let local = LocalRun::new(CONFIG);
    let run = local.run(&bootstrap, TOPIC, "loop");
    let logs = local.logs.path();
    let records = 20_000;
    let producer = produce(
        bootstrap.clone(),
        TOPIC,
        seed,
        1,
        records,
        Pace {
            every: 10,
            pause_ms: 20,
        },
    );

    // Restarted at once after each kill, as a pod's container is.
    let started = Instant::now();
    for kill in 0..KILLS {
        let mut child = run.start(free_port(), &logs.join(format!("run-{kill}.log")), &[]);
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(3_000) as u64));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let looped = started.elapsed();
    let log = logs.join("final.log");
    let mut last = run.start(free_port(), &log, &[]);
    let restarted = Instant::now();
    while assigned(&log) < PARTITIONS as usize {
        if restarted.elapsed() > OWN_BOUND {
            post_mortem(logs);
            panic!(
                "seed {seed}: after {KILLS} kills in {looped:?}, the last indexer owned {} of \
                 {PARTITIONS} partitions after {OWN_BOUND:?} (session timeout {SESSION_TIMEOUT:?})",
                assigned(&log)
            );
        }
        assert!(
            last.try_wait().unwrap().is_none(),
            "the last indexer exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{KILLS} kills in {looped:?}; the last indexer owned its {PARTITIONS} partitions {:?} \
         after it started (session timeout {SESSION_TIMEOUT:?})",
        restarted.elapsed()
    );

    let (ends, produced): (HashMap<i32, i64>, u64) = producer.join().unwrap();
    wait_stored(
        local.dir.path(),
        TOPIC,
        &ends,
        &mut [&mut last],
        logs,
        Duration::from_secs(300),
    );
    stop_clean(&mut last);
    let seen = Searcher::start(&local.store).count_ids();
    assert_each_once(&seen, produced, local.dir.path(), seed, logs);
}
