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
//!
//! The files follow a query down the read path:
//!
//! 1. `listing`: list an hour's prefix (cached once the hour is closed);
//!    `runs` lists a day's closed hours several to a paged LIST;
//! 2. `slices`: rule out blocks with the hour's sliced blooms;
//! 3. `packs`: read the indexes the hour's packs hold, one GET per pack;
//! 4. `indexes`: every other index, from the cache or one GET each;
//! 5. `prune`: drive 1-4 round by round and keep the blocks whose index
//!    admits the query (time, bloom, labels): the candidates;
//! 6. `blocks`: fetch a candidate's block and verify it;
//! 7. `scan`: run each record of a block through the line pipeline;
//! 8. `log_query` or `metric_query`: collect the lines, or the samples
//!    that `metric`'s pure maths turn into series; `series` answers
//!    `/series` and `index/stats` from the candidates alone; `offsets`
//!    finds the records one Kafka message became.
//!
//! This file holds what they share: the engine, its settings, its errors
//! and the per-query statistics.

mod blocks;
pub mod detected;
mod export;
mod indexes;
mod listing;
mod log_query;
mod metric;
mod metric_query;
mod offsets;
mod packs;
mod prune;
mod retention;
mod runs;
mod scan;
mod series;
mod slices;
mod tenants;

use std::sync::Arc;

use skidder_common::format::slices::Head;
use skidder_common::format::tokens::DEFAULT_MAX_TOKEN_VALUE_LEN;
use skidder_common::storage::{ObjectStore, StorageError};
use thiserror::Error;

use crate::cache::ByteLru;
use crate::metrics::Metrics;
use listing::Listing;

pub use export::LogBatches;
pub use indexes::Indexed;
pub use log_query::{sort_entries, Entry};
pub use metric::Matrix;
pub use offsets::{DeadLetter, KafkaOffset, OffsetLookup, OffsetRecord, UnresolvedBlock};
pub use prune::{required_tokens, stream_labels, Candidate};
pub use series::IndexStats;

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
    #[error("a range function over unwrapped values would keep more than {limit} samples; narrow the time range or the selector")]
    Samples { limit: usize },
    /// Two vectors a binary operator cannot pair up.
    #[error("{0}")]
    Matching(String),
    /// A range function met a line marked `__error__`, which Loki refuses
    /// to turn into a sample: the message is Loki's, word for word.
    #[error(
        "pipeline error: '{error}' for series: '{series}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{error}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
    )]
    Pipeline { error: String, series: String },
}

impl SearchError {
    /// A label for the metric of rejected queries; `None` for faults.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            SearchError::Storage(_) => None,
            SearchError::TimeRange { .. } => Some("time_range"),
            SearchError::BytesScanned { .. } => Some("bytes_scanned"),
            SearchError::Series { .. } => Some("series"),
            SearchError::Samples { .. } => Some("samples"),
            SearchError::Matching(_) => Some("matching"),
            SearchError::Pipeline { .. } => Some("pipeline_error"),
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
    /// read again after this long; 0 never caches listings. It must stay
    /// well under the compactor's grace period (`skidder compact --grace`,
    /// 30 min), or a cached listing could name small blocks compaction has
    /// deleted (the query then warns of missing blocks).
    pub listing_cache_secs: u64,
    /// Must equal the indexer's `parse.max_token_value_len`.
    pub max_token_value_len: usize,
    /// Longest time range a query may span.
    pub max_hours: i64,
    /// Uncompressed log bytes (the indexes' `raw_bytes`) one query may scan.
    pub max_bytes_scanned: u64,
    /// Series one metric query may return.
    pub max_series: usize,
    /// Values a range function over unwrapped values may hold at once
    /// (16 bytes each): it keeps every sample of its range.
    pub max_samples: usize,
    /// Read an hour's indexes from its index packs (`skidder pack`) where
    /// the listing vouches for them; off, every index is read on its own.
    pub read_packs: bool,
    /// Rule out blocks with an hour's sliced blooms (`skidder pack`)
    /// before reading its indexes, where the listing vouches for them.
    pub read_slices: bool,
    /// Pages of an hour listed one after another before the rest of the
    /// hour is listed by app folder, `index_fetch_concurrency` at once.
    pub sequential_list_pages: usize,
    /// Closed hours of a day listed by one paged LIST, up to this many at
    /// a time, where they are small enough (`runs.rs`); 1 lists each hour
    /// on its own.
    pub hours_per_listing: usize,
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
            max_samples: 10_000_000,
            read_packs: true,
            read_slices: true,
            sequential_list_pages: 4,
            hours_per_listing: 6,
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

/// One handle on the store per step of the read path, so that
/// `skidder_store_requests_total{caller}` says which step pays for what.
struct Stores {
    listing: Arc<dyn ObjectStore>,
    /// Runs of a day's closed hours, listed by one paged LIST.
    runs: Arc<dyn ObjectStore>,
    /// The tenants with data, listed to explain an empty answer.
    tenants: Arc<dyn ObjectStore>,
    manifests: Arc<dyn ObjectStore>,
    claims: Arc<dyn ObjectStore>,
    retention: Arc<dyn ObjectStore>,
    slices: Arc<dyn ObjectStore>,
    /// A day's sliced blooms: read once for all its hours.
    day_slices: Arc<dyn ObjectStore>,
    packs: Arc<dyn ObjectStore>,
    indexes: Arc<dyn ObjectStore>,
    blocks: Arc<dyn ObjectStore>,
}

pub struct Engine {
    stores: Stores,
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    listings: ByteLru<String, Listing>,
    indexes: ByteLru<String, Indexed>,
    /// Heads of sliced blooms, by key.
    heads: ByteLru<String, Head>,
    /// Checked chunks of sliced blooms, by key, group and chunk: a query
    /// run again (a dashboard refreshing) reads the same rows.
    chunks: ByteLru<(String, u32, u64), Vec<u8>>,
    /// The epoch claims read so far: they never change once written.
    claims: std::sync::Mutex<skidder_common::format::fence::Fence>,
    /// Each tenant's retention cut-offs, as last read.
    cutoffs: std::sync::Mutex<std::collections::HashMap<String, retention::CachedCutoffs>>,
}

impl Engine {
    pub fn new(store: Arc<dyn ObjectStore>, cfg: EngineConfig, metrics: Arc<Metrics>) -> Self {
        Engine {
            listings: ByteLru::new(cfg.cache_bytes / 4),
            heads: ByteLru::new(cfg.cache_bytes / 32),
            chunks: ByteLru::new(cfg.cache_bytes / 32),
            claims: Default::default(),
            cutoffs: Default::default(),
            indexes: ByteLru::new(cfg.cache_bytes - cfg.cache_bytes / 4 - cfg.cache_bytes / 16),
            stores: {
                let wrap = |caller| metrics.store_requests.wrap(store.clone(), caller);
                Stores {
                    listing: wrap("listing"),
                    runs: wrap("listing_runs"),
                    tenants: wrap("tenants"),
                    manifests: wrap("manifests"),
                    claims: wrap("claims"),
                    retention: wrap("retention"),
                    slices: wrap("slices"),
                    day_slices: wrap("day_slices"),
                    packs: wrap("packs"),
                    indexes: wrap("indexes"),
                    blocks: wrap("blocks"),
                }
            },
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
        self.metrics
            .store_errors
            .with_label_values(&[op, e.kind.as_str()])
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
}
