//! Object-store faults (issue 5): a fault-injecting proxy
//! (`fault_proxy.rs`) between the real processes and the S3 server (moto)
//! answers a share of requests with 500, 503, `SlowDown`, a dropped
//! connection, a truncated body, added latency or a stall.
//!
//! - The indexer keeps retrying, never commits a Kafka offset whose records
//!   are not yet in the store (checked against moto directly, not through
//!   the proxy), survives a `kill -9` and a restart under the faults, stays
//!   under its memory limit, and once the faults stop it catches up with
//!   every record stored exactly once. A burst of records timed before the
//!   faults and again after them shows it back at full speed (reported,
//!   not asserted: no test asserts a timing).
//! - The searcher answers each query completely, or marks it partial with
//!   `warnings`, or fails it with 502/504: never a 200 that silently
//!   misses lines.
//!
//! The seed is printed; `SKIDDER_S3_FAULTS_SEED` replays the fault draws
//! (the interleaving of requests still varies from run to run).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use skidder_common::claims;
use skidder_common::storage::{ObjectStore, S3Store};
use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, MotoServer};

use crate::exactly_once::{
    post_mortem, produce, spawn_searcher, tally, wait_checkpoints, IndexerRun, Pace, Searcher,
    Tally,
};
use crate::support::{dump, http_get, metric, rss_bytes, sigterm, Demo, Guard};
use skidder_common::testing::fault_proxy::{Fault, FaultProxy, ALL_FAULTS};

const CREDS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
];
/// Share of requests that get a fault while faults are on.
const FAULT_RATE: f64 = 0.3;

/// Creates the bucket, talking to moto directly.
fn create_bucket(moto: &MotoServer, rt: &tokio::runtime::Runtime) {
    let s3 = rt.block_on(S3Store::new("logs", "", &moto.s3_config()));
    rt.block_on(s3.create_bucket()).unwrap();
}

fn moto_addr(moto: &MotoServer) -> String {
    format!("127.0.0.1:{}", moto.process.port)
}

/// Samples a process's resident memory every 20 ms until stopped.
struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssPeak { stop, thread }
    }

    fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

// ---------------------------------------------------------------- indexer

const TOPIC: &str = "s3faults";
const GROUP: &str = "s3faults";
const PARTITIONS: i32 = 4;
const RECORDS: u64 = 20_000;
const STORE: &str = "s3://logs/faults";
const LIMIT: u64 = 128 << 20;
/// Records in each unpaced burst timed before the faults and after them.
const BURST: u64 = 5_000;

/// Small blocks and frequent commits, so faults land on every kind of
/// step; a short S3 timeout, so a stalled request is given up and retried.
fn indexer_config() -> String {
    format!(
        r#"
[kafka]
commit_interval_ms = 200
batch_messages = 500
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[blocks]
target_bytes = 65536
flush_interval_secs = 1
[memory]
limit_bytes = {LIMIT}
[upload]
checkpoint_interval_secs = 1
max_backoff_ms = 1000
[store.s3]
timeout_secs = 3
"#
    )
}

/// Committed offsets of the indexer's consumer group, as Kafka has them.
/// The consumer only asks; it never joins the group.
fn committed(c: &BaseConsumer) -> HashMap<i32, i64> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Record ids in a message (newline-separated JSON records).
fn ids_of(payload: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(payload)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap()
        })
        .collect()
}

/// Every message of the topic, read back from Kafka: its record ids by
/// (partition, offset).
fn ids_by_offset(bootstrap: &str, ends: &HashMap<i32, i64>) -> HashMap<(i32, i64), Vec<u64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "s3faults-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = HashMap::new();
    let mut next: HashMap<i32, i64> = ends.keys().map(|&p| (p, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, n)| n < &ends[p]) {
        assert!(
            Instant::now() < deadline,
            "reading the topic back: at {next:?} of {ends:?}"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            out.insert(
                (m.partition(), m.offset()),
                ids_of(m.payload().unwrap_or_default()),
            );
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    out
}

/// The id of every record stored, read from moto directly.
fn stored_ids(moto: &MotoServer) -> Vec<u64> {
    let endpoint = moto.endpoint();
    dump(&["--store", STORE, "--s3-endpoint", &endpoint], &CREDS)
        .iter()
        .map(|v| {
            let line: Value = serde_json::from_str(v["line"].as_str().unwrap()).unwrap();
            line["id"].as_u64().unwrap()
        })
        .collect()
}

/// The stored offsets (the newest epoch's start or checkpoint), read
/// from moto directly.
fn stored_checkpoints(store: &S3Store, rt: &tokio::runtime::Runtime) -> HashMap<i32, i64> {
    (0..PARTITIONS)
        .filter_map(|p| {
            let next = rt.block_on(claims::stored_offset(store, TOPIC, p)).ok()??;
            Some((p, next))
        })
        .collect()
}

/// What Kafka said was committed, and what moto held just after.
struct Sample {
    committed: HashMap<i32, i64>,
    stored: HashSet<u64>,
}

/// Sums every sample of a counter family, e.g. all `kind`s.
fn metric_sum(text: &str, family: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn stop(child: &mut Guard, logs: &Path) -> ExitStatus {
    sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            post_mortem(logs);
            panic!("the indexer did not exit within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `BURST` records from id `first` unpaced and waits until the
/// store's checkpoints reach them: the time a burst takes end to end.
/// Merges the burst's end offsets into `ends`.
fn time_burst(
    bootstrap: &str,
    seed: u64,
    first: u64,
    ends: &mut HashMap<i32, i64>,
    stored: &dyn Fn() -> HashMap<i32, i64>,
    indexer: &mut Guard,
    logs: &Path,
) -> Duration {
    let started = Instant::now();
    let no_pause = Pace {
        every: 0,
        pause_ms: 0,
    };
    let (burst_ends, _) = produce(bootstrap.to_owned(), TOPIC, seed, first, BURST, no_pause)
        .join()
        .unwrap();
    for (p, e) in burst_ends {
        let end = ends.entry(p).or_default();
        *end = (*end).max(e);
    }
    wait_checkpoints(stored, ends, &mut [indexer], logs, Duration::from_secs(90));
    started.elapsed()
}

#[test]
fn indexer_under_s3_faults_commits_only_stored_records_and_loses_none() {
    let seed = seed_from_env("SKIDDER_S3_FAULTS_SEED");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = MotoServer::start();
    create_bucket(&moto, &rt);
    let direct = rt.block_on(S3Store::new("logs", "faults/", &moto.s3_config()));
    let proxy = FaultProxy::start(&moto_addr(&moto), seed);
    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS as u32);
    let bootstrap = kafka.bootstrap();

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), indexer_config()).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let run = IndexerRun {
        bootstrap: &bootstrap,
        topic: TOPIC,
        group: GROUP,
        config: config.path(),
        store: STORE,
    };
    let mut env: Vec<(&str, String)> = vec![("SKIDDER_S3_ENDPOINT", proxy.endpoint())];
    env.extend(CREDS.iter().map(|&(k, v)| (k, v.to_owned())));

    // First a fault-free burst: the speed to compare with once the faults
    // stop. (The restart after the kill -9 below meets the faults at
    // start-up: its checkpoint and ledger reads go through them.)
    let mut metrics_port = free_port();
    let mut indexer = run.start(metrics_port, &logs.path().join("run-1.log"), &env);
    let mut rss = RssPeak::start(indexer.id());
    let stored = || stored_checkpoints(&direct, &rt);
    let mut burst_ends = HashMap::new();
    let clean_burst = time_burst(
        &bootstrap,
        seed ^ 1,
        1,
        &mut burst_ends,
        &stored,
        &mut indexer,
        logs.path(),
    );

    proxy.set_all(FAULT_RATE);
    // About 40 s of production, so faults meet a steady flow of blocks.
    let pace = Pace {
        every: 10,
        pause_ms: 40,
    };
    let producer = produce(bootstrap.clone(), TOPIC, seed, BURST + 1, RECORDS, pace);

    // While faults are on: what Kafka has committed, then what the store
    // holds. Every record below a commit must already be stored.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let sample = |indexer: &mut Guard| {
        if let Some(status) = indexer.try_wait().unwrap() {
            post_mortem(logs.path());
            panic!("the indexer died under store faults: {status}");
        }
        let committed = committed(&group);
        let stored = stored_ids(&moto).into_iter().collect();
        Sample { committed, stored }
    };
    let mut samples = Vec::new();
    let (mut peak, mut first_run) = (0, String::new());
    while !producer.is_finished() {
        std::thread::sleep(Duration::from_millis(1500));
        samples.push(sample(&mut indexer));
        if samples.len() == 5 {
            // kill -9 mid-way and restart under faults, so the restart's
            // reads (checkpoints, ledger) and its replays face them too.
            first_run = http_get(metrics_port, "/metrics").unwrap_or_default();
            indexer.kill().unwrap();
            indexer.wait().unwrap();
            peak = rss.peak();
            metrics_port = free_port();
            indexer = run.start(metrics_port, &logs.path().join("run-2.log"), &env);
            rss = RssPeak::start(indexer.id());
        }
    }
    let (mut ends, produced) = producer.join().unwrap();
    for (p, e) in burst_ends {
        let end = ends.entry(p).or_default();
        *end = (*end).max(e);
    }
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        samples.push(sample(&mut indexer));
    }
    let injected = proxy.injected();
    proxy.off();

    // Faults off: the indexer must catch up by itself.
    eprintln!("faults off after {}", proxy.injected());
    wait_checkpoints(
        &stored,
        &ends,
        &mut [&mut indexer],
        logs.path(),
        Duration::from_secs(90),
    );
    samples.push(sample(&mut indexer));
    // Full speed again: the same burst through the once-faulted indexer.
    let after_burst = time_burst(
        &bootstrap,
        seed ^ 2,
        produced + 1,
        &mut ends,
        &stored,
        &mut indexer,
        logs.path(),
    );
    let produced = produced + BURST;
    samples.push(sample(&mut indexer));
    let metrics = http_get(metrics_port, "/metrics").unwrap_or_default();
    let peak = peak.max(rss.peak());
    let status = stop(&mut indexer, logs.path());
    assert!(status.success(), "SIGTERM must exit 0, got {status}");

    // Commits against the store, sample by sample.
    let ids = ids_by_offset(&bootstrap, &ends);
    let (mut checked, mut unstored) = (0u64, Vec::<u64>::new());
    for s in &samples {
        for ((p, off), rec) in &ids {
            if s.committed.get(p).is_some_and(|c| off < c) {
                checked += rec.len() as u64;
                unstored.extend(rec.iter().filter(|id| !s.stored.contains(id)));
            }
        }
    }
    let final_commit = samples.last().map(|s| s.committed.clone());

    let both = |f: &dyn Fn(&str) -> u64| f(&first_run) + f(&metrics);
    let retries = both(&|m| metric(m, "skidder_indexer_upload_retries_total"));
    let errors = both(&|m| metric_sum(m, "skidder_indexer_upload_errors_total"));
    let blocks = both(&|m| metric(m, "skidder_indexer_blocks_written_total"));
    let rebuilt = both(&|m| metric(m, "skidder_indexer_replayed_blocks_total"));
    let endpoint = moto.endpoint();
    let mut searcher_env = vec![("SKIDDER_S3_ENDPOINT", endpoint.as_str())];
    searcher_env.extend(CREDS);
    let found = tally(
        &Searcher::start_with(STORE, &searcher_env).count_ids(),
        produced,
    );
    eprintln!(
        "S3 faults, indexer: {produced} records, {blocks} blocks ({rebuilt} rebuilt after a kill -9); {injected}; \
         {errors} failed uploads seen by the indexer, {retries} retries; \
         {checked} committed records checked against moto in {} samples, {} not stored; \
         peak RSS {} MiB (limit {} MiB); found {}, lost {}, duplicated {}; \
         a {BURST}-record burst took {clean_burst:?} before the faults and {after_burst:?} after them ({:.2}x)",
        samples.len(),
        unstored.len(),
        peak >> 20,
        LIMIT >> 20,
        found.found,
        found.lost,
        found.duplicated,
        after_burst.as_secs_f64() / clean_burst.as_secs_f64()
    );
    if found.lost + found.duplicated > 0 || !unstored.is_empty() {
        post_mortem(logs.path());
    }
    for f in ALL_FAULTS {
        // A PUT's answer has no body to cut short, so truncations only
        // happen on start-up reads; the rest are counted as drops.
        if f != Fault::Truncate {
            assert!(
                injected.of(f) > 0,
                "no {} fault injected: {injected}",
                f.name()
            );
        }
    }
    assert!(retries > 0, "the indexer never retried an upload");
    assert!(checked > 0, "no commit was sampled while faults were on");
    assert!(
        !first_run.is_empty(),
        "the indexer was never killed mid-way"
    );
    assert!(
        unstored.is_empty(),
        "committed but not stored: {:?}",
        &unstored[..unstored.len().min(10)]
    );
    assert_eq!(
        final_commit,
        Some(ends.clone()),
        "Kafka's commit at the end"
    );
    assert!(
        peak > 0 && peak < LIMIT,
        "peak RSS {peak} over the limit {LIMIT}"
    );
    assert_eq!(
        found,
        Tally {
            found: produced,
            lost: 0,
            duplicated: 0
        },
        "seed {seed}: lost or duplicated records"
    );
}

// --------------------------------------------------------------- searcher

/// One query and how to compare its answers.
struct Ask {
    path: &'static str,
    params: Vec<(&'static str, String)>,
}

/// The part of an answer that must not change: stream lines sorted (with
/// their labels and times), else the data without its timing stats.
fn answer(v: &Value) -> Value {
    let data = &v["data"];
    if data["resultType"] == "streams" {
        let mut lines: Vec<String> = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                let labels = s["stream"].to_string();
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(move |p| format!("{labels} {} {}", p[0], p[1]))
            })
            .collect();
        lines.sort();
        return serde_json::json!(lines);
    }
    let mut data = data.clone();
    if let Some(d) = data.as_object_mut() {
        d.remove("stats");
    }
    data
}

fn line_count(a: &Value) -> usize {
    a.as_array().map_or(0, Vec::len)
}

/// How the queries of one phase ended.
#[derive(Default)]
struct Outcomes {
    label: &'static str,
    complete: u64,
    partial: u64,
    bad_gateway: u64,
    timed_out: u64,
    faults: u64,
}

impl Outcomes {
    fn asked(&self) -> u64 {
        self.complete + self.partial + self.bad_gateway + self.timed_out
    }
}

impl std::fmt::Display for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} faults, {} queries: {} complete, {} partial with warnings, {} 502, {} 504",
            self.label,
            self.faults,
            self.asked(),
            self.complete,
            self.partial,
            self.bad_gateway,
            self.timed_out
        )
    }
}

/// Indexes `records` generated logs with `skidder demo` into `dir` and
/// copies the store into moto under `prefix`: archiving is a plain copy.
fn demo_store_in_moto(
    moto: &MotoServer,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    prefix: &str,
) -> usize {
    let mut demo = Demo::start(5000, free_port(), dir);
    sigterm(demo.process.id());
    let _ = demo.process.wait();

    let s3 = rt.block_on(S3Store::new("logs", prefix, &moto.s3_config()));
    let mut files = vec![dir.to_path_buf()];
    let mut copied = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let key = p.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
        let body = Bytes::from(std::fs::read(&p).unwrap());
        rt.block_on(s3.put(&key, body)).unwrap();
        copied += 1;
    }
    copied
}

#[test]
fn searcher_under_s3_faults_never_answers_incomplete_as_complete() {
    let seed = seed_from_env("SKIDDER_S3_FAULTS_SEED");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = MotoServer::start();
    create_bucket(&moto, &rt);
    let dir = tempfile::tempdir().unwrap();
    let objects = demo_store_in_moto(&moto, &rt, &dir.path().join("data"), "search/");
    let proxy = FaultProxy::start(&moto_addr(&moto), seed);

    // No caches, so every query lists, reads indexes and fetches blocks
    // through the faults. A stalled request is given up after 1 s and
    // retried; if that does not finish the query in time, it is a 504.
    let config = dir.path().join("searcher.toml");
    std::fs::write(
        &config,
        "cache_bytes = 0\nquery_timeout_secs = 3\nmax_limit = 100000\n\
         [store.s3]\ntimeout_secs = 1\n",
    )
    .unwrap();
    let endpoint = proxy.endpoint();
    let mut env = CREDS.to_vec();
    env.push(("SKIDDER_LOG", "error"));
    let (mut searcher, base) = spawn_searcher(
        &[
            "--config",
            config.to_str().unwrap(),
            "--store",
            "s3://logs/search",
            "--s3-endpoint",
            &endpoint,
        ],
        &env,
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let ask = |a: &Ask| -> (u16, String) {
        let mut req = agent.get(format!("{base}{}", a.path));
        for (k, v) in &a.params {
            req = req.query(*k, v);
        }
        let mut resp = req.call().unwrap();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap();
        (resp.status().as_u16(), body)
    };

    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let (start, end) = (now - 2 * 3_600_000_000_000, now + 300_000_000_000);
    let range = |q: &str| Ask {
        path: "/loki/api/v1/query_range",
        params: vec![
            ("query", q.to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("limit", "100000".into()),
        ],
    };
    let asks = [
        range(r#"{__app__="checkout"}"#),
        range(r#"{__app__=~".+"} |= "Payment authorised""#),
        range(r#"{__app__=~".+"} | json | http_status >= 500"#),
        Ask {
            path: "/loki/api/v1/query",
            params: vec![
                (
                    "query",
                    r#"sum by (level) (count_over_time({__app__=~".+"}[3h]))"#.into(),
                ),
                ("time", end.to_string()),
            ],
        },
        Ask {
            path: "/loki/api/v1/label/__app__/values",
            params: vec![("start", start.to_string()), ("end", end.to_string())],
        },
    ];

    // The truth, with faults off.
    let clean = Instant::now();
    let truth: Vec<Value> = asks
        .iter()
        .map(|a| {
            let (status, body) = ask(a);
            assert_eq!(status, 200, "{}: {body}", a.path);
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["warnings"].is_null(), "{body}");
            let t = answer(&v);
            assert!(
                t.as_array().is_some_and(|x| !x.is_empty()) || t["result"].is_array(),
                "empty truth for {:?}: {body}",
                a.params
            );
            t
        })
        .collect();

    eprintln!(
        "{} queries without faults took {:?}",
        asks.len(),
        clean.elapsed()
    );
    // Each fault kind alone (10% of requests), three queries each; then
    // all kinds mixed.
    let mut outcomes = Vec::new();
    let mut next = 0;
    let mut ask_under_faults = |label: &'static str, queries: usize| {
        let mut o = Outcomes {
            label,
            ..Outcomes::default()
        };
        let before = proxy.injected().total();
        for _ in 0..queries {
            let i = next % asks.len();
            next += 1;
            let (status, body) = ask(&asks[i]);
            match status {
                200 => {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let got = answer(&v);
                    if !v["warnings"].is_null() {
                        o.partial += 1;
                        continue;
                    }
                    assert!(
                        got == truth[i],
                        "under {label} faults, a 200 without warnings differs from the truth \
                         ({} vs {} lines) for {:?}",
                        line_count(&got),
                        line_count(&truth[i]),
                        asks[i].params
                    );
                    o.complete += 1;
                }
                502 => {
                    assert!(body.contains("object store failed"), "502: {body}");
                    o.bad_gateway += 1;
                }
                504 => {
                    assert!(body.contains("timed out"), "504: {body}");
                    o.timed_out += 1;
                }
                _ => panic!("under {label} faults, unexpected {status}: {body}"),
            }
        }
        o.faults = proxy.injected().total() - before;
        outcomes.push(o);
    };
    for f in ALL_FAULTS {
        proxy.set(0.1, &[(f, 1)]);
        ask_under_faults(f.name(), 3);
    }
    proxy.set_all(FAULT_RATE);
    ask_under_faults("mixed", 2 * asks.len());
    let injected = proxy.injected();
    proxy.off();

    // Faults off again: complete answers.
    for (a, t) in asks.iter().zip(&truth) {
        let (status, body) = ask(a);
        assert_eq!(status, 200, "after the faults: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let got = answer(&v);
        assert!(
            v["warnings"].is_null() && &got == t,
            "after the faults, {:?}: warnings {}, {} vs {} lines\n{got}\n{t}",
            a.params,
            v["warnings"],
            line_count(&got),
            line_count(t)
        );
    }
    let metrics = ask(&Ask {
        path: "/metrics",
        params: Vec::new(),
    })
    .1;
    let store_errors = metric_sum(&metrics, "skidder_searcher_store_errors_total");
    let timeouts = metric(
        &metrics,
        "skidder_searcher_queries_rejected_total{reason=\"timeout\"}",
    );
    let asked: u64 = outcomes.iter().map(|o| o.asked()).sum();
    let bad_gateway: u64 = outcomes.iter().map(|o| o.bad_gateway).sum();
    let timed_out: u64 = outcomes.iter().map(|o| o.timed_out).sum();
    eprintln!(
        "S3 faults, searcher: {objects} objects, {asked} queries under faults; {injected}; \
         store errors counted {store_errors}, timeouts counted {timeouts}"
    );
    for o in &outcomes {
        eprintln!("  {o}");
    }
    sigterm(searcher.id());
    assert!(searcher.wait().unwrap().success());

    assert!(injected.total() > 0, "no fault was injected");
    for f in ALL_FAULTS {
        assert!(
            injected.of(f) > 0,
            "no {} fault injected: {injected}",
            f.name()
        );
    }
    assert!(
        bad_gateway > 0,
        "no query failed with a store fault: {injected}"
    );
    assert!(
        store_errors >= bad_gateway,
        "{store_errors} store errors counted for {bad_gateway} 502s"
    );
    assert_eq!(timeouts, timed_out, "504s counted");
}
