//! Compaction: rewrites a settled hour's small blocks into a few large
//! ones per app, and publishes them with a manifest (`format::manifest`).
//!
//! At 1 TB a day an hour holds hundreds of thousands of small blocks (one
//! per app, partition and flush), and every query pays for them in LISTs
//! and GETs. A compacted block holds up to `target_raw_bytes` of one
//! app-hour, its records sorted by stream and time as any block's, with
//! one bloom filter sized for its content at a low false-positive rate. It
//! is still an LZ4 Hadoop SequenceFile of the same records, so Spark reads
//! it as before.
//!
//! The protocol, with its crash points (`docs/DESIGN.md`, "Compaction"):
//!
//! 1. List the hour and read its newest manifest, generation `g`.
//! 2. Delete what the grace period has freed: sources of entries older
//!    than `grace`, manifests older than `g`, and compacted objects of
//!    generation `<= g` that `g` does not name.
//! 3. For each app with at least `min_sources` small blocks no entry
//!    replaces, write compacted blocks for generation `g + 1`: data, then
//!    index. No reader reads them yet: no manifest names them.
//! 4. Publish manifest `g + 1` (every entry of `g`, plus the new ones) with
//!    a conditional put. Another compactor that got there first wins; this
//!    one's objects are left for a later pass to delete.
//!
//! A reader switches from the small blocks to the compacted ones at the
//! moment manifest `g + 1` is listed, and the small blocks are deleted only
//! a grace period later, so a query never sees a record twice or misses
//! it. Rebuilds of a small block after compaction are harmless: a rebuilt
//! block has the same name and the same records, and stays replaced.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use skidder_common::claims;
use skidder_common::format::fence::Fence;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::label_summary::LabelSummary;
use skidder_common::format::layout::{
    app_of, compacted_generation, compacted_stem, data_key_of, is_compacted, manifest_key, now_ns,
    parse_manifest_key, DATA_SUFFIX, INDEX_SUFFIX,
};
use skidder_common::format::manifest::{Entry, Live, Manifest};
use skidder_common::format::pack::runs_by_size;
use skidder_common::format::FormatError;
use skidder_common::storage::{list_all, ObjectMeta, ObjectStore, StorageError, StorageErrorKind};
use thiserror::Error;

use crate::config::ParseConfig;
use crate::failpoints::crash_point;
use crate::packer::hours_with_days;

mod merge;

/// The crash points of compaction, in the order a soak can fire them one
/// run after another: deleting needs a manifest published earlier.
pub const POINTS: &[&str] = &[
    "compactor::after_data",
    "compactor::after_index",
    "compactor::after_manifest",
    "compactor::after_delete",
];

/// How the compactor writes.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Raw bytes of log lines a compacted block holds at most (a single
    /// larger source gets a block of its own).
    pub target_raw_bytes: u64,
    /// Nanoseconds after a manifest generation is published before the
    /// small blocks it replaced are deleted: longer than any query and any
    /// searcher's listing cache.
    pub grace_ns: i64,
    /// An app-hour is compacted once it has this many small blocks that
    /// no compacted block replaces.
    pub min_sources: usize,
    /// The compacted filter's false-positive rate, where the index budget
    /// allows.
    pub bloom_fp_rate: f64,
    /// Must equal the indexer's `parse.max_token_value_len`.
    pub max_token_value_len: usize,
    /// Object GETs in flight.
    pub concurrency: usize,
    /// Compact only blocks whose partition checkpoint has passed their
    /// last offset: no indexer will ever rebuild them, so once deleted
    /// they stay deleted, and the manifest can forget them. Off only for
    /// stores written without a ledger (tests' fixtures).
    pub require_checkpoint: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_raw_bytes: 128 << 20,
            grace_ns: 30 * 60 * 1_000_000_000,
            min_sources: 2,
            bloom_fp_rate: 0.001,
            max_token_value_len: ParseConfig::default().max_token_value_len,
            concurrency: 16,
            require_checkpoint: true,
        }
    }
}

#[derive(Debug, Error)]
pub enum CompactError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The newest manifest does not decode: the hour is left alone (its
    /// readers read its small blocks) until an operator looks.
    #[error("manifest {key} is unreadable: {source}")]
    Manifest {
        key: String,
        #[source]
        source: FormatError,
    },
    /// A source block does not decode or fails its checksum: the app-hour
    /// is not compacted, so no record is lost with it.
    #[error("block {key} is unreadable: {source}")]
    Block {
        key: String,
        #[source]
        source: FormatError,
    },
    /// A source's records re-parsed to another count: a bug, never a silent
    /// loss.
    #[error("block {key}: {why}")]
    Mismatch { key: String, why: String },
}

/// What compacting one hour did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HourCompaction {
    /// Small blocks rewritten into compacted ones.
    pub sources: usize,
    pub blocks_written: usize,
    pub bytes_written: u64,
    /// The generation published, if one was.
    pub published: Option<u64>,
    /// Another compactor published the generation first.
    pub lost_race: bool,
    /// Small blocks deleted once their grace period had passed.
    pub deleted: usize,
}

/// A small block to compact: its index name relative to the hour prefix,
/// and its index.
#[derive(Clone)]
struct Source {
    name: String,
    index: BlockIndex,
}

/// Compacts one settled hour (see the module docs), at time `now_ns`.
pub async fn compact_hour(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &CompactOptions,
    now_ns: i64,
) -> Result<HourCompaction, CompactError> {
    let mut report = HourCompaction::default();
    let listed = list_all(store, prefix).await?;
    let rel = |k: &str| k.strip_prefix(prefix).unwrap_or(k).to_owned();
    let current = newest_manifest(store, prefix, &listed).await?;
    let indexes: Vec<(String, u64)> = listed
        .iter()
        .filter(|m| m.key.ends_with(INDEX_SUFFIX))
        .map(|m| (rel(&m.key), m.size))
        .collect();

    let deleted = delete_freed(store, prefix, &listed, current.as_ref(), opts, now_ns).await?;
    report.deleted = deleted.len();

    // Every claim above a listed epoch, not only those the listing shows
    // blocks of: a block compacted must never be superseded later.
    let mut fence = Fence::default();
    let names = indexes.iter().map(|(n, _)| n.as_str());
    claims::load_into(store, &mut fence, Fence::claims_needed(names)).await?;
    let live = Live::new(
        current.as_ref(),
        indexes.iter().map(|(n, s)| (n.as_str(), *s)),
        &fence,
    );
    let mut by_app: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Superseded blocks, by app: rewritten by a newer epoch, so they go
    // with the sources of the app's compacted blocks.
    let mut superseded: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, _) in &indexes {
        let Some(app) = app_of("", name).filter(|_| !is_compacted(name)) else {
            continue;
        };
        if fence.superseded(name) {
            superseded.entry(app).or_default().push(name.clone());
        } else if live.reads(name) {
            by_app.entry(app).or_default().push(name.clone());
        }
    }
    let min = opts.min_sources.max(1);
    by_app.retain(|_, v| v.len() >= min);
    // Sources the grace period has deleted are forgotten: no listing can
    // show them again (see `require_checkpoint`).
    let present: HashSet<&str> = indexes
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !deleted.contains(*n))
        .collect();
    let generation = current.as_ref().map_or(1, |m| m.generation + 1);
    let mut entries = current.map(|m| m.entries).unwrap_or_default();
    let mut forgot = false;
    for e in &mut entries {
        let before = e.sources.len();
        e.sources.retain(|s| present.contains(s.as_str()));
        forgot |= e.sources.len() != before;
    }
    let mut stored = Checkpoints::default();
    for (app, mut names) in by_app {
        names.sort();
        let mut sources = read_indexes(store, prefix, &names, opts.concurrency).await?;
        if opts.require_checkpoint {
            let mut safe = Vec::with_capacity(sources.len());
            for s in sources {
                if stored.passed(store, &s.index).await? {
                    safe.push(s);
                }
            }
            sources = safe;
        }
        if sources.len() < min {
            continue;
        }
        let runs = runs_by_size(&sources, opts.target_raw_bytes, |s| s.index.raw_bytes);
        for (n, run) in runs.into_iter().enumerate() {
            let mut entry =
                compact_run(store, prefix, &app, generation, n, run, opts, now_ns).await?;
            if n == 0 {
                entry
                    .sources
                    .extend(superseded.remove(&app).unwrap_or_default());
                entry.sources.sort();
            }
            report.sources += entry.sources.len();
            report.blocks_written += 1;
            report.bytes_written += entry.data_size + entry.index_size;
            entries.push(entry);
        }
    }
    if report.blocks_written == 0 && !forgot {
        return Ok(report);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        generation,
        created_ns: now_ns,
        entries,
    };
    let key = manifest_key(prefix, generation);
    match store
        .put_if_absent(&key, Bytes::from(manifest.encode()))
        .await
    {
        Ok(()) => report.published = Some(generation),
        Err(e) if e.kind == StorageErrorKind::AlreadyExists => {
            tracing::warn!(%key, "another compactor published this generation first");
            report.lost_race = true;
            return Ok(report);
        }
        Err(e) => return Err(e.into()),
    }
    crash_point("compactor::after_manifest");
    Ok(report)
}

/// The newest manifest among an hour's listed objects, decoded.
pub async fn newest_manifest(
    store: &dyn ObjectStore,
    prefix: &str,
    listed: &[ObjectMeta],
) -> Result<Option<Manifest>, CompactError> {
    let newest = listed
        .iter()
        .filter_map(|m| Some((parse_manifest_key(prefix, &m.key)?, &m.key)))
        .max();
    let Some((_, key)) = newest else {
        return Ok(None);
    };
    let bytes = store.get(key).await?;
    Manifest::decode(&bytes)
        .map(Some)
        .map_err(|source| CompactError::Manifest {
            key: key.clone(),
            source,
        })
}

/// Compacts hours `first..=last` of each tenant, until `stop` says to. An
/// hour that fails is logged and counted, and the pass goes on.
pub async fn compact_hours(
    store: &dyn ObjectStore,
    tenants: &[String],
    (first, last): (i64, i64),
    opts: &CompactOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<CompactReport, StorageError> {
    let mut report = CompactReport::default();
    for tenant in tenants {
        for prefix in hours_with_days(store, tenant, (first, last)).await? {
            if stop() {
                return Ok(report);
            }
            report.hours_listed += 1;
            match compact_hour(store, &prefix, opts, now_ns()).await {
                Ok(h) => {
                    if h.published.is_some() || h.deleted > 0 {
                        tracing::info!(
                            %prefix,
                            generation = h.published,
                            sources = h.sources,
                            blocks = h.blocks_written,
                            bytes = h.bytes_written,
                            deleted = h.deleted,
                            "compacted an hour"
                        );
                    }
                    report.add(&h);
                }
                Err(e) => {
                    report.hours_failed += 1;
                    tracing::error!(%prefix, error = %e, "could not compact an hour");
                }
            }
        }
    }
    Ok(report)
}

/// Deletes what the newest manifest's grace period has freed; returns the
/// index names (relative to `prefix`) of the sources deleted. Only objects
/// no reader can still need: the sources of entries published more than
/// `grace` ago, the manifests before the newest once it is that old, and
/// compacted objects the newest does not name (a lost race or a crash's
/// leftovers) of its generation or older.
async fn delete_freed(
    store: &dyn ObjectStore,
    prefix: &str,
    listed: &[ObjectMeta],
    current: Option<&Manifest>,
    opts: &CompactOptions,
    now_ns: i64,
) -> Result<HashSet<String>, CompactError> {
    let Some(m) = current else {
        return Ok(HashSet::new());
    };
    let settled = |t: i64| t.saturating_add(opts.grace_ns) < now_ns;
    let freed_sources: HashSet<&str> = m
        .entries
        .iter()
        .filter(|e| settled(e.created_ns))
        .flat_map(|e| e.sources.iter().map(String::as_str))
        .collect();
    let named: HashSet<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
    let mut doomed = Vec::new();
    let mut sources = HashSet::new();
    for o in listed {
        let Some(name) = o.key.strip_prefix(prefix) else {
            continue;
        };
        let index_name = name
            .strip_suffix(DATA_SUFFIX)
            .map(|stem| format!("{stem}{INDEX_SUFFIX}"))
            .unwrap_or_else(|| name.to_owned());
        let free = if let Some(g) = compacted_generation(name) {
            g <= m.generation && !named.contains(index_name.as_str()) && settled(m.created_ns)
        } else if let Some(g) = parse_manifest_key(prefix, &o.key) {
            g < m.generation && settled(m.created_ns)
        } else if freed_sources.contains(index_name.as_str()) {
            sources.insert(index_name);
            true
        } else {
            false
        };
        if free {
            doomed.push(o.key.clone());
        }
    }
    // Indexes first: a block whose index is gone is not listed as a block,
    // so a crash mid-way never leaves an index without its data.
    doomed.sort_by_key(|k| !k.ends_with(INDEX_SUFFIX));
    for (i, key) in doomed.iter().enumerate() {
        match store.delete(key).await {
            Ok(()) => {}
            Err(e) if e.kind == StorageErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if i == 0 {
            crash_point("compactor::after_delete");
        }
    }
    Ok(sources)
}

/// The partitions' stored checkpoints, read once per pass.
#[derive(Default)]
struct Checkpoints(HashMap<(String, i32), Option<i64>>);

impl Checkpoints {
    /// Whether `index`'s partition's stored offset
    /// ([`claims::stored_offset`]: the newest claim's start or its
    /// checkpoint) is past its last offset: then no indexer rebuilds it
    /// and no later claim supersedes it (claims start at or above it). A
    /// missing or unreadable checkpoint says no.
    async fn passed(
        &mut self,
        store: &dyn ObjectStore,
        index: &BlockIndex,
    ) -> Result<bool, CompactError> {
        let tp = (index.topic.clone(), index.partition);
        let next = match self.0.get(&tp) {
            Some(n) => *n,
            None => {
                let n = claims::stored_offset(store, &tp.0, tp.1).await?;
                self.0.insert(tp, n);
                n
            }
        };
        Ok(next.is_some_and(|n| n > index.last_offset))
    }
}

/// The indexes of `names` (relative to `prefix`), in order.
async fn read_indexes(
    store: &dyn ObjectStore,
    prefix: &str,
    names: &[String],
    concurrency: usize,
) -> Result<Vec<Source>, CompactError> {
    stream::iter(names.iter().cloned())
        .map(|name| async move {
            let key = format!("{prefix}{name}");
            let bytes = store.get(&key).await?;
            let index =
                BlockIndex::decode(&bytes).map_err(|source| CompactError::Block { key, source })?;
            Ok::<_, CompactError>(Source { name, index })
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Writes one compacted block from `run`, data then index, and returns
/// its manifest entry.
#[allow(clippy::too_many_arguments)]
async fn compact_run(
    store: &dyn ObjectStore,
    prefix: &str,
    app: &str,
    generation: u64,
    n: usize,
    run: &[Source],
    opts: &CompactOptions,
    now_ns: i64,
) -> Result<Entry, CompactError> {
    // Owned keys: a future borrowing the run's items would not be `Send`
    // for every lifetime, which a caller inside an `ObjectStore` needs.
    let keys: Vec<String> = run
        .iter()
        .map(|s| data_key_of(&format!("{prefix}{}", s.name)))
        .collect();
    let datas: Vec<Bytes> = stream::iter(keys)
        .map(|key| async move { store.get(&key).await })
        .buffered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    let mut names: Vec<&str> = run.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let digest = {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for name in &names {
            h.update(name.as_bytes());
            h.update(b"\n");
        }
        h.digest()
    };
    let stem = compacted_stem(app, generation, digest, n);
    let data_key = format!("{prefix}{stem}{DATA_SUFFIX}");
    let index_key = format!("{prefix}{stem}{INDEX_SUFFIX}");
    let run = run.to_vec();
    let prefix_owned = prefix.to_owned();
    let max_token_value_len = opts.max_token_value_len;
    let fp = opts.bloom_fp_rate;
    let dk = data_key.clone();
    let built = tokio::task::spawn_blocking(move || {
        merge::build(&prefix_owned, &run, &datas, &dk, fp, max_token_value_len)
    })
    .await
    .map_err(|e| CompactError::Mismatch {
        key: data_key.clone(),
        why: format!("the compaction task failed: {e}"),
    })??;
    let (data, index) = built;
    let index_bytes = index.encode();
    let entry = Entry {
        name: format!("{stem}{INDEX_SUFFIX}"),
        index_size: index_bytes.len() as u64,
        data_size: data.len() as u64,
        app: app.to_owned(),
        min_time_ns: index.min_time_ns,
        max_time_ns: index.max_time_ns,
        records: index.record_count,
        raw_bytes: index.raw_bytes,
        created_ns: now_ns,
        sources: names.iter().map(|s| s.to_string()).collect(),
        labels: LabelSummary::of_streams(&index.streams),
    };
    store.put(&data_key, Bytes::from(data)).await?;
    crash_point("compactor::after_data");
    store.put(&index_key, Bytes::from(index_bytes)).await?;
    crash_point("compactor::after_index");
    Ok(entry)
}

/// What a compaction pass did, summed over its hours.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    pub hours_listed: usize,
    pub hours_compacted: usize,
    pub sources: usize,
    pub blocks_written: usize,
    pub bytes_written: u64,
    pub lost_races: usize,
    pub deleted: usize,
    pub hours_failed: usize,
}

impl CompactReport {
    pub fn add(&mut self, h: &HourCompaction) {
        self.hours_compacted += usize::from(h.published.is_some());
        self.sources += h.sources;
        self.blocks_written += h.blocks_written;
        self.bytes_written += h.bytes_written;
        self.lost_races += usize::from(h.lost_race);
        self.deleted += h.deleted;
    }
}
