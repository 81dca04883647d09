//! Finds, prunes and scans blocks for a query.
//!
//! Pruning runs in the order the design fixes: the time range picks the hour
//! prefixes to list; each index's time range drops blocks; the bloom filter
//! drops blocks that lack a token every match needs; label sets drop
//! blocks and streams. Scanning re-checks time and labels per record, so
//! pruning is only ever an optimisation: `prune = false` must give
//! identical results, and a property test holds it to that.
//!
//! Indexes come from the cache, from the hour's index packs where the
//! listing vouches for them (one GET per pack rather than per block, for
//! a cold cache), or one GET each. Before any is read, a query that needs
//! tokens rules out blocks with the hour's sliced blooms, where present: a
//! few small ranged GETs per hour instead of every index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::format::index::{self, BlockIndex};
use skidder_common::format::layout::{
    hour_of, hour_prefix, parse_slices_key, PackName, DATA_SUFFIX, INDEX_SUFFIX,
};
use skidder_common::format::pack;
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};
use skidder_common::format::slices::{self, Chunks, Head};
use skidder_common::format::tokens::{
    field_hash, for_each_word_hash, inner_words, token_hash, token_hash_v1,
    DEFAULT_MAX_TOKEN_VALUE_LEN,
};
use skidder_common::format::FormatError;
use skidder_common::storage::{list_all, ObjectStore, StorageError, StorageErrorKind};
use thiserror::Error;

use crate::cache::ByteLru;
use crate::logql::{
    AggOp, BinOp, CmpOp, LabelExpr, LineOp, LogQuery, MatchOp, Matcher, MetricExpr, RangeFn, Stage,
};
use crate::metrics::Metrics;
use crate::pipeline::{Labels, LinePipeline};

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Why a query has no result. A store fault fails the whole query: a
/// result missing objects the store could not serve must never look
/// complete. (Corrupt or missing objects are different: they are skipped
/// with a warning in [`Stats::warnings`].)
#[derive(Debug, Error)]
pub enum SearchError {
    #[error("the object store failed, so the result would be incomplete: {0}")]
    Storage(#[from] StorageError),
    #[error("the query time range exceeds the limit (query length: {hours}h, limit: {limit}h)")]
    TimeRange { hours: i64, limit: i64 },
    #[error(
        "query would scan more than {limit} bytes; narrow the time range or the stream selector"
    )]
    BytesScanned { limit: u64 },
    #[error("maximum number of series ({limit}) reached for a single query; add label matchers or aggregate with by/without")]
    Series { limit: usize },
}

impl SearchError {
    /// A label for the metric of rejected queries; `None` for faults.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            SearchError::Storage(_) => None,
            SearchError::TimeRange { .. } => Some("time_range"),
            SearchError::BytesScanned { .. } => Some("bytes_scanned"),
            SearchError::Series { .. } => Some("series"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Blocks fetched at once per query.
    pub fetch_concurrency: usize,
    /// Hour listings and index objects fetched at once per query. They are
    /// small, so the cost of a cold query over many hours is round trips,
    /// not bytes.
    pub index_fetch_concurrency: usize,
    /// Bytes of listings and indexes kept in memory.
    pub cache_bytes: usize,
    /// An hour older than this past its end is closed: its listing is cached.
    pub closed_after_secs: i64,
    /// How long a cached listing is trusted. A closed hour still gains
    /// blocks when the indexer lags, replays or backfills, so a listing is
    /// read again after this long; 0 never caches listings.
    pub listing_cache_secs: u64,
    /// Must equal the indexer's `parse.max_token_value_len`.
    pub max_token_value_len: usize,
    /// Longest time range a query may span.
    pub max_hours: i64,
    /// Uncompressed log bytes (the indexes' `raw_bytes`) one query may scan.
    pub max_bytes_scanned: u64,
    /// Series one metric query may return.
    pub max_series: usize,
    /// Read an hour's indexes from its index packs (`skidder pack`) where
    /// the listing vouches for them; off, every index is read on its own.
    pub read_packs: bool,
    /// Rule out blocks with an hour's sliced blooms (`skidder pack`)
    /// before reading its indexes, where the listing vouches for them.
    pub read_slices: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fetch_concurrency: 8,
            index_fetch_concurrency: 64,
            cache_bytes: 256 << 20,
            closed_after_secs: 120 + 600,
            listing_cache_secs: 60,
            max_token_value_len: DEFAULT_MAX_TOKEN_VALUE_LEN,
            max_hours: 31 * 24,
            max_bytes_scanned: 64 << 30,
            max_series: 5000,
            read_packs: true,
            read_slices: true,
        }
    }
}

/// `[start, end)` in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A decoded index as the cache holds it: its bloom filter is decoded
/// once, when read, not on every query that checks it (the index's raw
/// `bloom` bytes are left empty).
pub struct Indexed {
    index: BlockIndex,
    bloom: index::BloomFilter,
}

impl std::ops::Deref for Indexed {
    type Target = BlockIndex;
    fn deref(&self) -> &BlockIndex {
        &self.index
    }
}

/// A block that survived pruning, and which of its streams may match.
pub struct Candidate {
    pub idx: Arc<Indexed>,
    /// The block to read: the sibling of the listed index key, never the
    /// index's own `data_key`, so a query reads only under the prefixes it
    /// listed (its tenant's), whatever an index says.
    pub data_key: String,
    pub streams: Vec<usize>,
}

/// The uncompressed bytes the candidates' indexes declare, saturating: an
/// index's numbers are only as good as its writer, so they must not
/// overflow (a panic in debug builds; in release, a wrapped sum that slips
/// under `max_bytes_scanned`).
fn raw_bytes(cands: &[Candidate]) -> u64 {
    cands
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(c.idx.raw_bytes))
}

/// The data block next to an index key.
fn data_key_of(index_key: &str) -> String {
    let stem = index_key.strip_suffix(INDEX_SUFFIX).unwrap_or(index_key);
    format!("{stem}{DATA_SUFFIX}")
}

/// The index next to a data block key.
fn index_key_of(data_key: &str) -> String {
    let stem = data_key.strip_suffix(DATA_SUFFIX).unwrap_or(data_key);
    format!("{stem}{INDEX_SUFFIX}")
}

/// One matching line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ts: i64,
    pub labels: Arc<Labels>,
    pub line: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub blocks_listed: u64,
    pub blocks_scanned: u64,
    pub bytes_fetched: u64,
    pub bytes_scanned: u64,
    pub lines_scanned: u64,
    /// Objects skipped as corrupt or missing: the result is partial.
    pub warnings: Vec<String>,
    /// Uncompressed bytes of the blocks this query has committed to scan,
    /// checked against `max_bytes_scanned` before they are fetched.
    pub bytes_charged: u64,
}

/// What listing an hour found: its index keys with their listed sizes,
/// and its index packs.
struct HourListing {
    prefix: String,
    indexes: Vec<(String, u64)>,
    packs: Vec<String>,
    /// Listed bytes of the packs.
    pack_bytes: u64,
    /// The hour's sliced blooms, if listed, and their listed size.
    slices: Option<(String, u64)>,
}

/// Index packs read and decoded at once per query: one per core (at
/// least 2, at most 8), as decoding is CPU work. Measured on 2 cores, 4 at
/// once were slower than 2 (`docs/BENCHMARKS.md`).
fn packs_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// A query reads the packs of about `cache_bytes` worth of hours (at least
/// this much), prunes those hours, and drops the decoded indexes that are
/// not candidates before it reads the next hours' packs. What a query holds
/// is then bounded by that, its candidates and the cache; an hour whose
/// packs alone exceed it is still read whole.
const MIN_PACK_BYTES_PER_ROUND: u64 = 64 << 20;

/// Bytes a reader asks for first from sliced blooms: the head of a busy
/// hour's (about 60 bytes per block) in one GET.
const SLICES_HEAD_READ: u64 = 64 << 10;

/// What an hour's sliced blooms said.
enum Sliced {
    /// These index keys' blocks lack a token the query needs.
    RuledOut(Vec<String>),
    /// Nothing to rule out (every index is cached), or replaced or
    /// deleted since the listing.
    Unused,
    /// The object does not decode: nothing is ruled out.
    Unreadable(FormatError),
}

/// A fetched and verified data block, and the index to scan it with when
/// the one it was pruned with proved out of date.
type Fetched = Option<(Bytes, Option<Arc<Indexed>>)>;

/// A packed index and the bytes it is charged in the cache.
type Packed = (Arc<Indexed>, usize);

/// Packed indexes by key.
type PackedIndexes = HashMap<String, Packed>;

/// Splits listed hours, in order, into runs whose packs together stay
/// under `max` bytes (an hour with more gets a run of its own).
fn pack_rounds(hours: &[Arc<HourListing>], max: u64) -> Vec<&[Arc<HourListing>]> {
    pack::runs_by_size(hours, max, |h| h.pack_bytes)
}

/// What pruning checks a block against; `tokens` (per index version) is
/// `None` when the query is not pruned.
struct Scope<'a> {
    tenant: &'a str,
    range: TimeRange,
    query: &'a LogQuery,
    tokens: Option<&'a [Vec<u64>]>,
}

/// Decodes the members of a pack of the hour at `prefix` that `wanted`
/// lists with their exact size; a member that does not decode is left out
/// (fetched on its own, which reports it if the index object is corrupt
/// too). Keys come back in full.
fn decode_pack(
    bytes: &[u8],
    prefix: &str,
    wanted: &HashMap<String, u64>,
) -> Result<Vec<(String, Packed)>, FormatError> {
    let mut out = Vec::new();
    for m in pack::decode(bytes)? {
        if wanted.get(m.name) != Some(&(m.index.len() as u64)) {
            continue;
        }
        // The pack's CRC covered the member's bytes.
        if let Ok((index, bloom)) = BlockIndex::decode_with_bloom_verified(m.index) {
            let indexed = Indexed { index, bloom };
            let key = format!("{prefix}{}", m.name);
            out.push((key, (Arc::new(indexed), m.index.len() + 256)));
        }
    }
    Ok(out)
}

/// A cached listing, and when it was read.
struct Listing {
    read_at: std::time::Instant,
    hour: Arc<HourListing>,
}

/// A metric result: series labels to (step index, value).
pub type Matrix = BTreeMap<Labels, BTreeMap<usize, f64>>;

pub struct Engine {
    store: Arc<dyn ObjectStore>,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    listings: ByteLru<String, Listing>,
    indexes: ByteLru<String, Indexed>,
    /// Heads of sliced blooms, by key.
    heads: ByteLru<String, Head>,
    /// Checked chunks of sliced blooms, by key, group and chunk: a query
    /// run again (a dashboard refreshing) reads the same rows.
    chunks: ByteLru<(String, u32, u64), Vec<u8>>,
}

/// The labels a query sees for a stream: its own plus `__app__`.
pub fn stream_labels(idx: &BlockIndex, stream: usize) -> Labels {
    let mut l: Labels = idx
        .streams
        .get(stream)
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    l.push(("__app__".into(), idx.app.clone()));
    l.sort();
    l
}

/// Whether a stream's labels as a query sees them ([`stream_labels`])
/// satisfy every matcher, without building them: pruning asks this of
/// every stream of every block a query lists.
fn stream_matches(matchers: &[Matcher], tenant: &str, idx: &BlockIndex, stream: usize) -> bool {
    let own: &[(String, String)] = idx.streams.get(stream).map_or(&[], |s| &s.labels);
    matchers.iter().all(|m| {
        let v = if m.name == "__tenant__" {
            tenant
        } else {
            // The first of the sorted labels with this name: the least value.
            let app = (m.name == "__app__").then_some(idx.app.as_str());
            own.iter()
                .filter(|(k, _)| *k == m.name)
                .map(|(_, v)| v.as_str())
                .chain(app)
                .min()
                .unwrap_or("")
        };
        m.matches(v)
    })
}

fn looks_like_float(v: &str) -> bool {
    v.parse::<f64>().is_ok() && v.contains(['.', 'e', 'E'])
}

/// Token hashes every matching line's block must contain, for index
/// format `version` (see `common/src/format/tokens.rs`): line filters need
/// the needle's inner words; a field equality needs `key=value` (v1) or
/// every word of the value (v2).
pub fn required_tokens(q: &LogQuery, max_value_len: usize, version: u16) -> Vec<u64> {
    fn fields(e: &LabelExpr, max: usize, version: u16, out: &mut Vec<u64>, scratch: &mut Vec<u8>) {
        match e {
            LabelExpr::And(a, b) => {
                fields(a, max, version, out, scratch);
                fields(b, max, version, out, scratch);
            }
            LabelExpr::Str {
                name,
                op: CmpOp::Eq,
                value,
                ..
            } if !value.is_empty()
                && value.len() <= max
                && !name.starts_with("__")
                && !name.ends_with("_extracted")
                && !looks_like_float(value) =>
            {
                if version == 1 {
                    out.push(field_hash(name, value.as_bytes(), scratch));
                } else {
                    for_each_word_hash(value.as_bytes(), |h| out.push(h));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut fields_ok = true;
    for stage in &q.stages {
        match stage {
            Stage::Line {
                op: LineOp::Contains,
                needle,
                ..
            } => out.extend(inner_words(needle.as_bytes()).iter().map(|w| {
                if version == 1 {
                    token_hash_v1(w)
                } else {
                    token_hash(w)
                }
            })),
            Stage::Logfmt => fields_ok = false,
            Stage::Labels(e) if fields_ok => {
                fields(e, max_value_len, version, &mut out, &mut scratch)
            }
            // The line is rewritten: nothing after this is about stored bytes.
            Stage::LineFormat(_) => break,
            _ => {}
        }
    }
    out
}

impl Engine {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: EngineConfig, metrics: Arc<Metrics>) -> Self {
        Engine {
            listings: ByteLru::new(cfg.cache_bytes / 4),
            heads: ByteLru::new(cfg.cache_bytes / 32),
            chunks: ByteLru::new(cfg.cache_bytes / 32),
            indexes: ByteLru::new(cfg.cache_bytes - cfg.cache_bytes / 4 - cfg.cache_bytes / 16),
            store,
            cfg,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Counts a store fault by operation and kind, and passes it on.
    fn store_fault(&self, op: &str, e: StorageError) -> SearchError {
        let kind = format!("{:?}", e.kind).to_ascii_lowercase();
        self.metrics
            .store_errors
            .with_label_values(&[op, &kind])
            .inc();
        tracing::warn!(op, key = %e.key, error = %e, "object store failed during a query");
        SearchError::Storage(e)
    }

    /// Charges `bytes` more scanning to a query, or refuses before any of
    /// it is fetched.
    fn charge(&self, stats: &mut Stats, bytes: u64) -> Result<(), SearchError> {
        let total = stats.bytes_charged.saturating_add(bytes);
        if total > self.cfg.max_bytes_scanned {
            return Err(SearchError::BytesScanned {
                limit: self.cfg.max_bytes_scanned,
            });
        }
        stats.bytes_charged = total;
        Ok(())
    }

    /// The index keys and packs under one hour prefix; cached, once the
    /// hour is closed, for `listing_cache_secs`.
    async fn hour_listing(&self, tenant: &str, hour: i64) -> Result<Arc<HourListing>, SearchError> {
        let prefix = hour_prefix(tenant, hour);
        let ttl = std::time::Duration::from_secs(self.cfg.listing_cache_secs);
        if let Some(v) = self.listings.get(&prefix) {
            if v.read_at.elapsed() < ttl {
                self.metrics
                    .cache
                    .with_label_values(&["listing", "hit"])
                    .inc();
                return Ok(v.hour.clone());
            }
        }
        self.metrics
            .cache
            .with_label_values(&["listing", "miss"])
            .inc();
        self.metrics.hours_listed.inc();
        let read_at = std::time::Instant::now();
        let (mut indexes, mut packs, mut pack_bytes) = (Vec::new(), Vec::new(), 0u64);
        let mut slices = None;
        for m in list_all(&*self.store, &prefix)
            .await
            .map_err(|e| self.store_fault("list", e))?
        {
            if !m.key.starts_with(&prefix) {
                continue;
            }
            if m.key.ends_with(INDEX_SUFFIX) {
                indexes.push((m.key, m.size));
            } else if PackName::parse(&prefix, &m.key).is_some() {
                pack_bytes = pack_bytes.saturating_add(m.size);
                packs.push(m.key);
            } else if parse_slices_key(&prefix, &m.key).is_some() {
                slices = Some((m.key, m.size));
            }
        }
        let bytes = indexes.iter().map(|(k, _)| k.len() + 32).sum::<usize>()
            + packs.iter().map(|k| k.len() + 24).sum::<usize>()
            + slices.as_ref().map_or(0, |(k, _)| k.len() + 32)
            + 2 * prefix.len();
        let hour_listing = Arc::new(HourListing {
            prefix: prefix.clone(),
            indexes,
            packs,
            pack_bytes,
            slices,
        });
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let closed = (hour + 1) * NS_PER_HOUR + self.cfg.closed_after_secs * 1_000_000_000 < now;
        if closed && !ttl.is_zero() {
            let listing = Listing {
                read_at,
                hour: hour_listing.clone(),
            };
            // Listings run concurrently and finish in any order: one that
            // began before the cached one would take back blocks a query
            // has already counted.
            let newer = |old: &Listing| old.read_at > read_at;
            self.listings
                .put_unless(prefix, Arc::new(listing), bytes, newer);
        }
        Ok(hour_listing)
    }

    /// Reads and decodes the packs of `hours`, a few at a time and off the
    /// async threads (a pack is megabytes of indexes). It keeps the packed
    /// indexes each hour's listing vouches for (the same key, listed with
    /// the same size) and the cache lacks; every other listed index is
    /// then fetched on its own, as if there were no pack, so an unreadable
    /// pack only costs GETs.
    /// Indexes in `ruled_out` are not wanted; an hour whose sliced blooms
    /// left few enough wanted for one wave of GETs reads them on their own.
    async fn read_packs(
        &self,
        hours: &[Arc<HourListing>],
        ruled_out: &HashSet<String>,
    ) -> Result<PackedIndexes, SearchError> {
        let mut jobs = Vec::new();
        let packed = hours.iter().filter(|h| !h.packs.is_empty());
        for hour in packed.filter(|_| self.cfg.read_packs) {
            let wanted: HashMap<String, u64> = self
                .uncached(hour)
                .filter(|(key, _, _)| !ruled_out.contains(*key))
                .map(|(_, name, size)| (name.to_owned(), size))
                .collect();
            let sliced = hour.indexes.iter().any(|(k, _)| ruled_out.contains(k));
            if wanted.is_empty()
                || (sliced && wanted.len() <= self.cfg.index_fetch_concurrency.max(1))
            {
                continue;
            }
            let wanted = Arc::new(wanted);
            for key in &hour.packs {
                jobs.push((key.clone(), hour.prefix.clone(), wanted.clone()));
            }
        }
        // Owned items: borrowed ones trip the `Send` check of the handlers'
        // futures (see `fetch_many`).
        let mut decoded = stream::iter(jobs)
            .map(|(key, prefix, wanted)| async move {
                let bytes = self.store.get(&key).await?;
                self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
                let decoded =
                    tokio::task::spawn_blocking(move || decode_pack(&bytes, &prefix, &wanted))
                        .await;
                Ok::<_, StorageError>((key, decoded))
            })
            .buffer_unordered(packs_in_flight());
        let mut out = HashMap::new();
        while let Some(r) = decoded.next().await {
            let (key, decoded) = match r {
                Ok(d) => d,
                // Replaced or deleted since the listing: fetch one by one.
                Err(e) if e.kind == StorageErrorKind::NotFound => continue,
                Err(e) => return Err(self.store_fault("get_pack", e)),
            };
            let error = match decoded {
                Ok(Ok(members)) => {
                    self.metrics.packs_read.with_label_values(&["ok"]).inc();
                    out.extend(members);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            self.unreadable(&self.metrics.packs_read, &key, &error, "an index pack");
        }
        Ok(out)
    }

    /// Counts and logs a shortcut object (`what`) that does not decode; the
    /// query goes on without it.
    fn unreadable(
        &self,
        counter: &prometheus::IntCounterVec,
        key: &str,
        error: &dyn std::fmt::Display,
        what: &str,
    ) {
        counter.with_label_values(&["unreadable"]).inc();
        tracing::warn!(%key, %error, "ignoring unreadable {what}");
    }

    /// An hour's listed indexes that are not cached, as (key, name
    /// relative to the hour prefix, listed size).
    fn uncached<'a>(
        &'a self,
        hour: &'a HourListing,
    ) -> impl Iterator<Item = (&'a str, &'a str, u64)> + 'a {
        hour.indexes
            .iter()
            .filter(|(k, _)| !self.indexes.contains(k))
            .map(|(k, size)| (k.as_str(), k.strip_prefix(&hour.prefix).unwrap_or(k), *size))
    }

    /// The index keys of `hours` whose blocks each hour's sliced blooms
    /// rule out for `tokens` (per index version). Only uncached indexes
    /// the slices vouch for (the listed name and size) are probed; sliced
    /// blooms that are gone or do not decode rule nothing out.
    async fn read_slices(
        &self,
        hours: &[Arc<HourListing>],
        tokens: &Arc<Vec<Vec<u64>>>,
    ) -> Result<HashSet<String>, SearchError> {
        let mut out = HashSet::new();
        if !self.cfg.read_slices || tokens.iter().all(Vec::is_empty) {
            return Ok(out);
        }
        // Owned items: borrowed ones trip the `Send` check of the handlers'
        // futures (see `fetch_many`).
        let jobs: Vec<_> = hours
            .iter()
            .filter_map(|h| Some((h.clone(), h.slices.clone()?, tokens.clone())))
            .collect();
        let mut sliced = stream::iter(jobs)
            .map(|(hour, (key, size), tokens)| async move {
                let r = self.hour_slices(&hour, &key, size, &tokens).await;
                (key, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1));
        while let Some((key, r)) = sliced.next().await {
            match r? {
                Sliced::RuledOut(keys) => {
                    self.metrics.slices_read.with_label_values(&["ok"]).inc();
                    out.extend(keys);
                }
                Sliced::Unused => {}
                Sliced::Unreadable(error) => {
                    self.unreadable(&self.metrics.slices_read, &key, &error, "sliced blooms")
                }
            }
        }
        Ok(out)
    }

    /// One hour of [`read_slices`](Self::read_slices).
    async fn hour_slices(
        &self,
        hour: &HourListing,
        key: &str,
        size: u64,
        tokens: &[Vec<u64>],
    ) -> Result<Sliced, SearchError> {
        let wanted: HashMap<&str, u64> = self
            .uncached(hour)
            .map(|(_, name, size)| (name, size))
            .collect();
        if wanted.is_empty() {
            return Ok(Sliced::Unused);
        }
        let head = match self.slices_head(key, size).await? {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Sliced::Unused),
            Err(e) => return Ok(Sliced::Unreadable(e)),
        };
        let vouched = head
            .blocks
            .iter()
            .filter(|b| wanted.get(b.name.as_str()) == Some(&b.index_size));
        let probe = match head.probe(vouched, tokens) {
            Ok(p) => p,
            Err(e) => return Ok(Sliced::Unreadable(e)),
        };
        let mut chunks = Chunks::new();
        let mut missing = Vec::new();
        for (at, range) in probe.chunks() {
            match self.chunks.get(&(key.to_owned(), at.0, at.1)) {
                Some(rows) => {
                    chunks.insert(at, rows);
                }
                None => missing.push((at, range)),
            }
        }
        let fetched: Vec<_> = stream::iter(missing)
            .map(|(at, range)| async move {
                let r = self.store.get_range(key, range.clone()).await;
                (at, range, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1))
            .collect()
            .await;
        for (at, range, r) in fetched {
            let bytes = match r {
                Ok(b) => b,
                Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(Sliced::Unused),
                Err(e) => return Err(self.store_fault("get_slices", e)),
            };
            self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
            let rows = match slices::chunk_rows(&bytes, &range) {
                Ok(rows) => Arc::new(rows),
                Err(e) => return Ok(Sliced::Unreadable(e)),
            };
            let len = rows.len() + key.len() + 64;
            self.chunks
                .put((key.to_owned(), at.0, at.1), rows.clone(), len);
            chunks.insert(at, rows);
        }
        let keys = probe
            .ruled_out(&chunks)
            .iter()
            .map(|b| format!("{}{}", hour.prefix, b.name))
            .collect();
        Ok(Sliced::RuledOut(keys))
    }

    /// The head of the sliced blooms at `key`, listed with `size` bytes:
    /// cached, or read with one ranged GET (two for a head over
    /// [`SLICES_HEAD_READ`]). `Ok(None)` if the object is gone.
    async fn slices_head(
        &self,
        key: &str,
        size: u64,
    ) -> Result<Result<Option<Arc<Head>>, FormatError>, SearchError> {
        if let Some(h) = self.heads.get(&key.to_owned()) {
            return Ok(Ok(Some(h)));
        }
        let get = |end: u64| async move {
            match self.store.get_range(key, 0..end).await {
                Ok(b) => {
                    self.metrics.bytes_fetched.inc_by(b.len() as u64);
                    Ok(Some(b))
                }
                Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.store_fault("get_slices", e)),
            }
        };
        let Some(mut bytes) = get(size.min(SLICES_HEAD_READ)).await? else {
            return Ok(Ok(None));
        };
        let len = match slices::head_len(&bytes) {
            Ok(len) => len as u64,
            Err(e) => return Ok(Err(e)),
        };
        if len > bytes.len() as u64 && len <= size {
            let Some(b) = get(len).await? else {
                return Ok(Ok(None));
            };
            bytes = b;
        }
        let head = match Head::decode(&bytes) {
            Ok(h) if h.total_len == size => h,
            Ok(h) => {
                return Ok(Err(FormatError::Corrupt {
                    offset: 0,
                    reason: format!("{} bytes long, listed with {size}", h.total_len),
                }))
            }
            Err(e) => return Ok(Err(e)),
        };
        let head = Arc::new(head);
        self.heads
            .put(key.to_owned(), head.clone(), len as usize * 2);
        Ok(Ok(Some(head)))
    }

    /// A decoded index, from the cache, from this round's packs, or from
    /// the store.
    async fn index(
        &self,
        key: &str,
        packed: &PackedIndexes,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Arc<Indexed>>, SearchError> {
        if let Some(i) = self.indexes.get(&key.to_owned()) {
            self.metrics
                .cache
                .with_label_values(&["index", "hit"])
                .inc();
            return Ok(Some(i));
        }
        if let Some((i, bytes)) = packed.get(key) {
            self.metrics
                .cache
                .with_label_values(&["index", "pack"])
                .inc();
            self.indexes.put(key.to_owned(), i.clone(), *bytes);
            return Ok(Some(i.clone()));
        }
        self.metrics
            .cache
            .with_label_values(&["index", "miss"])
            .inc();
        self.fetch_index(key, warnings).await
    }

    /// Reads and decodes an index object, and caches it. A corrupt or
    /// vanished one is a warning (an hour's listing may be cached past
    /// retention); a store fault is an error.
    async fn fetch_index(
        &self,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Arc<Indexed>>, SearchError> {
        let bytes = match self.store.get(key).await {
            Ok(b) => b,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                self.metrics.corrupt_objects.inc();
                warnings.push(format!("skipped listed index {key}: it no longer exists"));
                return Ok(None);
            }
            Err(e) => return Err(self.store_fault("get_index", e)),
        };
        self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
        match BlockIndex::decode_with_bloom(&bytes) {
            Ok((index, bloom)) => {
                let idx = Arc::new(Indexed { index, bloom });
                self.indexes
                    .put(key.to_owned(), idx.clone(), bytes.len() + 256);
                Ok(Some(idx))
            }
            Err(e) => {
                self.metrics.corrupt_objects.inc();
                tracing::warn!(key, error = %e, "skipping corrupt index");
                warnings.push(format!("skipped corrupt index {key}: {e}"));
                Ok(None)
            }
        }
    }

    /// Lists, reads and prunes the indexes for a query.
    pub async fn candidates(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
        prune: bool,
        stats: &mut Stats,
    ) -> Result<Vec<Candidate>, SearchError> {
        if range.end <= range.start {
            return Ok(Vec::new());
        }
        let (first, last) = (hour_of(range.start), hour_of(range.end - 1));
        if last - first + 1 > self.cfg.max_hours {
            return Err(SearchError::TimeRange {
                hours: last - first + 1,
                limit: self.cfg.max_hours,
            });
        }
        let listings: Vec<_> = stream::iter(first..=last)
            .map(|h| self.hour_listing(tenant, h))
            .buffered(self.cfg.index_fetch_concurrency.max(1))
            .collect()
            .await;
        let listings = listings.into_iter().collect::<Result<Vec<_>, _>>()?;
        let listed: usize = listings.iter().map(|l| l.indexes.len()).sum();
        stats.blocks_listed += listed as u64;
        self.metrics.blocks_listed.inc_by(listed as u64);
        // One token list per index version the store may hold.
        let tokens: Vec<Vec<u64>> = if prune {
            (0..=index::MAX_VERSION)
                .map(|v| required_tokens(q, self.cfg.max_token_value_len, v))
                .collect()
        } else {
            Vec::new()
        };
        let scope = Scope {
            tenant,
            range,
            query: q,
            tokens: prune.then_some(tokens.as_slice()),
        };
        let mut out = Vec::new();
        let round_bytes = (self.cfg.cache_bytes as u64).max(MIN_PACK_BYTES_PER_ROUND);
        let probe_tokens = Arc::new(tokens.clone());
        for round in pack_rounds(&listings, round_bytes) {
            let ruled_out = match scope.tokens {
                Some(_) => self.read_slices(round, &probe_tokens).await?,
                None => HashSet::new(),
            };
            self.metrics
                .blocks_pruned
                .with_label_values(&["bloom"])
                .inc_by(ruled_out.len() as u64);
            let packed = self.read_packs(round, &ruled_out).await?;
            let keys: Vec<String> = round
                .iter()
                .flat_map(|l| l.indexes.iter().map(|(k, _)| k.clone()))
                .filter(|k| !ruled_out.contains(k))
                .collect();
            let packed = &packed;
            // Stops at the first store fault; dropping the stream cancels the rest.
            let mut fetched = stream::iter(keys)
                .map(|k| async move {
                    let mut w = Vec::new();
                    let r = self.index(&k, packed, &mut w).await;
                    (k, r, w)
                })
                .buffered(self.cfg.index_fetch_concurrency.max(1));
            while let Some((key, r, w)) = fetched.next().await {
                stats.warnings.extend(w);
                let Some(idx) = r? else { continue };
                out.extend(self.prune(idx, &key, &scope));
            }
        }
        Ok(out)
    }

    /// The candidate a listed block makes, or `None` if its index rules it
    /// out: by time, then by bloom filter, then by labels.
    fn prune(&self, idx: Arc<Indexed>, key: &str, scope: &Scope<'_>) -> Option<Candidate> {
        let data_key = data_key_of(key);
        let Some(tokens) = scope.tokens else {
            let all = (0..idx.streams.len()).collect();
            return Some(Candidate {
                idx,
                data_key,
                streams: all,
            });
        };
        let range = scope.range;
        if idx.max_time_ns < range.start || idx.min_time_ns >= range.end {
            self.metrics
                .blocks_pruned
                .with_label_values(&["time"])
                .inc();
            return None;
        }
        // The bloom before the labels: a needle's few probes rule out
        // nearly every block, before any stream's labels are looked at.
        let needed = tokens
            .get(idx.version as usize)
            .map_or(&[][..], Vec::as_slice);
        if !needed.iter().all(|&t| idx.bloom.may_contain(t)) {
            self.metrics
                .blocks_pruned
                .with_label_values(&["bloom"])
                .inc();
            return None;
        }
        let streams: Vec<usize> = (0..idx.streams.len())
            .filter(|&s| {
                let st = &idx.streams[s];
                st.max_time_ns >= range.start
                    && st.min_time_ns < range.end
                    && stream_matches(&scope.query.matchers, scope.tenant, &idx, s)
            })
            .collect();
        if streams.is_empty() {
            self.metrics
                .blocks_pruned
                .with_label_values(&["labels"])
                .inc();
            return None;
        }
        Some(Candidate {
            idx,
            data_key,
            streams,
        })
    }

    /// Fetches and verifies a data block. `None` (with a warning) if it is
    /// missing or corrupt; a store fault is an error. A block that fails
    /// its index's checksum may have been rewritten after the index was
    /// read (a packed copy, or a cached one, of an index a newer writer
    /// replaced under the same name): the index object is read again, and
    /// if the block passes it, that index comes back too, to scan with.
    async fn fetch(
        &self,
        idx: &Indexed,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Fetched, SearchError> {
        let data = match self.store.get(key).await {
            Ok(d) => d,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                self.metrics.corrupt_objects.inc();
                warnings.push(format!("index points to a missing block {key}"));
                return Ok(None);
            }
            Err(e) => return Err(self.store_fault("get_block", e)),
        };
        self.metrics.blocks_fetched.inc();
        self.metrics.bytes_fetched.inc_by(data.len() as u64);
        let Err(e) = idx.verify_data(&data) else {
            return Ok(Some((data, None)));
        };
        if let Some(fresh) = self.fetch_index(&index_key_of(key), warnings).await? {
            if fresh.verify_data(&data).is_ok() {
                self.metrics.stale_indexes.inc();
                tracing::info!(key, "an index read earlier was out of date; read it again");
                return Ok(Some((data, Some(fresh))));
            }
        }
        self.metrics.corrupt_objects.inc();
        tracing::warn!(key, error = %e, "skipping corrupt block");
        warnings.push(format!("skipped corrupt block {key}: {e}"));
        Ok(None)
    }

    /// Fetches the candidates' blocks, a few at a time, in order.
    async fn fetch_many(
        &self,
        cands: &[Candidate],
    ) -> Vec<(Result<Fetched, SearchError>, Vec<String>)> {
        // Owned items: a stream over borrowed candidates trips the
        // compiler's `Send` check for the handlers' futures.
        let items: Vec<(Arc<Indexed>, String)> = cands
            .iter()
            .map(|c| (c.idx.clone(), c.data_key.clone()))
            .collect();
        stream::iter(items)
            .map(|(idx, key)| async move {
                let mut w = Vec::new();
                let r = self.fetch(&idx, &key, &mut w).await;
                (r, w)
            })
            .buffered(self.cfg.fetch_concurrency.max(1))
            .collect()
            .await
    }

    /// Fetches a chunk of candidates' blocks and scans each; missing or
    /// corrupt blocks become warnings. The caller has charged the chunk to
    /// the query's byte budget.
    async fn scan_chunk(
        &self,
        chunk: &[Candidate],
        scan: &Scan<'_>,
        stats: &mut Stats,
        f: &mut OnMatch<'_>,
    ) -> Result<(), SearchError> {
        let fetched = self.fetch_many(chunk).await;
        for (c, (data, w)) in chunk.iter().zip(fetched) {
            stats.warnings.extend(w);
            let Some((data, fresh)) = data? else { continue };
            stats.bytes_fetched += data.len() as u64;
            match fresh {
                // Pruned on an out-of-date index: scan every stream, which
                // re-checks labels and times record by record.
                Some(idx) => {
                    let c = Candidate {
                        streams: (0..idx.streams.len()).collect(),
                        idx,
                        data_key: c.data_key.clone(),
                    };
                    self.scan(&c, &data, scan, stats, f);
                }
                None => self.scan(c, &data, scan, stats, f),
            }
        }
        Ok(())
    }

    /// Calls `f` for every record of the candidate's selected streams that
    /// falls in the range, matches the selector and passes the pipeline.
    fn scan(
        &self,
        c: &Candidate,
        data: &[u8],
        s: &Scan<'_>,
        stats: &mut Stats,
        f: &mut OnMatch<'_>,
    ) {
        let (tenant, range, q, pipeline) = (s.tenant, s.range, s.query, s.pipeline);
        let idx = &c.idx;
        let mut selected = vec![None; idx.streams.len()];
        for &s in &c.streams {
            if stream_matches(&q.matchers, tenant, idx, s) {
                selected[s] = Some(Arc::new(stream_labels(idx, s)));
            }
        }
        let mut reader = match SeqFileReader::new(data) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.corrupt_objects.inc();
                stats
                    .warnings
                    .push(format!("skipped unreadable block {}: {e}", c.data_key));
                return;
            }
        };
        self.metrics.blocks_scanned.inc();
        stats.blocks_scanned += 1;
        let mut block = RecordBlock::default();
        let mut extracted = Vec::new();
        let bytes_before = stats.bytes_scanned;
        let (mut n, mut stream) = (0usize, 0usize);
        loop {
            match reader.next_block(&mut block) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.metrics.corrupt_objects.inc();
                    stats.warnings.push(format!(
                        "block {} is corrupt past record {n}: {e}",
                        c.data_key
                    ));
                    break;
                }
            }
            for (ts, line) in block.records() {
                while stream + 1 < idx.streams.len()
                    && n >= (idx.streams[stream].first_record + idx.streams[stream].record_count)
                        as usize
                {
                    stream += 1;
                }
                n += 1;
                stats.lines_scanned += 1;
                stats.bytes_scanned += line.len() as u64;
                let Some(labels) = selected.get(stream).and_then(Option::as_ref) else {
                    continue;
                };
                if ts < range.start || ts >= range.end {
                    continue;
                }
                let Ok(line) = std::str::from_utf8(line) else {
                    continue;
                };
                if let Some(out) = pipeline.eval(line, labels, &mut extracted) {
                    f(ts, labels, &extracted, &out);
                }
            }
        }
        self.metrics
            .bytes_decompressed
            .inc_by(stats.bytes_scanned - bytes_before);
    }

    /// A log query: the first `limit` matching lines in `direction` order.
    pub async fn logs(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
        limit: usize,
        direction: Direction,
        prune: bool,
    ) -> Result<(Vec<Entry>, Stats), SearchError> {
        let mut stats = Stats::default();
        let mut cands = self.candidates(tenant, range, q, prune, &mut stats).await?;
        // Most promising blocks first, so the limit is certain early.
        match direction {
            Direction::Backward => cands.sort_by_key(|c| std::cmp::Reverse(c.idx.max_time_ns)),
            Direction::Forward => cands.sort_by_key(|c| c.idx.min_time_ns),
        }
        let pipeline = LinePipeline::new(q);
        let mut entries: Vec<Entry> = Vec::new();
        let mut i = 0;
        while i < cands.len() {
            // Stop once no remaining block can beat the limit-th line.
            if prune && entries.len() >= limit {
                if let Some(worst) = entries.last() {
                    let c = &cands[i].idx;
                    let hopeless = match direction {
                        Direction::Backward => c.max_time_ns < worst.ts,
                        Direction::Forward => c.min_time_ns > worst.ts,
                    };
                    if hopeless {
                        break;
                    }
                }
            }
            let end = (i + self.cfg.fetch_concurrency.max(1)).min(cands.len());
            let batch = &cands[i..end];
            // Charged batch by batch: a log query that stops early at its
            // limit is only refused if it would really scan too much.
            self.charge(&mut stats, raw_bytes(batch))?;
            let scan = Scan {
                tenant,
                range,
                query: q,
                pipeline: &pipeline,
            };
            self.scan_chunk(
                batch,
                &scan,
                &mut stats,
                &mut |ts, labels, extracted, line| {
                    let labels = pipeline.result_labels(labels, extracted);
                    entries.push(Entry {
                        ts,
                        labels,
                        line: line.to_owned(),
                    });
                },
            )
            .await?;
            sort_entries(&mut entries, direction);
            entries.truncate(limit);
            i = end;
        }
        self.metrics.lines_matched.inc_by(entries.len() as u64);
        Ok((entries, stats))
    }

    /// A metric query evaluated at `start + k * step` for every k with the
    /// time at or before `end`.
    pub async fn metric(
        &self,
        tenant: &str,
        expr: &MetricExpr,
        start: i64,
        end: i64,
        step: i64,
        prune: bool,
    ) -> Result<(Matrix, Stats), SearchError> {
        let steps = (end.saturating_sub(start) / step.max(1)).max(0) as usize + 1;
        let mut stats = Stats::default();
        let grid = Grid { start, step, steps };
        let cap = self.cfg.max_series;
        let m = self
            .eval_metric(tenant, expr, grid, prune, Some(cap), &mut stats)
            .await?;
        if m.values().filter(|p| !p.is_empty()).count() > cap {
            return Err(SearchError::Series { limit: cap });
        }
        Ok((m, stats))
    }

    /// `cap`, when set, bounds the series of this sub-expression's result,
    /// so a range over too many series stops early. Under an aggregation
    /// it is `None`: the inner series may be many when the result is few,
    /// and only the final result is limited, as in Loki.
    async fn eval_metric(
        &self,
        tenant: &str,
        expr: &MetricExpr,
        grid: Grid,
        prune: bool,
        cap: Option<usize>,
        stats: &mut Stats,
    ) -> Result<Matrix, SearchError> {
        let Grid { start, step, steps } = grid;
        match expr {
            MetricExpr::Const(v) => {
                let mut m = Matrix::new();
                m.insert(Vec::new(), (0..steps).map(|k| (k, *v)).collect());
                Ok(m)
            }
            MetricExpr::Binary { op, lhs, rhs } => {
                let (l, r) = (
                    Box::pin(self.eval_metric(tenant, lhs, grid, prune, cap, stats)).await?,
                    Box::pin(self.eval_metric(tenant, rhs, grid, prune, cap, stats)).await?,
                );
                Ok(binary(
                    *op,
                    l,
                    r,
                    matches!(**lhs, MetricExpr::Const(_)),
                    matches!(**rhs, MetricExpr::Const(_)),
                ))
            }
            MetricExpr::Agg {
                op,
                grouping,
                inner,
            } => {
                let m = Box::pin(self.eval_metric(tenant, inner, grid, prune, None, stats)).await?;
                Ok(aggregate(*op, grouping.as_ref(), m))
            }
            MetricExpr::Range {
                func,
                query,
                range_ns,
            } => {
                let last_t = start.saturating_add((steps as i64 - 1).saturating_mul(step));
                let range = TimeRange {
                    start: start.saturating_sub(*range_ns),
                    end: last_t.saturating_add(1),
                };
                let cands = self.candidates(tenant, range, query, prune, stats).await?;
                // A metric query scans every candidate: refuse before fetching any.
                self.charge(stats, raw_bytes(&cands))?;
                let pipeline = LinePipeline::new(query);
                let mut sums: HashMap<Arc<Labels>, BTreeMap<usize, f64>> = HashMap::new();
                let mut over_cap = false;
                let scan = Scan {
                    tenant,
                    range,
                    query,
                    pipeline: &pipeline,
                };
                let (start_w, step_w, range_w) = (start as i128, step as i128, *range_ns as i128);
                for chunk in cands.chunks(self.cfg.fetch_concurrency.max(1)) {
                    self.scan_chunk(chunk, &scan, stats, &mut |ts, labels, extracted, line| {
                        // Windows (t - range, t] that hold ts: t in [ts, ts + range).
                        // Wide arithmetic: times and steps come from the request.
                        let ts = ts as i128;
                        let lo = (ts - start_w + step_w - 1).div_euclid(step_w).max(0);
                        let hi = (ts + range_w - 1 - start_w)
                            .div_euclid(step_w)
                            .min(steps as i128 - 1);
                        if lo > hi {
                            return;
                        }
                        let value = match func {
                            RangeFn::CountOverTime | RangeFn::Rate => 1.0,
                            RangeFn::BytesOverTime | RangeFn::BytesRate => line.len() as f64,
                        };
                        let key = pipeline.result_labels(labels, extracted);
                        if cap.is_some_and(|c| sums.len() >= c) && !sums.contains_key(&key) {
                            over_cap = true;
                            return;
                        }
                        let series = sums.entry(key).or_default();
                        for k in lo..=hi {
                            *series.entry(k as usize).or_default() += value;
                        }
                    })
                    .await?;
                    if let (true, Some(limit)) = (over_cap, cap) {
                        return Err(SearchError::Series { limit });
                    }
                }
                let secs = *range_ns as f64 / 1e9;
                let per_sec = matches!(func, RangeFn::Rate | RangeFn::BytesRate);
                Ok(sums
                    .into_iter()
                    .map(|(k, mut v)| {
                        if per_sec {
                            v.values_mut().for_each(|x| *x /= secs);
                        }
                        ((*k).clone(), v)
                    })
                    .collect())
            }
        }
    }

    /// Distinct stream label sets (with `__app__`) in the range that match.
    pub async fn series(
        &self,
        tenant: &str,
        range: TimeRange,
        matchers: &[Vec<Matcher>],
    ) -> Result<(Vec<Labels>, Stats), SearchError> {
        let mut stats = Stats::default();
        let any = LogQuery {
            matchers: vec![Matcher {
                name: "__app__".into(),
                op: MatchOp::Re,
                value: ".*".into(),
                re: regex::Regex::new("^(?:.*)$").ok(),
            }],
            stages: Vec::new(),
        };
        let cands = self
            .candidates(tenant, range, &any, true, &mut stats)
            .await?;
        let mut out: Vec<Labels> = Vec::new();
        for c in &cands {
            for &s in &c.streams {
                if matchers.is_empty()
                    || matchers
                        .iter()
                        .any(|ms| stream_matches(ms, tenant, &c.idx, s))
                {
                    out.push(stream_labels(&c.idx, s));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok((out, stats))
    }

    /// Blocks, records and raw bytes of the streams a selector picks.
    pub async fn index_stats(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
    ) -> Result<(IndexStats, Stats), SearchError> {
        let mut stats = Stats::default();
        let cands = self.candidates(tenant, range, q, true, &mut stats).await?;
        let mut streams = std::collections::HashSet::new();
        let (mut entries, mut bytes) = (0u64, 0u64);
        for c in &cands {
            let total: u64 = c
                .idx
                .streams
                .iter()
                .map(|s| s.record_count as u64)
                .sum::<u64>()
                .max(1);
            for &s in &c.streams {
                let n = c.idx.streams[s].record_count as u64;
                entries += n;
                // n <= total, so the share fits; wide, as raw_bytes is
                // whatever an index says.
                let share = c.idx.raw_bytes as u128 * n as u128 / total as u128;
                bytes = bytes.saturating_add(share as u64);
                streams.insert(stream_labels(&c.idx, s));
            }
        }
        let out = IndexStats {
            streams: streams.len() as u64,
            chunks: cands.len() as u64,
            entries,
            bytes,
        };
        Ok((out, stats))
    }
}

/// What `index/stats` reports: streams, blocks, records and raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// What a query scans with: the tenant, the time range, the query and its
/// compiled pipeline.
struct Scan<'a> {
    tenant: &'a str,
    range: TimeRange,
    query: &'a LogQuery,
    pipeline: &'a LinePipeline,
}

/// Called for each match: time, stream labels, extracted labels, line.
type OnMatch<'f> = dyn FnMut(i64, &Arc<Labels>, &Labels, &str) + Send + 'f;

/// Evaluation times of a metric query: `start + k * step`, `k < steps`.
#[derive(Debug, Clone, Copy)]
struct Grid {
    start: i64,
    step: i64,
    steps: usize,
}

/// Running aggregates of one group at one step.
#[derive(Debug, Clone, Copy)]
struct Moments {
    sum: f64,
    n: f64,
    min: f64,
    max: f64,
}

/// Orders entries by time in `direction`; ties by labels then line, so
/// every evaluation gives the same order.
pub fn sort_entries(entries: &mut [Entry], direction: Direction) {
    entries.sort_by(|a, b| {
        let o =
            a.ts.cmp(&b.ts)
                .then_with(|| a.labels.cmp(&b.labels))
                .then_with(|| a.line.cmp(&b.line));
        match direction {
            Direction::Forward => o,
            Direction::Backward => o.reverse(),
        }
    });
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
    }
}

fn binary(op: BinOp, l: Matrix, r: Matrix, l_const: bool, r_const: bool) -> Matrix {
    let constant = |m: &Matrix| m.values().next().cloned().unwrap_or_default();
    if l_const && r_const {
        let (a, b) = (constant(&l), constant(&r));
        let mut m = Matrix::new();
        m.insert(
            Vec::new(),
            a.iter()
                .map(|(k, v)| (*k, apply(op, *v, b.get(k).copied().unwrap_or(f64::NAN))))
                .collect(),
        );
        return m;
    }
    let (series, c, const_left) = if l_const {
        (r, constant(&l), true)
    } else {
        (l, constant(&r), false)
    };
    series
        .into_iter()
        .map(|(labels, pts)| {
            let pts = pts
                .into_iter()
                .map(|(k, v)| {
                    let cv = c.get(&k).copied().unwrap_or(f64::NAN);
                    (
                        k,
                        if const_left {
                            apply(op, cv, v)
                        } else {
                            apply(op, v, cv)
                        },
                    )
                })
                .collect();
            (labels, pts)
        })
        .collect()
}

fn group_key(labels: &Labels, g: Option<&crate::logql::Grouping>) -> Labels {
    match g {
        None => Vec::new(),
        Some(g) if g.without => labels
            .iter()
            .filter(|(k, _)| !g.labels.contains(k))
            .cloned()
            .collect(),
        Some(g) => labels
            .iter()
            .filter(|(k, _)| g.labels.contains(k))
            .cloned()
            .collect(),
    }
}

fn aggregate(op: AggOp, g: Option<&crate::logql::Grouping>, m: Matrix) -> Matrix {
    if let AggOp::Topk(k) = op {
        // Per step, keep the k largest series of each group.
        let mut out = Matrix::new();
        let steps: std::collections::BTreeSet<usize> =
            m.values().flat_map(|p| p.keys().copied()).collect();
        for step in steps {
            let mut groups: BTreeMap<Labels, Vec<(&Labels, f64)>> = BTreeMap::new();
            for (labels, pts) in &m {
                if let Some(v) = pts.get(&step) {
                    groups
                        .entry(group_key(labels, g))
                        .or_default()
                        .push((labels, *v));
                }
            }
            for (_, mut members) in groups {
                members.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                for (labels, v) in members.into_iter().take(k) {
                    out.entry(labels.clone()).or_default().insert(step, v);
                }
            }
        }
        return out;
    }
    let mut acc: BTreeMap<Labels, BTreeMap<usize, Moments>> = BTreeMap::new();
    for (labels, pts) in m {
        let key = group_key(&labels, g);
        let series = acc.entry(key).or_default();
        for (k, v) in pts {
            let e = series.entry(k).or_insert(Moments {
                sum: 0.0,
                n: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            });
            e.sum += v;
            e.n += 1.0;
            e.min = e.min.min(v);
            e.max = e.max.max(v);
        }
    }
    acc.into_iter()
        .map(|(labels, pts)| {
            let pts = pts
                .into_iter()
                .map(|(k, Moments { sum, n, min, max })| {
                    let v = match op {
                        AggOp::Sum => sum,
                        AggOp::Count => n,
                        AggOp::Min => min,
                        AggOp::Max => max,
                        AggOp::Avg => sum / n,
                        AggOp::Topk(_) => sum,
                    };
                    (k, v)
                })
                .collect();
            (labels, pts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{parse, Query};
    use skidder_common::format::index::StreamEntry;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The plain definition: look each matcher's name up in the built,
    /// sorted label set.
    fn matches_all(matchers: &[Matcher], tenant: &str, labels: &Labels) -> bool {
        matchers.iter().all(|m| {
            let v = if m.name == "__tenant__" {
                tenant
            } else {
                labels
                    .iter()
                    .find(|(k, _)| *k == m.name)
                    .map_or("", |(_, v)| v.as_str())
            };
            m.matches(v)
        })
    }

    #[test]
    fn pack_rounds_bound_the_pack_bytes_held_at_once() {
        let hour = |mib: u64| {
            Arc::new(HourListing {
                prefix: String::new(),
                indexes: Vec::new(),
                packs: Vec::new(),
                pack_bytes: mib << 20,
                slices: None,
            })
        };
        let hours = vec![
            hour(100),
            hour(100),
            hour(100),
            hour(300),
            hour(0),
            hour(10),
        ];
        let sizes: Vec<usize> = pack_rounds(&hours, 256 << 20)
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(sizes, vec![2, 1, 1, 2]);
        let unpacked = vec![hour(0); 1000];
        assert_eq!(pack_rounds(&unpacked, 1).len(), 1, "no packs: one round");
        assert!(pack_rounds(&[], 1).is_empty());
    }

    #[test]
    fn stream_matches_agrees_with_matching_built_labels() {
        let stream = |l: &[(&str, &str)]| StreamEntry {
            labels: labels(l),
            first_record: 0,
            record_count: 0,
            min_time_ns: 0,
            max_time_ns: 0,
        };
        let idx = BlockIndex {
            version: index::MAX_VERSION,
            min_time_ns: 0,
            max_time_ns: 0,
            record_count: 0,
            raw_bytes: 0,
            tenant: "acme".into(),
            app: "checkout".into(),
            hour: 0,
            topic: "logs".into(),
            partition: 0,
            first_offset: 0,
            last_offset: 0,
            data_key: String::new(),
            data_size: 0,
            data_crc32c: 0,
            streams: vec![
                stream(&[("level", "error"), ("pod", "a")]),
                stream(&[("level", "info")]),
                // A stream's own `__app__` and a repeated name: the least
                // value is the one a built, sorted label set finds first.
                stream(&[("__app__", "aaa"), ("pod", "z"), ("pod", "b")]),
                stream(&[]),
            ],
            bloom: Vec::new(),
        };
        let queries = [
            r#"{level="error"}"#,
            r#"{level!="error", __app__=~".+"}"#,
            r#"{pod=~"a|b"}"#,
            r#"{pod="", __app__=~".+"}"#,
            r#"{pod!~".+", __app__=~".+"}"#,
            r#"{__app__="checkout"}"#,
            r#"{__app__="aaa"}"#,
            r#"{__app__=~"check.*", level="info"}"#,
            r#"{__tenant__="acme"}"#,
            r#"{__tenant__!="acme", level=~".+"}"#,
            r#"{missing="", level=~"e.*"}"#,
        ];
        let mut agreed = 0;
        for q in queries {
            let Ok(Query::Log(lq)) = parse(q) else {
                panic!("{q} must parse as a log query");
            };
            for s in 0..idx.streams.len() {
                let built = matches_all(&lq.matchers, "acme", &stream_labels(&idx, s));
                let direct = stream_matches(&lq.matchers, "acme", &idx, s);
                assert_eq!(direct, built, "{q} on stream {s}");
                agreed += usize::from(built);
            }
        }
        // Both outcomes occur, so the comparison means something.
        assert!(agreed > 5 && agreed < queries.len() * idx.streams.len() - 5);
    }
}
