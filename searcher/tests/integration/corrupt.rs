//! Hostile reads: corrupt objects in the store. The fixture's data (4,000
//! JSON lines, written by the indexer's own code) sits in a local store as
//! a dozen blocks; a test corrupts one object and queries the searcher's
//! HTTP API. Every corrupt or missing object must be detected (index CRC,
//! the data's size and CRC32C recorded in its index, or validation),
//! skipped with a warning naming it in the response's `warnings`, and
//! counted in `skidder_searcher_corrupt_objects_total`; the response must
//! be a 200 holding exactly the other blocks' lines, never a wrong or
//! garbage line, and the searcher must never panic (a panicking handler
//! drops the connection, which fails the request).
//!
//! - `each_corruption_of_each_object_kind_is_skipped_and_reported`: a
//!   table of corruption kinds x object kinds (`.idx`, `.seq`);
//! - `random_bit_flips_are_always_detected`: 200 seeded random bit flips
//!   per object kind, each required to be caught;
//! - `a_resigned_corrupt_block_never_panics`: flips in a block whose index
//!   was rewritten to vouch for it (what no checksum can catch) must still
//!   never panic or invent a label set;
//! - `forged_index_numbers_never_panic`: an index with a valid CRC and
//!   absurd numbers.
//!
//! Set `SKIDDER_CORRUPT_SEED` to replay the random tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::seqfile::SeqFileReader;
use skidder_common::storage::{list_all, LocalStore, ObjectStore, StorageResult};
use skidder_common::testing::{seed_from_env, SeededRng};
use skidder_searcher::api::ApiConfig;
use skidder_searcher::engine::{Engine, EngineConfig};
use skidder_searcher::logql::eval::Labels;
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines, HookedStore, Hooks, Rec, BASE_MS};

const TENANT: &str = "default";
const LINES: usize = 4000;
const CORRUPT: &str = "skidder_searcher_corrupt_objects_total";

/// Hooks that lose one object between a listing and the read that
/// follows, as when retention deletes it mid-query (or a cached listing
/// outlives it): the first read of `vanish` deletes it first.
#[derive(Debug, Default)]
struct Racy {
    vanish: Mutex<Option<String>>,
}

#[async_trait]
impl Hooks for Racy {
    async fn before_get(&self, inner: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        let vanish = self.vanish.lock().unwrap().clone();
        if vanish.as_deref() == Some(key) {
            inner.delete(key).await?;
        }
        Ok(())
    }
}

/// One stored block: its two keys, pristine bytes, and the lines it holds.
struct Block {
    idx: String,
    seq: String,
    idx_bytes: Bytes,
    seq_bytes: Bytes,
    lines: BTreeSet<String>,
}

/// A returned or expected line: time, stream labels, text.
type Line = (i64, Labels, String);

struct Env {
    rt: tokio::runtime::Runtime,
    store: Arc<HookedStore<Racy>>,
    recs: Vec<Rec>,
    blocks: Vec<Block>,
    _dir: tempfile::TempDir,
}

fn input() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let (app, level) = (
                ["checkout", "cart"][i % 2],
                ["info", "warn", "error"][i % 3],
            );
            serde_json::json!({
                "app": app,
                "level": level,
                "msg": format!("request {i} served"),
                "n": i,
            })
            .to_string()
        })
        .collect()
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HookedStore::new(
        Arc::new(LocalStore::new(dir.path()).unwrap()),
        Racy::default(),
    ));
    let recs = rt.block_on(index_lines(&*store, TENANT, &input()));
    assert_eq!(recs.len(), LINES);
    let keys: Vec<String> = rt
        .block_on(list_all(&*store, &format!("tenant={TENANT}/")))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.ends_with(".idx"))
        .collect();
    let mut blocks = Vec::new();
    for idx in keys {
        let seq = format!("{}.seq", idx.strip_suffix(".idx").unwrap());
        let idx_bytes = rt.block_on(store.get(&idx)).unwrap();
        let seq_bytes = rt.block_on(store.get(&seq)).unwrap();
        let (_, records) = SeqFileReader::read_all(&seq_bytes).unwrap();
        let lines: BTreeSet<String> = records.into_iter().map(|(_, l)| l).collect();
        assert!(!lines.is_empty(), "{seq} holds lines");
        blocks.push(Block {
            idx,
            seq,
            idx_bytes,
            seq_bytes,
            lines,
        });
    }
    assert!(blocks.len() >= 6, "several blocks: {}", blocks.len());
    let held: usize = blocks.iter().map(|b| b.lines.len()).sum();
    assert_eq!(held, LINES, "the blocks hold every line once");
    eprintln!("{LINES} lines in {} blocks", blocks.len());
    Env {
        rt,
        store,
        recs,
        blocks,
        _dir: dir,
    }
}

/// A searcher serving the Loki API in-process; stopped on drop.
struct Served {
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Env {
    fn serve(&self, cfg: EngineConfig) -> Served {
        let engine = Arc::new(Engine::new(
            self.store.clone(),
            cfg,
            Arc::new(Metrics::new()),
        ));
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = self.rt.spawn(skidder_searcher::serve(
            listener,
            engine,
            ApiConfig::default(),
            std::future::pending(),
        ));
        Served { url, task }
    }

    fn put(&self, key: &str, body: Bytes) {
        self.rt.block_on(self.store.put(key, body)).unwrap();
    }

    fn delete(&self, key: &str) {
        self.rt.block_on(self.store.delete(key)).unwrap();
    }

    /// Puts both objects of a block back as they were.
    fn restore(&self, b: &Block) {
        *self.store.vanish.lock().unwrap() = None;
        self.put(&b.idx, b.idx_bytes.clone());
        self.put(&b.seq, b.seq_bytes.clone());
    }

    /// Every input line except those of the blocks in `skipped`, sorted.
    fn expected(&self, skipped: &[&Block]) -> Vec<Line> {
        let mut out: Vec<Line> = self
            .recs
            .iter()
            .filter(|r| !skipped.iter().any(|b| b.lines.contains(&r.line)))
            .map(|r| (r.ts, r.labels.clone(), r.line.clone()))
            .collect();
        out.sort();
        out
    }
}

fn ns(ms: i64) -> String {
    (ms * 1_000_000).to_string()
}

/// (status, body) of a GET. No response at all (a handler that panicked
/// drops its connection) fails the test.
fn get(url: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut req = agent.get(format!("{url}{path}"));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let mut resp = req
        .call()
        .unwrap_or_else(|e| panic!("no response from {path} (did the searcher panic?): {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    (status, body)
}

/// The value of an unlabelled counter in Prometheus text; 0 if absent.
fn counter(s: &Served, name: &str) -> f64 {
    let (_, text) = get(&s.url, "/metrics", &[]);
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The answer to one query: its lines (sorted) or samples, and warnings.
struct Answer {
    lines: Vec<Line>,
    warnings: Vec<String>,
    body: String,
}

fn warnings_of(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every line over the data's window, as a 200 response.
fn all_lines(s: &Served) -> Answer {
    let (start, end) = (ns(BASE_MS - 60_000), ns(BASE_MS + 3 * 3_600_000));
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{__app__=~".+"}"#),
            ("start", &start),
            ("end", &end),
            ("limit", "5000"),
        ],
    );
    assert_eq!(status, 200, "{}", short(&body));
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut lines = Vec::new();
    for stream in v["data"]["result"].as_array().unwrap() {
        let mut labels: Labels = stream["stream"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        labels.sort();
        for p in stream["values"].as_array().unwrap() {
            let ts: i64 = p[0].as_str().unwrap().parse().unwrap();
            lines.push((ts, labels.clone(), p[1].as_str().unwrap().to_owned()));
        }
    }
    lines.sort();
    Answer {
        lines,
        warnings: warnings_of(&v),
        body,
    }
}

/// `sum(count_over_time(...))` over every line, as an instant query.
fn count_all(s: &Served) -> (f64, Vec<String>) {
    let time = ns(BASE_MS + 3 * 3_600_000);
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/query",
        &[
            ("query", r#"sum(count_over_time({__app__=~".+"}[4h]))"#),
            ("time", &time),
        ],
    );
    assert_eq!(status, 200, "{}", short(&body));
    let v: Value = serde_json::from_str(&body).unwrap();
    let n = v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);
    (n, warnings_of(&v))
}

fn short(body: &str) -> String {
    body.chars().take(600).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Index,
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corruption {
    /// Two bits flipped, in the middle and a third of the way in.
    FlipBits,
    /// Cut to half its length.
    Truncate,
    /// Cut to nothing.
    Empty,
    /// The first four bytes replaced by Parquet's magic number.
    WrongMagic,
    /// Replaced by the same kind of object of another block, intact.
    Swapped,
    /// Gone: the `.seq` deleted (its index points to a missing block), or
    /// the `.idx` deleted between the listing and its read.
    Missing,
}

/// One row of the table: what to break and what the warning must say.
struct Case {
    object: Object,
    corruption: Corruption,
    /// Substrings of the warning, besides the key.
    says: &'static [&'static str],
    /// The warning names the data block, not the broken index: an intact
    /// index of another block is valid; the block beside it is not the
    /// block it describes.
    names_data: bool,
}

const fn case(
    object: Object,
    corruption: Corruption,
    says: &'static [&'static str],
    names_data: bool,
) -> Case {
    Case {
        object,
        corruption,
        says,
        names_data,
    }
}

const CASES: &[Case] = {
    use Corruption::*;
    use Object::*;
    &[
        case(
            Index,
            FlipBits,
            &["skipped corrupt index", "checksum"],
            false,
        ),
        case(
            Index,
            Truncate,
            &["skipped corrupt index", "truncated"],
            false,
        ),
        case(Index, Empty, &["skipped corrupt index", "truncated"], false),
        case(
            Index,
            WrongMagic,
            &["skipped corrupt index", "bad magic"],
            false,
        ),
        case(Index, Swapped, &["skipped corrupt block"], true),
        case(
            Index,
            Missing,
            &["skipped listed index", "no longer exists"],
            false,
        ),
        case(
            Data,
            FlipBits,
            &["skipped corrupt block", "checksum"],
            false,
        ),
        case(
            Data,
            Truncate,
            &["skipped corrupt block", "truncated"],
            false,
        ),
        case(Data, Empty, &["skipped corrupt block", "truncated"], false),
        case(
            Data,
            WrongMagic,
            &["skipped corrupt block", "checksum"],
            false,
        ),
        case(Data, Swapped, &["skipped corrupt block"], false),
        case(Data, Missing, &["index points to a missing block"], false),
    ]
};

/// Breaks one object of `b` (`other` is another block, for swaps).
fn corrupt(env: &Env, b: &Block, other: &Block, object: Object, c: Corruption) {
    let (key, pristine, donor) = match object {
        Object::Index => (&b.idx, &b.idx_bytes, &other.idx_bytes),
        Object::Data => (&b.seq, &b.seq_bytes, &other.seq_bytes),
    };
    let mut bytes = pristine.to_vec();
    match c {
        Corruption::FlipBits => {
            let n = bytes.len();
            bytes[n / 2] ^= 0x08;
            bytes[n / 3] ^= 0x01;
        }
        Corruption::Truncate => bytes.truncate(bytes.len() / 2),
        Corruption::Empty => bytes.clear(),
        Corruption::WrongMagic => bytes[..4].copy_from_slice(b"PAR1"),
        Corruption::Swapped => bytes = donor.to_vec(),
        Corruption::Missing => {
            match object {
                Object::Index => *env.store.vanish.lock().unwrap() = Some(key.clone()),
                Object::Data => env.delete(key),
            }
            return;
        }
    }
    assert_ne!(&bytes[..], &pristine[..]);
    env.put(key, bytes.into());
}

#[test]
fn each_corruption_of_each_object_kind_is_skipped_and_reported() {
    let env = env();
    let everything = env.expected(&[]);

    // The baseline: every line, no warning, nothing counted. So the
    // checks below compare against a complete answer.
    let s = env.serve(EngineConfig::default());
    let a = all_lines(&s);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    assert_eq!(a.lines, everything);
    assert_eq!(count_all(&s).0, LINES as f64);
    assert_eq!(counter(&s, CORRUPT), 0.0);
    drop(s);

    for (i, c) in CASES.iter().enumerate() {
        // A different block each time; the donor of a swap is the next one.
        let n = env.blocks.len();
        let (b, other) = (&env.blocks[(i * 5 + 1) % n], &env.blocks[(i * 5 + 2) % n]);
        corrupt(&env, b, other, c.object, c.corruption);
        let what = format!("{:?} {:?} ({})", c.object, c.corruption, b.idx);
        let key = match (c.object, c.names_data) {
            (Object::Index, false) => &b.idx,
            _ => &b.seq,
        };

        // A fresh searcher: nothing cached hides the corruption.
        let s = env.serve(EngineConfig::default());
        let a = all_lines(&s);
        let w: Vec<&String> = a.warnings.iter().filter(|w| w.contains(key)).collect();
        assert_eq!(
            w.len(),
            1,
            "{what}: one warning naming {key}: {}",
            short(&a.body)
        );
        for phrase in c.says {
            assert!(w[0].contains(phrase), "{what}: {:?} lacks {phrase:?}", w[0]);
        }
        assert_eq!(a.warnings.len(), 1, "{what}: {:?}", a.warnings);
        assert_eq!(counter(&s, CORRUPT), 1.0, "{what}: counted once");
        let expected = env.expected(&[b]);
        assert_eq!(expected.len(), LINES - b.lines.len());
        if a.lines != expected {
            let got: BTreeSet<&Line> = a.lines.iter().collect();
            let want: BTreeSet<&Line> = expected.iter().collect();
            panic!(
                "{what}: {} lines returned, {} expected; first unexpected {:?}, first missing {:?}",
                a.lines.len(),
                expected.len(),
                got.difference(&want).next(),
                want.difference(&got).next()
            );
        }

        // A metric query skips the same block, and says so.
        let (count, w) = count_all(&s);
        assert_eq!(count, expected.len() as f64, "{what}");
        assert!(w.iter().any(|w| w.contains(key)), "{what}: {w:?}");
        assert_eq!(counter(&s, CORRUPT), 2.0, "{what}");

        // Index-only endpoints answer too, warning when an index is bad.
        let (start, end) = (ns(BASE_MS - 60_000), ns(BASE_MS + 3 * 3_600_000));
        let (status, body) = get(
            &s.url,
            "/loki/api/v1/series",
            &[
                ("match[]", r#"{__app__=~".+"}"#),
                ("start", &start),
                ("end", &end),
            ],
        );
        assert_eq!(status, 200, "{what}: {body}");
        if c.object == Object::Index && !c.names_data {
            assert!(body.contains(key.as_str()), "{what}: {}", short(&body));
        }
        env.restore(b);
    }

    // Restored, the store answers in full again.
    let s = env.serve(EngineConfig::default());
    let a = all_lines(&s);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    assert_eq!(a.lines, everything);
}

/// Flips `bits` random bits of `bytes` (distinct positions are likely, not
/// required); returns the byte offsets touched.
fn flip(rng: &mut SeededRng, bytes: &mut [u8], bits: usize) -> Vec<usize> {
    (0..bits)
        .map(|_| {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
            at
        })
        .collect()
}

#[test]
fn random_bit_flips_are_always_detected() {
    const TRIALS: usize = 200;
    let seed = seed_from_env("SKIDDER_CORRUPT_SEED");
    let mut rng = SeededRng::new(seed);
    let env = env();
    let input: BTreeSet<&str> = env.recs.iter().map(|r| r.line.as_str()).collect();
    // One long-lived searcher that caches nothing, so every query reads
    // the objects as they are now.
    let s = env.serve(EngineConfig {
        cache_bytes: 0,
        ..EngineConfig::default()
    });
    let mut counted = counter(&s, CORRUPT);
    let mut checked = 0;
    for object in [Object::Index, Object::Data] {
        for t in 0..TRIALS {
            let b = &env.blocks[rng.below(env.blocks.len())];
            let (key, pristine) = match object {
                Object::Index => (&b.idx, &b.idx_bytes),
                Object::Data => (&b.seq, &b.seq_bytes),
            };
            let mut bytes = pristine.to_vec();
            // Mostly one bit (CRC32C catches every single-bit error and
            // every burst up to 32 bits); every fourth trial, 2 to 9 bits
            // anywhere.
            let bits = if t % 4 == 3 { 2 + rng.below(8) } else { 1 };
            let at = flip(&mut rng, &mut bytes, bits);
            if bytes == pristine[..] {
                continue; // flips that cancelled out
            }
            env.put(key, bytes.into());
            let what = format!("seed {seed}, {object:?} trial {t}: {key} flipped at {at:?}");

            let a = all_lines(&s);
            for l in &a.lines {
                assert!(input.contains(l.2.as_str()), "{what}: invented {l:?}");
            }
            assert!(
                a.warnings.iter().any(|w| w.contains(key.as_str())),
                "{what}: undetected: {:?}",
                a.warnings
            );
            let now = counter(&s, CORRUPT);
            assert_eq!(now, counted + 1.0, "{what}: counted once");
            counted = now;
            assert_eq!(a.lines, env.expected(&[b]), "{what}");
            checked += a.lines.len();
            env.restore(b);
        }
    }
    eprintln!(
        "{} random corruptions (seed {seed}): all detected and skipped; {checked} returned lines checked",
        2 * TRIALS
    );
}

/// Re-signs a data block: rewrites its index with the data's new size and
/// CRC32C, as a buggy or hostile writer could.
fn resign(idx: &Bytes, data: &[u8]) -> Vec<u8> {
    let mut i = BlockIndex::decode(idx).unwrap();
    i.data_size = data.len() as u64;
    i.data_crc32c = crc32c::crc32c(data);
    i.encode()
}

#[test]
fn a_resigned_corrupt_block_never_panics() {
    const TRIALS: usize = 100;
    let seed = seed_from_env("SKIDDER_CORRUPT_SEED");
    let mut rng = SeededRng::new(seed ^ 0xB10C);
    let env = env();
    let label_sets: BTreeSet<&Labels> = env.recs.iter().map(|r| &r.labels).collect();
    let s = env.serve(EngineConfig {
        cache_bytes: 0,
        ..EngineConfig::default()
    });
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for t in 0..TRIALS {
        let b = &env.blocks[rng.below(env.blocks.len())];
        let mut bytes = b.seq_bytes.to_vec();
        let bits = 1 + rng.below(4);
        let at = flip(&mut rng, &mut bytes, bits);
        if t % 5 == 4 {
            bytes.truncate(rng.below(bytes.len()));
        }
        env.put(&b.idx, resign(&b.idx_bytes, &bytes).into());
        env.put(&b.seq, bytes.into());
        let what = format!("seed {seed}, trial {t}: {} flipped at {at:?}", b.seq);

        // No checksum can tell these from good data. The reader must
        // still fail cleanly, and lines keep the index's label sets.
        let a = all_lines(&s);
        for l in &a.lines {
            assert!(label_sets.contains(&l.1), "{what}: invented labels {l:?}");
        }
        let others = env.expected(&[b]);
        let kept: BTreeSet<&Line> = a.lines.iter().collect();
        assert!(
            others.iter().all(|l| kept.contains(l)),
            "{what}: lost lines of intact blocks"
        );
        let outcome = if a.warnings.iter().any(|w| w.contains(&b.seq)) {
            "reported"
        } else if a.lines == env.expected(&[]) {
            "unchanged"
        } else {
            "silently different"
        };
        *outcomes.entry(outcome).or_default() += 1;
        env.restore(b);
    }
    eprintln!("{TRIALS} re-signed corrupt blocks (seed {seed}): {outcomes:?}");
}

/// Indexes with a valid CRC whose numbers are hostile: what a buggy or
/// malicious writer could leave. Two declare nearly 2^64 bytes of lines:
/// queries that scan blocks are refused by the bytes limit (they would be
/// over it), index-only ones answer; nothing panics on the arithmetic, as
/// summing them did before (an overflow panic in debug builds, a wrapped
/// sum that slips under the limit in release).
#[test]
fn forged_index_numbers_never_panic() {
    let env = env();
    for b in &env.blocks[..2] {
        let mut i = BlockIndex::decode(&b.idx_bytes).unwrap();
        i.raw_bytes = u64::MAX - 1;
        env.put(&b.idx, i.encode().into());
    }
    let s = env.serve(EngineConfig::default());
    let (start, end) = (ns(BASE_MS - 60_000), ns(BASE_MS + 3 * 3_600_000));
    let window = [("start", start.as_str()), ("end", end.as_str())];
    let selector = [("query", r#"{__app__=~".+"}"#)];
    // Every line: the query cannot stop before the forged blocks.
    let logs = [selector[0], ("limit", "5000")];
    let metric = [("query", r#"sum(count_over_time({__app__=~".+"}[1h]))"#)];
    let refused = "query would scan more than";
    for (path, q, want) in [
        ("/loki/api/v1/query_range", &logs[..], 400),
        ("/loki/api/v1/query_range", &metric[..], 400),
        ("/loki/api/v1/index/volume", &selector[..], 400),
        ("/loki/api/v1/index/stats", &selector[..], 200),
        (
            "/loki/api/v1/series",
            &[("match[]", selector[0].1)][..],
            200,
        ),
    ] {
        let params: Vec<(&str, &str)> = q.iter().chain(&window).copied().collect();
        let (status, body) = get(&s.url, path, &params);
        assert_eq!(status, want, "{path} {q:?}: {}", short(&body));
        if want == 400 {
            assert!(body.starts_with(refused), "{path}: {}", short(&body));
        }
    }
}
