//! Zombie fencing on Apache Kafka: an indexer frozen (`SIGSTOP`) past its
//! session timeout loses its partitions to another; woken (`SIGCONT`), it
//! still uploads the blocks it held, under its old epoch. Those are
//! superseded by the new owner's epoch claim (`format::fence`) and never
//! read, so every record is found exactly once. Repeated, freezing each
//! indexer in turn, and the test checks that the zombies did write
//! superseded blocks: otherwise it would prove nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use skidder_common::claims;
use skidder_common::format::fence::Fence;
use skidder_common::format::layout::INDEX_SUFFIX;
use skidder_common::storage::LocalStore;
use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};

use crate::exactly_once::{post_mortem, produce, wait_stored, LocalRun, Pace, Searcher};
use crate::kafka_faults::assert_each_once;
use crate::support::{signal, stop_clean};

const TOPIC: &str = "zombies";
const PARTITIONS: u32 = 4;
const FREEZES: usize = 3;
/// The longest a frozen member may keep the others from owning its
/// partitions: its session timeout (10 s by default) and a rebalance.
const TAKEOVER_BOUND: Duration = Duration::from_secs(60);

/// Blocks stay open for 4 s, so a frozen indexer always holds some; it
/// cuts and uploads them as soon as it wakes. Skidder's default session.
///
/// `max.poll.interval.ms` is also the group's rebalance timeout: how long
/// the coordinator may wait for a member to rejoin. A freeze that catches
/// an indexer in the middle of a rebalance could then hold the group for
/// librdkafka's default 300 s, past the bound below (one failure in about
/// ten CI runs, whose logs were lost). 30 s keeps that case inside it; an
/// unfrozen indexer polls many times a second.
const CONFIG: &str = r#"
[kafka]
commit_interval_ms = 200
batch_messages = 500
[kafka.properties]
"max.poll.interval.ms" = "30000"
[blocks]
target_bytes = 1048576
flush_interval_secs = 4
[upload]
checkpoint_interval_secs = 1
"#;

fn assigned(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("partition assigned")
        .count()
}

/// Index keys under a local store.
fn index_keys(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let key = rel.to_string_lossy().into_owned();
                if key.ends_with(INDEX_SUFFIX) && key.starts_with("tenant=") {
                    out.push(key);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// How many stored blocks a newer epoch superseded.
fn superseded_blocks(dir: &Path) -> usize {
    let store = LocalStore::new(dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let keys = index_keys(dir);
    let mut fence = Fence::default();
    rt.block_on(claims::load_into(
        &store,
        &mut fence,
        Fence::claims_needed(keys.iter().map(String::as_str)),
    ))
    .unwrap();
    keys.iter().filter(|k| fence.superseded(k)).count()
}

#[test]
fn an_indexer_frozen_past_its_session_is_fenced_off_when_it_wakes() {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let mut rng = SeededRng::new(seed);
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS);
    let bootstrap = kafka.bootstrap();
    let local = LocalRun::new(CONFIG);
    let run = local.run(&bootstrap, TOPIC, "zombies");
    let logs = local.logs.path();
    let records = 40_000;
    let producer = produce(
        bootstrap.clone(),
        TOPIC,
        seed,
        1,
        records,
        Pace {
            every: 20,
            pause_ms: 20,
        },
    );
    let log_of = |name: &str| logs.join(format!("{name}.log"));
    let mut indexers = [
        run.start(free_port(), &log_of("a"), &[]),
        run.start(free_port(), &log_of("b"), &[]),
    ];
    let names = ["a", "b"];
    let deadline = |what: &str, since: Instant| {
        if since.elapsed() > TAKEOVER_BOUND {
            post_mortem(logs);
            panic!("seed {seed}: {what} within {TAKEOVER_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for freeze in 0..FREEZES {
        let (z, other) = (freeze % 2, 1 - freeze % 2);
        std::thread::sleep(Duration::from_millis(2_000 + rng.below(2_000) as u64));
        let before = assigned(&log_of(names[other]));
        signal(&indexers[z], "-STOP");
        let frozen = Instant::now();
        // The other indexer takes every partition once the frozen one's
        // session has expired, and works a little.
        while assigned(&log_of(names[other])) < before + PARTITIONS as usize {
            deadline("the other indexer never owned every partition", frozen);
        }
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(2_000) as u64));
        let took_over = frozen.elapsed();
        let zombie_before = assigned(&log_of(names[z]));
        signal(&indexers[z], "-CONT");
        let woken = Instant::now();
        // Woken, it uploads what it held, finds itself out of the group,
        // and rejoins: it is given partitions again under new epochs.
        while assigned(&log_of(names[z])) == zombie_before {
            deadline("the woken indexer never rejoined", woken);
        }
        eprintln!(
            "freeze {freeze}: {} frozen, the other owned every partition after {took_over:?}, \
             rejoined {:?} after waking",
            names[z],
            woken.elapsed()
        );
    }

    let (ends, produced): (HashMap<i32, i64>, u64) = producer.join().unwrap();
    let [a, b] = &mut indexers;
    wait_stored(
        local.dir.path(),
        TOPIC,
        &ends,
        &mut [a, b],
        logs,
        Duration::from_secs(300),
    );
    for i in &mut indexers {
        stop_clean(i);
    }
    let superseded = superseded_blocks(local.dir.path());
    eprintln!("{superseded} blocks written and then superseded by a newer epoch");
    assert!(
        superseded > 0,
        "seed {seed}: no zombie wrote a block after losing its partitions; the test proved nothing"
    );
    let seen = Searcher::start(&local.store).count_ids();
    assert_each_once(&seen, produced, local.dir.path(), seed, logs);
}

/// The window the confirmation closes: an indexer frozen inside its
/// assignment, after listing the ledger and before claiming, wakes after
/// another indexer has claimed and confirmed the next epochs. It then
/// claims the epochs above the owner's; without the confirmation, those
/// claims would supersede the owner's blocks from their start, and the
/// records in them would be lost. Its confirming commit must be refused
/// (its generation is gone), its claims must stay unconfirmed, it must
/// read nothing of that assignment but rejoin the group and read what the
/// next one gives it, and every record must be found once. (A crash
/// point armed with `sleep` holds it in that window long enough to freeze
/// it there.)
#[test]
fn a_claim_made_by_a_member_frozen_in_its_assignment_is_never_confirmed() {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, 2);
    let bootstrap = kafka.bootstrap();
    let local = LocalRun::new(CONFIG);
    let run = local.run(&bootstrap, TOPIC, "stale");
    let logs = local.logs.path();
    let producer = produce(
        bootstrap.clone(),
        TOPIC,
        seed,
        1,
        10_000,
        Pace {
            every: 20,
            pause_ms: 20,
        },
    );
    let log_of = |name: &str| logs.join(format!("{name}.log"));
    let claiming = |name: &str| {
        std::fs::read_to_string(log_of(name))
            .unwrap_or_default()
            .matches("claiming epoch")
            .count()
    };
    let spec = "assignment::before_claim=1*sleep(4000)".to_owned();
    let mut stale = run.start(free_port(), &log_of("stale"), &[("FAILPOINTS", spec)]);
    let started = Instant::now();
    while claiming("stale") < 1 {
        if started.elapsed() > Duration::from_secs(60) {
            post_mortem(logs);
            panic!("the first indexer never came to claim");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Listed, about to claim: freeze it there.
    signal(&stale, "-STOP");
    let mut owner = run.start(free_port(), &log_of("owner"), &[]);
    let frozen = Instant::now();
    while assigned(&log_of("owner")) < 2 {
        if frozen.elapsed() > TAKEOVER_BOUND {
            post_mortem(logs);
            panic!("the second indexer never owned the partitions");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2_000));
    signal(&stale, "-CONT");
    let woken = Instant::now();
    let text = |name: &str| std::fs::read_to_string(log_of(name)).unwrap_or_default();
    while !text("stale").contains("refused the commit that confirms epoch") {
        if let Some(status) = stale.try_wait().unwrap() {
            post_mortem(logs);
            panic!("the woken indexer stopped ({status}) instead of waiting to rejoin");
        }
        if woken.elapsed() > TAKEOVER_BOUND {
            post_mortem(logs);
            panic!("the woken indexer's confirming commit was never refused");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Refused, it reads nothing of that assignment; it rejoins, and the
    // rebalance that follows gives it partitions it may read.
    while !text("stale").contains("assignment confirmed: reading") {
        if let Some(status) = stale.try_wait().unwrap() {
            post_mortem(logs);
            panic!("the refused indexer stopped ({status}) instead of rejoining");
        }
        if woken.elapsed() > TAKEOVER_BOUND * 2 {
            post_mortem(logs);
            panic!("the refused indexer never rejoined the group");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The owner's claims (epoch 1) are confirmed; the stale member's
    // (epoch 2, above them) are not.
    let store = LocalStore::new(local.dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let confirmed = |p: i32, e: u64| {
        let key = skidder_common::format::ledger::claim_key(TOPIC, p, e);
        rt.block_on(skidder_common::storage::ObjectStore::get(&store, &key))
            .ok()
            .map(|body| {
                serde_json::from_slice::<skidder_common::format::ledger::EpochClaim>(&body)
                    .unwrap()
                    .confirmed
            })
    };
    let stale_claims = (0..2).filter(|&p| confirmed(p, 2) == Some(false)).count();
    for p in 0..2 {
        assert_eq!(
            confirmed(p, 1),
            Some(true),
            "partition {p}: the owner's claim"
        );
        assert_ne!(
            confirmed(p, 2),
            Some(true),
            "partition {p}: a stale claim was confirmed"
        );
    }
    assert!(
        stale_claims > 0,
        "the stale member claimed no epoch above the owner's: the test proved nothing"
    );

    let (ends, produced): (HashMap<i32, i64>, u64) = producer.join().unwrap();
    wait_stored(
        local.dir.path(),
        TOPIC,
        &ends,
        &mut [&mut owner, &mut stale],
        logs,
        Duration::from_secs(300),
    );
    stop_clean(&mut owner);
    stop_clean(&mut stale);
    let seen = Searcher::start(&local.store).count_ids();
    assert_each_once(&seen, produced, local.dir.path(), seed, logs);
}
