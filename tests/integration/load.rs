//! Load: 50 concurrent clients query a `skidder searcher` while the real
//! `skidder indexer` ingests from Apache Kafka into the same local store.
//!
//! While the indexer writes, every response must be a 200 (a 429 when the
//! queue is full is counted, not failed) with no warning, every returned
//! line must match its query (selector, line filter, regex, field filter,
//! limit, order), every line must later turn out to be exactly a stored
//! record, metric counts must never fall (per client) or exceed the final
//! count, and the searcher's RSS must stay under [`RSS_BOUND`]. Once the
//! indexer has stored everything, the same kinds of queries on the same
//! searcher must give exactly the right answers: the truth is a full read
//! by a fresh searcher, itself checked against the producer (every id
//! `1..=produced` exactly once, each line consistent with its labels and
//! time). Figures (queries by kind, p50 latency, peak RSS) are printed as
//! information only. Set `SKIDDER_LOAD_SEED` to replay a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skidder_common::testing::{free_port, seed_from_env, KafkaBroker, SeededRng};

use crate::exactly_once::{
    post_mortem, produce, spawn_searcher, wait_stored, IndexerRun, Pace, APPS, BASE_SECS,
    INDEXER_CONFIG,
};
use crate::support::{rss_bytes, Guard};

const TOPIC: &str = "load";
const PARTITIONS: i32 = 4;
const RECORDS: u64 = 30_000;
const CLIENTS: usize = 50;
/// The load lasts at least this long, and until the indexer has stored
/// every record.
const MIN_LOAD: Duration = Duration::from_secs(20);
/// The searcher's caches (`cache_bytes`, its only memory setting).
const CACHE_BYTES: u64 = 64 << 20;
/// Peak RSS allowed. No setting bounds the searcher's whole memory:
/// `cache_bytes` bounds the caches, and each of `max_concurrent_queries`
/// running queries holds at most `fetch_concurrency` blocks plus its
/// results (here at most `LIMIT` lines), a few MB. So: the caches, plus a
/// generous allowance for the binary, the runtime and 16 running queries.
const RSS_BOUND: u64 = CACHE_BYTES + (448 << 20);
/// `limit` of the log queries under load.
const LIMIT: usize = 200;
/// How long the searcher trusts a cached listing: short, so that under
/// load listings are both served from the cache and read again.
const LISTING_CACHE: Duration = Duration::from_secs(2);

/// The searcher's settings: room for whole-app answers, a queue long
/// enough that 50 clients rarely see a 429, and the caches above.
fn searcher_toml() -> String {
    format!(
        "max_limit = 5000000\n\
         query_timeout_secs = 300\n\
         max_concurrent_queries = 16\n\
         query_queue_wait_ms = 60000\n\
         cache_bytes = {CACHE_BYTES}\n\
         listing_cache_secs = {}\n",
        LISTING_CACHE.as_secs()
    )
}

/// The data's time range, in ns: every event time is in `[START, END)`.
const START: i64 = BASE_SECS * 1_000_000_000;
const END: i64 = (BASE_SECS + 7200) * 1_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    /// `{__app__="X"}`, newest or oldest first.
    Logs,
    /// `{__app__=~".+"} |= "event number N in"`.
    LineFilter,
    /// `{__app__="X"} |~ "number 1[0-9]{3} in"`: ids 1000 to 1999.
    Regex,
    /// `{__app__=~".+"} | json | id="N"`.
    JsonField,
    /// `{__app__="X"} | id="N"`, no parser.
    Field,
    /// `sum by (__app__) (count_over_time({__app__=~".+"}[1h]))`, two steps.
    Metric,
    Labels,
    LabelValues,
    Series,
}

const KINDS: [Kind; 9] = [
    Kind::Logs,
    Kind::LineFilter,
    Kind::Regex,
    Kind::JsonField,
    Kind::Field,
    Kind::Metric,
    Kind::Labels,
    Kind::LabelValues,
    Kind::Series,
];

/// One query: its kind and parameters.
#[derive(Debug, Clone)]
struct Query {
    kind: Kind,
    app: &'static str,
    id: u64,
    forward: bool,
    limit: usize,
}

impl Query {
    fn random(rng: &mut SeededRng, limit: usize) -> Query {
        Query {
            kind: *rng.pick(&KINDS),
            app: APPS[rng.below(APPS.len())],
            id: 1 + rng.below(RECORDS as usize) as u64,
            forward: rng.below(2) == 0,
            limit,
        }
    }

    fn logql(&self) -> String {
        let (app, id) = (self.app, self.id);
        match self.kind {
            Kind::Logs => format!(r#"{{__app__="{app}"}}"#),
            Kind::LineFilter => format!(r#"{{__app__=~".+"}} |= "event number {id} in""#),
            Kind::Regex => format!(r#"{{__app__="{app}"}} |~ "number 1[0-9]{{3}} in""#),
            Kind::JsonField => format!(r#"{{__app__=~".+"}} | json | id="{id}""#),
            Kind::Field => format!(r#"{{__app__="{app}"}} | id="{id}""#),
            Kind::Metric => r#"sum by (__app__) (count_over_time({__app__=~".+"}[1h]))"#.into(),
            Kind::Labels | Kind::LabelValues | Kind::Series => String::new(),
        }
    }

    /// (path, parameters) of the request.
    fn request(&self) -> (&'static str, Vec<(&'static str, String)>) {
        let window = vec![
            ("start", START.to_string()),
            ("end", (END + 1_000_000_000).to_string()),
        ];
        match self.kind {
            Kind::Metric => {
                // Windows (t - 1h, t] at t = START + 1h - 1ns and one hour
                // later: every event time (whole seconds) in exactly one.
                let t0 = START + HOUR - 1;
                let p = vec![
                    ("query", self.logql()),
                    ("start", t0.to_string()),
                    ("end", (t0 + HOUR).to_string()),
                    ("step", "3600".into()),
                ];
                ("/loki/api/v1/query_range", p)
            }
            Kind::Labels => ("/loki/api/v1/labels", window),
            Kind::LabelValues => ("/loki/api/v1/label/__app__/values", window),
            Kind::Series => {
                let mut p = window;
                p.push(("match[]", r#"{__app__=~".+"}"#.into()));
                ("/loki/api/v1/series", p)
            }
            _ => {
                let mut p = window;
                p.push(("query", self.logql()));
                p.push(("limit", self.limit.to_string()));
                let dir = if self.forward { "forward" } else { "backward" };
                p.push(("direction", dir.into()));
                ("/loki/api/v1/query_range", p)
            }
        }
    }

    /// Does a stored record answer this log query?
    fn matches(&self, r: &Record) -> bool {
        match self.kind {
            Kind::Logs => r.app == self.app,
            Kind::LineFilter => r.line.contains(&format!("event number {} in", self.id)),
            Kind::Regex => r.app == self.app && (1000..=1999).contains(&r.id),
            Kind::JsonField => r.id == self.id,
            Kind::Field => r.app == self.app && r.id == self.id,
            _ => false,
        }
    }
}

/// A stored record as the searcher returns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    ts: i64,
    id: u64,
    app: String,
    line: String,
}

/// A returned log line, checked to be one of the producer's records:
/// `{"id":N,"app":"A","ts":T,"msg":"event number N in A"}` in stream
/// `__app__="A"` at time T.
fn record(stream: &Value, ts: &str, line: &str) -> Result<Record, String> {
    let bad = |why: &str| Err(format!("{why}: {stream} {ts} {line}"));
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => return bad("not JSON"),
    };
    let (Some(id), Some(app), Some(t)) = (v["id"].as_u64(), v["app"].as_str(), v["ts"].as_i64())
    else {
        return bad("fields missing");
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return bad("bad timestamp");
    };
    if stream["__app__"].as_str() != Some(app) {
        return bad("line of another app");
    }
    if v["msg"].as_str() != Some(&format!("event number {id} in {app}")) {
        return bad("message does not match the id");
    }
    if ts != t * 1_000_000_000 || !(START..END).contains(&ts) {
        return bad("time does not match the line");
    }
    if id == 0 || id > RECORDS {
        return bad("id never produced");
    }
    Ok(Record {
        ts,
        id,
        app: app.to_owned(),
        line: line.to_owned(),
    })
}

/// What one response said.
enum Answer {
    Lines(Vec<Record>),
    /// `(app, window) -> count`.
    Counts(BTreeMap<(String, usize), u64>),
    Names(BTreeSet<String>),
    /// Label sets of series.
    Series(BTreeSet<BTreeMap<String, String>>),
}

/// Checks a 200 response to `q` and extracts its answer.
fn parse(q: &Query, body: &str) -> Result<Answer, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("status {}", v["status"]));
    }
    if !v["warnings"].is_null() {
        return Err(format!("warnings: {}", v["warnings"]));
    }
    let data = &v["data"];
    let list = |x: &Value| x.as_array().cloned().unwrap_or_default();
    match q.kind {
        Kind::Labels | Kind::LabelValues => Ok(Answer::Names(
            list(data)
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect(),
        )),
        Kind::Series => Ok(Answer::Series(
            list(data)
                .iter()
                .map(|s| {
                    s.as_object()
                        .map(|o| {
                            o.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect(),
        )),
        Kind::Metric => {
            let mut out = BTreeMap::new();
            for s in list(&data["result"]) {
                let app = s["metric"]["__app__"].as_str().unwrap_or("?").to_owned();
                for p in list(&s["values"]) {
                    let t = p[0].as_f64().ok_or("bad sample time")?;
                    let window = usize::from(t >= (BASE_SECS + 3600) as f64);
                    let n: f64 = p[1]
                        .as_str()
                        .and_then(|x| x.parse().ok())
                        .ok_or("bad sample")?;
                    if n.fract() != 0.0 || n < 0.0 {
                        return Err(format!("count {n}"));
                    }
                    out.insert((app.clone(), window), n as u64);
                }
            }
            Ok(Answer::Counts(out))
        }
        _ => {
            let mut out = Vec::new();
            for s in list(&data["result"]) {
                let mut last: Option<i64> = None;
                for p in list(&s["values"]) {
                    let r = record(
                        &s["stream"],
                        p[0].as_str().unwrap_or_default(),
                        p[1].as_str().unwrap_or_default(),
                    )?;
                    if !q.matches(&r) {
                        return Err(format!("{} does not match {}", r.line, q.logql()));
                    }
                    // Entries of a stream keep the query's order.
                    if let Some(l) = last {
                        if (q.forward && r.ts < l) || (!q.forward && r.ts > l) {
                            return Err(format!("out of order at {}", r.line));
                        }
                    }
                    last = Some(r.ts);
                    out.push(r);
                }
            }
            if out.len() > q.limit {
                return Err(format!("{} lines over limit {}", out.len(), q.limit));
            }
            Ok(Answer::Lines(out))
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// (status, body); status 0 when there was no response.
fn call(agent: &ureq::Agent, url: &str, q: &Query) -> (u16, String) {
    let (path, params) = q.request();
    let mut req = agent.get(format!("{url}{path}"));
    for (k, v) in &params {
        req = req.query(*k, v);
    }
    match req.call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let body = r
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .unwrap_or_default();
            (status, body)
        }
        Err(e) => (0, e.to_string()),
    }
}

/// A searcher process over `store`.
fn start_searcher(store: &str, config: &Path) -> (Guard, String) {
    spawn_searcher(
        &["--config", config.to_str().unwrap(), "--store", store],
        &[],
    )
}

/// What the clients saw, shared.
#[derive(Default)]
struct Seen {
    failures: Mutex<Vec<String>>,
    /// Every line returned, by id.
    lines: Mutex<HashMap<u64, Record>>,
    /// The highest count returned per (app, window).
    counts: Mutex<BTreeMap<(String, usize), u64>>,
    names: Mutex<BTreeSet<String>>,
    series: Mutex<BTreeSet<BTreeMap<String, String>>>,
    /// Latencies of 200s, by kind.
    latency: Mutex<BTreeMap<Kind, Vec<Duration>>>,
    refused: AtomicU64,
}

impl Seen {
    fn fail(&self, msg: String) {
        self.failures.lock().unwrap().push(msg);
    }

    fn record(&self, q: &Query, answer: Answer, last_counts: &mut BTreeMap<(String, usize), u64>) {
        match answer {
            Answer::Lines(lines) => {
                let mut seen = self.lines.lock().unwrap();
                for r in lines {
                    let prev = seen.entry(r.id).or_insert_with(|| r.clone());
                    if *prev != r {
                        let msg = format!("id {} came back as {prev:?} and {r:?}", r.id);
                        drop(seen);
                        return self.fail(msg);
                    }
                }
            }
            Answer::Counts(c) => {
                for (k, n) in c {
                    let last = last_counts.entry(k.clone()).or_default();
                    if n < *last {
                        self.fail(format!("{}: count of {k:?} fell {last} -> {n}", q.logql()));
                    }
                    *last = n;
                    let mut max = self.counts.lock().unwrap();
                    let m = max.entry(k).or_default();
                    *m = (*m).max(n);
                }
            }
            Answer::Names(n) => self.names.lock().unwrap().extend(n),
            Answer::Series(s) => self.series.lock().unwrap().extend(s),
        }
    }
}

/// One client: random queries until `stop`.
fn client(url: String, seed: u64, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut rng = SeededRng::new(seed);
    let agent = agent();
    let mut last_counts = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let q = Query::random(&mut rng, LIMIT);
        let started = Instant::now();
        let (status, body) = call(&agent, &url, &q);
        let took = started.elapsed();
        match status {
            200 => match parse(&q, &body) {
                Ok(a) => {
                    seen.latency
                        .lock()
                        .unwrap()
                        .entry(q.kind)
                        .or_default()
                        .push(took);
                    seen.record(&q, a, &mut last_counts);
                }
                Err(e) => seen.fail(format!("{}: {e}", q.logql())),
            },
            429 => {
                seen.refused.fetch_add(1, Ordering::Relaxed);
            }
            _ => seen.fail(format!(
                "{:?} {}: status {status}: {body}",
                q.kind,
                q.logql()
            )),
        }
    }
}

/// Every stored record, read by a fresh searcher, each checked against
/// the producer.
fn truth(
    store: &str,
    config: &Path,
    produced: u64,
) -> (Vec<Record>, Vec<BTreeMap<String, String>>) {
    let (_child, url) = start_searcher(store, config);
    let agent = agent();
    let mut all = Vec::new();
    let mut streams = Vec::new();
    for app in APPS {
        let q = Query {
            kind: Kind::Logs,
            app,
            id: 0,
            forward: true,
            limit: 5_000_000,
        };
        let (status, body) = call(&agent, &url, &q);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        for s in v["data"]["result"].as_array().unwrap() {
            let labels: BTreeMap<String, String> = s["stream"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            streams.push(labels);
        }
        match parse(&q, &body) {
            Ok(Answer::Lines(lines)) => all.extend(lines),
            Ok(_) => unreachable!("a log query"),
            Err(e) => panic!("the full read of {app}: {e}"),
        }
    }
    all.sort();
    let ids: BTreeSet<u64> = all.iter().map(|r| r.id).collect();
    assert_eq!(all.len(), ids.len(), "no record twice");
    assert_eq!(ids.len() as u64, produced, "every record stored");
    assert_eq!(ids.iter().next_back(), Some(&produced));
    (all, streams)
}

/// The exact answer to `q` over `truth`.
fn expected(q: &Query, truth: &[Record], streams: &[BTreeMap<String, String>]) -> String {
    match q.kind {
        Kind::Metric => {
            let mut c: BTreeMap<(String, usize), u64> = BTreeMap::new();
            for r in truth {
                *c.entry((r.app.clone(), usize::from(r.ts >= START + HOUR)))
                    .or_default() += 1;
            }
            format!("{c:?}")
        }
        Kind::Labels => {
            let n: BTreeSet<&String> = streams.iter().flat_map(|s| s.keys()).collect();
            format!("{n:?}")
        }
        Kind::LabelValues => {
            let n: BTreeSet<&str> = truth.iter().map(|r| r.app.as_str()).collect();
            format!("{n:?}")
        }
        Kind::Series => {
            let s: BTreeSet<&BTreeMap<String, String>> = streams.iter().collect();
            format!("{s:?}")
        }
        _ => {
            let mut lines: Vec<&Record> = truth.iter().filter(|r| q.matches(r)).collect();
            lines.sort_by_key(|r| (r.ts, r.id));
            format!("{lines:?}")
        }
    }
}

/// The answer, in the same shape as [`expected`].
fn actual(q: &Query, body: &str) -> Result<String, String> {
    Ok(match parse(q, body)? {
        Answer::Lines(mut l) => {
            l.sort_by_key(|r| (r.ts, r.id));
            let l: Vec<&Record> = l.iter().collect();
            format!("{l:?}")
        }
        Answer::Counts(c) => format!("{c:?}"),
        Answer::Names(n) => {
            let n: BTreeSet<&String> = n.iter().collect();
            format!("{n:?}")
        }
        Answer::Series(s) => {
            let s: BTreeSet<&BTreeMap<String, String>> = s.iter().collect();
            format!("{s:?}")
        }
    })
}

fn p50(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
fn fifty_clients_query_while_the_indexer_ingests() {
    let seed = seed_from_env("SKIDDER_LOAD_SEED");
    let mut rng = SeededRng::new(seed);
    let began = Instant::now();

    let kafka = KafkaBroker::start();
    kafka.create_topic(TOPIC, PARTITIONS as u32);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    let indexer_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(indexer_config.path(), INDEXER_CONFIG).unwrap();
    let searcher_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(searcher_config.path(), searcher_toml()).unwrap();
    let bootstrap = kafka.bootstrap();
    let run = IndexerRun {
        bootstrap: &bootstrap,
        topic: TOPIC,
        group: "load",
        config: indexer_config.path(),
        store: &store,
    };
    let mut indexer = run.start(free_port(), &logs.path().join("indexer.log"), &[]);
    let (searcher, url) = start_searcher(&store, searcher_config.path());

    // Paced, so that ingestion lasts through the load.
    let pace = Pace {
        every: 10,
        pause_ms: 20,
    };
    let producer = produce(kafka.bootstrap(), TOPIC, seed, 1, RECORDS, pace);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), searcher.id());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let rss = rss_bytes(pid).expect("the searcher is running");
                peak.fetch_max(rss, Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    let load_began = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, stop, seen, seed) = (url.clone(), stop.clone(), seen.clone(), rng.next());
            std::thread::spawn(move || client(url, seed, stop, seen))
        })
        .collect();

    let (ends, produced) = producer.join().unwrap();
    assert_eq!(produced, RECORDS);
    wait_stored(
        dir.path(),
        TOPIC,
        &ends,
        &mut [&mut indexer],
        logs.path(),
        Duration::from_secs(300),
    );
    let stored_at = Instant::now();
    let ingested = load_began.elapsed();
    if let Some(rest) = MIN_LOAD.checked_sub(ingested) {
        std::thread::sleep(rest);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let samples = sampler.join().unwrap();
    let load = load_began.elapsed();
    let peak = peak.load(Ordering::Relaxed);

    // Figures, for information.
    let mut latency = std::mem::take(&mut *seen.latency.lock().unwrap());
    let total: usize = latency.values().map(Vec::len).sum();
    eprintln!(
        "load: {CLIENTS} clients for {load:.1?} (ingestion of {produced} records took {ingested:.1?}): \
         {total} queries answered, {} refused with 429",
        seen.refused.load(Ordering::Relaxed)
    );
    for (kind, v) in latency.iter_mut() {
        eprintln!("  {kind:?}: {} queries, p50 {:.1?}", v.len(), p50(v));
    }
    eprintln!(
        "searcher peak RSS {:.1} MiB over {samples} samples (cache_bytes {} MiB, bound {} MiB)",
        peak as f64 / (1 << 20) as f64,
        CACHE_BYTES >> 20,
        RSS_BOUND >> 20
    );

    let failures = std::mem::take(&mut *seen.failures.lock().unwrap());
    if !failures.is_empty() {
        post_mortem(logs.path());
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: {} bad responses under load; first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    for kind in KINDS {
        assert!(
            latency.get(&kind).is_some_and(|v| !v.is_empty()),
            "no {kind:?} query was answered under load: it proves nothing"
        );
    }
    assert!(
        peak > 0 && peak < RSS_BOUND,
        "peak RSS {peak} over the bound {RSS_BOUND}"
    );

    // The truth, from a fresh searcher over the finished store.
    let (truth, streams) = truth(&store, searcher_config.path(), produced);
    let by_id: HashMap<u64, &Record> = truth.iter().map(|r| (r.id, r)).collect();

    // Everything returned under load was a stored record, exactly.
    let lines = std::mem::take(&mut *seen.lines.lock().unwrap());
    for (id, r) in &lines {
        assert_eq!(by_id.get(id), Some(&r), "seed {seed}: line {id} under load");
    }
    // Counts never exceeded the final ones; names and series were real.
    let mut final_counts: BTreeMap<(String, usize), u64> = BTreeMap::new();
    for r in &truth {
        *final_counts
            .entry((r.app.clone(), usize::from(r.ts >= START + HOUR)))
            .or_default() += 1;
    }
    for (k, n) in seen.counts.lock().unwrap().iter() {
        let max = final_counts.get(k).copied().unwrap_or(0);
        assert!(
            *n <= max,
            "seed {seed}: count {k:?} = {n} under load, {max} in the end"
        );
    }
    let names: BTreeSet<String> = streams.iter().flat_map(|s| s.keys().cloned()).collect();
    let values: BTreeSet<String> = truth.iter().map(|r| r.app.clone()).collect();
    let apps: BTreeSet<String> = APPS.iter().map(|a| a.to_string()).collect();
    assert_eq!(values, apps, "every app has records");
    for n in seen.names.lock().unwrap().iter() {
        assert!(names.contains(n) || values.contains(n), "seed {seed}: {n}");
    }
    let series: BTreeSet<BTreeMap<String, String>> = streams.iter().cloned().collect();
    for s in seen.series.lock().unwrap().iter() {
        assert!(series.contains(s), "seed {seed}: series {s:?}");
    }

    // Under load, queries found data (the checks above were not vacuous).
    assert!(!lines.is_empty(), "no line was returned under load");
    assert!(
        seen.counts.lock().unwrap().values().any(|&n| n > 0),
        "no count was returned under load"
    );

    // The same searcher, now that ingestion is over, answers exactly, once
    // every listing it cached while the indexer wrote has expired.
    if let Some(rest) = (stored_at + LISTING_CACHE).checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    let agent = agent();
    let mut checked = 0;
    let mut finals: Vec<Query> = Vec::new();
    for kind in KINDS {
        for app in APPS {
            for i in 0..4 {
                finals.push(Query {
                    kind,
                    app,
                    id: 1 + rng.below(produced as usize) as u64,
                    forward: i % 2 == 0,
                    limit: 5_000_000,
                });
            }
        }
    }
    for q in &finals {
        let (status, body) = call(&agent, &url, q);
        assert_eq!(status, 200, "{}: {body}", q.logql());
        let got = actual(q, &body).unwrap_or_else(|e| panic!("{}: {e}", q.logql()));
        let want = expected(q, &truth, &streams);
        if got != want {
            panic!(
                "seed {seed}: {:?} {} after ingestion: got {} bytes of answer, want {} bytes\n\
                 got:  {}\nwant: {}",
                q.kind,
                q.logql(),
                got.len(),
                want.len(),
                got.chars().take(800).collect::<String>(),
                want.chars().take(800).collect::<String>()
            );
        }
        checked += 1;
    }
    eprintln!(
        "after ingestion: {checked} queries exact over {} records; {} distinct lines returned under load, all stored records; total {:.1?}",
        truth.len(),
        lines.len(),
        began.elapsed()
    );
}
