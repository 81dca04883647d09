//! Index packs. `skidder pack`'s packer copies each hour's indexes into
//! packs; a cold searcher then reads an hour's indexes with one GET per
//! pack instead of one per block. The listing stays the source of truth,
//! so every query here must return exactly what it returned before any
//! pack existed, while the packs are:
//! - split across several objects per hour;
//! - missing a block that arrived after packing (fetched on its own);
//! - holding an out-of-date copy of an index whose block was rewritten
//!   with different bytes under the same name (the block's checksum
//!   catches it, and the index object itself is read);
//! - unreadable (that pack's indexes are fetched one by one).
//!
//! The store is a real directory; a hook records every GET.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::layout::{hour_of, parse_slices_key};
use skidder_common::format::pack;
use skidder_common::format::seqfile::{SeqFileReader, SeqFileWriter};
use skidder_common::format::slices;
use skidder_common::format::tokens::DEFAULT_MAX_TOKEN_VALUE_LEN;
use skidder_common::storage::{list_all, LocalStore, ObjectStore, StorageResult};
use skidder_indexer::packer::{pack_hours, PackOptions, PackReport};
use skidder_searcher::engine::{
    required_tokens, Direction, Engine, EngineConfig, Entry, TimeRange,
};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines, HookedStore, Hooks, Rec};

const TENANT: &str = "packs";
const LINES: usize = 12_000;

/// Records the key of every read.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<String>>);

#[async_trait]
impl Hooks for Seen {
    async fn before_get(&self, _: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        self.0.lock().unwrap().push(key.to_owned());
        Ok(())
    }
}

type Store = HookedStore<Seen>;

/// JSON lines over about 3.3 hours (the fixture spaces Kafka times 997 ms
/// apart), three apps, a unique trace id each.
fn input() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let (app, level) = (
                ["checkout", "cart", "search"][i % 3],
                ["info", "warn", "error"][i % 7 % 3],
            );
            serde_json::json!({
                "app": app,
                "level": level,
                "msg": format!("GET /item/{} served in {} ms", i % 97, i % 13),
                "trace_id": format!("{:032x}", (i as u128 + 1) * 0x9E37_79B9_7F4A_7C15),
            })
            .to_string()
        })
        .collect()
}

fn trace_of(r: &Rec) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.line).unwrap();
    v["trace_id"].as_str().unwrap().to_owned()
}

/// What one cold query returned, and what it read.
struct Run {
    entries: Vec<Entry>,
    gets: Vec<String>,
    metrics: Arc<Metrics>,
    warnings: Vec<String>,
}

impl Run {
    fn gets_ending(&self, suffix: &str) -> usize {
        self.gets.iter().filter(|k| k.ends_with(suffix)).count()
    }

    /// The index objects read (each at least once).
    fn indexes_read(&self) -> BTreeSet<String> {
        self.gets
            .iter()
            .filter(|k| k.ends_with(".idx"))
            .cloned()
            .collect()
    }
}

struct Env {
    store: Arc<Store>,
    recs: Vec<Rec>,
    range: TimeRange,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(HookedStore::new(
            Arc::new(LocalStore::new(dir.path()).unwrap()),
            Seen::default(),
        ));
        let recs = index_lines(&*store, TENANT, &input()).await;
        assert_eq!(recs.len(), LINES);
        let range = TimeRange {
            start: recs.iter().map(|r| r.ts).min().unwrap(),
            end: recs.iter().map(|r| r.ts).max().unwrap() + 1,
        };
        Env {
            store,
            recs,
            range,
            _dir: dir,
        }
    }

    /// Runs `q` on a new engine (cold caches) that reads packs but not
    /// sliced blooms.
    async fn query(&self, q: &str) -> Run {
        self.query_with(q, false).await
    }

    /// Runs `q` on a new engine (cold caches); log queries with a limit
    /// above the input, so every matching line comes back.
    async fn query_with(&self, q: &str, read_slices: bool) -> Run {
        let metrics = Arc::new(Metrics::new());
        let cfg = EngineConfig {
            read_slices,
            ..EngineConfig::default()
        };
        let engine = Engine::new(self.store.clone(), cfg, metrics.clone());
        self.store.0.lock().unwrap().clear();
        let Query::Log(lq) = parse(q).unwrap() else {
            panic!("{q} is a log query")
        };
        let (entries, stats) = engine
            .logs(TENANT, self.range, &lq, LINES + 1, Direction::Forward, true)
            .await
            .unwrap();
        let gets = std::mem::take(&mut *self.store.0.lock().unwrap());
        Run {
            entries,
            gets,
            metrics,
            warnings: stats.warnings,
        }
    }

    async fn pack(&self, max_pack_bytes: usize) -> PackReport {
        self.pack_with(PackOptions {
            max_pack_bytes,
            ..Default::default()
        })
        .await
    }

    async fn pack_with(&self, opts: PackOptions) -> PackReport {
        let hours = (hour_of(self.range.start), hour_of(self.range.end - 1));
        let report = pack_hours(&*self.store, &[TENANT.to_owned()], hours, &opts, &|| false)
            .await
            .unwrap();
        assert_eq!(report.hours_failed, 0, "{report:?}");
        report
    }

    async fn keys(&self, suffix: &str) -> Vec<(String, u64)> {
        list_all(&*self.store, &format!("tenant={TENANT}/"))
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.key.ends_with(suffix))
            .map(|m| (m.key, m.size))
            .collect()
    }

    /// The hour prefixes that hold indexes.
    async fn hours(&self) -> BTreeSet<String> {
        self.keys(".idx")
            .await
            .iter()
            .map(|(k, _)| hour_of_key(k).to_owned())
            .collect()
    }

    /// Deletes the block whose index is `index_key`, returning its objects
    /// for [`put_back`](Self::put_back): a block that lands late.
    async fn take_block(&self, index_key: &str) -> Vec<(String, Bytes)> {
        let mut taken = Vec::new();
        for key in [index_key.to_owned(), index_key.replace(".idx", ".seq")] {
            taken.push((key.clone(), self.get(&key).await));
            self.store.delete(&key).await.unwrap();
        }
        taken
    }

    async fn put_back(&self, taken: Vec<(String, Bytes)>) {
        for (key, bytes) in taken {
            self.store.put(&key, bytes).await.unwrap();
        }
    }

    /// Flips a bit of every chunk of the sliced blooms at `key`, so each
    /// fails its check.
    async fn damage_rows(&self, key: &str) {
        let mut bytes = self.get(key).await.to_vec();
        let head = slices::Head::decode(&bytes).unwrap();
        for g in &head.groups {
            for row in (0..g.bits).step_by(g.chunk_rows as usize) {
                let (_, range) = g.chunk_of(row);
                bytes[range.start as usize] ^= 0x01;
            }
        }
        self.store.put(key, Bytes::from(bytes)).await.unwrap();
    }

    /// Deletes the days' own sliced blooms, leaving the hours' own.
    async fn drop_day_slices(&self) {
        for (key, _) in self.keys(".slices").await {
            if !key.contains("/hour=") {
                self.store.delete(&key).await.unwrap();
            }
        }
    }

    async fn get(&self, key: &str) -> Bytes {
        self.store.inner.get(key).await.unwrap()
    }

    /// The index key of the block holding `r`.
    async fn block_of(&self, r: &Rec) -> String {
        for (key, _) in self.keys(".idx").await {
            let seq = key.replace(".idx", ".seq");
            let (_, records) = SeqFileReader::read_all(&self.get(&seq).await).unwrap();
            if records.iter().any(|(_, l)| *l == r.line) {
                return key;
            }
        }
        panic!("no block holds {}", r.line)
    }
}

fn hour_of_key(key: &str) -> &str {
    &key[..key.find("hour=").unwrap() + "hour=HH/".len()]
}

fn counter(m: &Metrics, result: &str) -> u64 {
    m.packs_read.with_label_values(&[result]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_save_index_gets_and_never_change_results() {
    let env = Env::new().await;
    let indexes = env.keys(".idx").await;
    let hours: BTreeSet<&str> = indexes.iter().map(|(k, _)| hour_of_key(k)).collect();
    assert!(
        hours.len() >= 3 && indexes.len() >= 5 * hours.len(),
        "several hours of several blocks: {} indexes in {} hours",
        indexes.len(),
        hours.len()
    );
    let needle = &env.recs[LINES / 2];
    let queries = [
        format!(r#"{{__app__=~".+"}} | trace_id="{}""#, trace_of(needle)),
        // A regex: every app's folder is listed, as for any selector
        // that does not name its apps.
        r#"{__app__=~"ca.t"} |= "/item/42 ""#.to_owned(),
        r#"{level="warn"}"#.to_owned(),
    ];
    // Before any pack: what every query must keep returning.
    let mut want = Vec::new();
    for q in &queries {
        let run = env.query(q).await;
        assert_eq!(
            run.gets_ending(".idx"),
            indexes.len(),
            "{q}: one GET per index"
        );
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        want.push(run.entries);
    }
    assert_eq!(want[0].len(), 1, "the needle is found once");
    assert_eq!(want[0][0].line, needle.line);
    assert!(want[1].len() > 10 && want[2].len() > 1000);
    // A selector that names its app lists and reads only its folder.
    let scoped = r#"{__app__="cart"} |= "/item/42 ""#;
    let cart = indexes
        .iter()
        .filter(|(k, _)| k.contains("/app=cart/"))
        .count();
    assert!(cart > 0 && cart < indexes.len());
    let run = env.query(scoped).await;
    assert!(
        run.entries == want[1],
        "{scoped}: results differ from the regex's"
    );
    assert_eq!(
        run.gets_ending(".idx"),
        cart,
        "{scoped}: one GET per cart index"
    );
    assert!(
        run.gets
            .iter()
            .filter(|k| k.ends_with(".idx"))
            .all(|k| k.contains("/app=cart/")),
        "{scoped}: read another app's index"
    );
    let check = |q: &str, run: &Run, want: &[Entry], what: &str| {
        assert!(run.warnings.is_empty(), "{what}: {q}: {:?}", run.warnings);
        assert!(run.entries == want, "{what}: {q}: results changed");
    };

    // A block that lands after its hour was packed.
    let late = env.block_of(&env.recs[LINES / 3]).await;
    let taken = env.take_block(&late).await;

    // Small packs: each hour takes several.
    let report = env.pack(3_000).await;
    assert_eq!(report.hours_packed, hours.len(), "{report:?}");
    assert_eq!(report.indexes_packed, indexes.len() - 1, "{report:?}");
    let packs = env.keys(".pack").await;
    assert!(
        packs.len() > hours.len(),
        "several packs an hour: {packs:?}"
    );
    env.put_back(taken).await;

    for (q, want) in queries.iter().zip(&want) {
        let run = env.query(q).await;
        check(q, &run, want, "with a late block");
        assert_eq!(run.gets_ending(".pack"), packs.len(), "{q}");
        assert_eq!(
            run.gets
                .iter()
                .filter(|k| k.ends_with(".idx"))
                .collect::<Vec<_>>(),
            vec![&late],
            "{q}: only the late block's index is read on its own"
        );
        assert_eq!(counter(&run.metrics, "ok"), packs.len() as u64);
    }

    // The next pass repacks only the late block's hour, now in one pack,
    // and deletes that hour's other packs.
    let report = env.pack(PackOptions::default().max_pack_bytes).await;
    assert_eq!(
        (report.hours_packed, report.hours_current),
        (1, hours.len() - 1),
        "{report:?}"
    );
    let late_hour = hour_of_key(&late);
    let packs = env.keys(".pack").await;
    let in_late_hour: Vec<_> = packs
        .iter()
        .filter(|(k, _)| k.starts_with(late_hour))
        .collect();
    assert_eq!(in_late_hour.len(), 1, "{packs:?}");
    let again = env.pack(PackOptions::default().max_pack_bytes).await;
    assert_eq!(
        again.hours_current,
        hours.len(),
        "an unchanged hour is left alone"
    );
    for (q, want) in queries.iter().zip(&want) {
        let run = env.query(q).await;
        check(q, &run, want, "packed");
        assert_eq!(run.gets_ending(".idx"), 0, "{q}: no index read on its own");
    }

    // The needle's block rewritten with other bytes (another sync marker)
    // and a matching index of the same size: the packed copy is stale.
    let key = env.block_of(needle).await;
    let seq = key.replace(".idx", ".seq");
    let (header, records) = SeqFileReader::read_all(&env.get(&seq).await).unwrap();
    let meta: Vec<(&str, &str)> = header
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut w = SeqFileWriter::new(Vec::new(), &meta, *b"a different sync");
    for (t, l) in &records {
        w.append(*t, l.as_bytes());
    }
    let data = w.finish();
    let mut idx = BlockIndex::decode(&env.get(&key).await).unwrap();
    idx.data_size = data.len() as u64;
    idx.data_crc32c = crc32c::crc32c(&data);
    let idx = idx.encode();
    assert_eq!(
        idx.len(),
        env.get(&key).await.len(),
        "same size, other bytes"
    );
    env.store.put(&seq, Bytes::from(data)).await.unwrap();
    env.store.put(&key, Bytes::from(idx)).await.unwrap();
    let run = env.query(&queries[0]).await;
    check(&queries[0], &run, &want[0], "stale packed index");
    assert_eq!(run.metrics.stale_indexes.get(), 1);
    assert_eq!(run.metrics.corrupt_objects.get(), 0);
    assert_eq!(run.gets_ending(".idx"), 1, "the index itself is read once");

    // An unreadable pack: its hour's indexes are read one by one.
    let (pack_key, _) = &packs[0];
    let mut bytes = env.get(pack_key).await.to_vec();
    let in_pack = pack::decode(&bytes).unwrap().len();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    env.store.put(pack_key, Bytes::from(bytes)).await.unwrap();
    for (q, want) in queries.iter().zip(&want) {
        let run = env.query(q).await;
        check(q, &run, want, "unreadable pack");
        assert_eq!(counter(&run.metrics, "unreadable"), 1);
        assert!(
            run.gets_ending(".idx") >= in_pack,
            "{q}: the pack's {in_pack} indexes are read on their own"
        );
    }
    // A pass goes by names: the listing has not changed, so nothing is
    // rewritten (and no pack is read) until asked to.
    let report = env.pack(PackOptions::default().max_pack_bytes).await;
    assert_eq!(report.hours_current, hours.len(), "{report:?}");
    let report = env
        .pack_with(PackOptions {
            rewrite: true,
            ..Default::default()
        })
        .await;
    assert_eq!(report.hours_packed, hours.len(), "{report:?}");
    let run = env.query(&queries[2]).await;
    assert!(run.entries == want[2]);
    assert_eq!(run.gets_ending(".idx"), 0, "fresh packs hold fresh copies");
    assert_eq!(counter(&run.metrics, "unreadable"), 0);
}

/// The index keys whose own bloom filter holds every token `q` needs: the
/// blocks a cold query must read the index of, if sliced blooms rule out
/// exactly what the filters would.
async fn bloom_positive(env: &Env, q: &str) -> BTreeSet<String> {
    let Query::Log(lq) = parse(q).unwrap() else {
        panic!("{q} is a log query")
    };
    let mut out = BTreeSet::new();
    for (key, _) in env.keys(".idx").await {
        let (idx, bloom) = BlockIndex::decode_with_bloom(&env.get(&key).await).unwrap();
        let tokens = required_tokens(&lq, DEFAULT_MAX_TOKEN_VALUE_LEN, idx.version);
        if tokens.iter().all(|&t| bloom.may_contain(t)) {
            out.insert(key);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliced_blooms_rule_out_blocks_before_any_index_is_read() {
    let env = Env::new().await;
    let hours = env.hours().await;
    let (needle, late_needle) = (&env.recs[LINES / 2], &env.recs[LINES / 3]);
    let queries = [
        format!(r#"{{__app__=~".+"}} | trace_id="{}""#, trace_of(needle)),
        // Quoted, so the id is a whole word (a bare one may be part of a
        // longer word, and prunes nothing).
        format!(
            r#"{{__app__=~".+"}} |= "\"trace_id\":\"{}\"""#,
            trace_of(needle)
        ),
        format!(
            r#"{{__app__=~".+"}} | trace_id="{}""#,
            trace_of(late_needle)
        ),
        r#"{__app__="cart"} |= "/item/42 ""#.to_owned(),
        r#"{__app__=~".+"} |= " nowhere_to_be_found ""#.to_owned(),
    ];
    let mut want = Vec::new();
    for q in &queries {
        want.push(env.query_with(q, true).await.entries);
    }
    assert_eq!(want[0].len(), 1);
    assert_eq!(want[1], want[0]);
    assert_eq!(want[2].len(), 1);
    assert!(want[3].len() > 10 && want[4].is_empty());

    // The late needle's block lands after its hour was packed.
    let late = env.block_of(late_needle).await;
    let taken = env.take_block(&late).await;
    env.pack(PackOptions::default().max_pack_bytes).await;
    env.drop_day_slices().await;
    let sliced = env.keys(".slices").await;
    assert_eq!(sliced.len(), hours.len(), "one per hour: {sliced:?}");
    // Named by their bytes too: a rewrite with other bytes never meets a
    // searcher's cached head or rows of these.
    for (key, _) in &sliced {
        let content = xxhash_rust::xxh3::xxh3_64(&env.get(key).await);
        let named = parse_slices_key(hour_of_key(key), key).map(|(_, c)| c);
        assert_eq!(named, Some(content), "{key}");
    }
    env.put_back(taken).await;

    for (i, (q, want)) in queries.iter().zip(&want).enumerate() {
        let run = env.query_with(q, true).await;
        assert!(run.warnings.is_empty(), "{q}: {:?}", run.warnings);
        assert!(run.entries == *want, "{q}: results changed");
        let ok = run.metrics.slices_read.with_label_values(&["ok"]).get();
        assert_eq!(ok, hours.len() as u64, "{q}");
        // Exactly the blocks whose filter holds the tokens, and the late
        // one, which no slice knows of.
        let mut expect = bloom_positive(&env, q).await;
        expect.insert(late.clone());
        let read = run.indexes_read();
        if i == 3 {
            // A common word: most blocks stay, and their hours' packs
            // are read instead.
            assert!(read.is_subset(&expect), "{q}");
        } else {
            assert_eq!(read, expect, "{q}");
            assert_eq!(run.gets_ending(".pack"), 0, "{q}: no pack read");
            assert_eq!(
                run.gets_ending(".idx"),
                read.len(),
                "{q}: each index read once"
            );
        }
    }

    // Damaged rows: every chunk of one hour's object fails its check, so
    // that hour's blocks are pruned from their indexes (its packs) again.
    let (key, _) = &sliced[0];
    env.damage_rows(key).await;
    for (q, want) in queries.iter().zip(&want) {
        let run = env.query_with(q, true).await;
        assert!(
            run.entries == *want,
            "{q}: results changed with damaged slices"
        );
        let bad = run.metrics.slices_read.with_label_values(&["unreadable"]);
        assert_eq!(bad.get(), 1, "{q}");
    }

    // A damaged head too; and a repack (asked for: the listing did not
    // change) writes it anew.
    let mut bytes = env.get(key).await.to_vec();
    bytes[20] ^= 0x01;
    env.store.put(key, Bytes::from(bytes)).await.unwrap();
    let run = env.query_with(&queries[0], true).await;
    assert!(run.entries == want[0]);
    let bad = run.metrics.slices_read.with_label_values(&["unreadable"]);
    assert_eq!(bad.get(), 1);
    env.pack_with(PackOptions {
        rewrite: true,
        ..Default::default()
    })
    .await;
    env.drop_day_slices().await;
    let run = env.query_with(&queries[0], true).await;
    assert!(run.entries == want[0]);
    assert_eq!(run.gets_ending(".pack"), 0);
    let bad = run.metrics.slices_read.with_label_values(&["unreadable"]);
    assert_eq!(bad.get(), 0);
}

/// The first hour of the day `hour` is in.
fn day_start(hour: i64) -> i64 {
    hour - hour.rem_euclid(24)
}

/// The fixture's days are of about 18 blocks each, of several filter
/// sizes: slice any four that share one.
fn day_opts() -> PackOptions {
    PackOptions {
        min_day_group: 4,
        ..Default::default()
    }
}

fn day_of_key(key: &str) -> &str {
    &key[..key.find("dt=").unwrap() + "dt=YYYY-MM-DD/".len()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_days_sliced_blooms_stand_for_its_hours_own() {
    let env = Env::new().await;
    let hours = env.hours().await;
    let days: BTreeSet<&str> = hours.iter().map(|h| day_of_key(h)).collect();
    // The fixture's 3.3 hours run over midnight: two hours of each day.
    assert_eq!((hours.len(), days.len()), (4, 2), "{hours:?}");
    let (needle, late_needle) = (&env.recs[LINES / 2], &env.recs[LINES / 3]);
    let queries = [
        format!(r#"{{__app__=~".+"}} | trace_id="{}""#, trace_of(needle)),
        format!(
            r#"{{__app__=~".+"}} | trace_id="{}""#,
            trace_of(late_needle)
        ),
        r#"{__app__=~".+"} |= " nowhere_to_be_found ""#.to_owned(),
    ];
    let mut want = Vec::new();
    for q in &queries {
        want.push(env.query_with(q, false).await.entries);
    }
    assert_eq!((want[0].len(), want[1].len(), want[2].len()), (1, 1, 0));

    // A pass whose range starts after a day's first hour leaves that day
    // to its hours' own slices (it cannot see the day whole).
    let (first, last) = (hour_of(env.range.start), hour_of(env.range.end - 1));
    assert_ne!(first, day_start(first), "the fixture starts mid-day");
    let report = pack_hours(
        &*env.store,
        &[TENANT.to_owned()],
        (first, last),
        &day_opts(),
        &|| false,
    )
    .await
    .unwrap();
    assert_eq!(report.days_sliced, 1, "only the second day: {report:?}");

    // The late needle's block lands after its day was sliced.
    let late = env.block_of(late_needle).await;
    let taken = env.take_block(&late).await;
    let whole = (day_start(first), last);
    let pack = || async {
        pack_hours(
            &*env.store,
            &[TENANT.to_owned()],
            whole,
            &day_opts(),
            &|| false,
        )
        .await
        .unwrap()
    };
    let report = pack().await;
    assert_eq!(
        (report.days_sliced, report.hours_failed),
        (1, 0),
        "{report:?}"
    );
    assert_eq!(pack().await.days_sliced, 0, "nothing changed");
    let sliced = env.keys(".slices").await;
    let day_objects: Vec<&(String, u64)> = sliced
        .iter()
        .filter(|(k, _)| !k.contains("/hour="))
        .collect();
    assert_eq!(day_objects.len(), 2, "one per day: {sliced:?}");
    assert_eq!(sliced.len(), hours.len() + 2, "{sliced:?}");
    // Sliced again through a spill directory of its own, in the smallest
    // bands: the same bytes, so the same keys, and no file left behind.
    let spill = tempfile::tempdir().unwrap();
    let again = pack_hours(
        &*env.store,
        &[TENANT.to_owned()],
        whole,
        &PackOptions {
            rewrite: true,
            spill_dir: Some(spill.path().to_owned()),
            day_band_bytes: 1,
            ..day_opts()
        },
        &|| false,
    )
    .await
    .unwrap();
    assert_eq!(again.days_sliced, 2, "{again:?}");
    assert_eq!(env.keys(".slices").await, sliced);
    assert_eq!(std::fs::read_dir(spill.path()).unwrap().count(), 0);
    for (key, _) in &day_objects {
        let content = xxhash_rust::xxh3::xxh3_64(&env.get(key).await);
        let named = parse_slices_key(day_of_key(key), key).map(|(_, c)| c);
        assert_eq!(named, Some(content), "{key}");
        // Names relative to the day, each of a listed index of its size.
        let head = slices::Head::decode(&env.get(key).await).unwrap();
        let listed: BTreeSet<(String, u64)> = env.keys(".idx").await.into_iter().collect();
        assert!(!head.blocks.is_empty());
        for b in &head.blocks {
            let full = (format!("{}{}", day_of_key(key), b.name), b.index_size);
            assert!(listed.contains(&full), "{full:?}");
        }
    }
    env.put_back(taken).await;

    let hour_objects = |run: &Run| {
        run.gets
            .iter()
            .filter(|k| k.ends_with(".slices") && k.contains("/hour="))
            .count()
    };
    for (q, want) in queries.iter().zip(&want) {
        let run = env.query_with(q, true).await;
        assert!(run.warnings.is_empty(), "{q}: {:?}", run.warnings);
        assert!(run.entries == *want, "{q}: results changed");
        // Both days' objects; an hour's own only for blocks its day's
        // left out (a filter size rare in the day, or the late block).
        let days_read: BTreeSet<&String> = run
            .gets
            .iter()
            .filter(|k| k.ends_with(".slices") && !k.contains("/hour="))
            .collect();
        assert_eq!(days_read.len(), 2, "{q}: {:?}", run.gets);
        let ok = run.metrics.slices_read.with_label_values(&["ok"]).get();
        assert!(ok >= 2, "{q}: {ok}");
        let mut expect = bloom_positive(&env, q).await;
        expect.insert(late.clone());
        let read = run.indexes_read();
        assert_eq!(read, expect, "{q}");
        assert_eq!(run.gets_ending(".pack"), 0, "{q}: no pack read");
    }

    // The late block changes the day's listing: the next pass slices the
    // day again and deletes the old object.
    let report = pack().await;
    assert_eq!(report.days_sliced, 1, "{report:?}");
    let now: Vec<(String, u64)> = env
        .keys(".slices")
        .await
        .into_iter()
        .filter(|(k, _)| !k.contains("/hour="))
        .collect();
    assert_eq!(now.len(), 2, "{now:?}");

    // A damaged day object rules nothing out; its hours' own take over.
    let (key, _) = &now[0];
    env.damage_rows(key).await;
    for (q, want) in queries.iter().zip(&want) {
        let run = env.query_with(q, true).await;
        assert!(run.entries == *want, "{q}: results changed");
        let bad = run.metrics.slices_read.with_label_values(&["unreadable"]);
        assert_eq!(bad.get(), 1, "{q}");
        let ok = run.metrics.slices_read.with_label_values(&["ok"]).get();
        assert!(
            ok >= 3,
            "{q}: the other day, and the damaged day's two hours: {ok}"
        );
        assert!(hour_objects(&run) >= 2, "{q}: {:?}", run.gets);
    }
}
