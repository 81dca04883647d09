//! The soak test: `kill -9` the real indexer process again and again while
//! it ingests from Apache Kafka, restart it each time, and check that in the end
//! every record is found exactly once through the searcher.
//!
//! Half the kills are `SIGKILL` at a random moment. The other half arm one
//! crash point (`indexer/src/failpoints.rs`) so the process aborts exactly
//! in a narrow window: mid-batch, after the ledger entry, between the data
//! and the index, after the index but before the commit, after the
//! checkpoint, just before an offset commit. The test fails if a point
//! never fires, so it needs the binary built with `--features failpoints`
//! (`scripts/test-all` does so).
//!
//! Then `skidder compact` is killed at each of its crash points
//! (`indexer/src/compactor/`), run to the end, and run again to delete
//! the small blocks it replaced; every record must still be found exactly
//! once after each step.
//!
//! The seed is printed; `SKIDDER_CRASH_SEED` replays a run. The CI version
//! runs 100k records and 12 kills; `scripts/soak` runs the long one
//! (1M records, 24 kills; `SKIDDER_SOAK_RECORDS`/`SKIDDER_SOAK_KILLS`
//! change it).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};
use skidder_indexer::compactor::POINTS as COMPACTOR_POINTS;
use skidder_indexer::failpoints::POINTS;

use crate::exactly_once::{
    checkpoints, post_mortem, produce, tally, wait_stored, LocalRun, Pace, Searcher, Tally,
    INDEXER_CONFIG,
};
use crate::support::{http_get, metric, sigterm, Guard, BIN};

const TOPIC: &str = "soak";
const PARTITIONS: i32 = 4;
const SIGABRT: i32 = 6;

#[test]
fn soak_100k_records_12_kills_lose_and_duplicate_nothing() {
    soak(
        100_000,
        12,
        Pace {
            every: 10,
            pause_ms: 20,
        },
    );
}

/// The long soak: `scripts/soak` (1M records, 24 kills by default).
#[test]
#[ignore = "long; run with scripts/soak"]
fn soak_long() {
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let records = env("SKIDDER_SOAK_RECORDS", 1_000_000);
    let kills = env("SKIDDER_SOAK_KILLS", 24) as usize;
    soak(
        records,
        kills,
        Pace {
            every: 10,
            pause_ms: 5,
        },
    );
}

/// Waits until the process has read something (its group join takes a
/// few seconds), or 15 s.
fn wait_reading(port: u16) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let m = http_get(port, "/metrics").unwrap_or_default();
        let read = metric(
            &m,
            "skidder_indexer_stage_records_in_total{stage=\"kafka_reader\"}",
        );
        if read > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Replay figures from a live indexer's metrics: (records skipped, blocks rebuilt).
fn replay_figures(port: u16) -> (u64, u64) {
    replay_figures_from(&http_get(port, "/metrics").unwrap_or_default())
}

fn replay_figures_from(m: &str) -> (u64, u64) {
    (
        metric(m, "skidder_indexer_replay_skipped_records_total"),
        metric(m, "skidder_indexer_replayed_blocks_total"),
    )
}

fn soak(records: u64, kills: usize, pace: Pace) {
    let seed = seed_from_env("SKIDDER_CRASH_SEED");
    let mut rng = SeededRng::new(seed);
    let started = Instant::now();

    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS as u32);

    let local = LocalRun::new(INDEXER_CONFIG);
    let (dir, logs, store) = (&local.dir, &local.logs, &local.store);
    let bootstrap = kafka.bootstrap();
    let run = local.run(&bootstrap, TOPIC, "soak");
    // Each run gets its share of the records, produced while it runs, so
    // every kill lands mid-ingestion.
    let per_run = records / kills as u64;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut produced = 0;
    let (mut skipped, mut rebuilt) = (0, 0);
    // Per crash point: (times armed, times fired).
    let mut points: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut sigkills = 0;
    for kill in 0..kills {
        let port = free_port();
        let log = logs.path().join(format!("run-{kill:02}.log"));
        // Odd kills arm the crash points in turn, firing after a random
        // number of passes.
        let point = (kill % 2 == 1).then(|| POINTS[(kill / 2) % POINTS.len()]);
        let env: Vec<(&str, String)> = point
            .map(|p| ("FAILPOINTS", format!("{p}={}*off->return", rng.below(8))))
            .into_iter()
            .collect();
        let last = if kill + 1 == kills {
            records
        } else {
            produced + per_run
        };
        let chunk = produce(
            bootstrap.clone(),
            TOPIC,
            seed + kill as u64,
            produced + 1,
            last - produced,
            pace,
        );
        let mut child = run.start(port, &log, &env);
        wait_reading(port);
        let how = match point {
            Some(p) => {
                let (fired, how, figures) = await_crash(&mut child, port, p);
                let e = points.entry(p).or_default();
                (e.0, e.1) = (e.0 + 1, e.1 + u32::from(fired));
                (skipped, rebuilt) = (skipped + figures.0, rebuilt + figures.1);
                how
            }
            None => {
                std::thread::sleep(Duration::from_millis(rng.below(2500) as u64));
                let (s, r) = replay_figures(port);
                (skipped, rebuilt) = (skipped + s, rebuilt + r);
                if let Some(status) = child.try_wait().unwrap() {
                    post_mortem(logs.path());
                    panic!("seed {seed}: indexer died by itself: {status}");
                }
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                sigkills += 1;
                "SIGKILL".to_owned()
            }
        };
        let (chunk_ends, chunk_last) = chunk.join().unwrap();
        for (p, e) in chunk_ends {
            let end = ends.entry(p).or_default();
            *end = (*end).max(e);
        }
        produced = chunk_last;
        eprintln!(
            "kill {:2} ({how}) at {:?}: {produced} records produced, checkpoints {:?}",
            kill + 1,
            started.elapsed(),
            checkpoints(dir.path(), TOPIC, PARTITIONS)
        );
    }

    // A last run until every partition's checkpoint reaches its end offset.
    let metrics_port = free_port();
    let mut child = run.start(metrics_port, &logs.path().join("final.log"), &[]);
    wait_stored(
        dir.path(),
        TOPIC,
        &ends,
        &mut [&mut child],
        logs.path(),
        Duration::from_secs(600),
    );
    let (s, r) = replay_figures(metrics_port);
    (skipped, rebuilt) = (skipped + s, rebuilt + r);
    sigterm(child.id());
    let status = child.wait().unwrap();
    if !status.success() {
        post_mortem(logs.path());
        panic!("seed {seed}: SIGTERM must exit 0, got {status}");
    }

    let found = tally(&Searcher::start(store).count_ids(), produced);
    if found.lost + found.duplicated == 0 {
        compact_with_kills(store, dir.path(), logs.path(), produced, seed);
    }
    eprintln!(
        "soak: seed {seed}, {produced} records, {kills} kills ({sigkills} SIGKILL, crash points (armed, fired) {points:?}), \
         {skipped} replayed records skipped, {rebuilt} blocks rebuilt; {found:?}; {:?}",
        started.elapsed()
    );
    if found.lost + found.duplicated > 0 {
        post_mortem(logs.path());
    }
    assert_eq!(
        found,
        Tally {
            found: produced,
            lost: 0,
            duplicated: 0
        },
        "seed {seed}: lost or duplicated records"
    );
    let never: Vec<_> = points.iter().filter(|(_, e)| e.1 == 0).collect();
    assert!(
        never.is_empty(),
        "crash points armed but never fired: {never:?} (is the binary built with --features failpoints?)"
    );
}

/// Kills `skidder compact` at each of its crash points in turn, then lets
/// a pass finish and another delete what the (zero) grace period freed.
/// After each step every record must still be found exactly once through
/// the searcher, and in the end the small blocks must really be gone.
fn compact_with_kills(store: &str, dir: &Path, logs: &Path, produced: u64, seed: u64) {
    let compact = |env: &[(&str, &str)], log: &str| {
        Command::new(BIN)
            .args([
                "compact", "--store", store, "--since", "200000h", "--settle", "0s",
            ])
            .args(["--grace", "0s", "--target-mib", "1"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(logs.join(log)).unwrap())
            .status()
            .unwrap()
    };
    let check = |after: &str| {
        let found = tally(&Searcher::start(store).count_ids(), produced);
        assert_eq!(
            (found.lost, found.duplicated),
            (0, 0),
            "seed {seed}: lost or duplicated records after {after}"
        );
    };
    let small = |dir: &Path| {
        let (mut small, mut compacted) = (0, 0);
        for e in walk(dir) {
            let name = e.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".idx") {
                *(if name.starts_with("compacted.") {
                    &mut compacted
                } else {
                    &mut small
                }) += 1;
            }
        }
        (small, compacted)
    };
    let before = small(dir);
    for point in COMPACTOR_POINTS {
        let spec = format!("{point}=return");
        let status = compact(
            &[("FAILPOINTS", spec.as_str())],
            &format!("compact-{point}.log"),
        );
        assert_eq!(
            status.signal(),
            Some(SIGABRT),
            "skidder compact did not abort at {point}: {status}"
        );
        check(point);
    }
    for pass in ["compact-pass.log", "compact-delete.log"] {
        let status = compact(&[], pass);
        assert!(status.success(), "{pass}: {status}");
        check(pass);
    }
    let after = small(dir);
    eprintln!("compaction: (small, compacted) indexes {before:?} -> {after:?}");
    assert!(
        after.1 > 0 && after.0 * 4 < before.0,
        "{before:?} -> {after:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Waits for an armed crash point to abort the process; a point that has
/// not fired in 30 s (no data left to pass it) gets a SIGKILL instead.
/// Returns whether it fired, how the process died, and the last replay
/// figures it reported.
fn await_crash(child: &mut Guard, port: u16, point: &str) -> (bool, String, (u64, u64)) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, 0);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(
                status.signal(),
                Some(SIGABRT),
                "the indexer exited by itself, not at {point}: {status}"
            );
            return (true, format!("crash point {point}"), last);
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return (false, format!("SIGKILL: {point} did not fire"), last);
        }
        // The last figures before the abort (a dead process has none).
        if let Ok(m) = http_get(port, "/metrics") {
            if m.contains("skidder_indexer") {
                last = replay_figures_from(&m);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
