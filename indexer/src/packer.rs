//! Writes index packs (`format::pack`): copies of an hour's index objects
//! in one object, so a cold searcher reads the hour with one GET instead of
//! one per block; and beside them the hour's sliced blooms
//! (`format::slices`), so a cold needle query rules out the hour's blocks
//! with a few small ranged GETs before it reads any index.
//!
//! Packing is maintenance, not part of the write path: the indexer's
//! exactly-once bookkeeping never looks at a pack, and a searcher uses a
//! packed index only where the hour's listing agrees with it. So a pack may
//! be missing, late or out of date without losing or duplicating a line; it
//! only saves GETs. `skidder pack` runs [`pack_hours`] once or on a timer.
//! A pack's name carries a digest of the listing it was packed from, so a
//! pass tells a current hour from a changed one by its LIST alone and
//! rewrites only changed hours: a pass over settled hours costs one LIST
//! per hour.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::claims;
use skidder_common::format::index::{BlockIndex, BloomFilter};
use skidder_common::format::layout::{
    day_prefix_of, day_slices_prefix, decode_component, hour_and_app, hour_prefix, pack_digest,
    parse_slices_key, parse_tail_pack_key, slices_key, tenant_prefix, PackName, INDEX_SUFFIX,
};
use skidder_common::format::manifest::Live;
use skidder_common::format::pack::{self, runs_by_size, Member};
use skidder_common::format::slices;

use crate::compactor::{newest_manifest, CompactError};
use skidder_common::storage::{
    list_all, list_folders, ObjectStore, StorageError, StorageErrorKind, StorageResult,
};

/// How the packer writes.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// A pack stops growing past this many bytes and the next one starts,
    /// so a huge hour becomes several GETs a reader can run side by side.
    pub max_pack_bytes: usize,
    /// Index GETs in flight while an hour is packed.
    pub concurrency: usize,
    /// Repack every hour, even one whose pack names say it is current (to
    /// replace a damaged pack, which readers skip).
    pub rewrite: bool,
    /// A day whose filters take more bytes than this gets no day-level
    /// sliced blooms (its hours' own serve). While a day is sliced its
    /// filters, and then the object, are written to files in `spill_dir`,
    /// so this bounds disk (twice this), not memory.
    pub max_day_slices_bytes: u64,
    /// Where a day's filters are spilled while sliced; the system's temp
    /// directory when `None`.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Bytes of rows a day is sliced in at a time: its memory, about.
    pub day_band_bytes: usize,
    /// Fewest blocks of a day that share a filter size for the day's
    /// sliced blooms to hold them: a reader pays about k ranged GETs (k is
    /// 7 to 10 at the filters' rates) for each size it holds.
    pub min_day_group: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            max_pack_bytes: 64 << 20,
            concurrency: 32,
            rewrite: false,
            max_day_slices_bytes: 16 << 30,
            spill_dir: None,
            day_band_bytes: slices::BAND_BYTES,
            min_day_group: 8,
        }
    }
}

/// What packing one hour did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HourOutcome {
    /// The hour holds no index.
    Empty,
    /// Its packs already hold exactly the listed indexes.
    Current,
    /// New packs were written.
    Packed {
        indexes: usize,
        packs: usize,
        bytes: usize,
    },
}

/// Totals of a [`pack_hours`] pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PackReport {
    pub hours_listed: usize,
    pub hours_current: usize,
    pub hours_packed: usize,
    pub indexes_packed: usize,
    pub bytes_written: usize,
    /// Listed indexes left out because they did not decode; a searcher
    /// fetches them itself and reports them.
    pub indexes_skipped: usize,
    /// Hours the store failed on; logged, and tried again next pass.
    pub hours_failed: usize,
    /// Days whose sliced blooms were written whole this pass.
    pub days_sliced: usize,
}

/// What packing an hour leaves for slicing its day: the indexes readers
/// read (names relative to the hour, listed sizes) and the packs that hold
/// them.
struct HourPacks {
    prefix: String,
    live: Vec<(String, u64)>,
    packs: Vec<String>,
}

impl HourPacks {
    /// `name` (relative to this hour) relative to its day prefix `day`:
    /// `hour=<HH>/app=<a>/...idx`.
    fn day_relative(&self, day: &str, name: &str) -> String {
        let hour = self.prefix.strip_prefix(day).unwrap_or(&self.prefix);
        format!("{hour}{name}")
    }
}

/// Every tenant with a folder at the store's root.
pub async fn tenants(store: &dyn ObjectStore) -> StorageResult<Vec<String>> {
    Ok(list_folders(store, "tenant=")
        .await?
        .iter()
        .filter_map(|p| decode_component(p.strip_prefix("tenant=")?.strip_suffix('/')?))
        .collect())
}

/// The prefixes of hours `first..=last` of `tenant` whose day has a
/// folder: a long look back costs one LIST per hour of data, not per hour
/// of calendar.
pub async fn hours_with_days(
    store: &dyn ObjectStore,
    tenant: &str,
    (first, last): (i64, i64),
) -> StorageResult<Vec<String>> {
    let days: BTreeSet<String> = list_folders(store, &tenant_prefix(tenant))
        .await?
        .into_iter()
        .collect();
    Ok((first..=last)
        .map(|hour| hour_prefix(tenant, hour))
        .filter(|prefix| {
            prefix
                .find("hour=")
                .is_some_and(|at| days.contains(&prefix[..at]))
        })
        .collect())
}

/// Packs hours `first..=last` (hours since the epoch) of each tenant,
/// until `stop` says to, then slices each day whose hours the range holds
/// from its first ([`slice_day`]). An hour the store fails on is logged
/// and counted, and the pass goes on (without slicing its day); listing a
/// tenant's days must succeed.
pub async fn pack_hours(
    store: &dyn ObjectStore,
    tenants: &[String],
    (first, last): (i64, i64),
    opts: &PackOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> StorageResult<PackReport> {
    let mut report = PackReport::default();
    for tenant in tenants {
        let mut days: BTreeMap<String, Vec<HourPacks>> = BTreeMap::new();
        let mut failed_days: BTreeSet<String> = BTreeSet::new();
        for prefix in hours_with_days(store, tenant, (first, last)).await? {
            if stop() {
                return Ok(report);
            }
            report.hours_listed += 1;
            let day = day_prefix_of(&prefix)
                .filter(|_| hour_of_prefix(&prefix).is_some_and(|h| day_start(h) >= first))
                .map(str::to_owned);
            let (outcome, skipped, packs) = match pack_hour(store, &prefix, opts).await {
                Ok(r) => r,
                Err(e) => {
                    report.hours_failed += 1;
                    tracing::error!(%prefix, error = %e, "could not pack an hour");
                    failed_days.extend(day);
                    continue;
                }
            };
            if let Some(day) = day {
                days.entry(day).or_default().extend(packs);
            }
            report.indexes_skipped += skipped;
            match outcome {
                HourOutcome::Empty => {}
                HourOutcome::Current => report.hours_current += 1,
                HourOutcome::Packed {
                    indexes,
                    packs,
                    bytes,
                } => {
                    report.hours_packed += 1;
                    report.indexes_packed += indexes;
                    report.bytes_written += bytes;
                    tracing::info!(%prefix, indexes, packs, bytes, "packed an hour's indexes");
                }
            }
        }
        for (day, hours) in days {
            if stop() {
                return Ok(report);
            }
            if failed_days.contains(&day) {
                continue;
            }
            match slice_day(store, &day, &hours, opts).await {
                Ok(true) => report.days_sliced += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(%day, error = %e, "could not slice a day's blooms"),
            }
        }
    }
    Ok(report)
}

/// The hour (since the epoch) an hour prefix names.
fn hour_of_prefix(prefix: &str) -> Option<i64> {
    let tenant = &prefix[..prefix.find("dt=")?];
    Some(hour_and_app(tenant, prefix)?.0)
}

/// Days found not worth slicing whole (prefix, listing digest, and the
/// options that decided it), so that a pass over an unchanged day does not
/// read its packs again to find out.
type Unsliceable = BTreeSet<(String, u64, usize, u64)>;
static UNSLICEABLE: std::sync::Mutex<Unsliceable> = std::sync::Mutex::new(BTreeSet::new());
const MAX_UNSLICEABLE: usize = 10_000;

fn lock_unsliceable() -> std::sync::MutexGuard<'static, Unsliceable> {
    UNSLICEABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first hour of the day `hour` is in.
fn day_start(hour: i64) -> i64 {
    hour - hour.rem_euclid(24)
}

/// Writes a day's sliced blooms (`<day prefix>_blooms.<digest>.<content>.slices`)
/// from the packs of `hours`, its hours that hold indexes, unless one of
/// that listing is there already (its digest is in the key). Names in it
/// are relative to the day (`hour=<HH>/app=<a>/...idx`), so one probe of
/// a token reads k rows per filter size for the whole day instead of per
/// hour. Like the hour's, a reader uses it only for blocks whose listed
/// index it names at its size. A day of one hour, or whose filters are
/// over `max_day_slices_bytes`, is left to its hours' own. Returns
/// whether it wrote one.
async fn slice_day(
    store: &dyn ObjectStore,
    day: &str,
    hours: &[HourPacks],
    opts: &PackOptions,
) -> StorageResult<bool> {
    let old: Vec<(String, u64)> = list_all(store, &day_slices_prefix(day))
        .await?
        .into_iter()
        .filter_map(|m| Some((m.key.clone(), parse_slices_key(day, &m.key)?.0)))
        .collect();
    let live: Vec<(String, u64)> = hours
        .iter()
        .flat_map(|h| {
            h.live
                .iter()
                .map(move |(n, size)| (h.day_relative(day, n), *size))
        })
        .collect();
    let digest = pack_digest(live.iter().map(|(n, s)| (n.as_str(), *s)));
    let current = !opts.rewrite && old.iter().any(|(_, d)| *d == digest);
    let mut new_key = None;
    let memo = (
        day.to_owned(),
        digest,
        opts.min_day_group,
        opts.max_day_slices_bytes,
    );
    let tried = !opts.rewrite && lock_unsliceable().contains(&memo);
    if !current && hours.len() > 1 && !tried {
        new_key = write_day_slices(store, day, hours, &live, digest, opts).await?;
        if new_key.is_none() {
            let mut unsliceable = lock_unsliceable();
            if unsliceable.len() >= MAX_UNSLICEABLE {
                unsliceable.clear();
            }
            unsliceable.insert(memo);
        }
    }
    // The current one stays, and every other goes: a stale one vouches
    // only for blocks that did not change, yet costs a reader its head
    // (one from before a compaction vouches for none).
    for (k, d) in &old {
        let keep = (current && *d == digest) || new_key.as_ref() == Some(k);
        if !keep {
            store.delete(k).await?;
        }
    }
    Ok(new_key.is_some())
}

/// Pack GETs in flight while a day is sliced: each pack is up to
/// `max_pack_bytes`, and the day is read whole.
const DAY_PACK_FETCHES: usize = 4;

/// Reads the blooms of `live` (day-relative names) from the hours' packs,
/// slices them, and writes the day's object; `None` if none was written.
///
/// A day at 1 TB is about 5 GB of filters, so nothing holds them all: the
/// filters go to a spill file as the packs arrive (only the blocks' names
/// and shapes stay in memory), the object is written to a second file a
/// band of rows at a time ([`slices::Plan::write_rows`]), its hash taken
/// on the way for its key, and the file is uploaded in parts
/// ([`ObjectStore::put_file`]).
async fn write_day_slices(
    store: &dyn ObjectStore,
    day: &str,
    hours: &[HourPacks],
    live: &[(String, u64)],
    digest: u64,
    opts: &PackOptions,
) -> StorageResult<Option<String>> {
    let dir = opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    sweep_spill_dir(&dir);
    // Local disk trouble (a full spill directory) is not the store's: the
    // day is left to its hours' own until it changes.
    let unsliced = |e: std::io::Error| {
        tracing::warn!(day, dir = %dir.display(), error = %e, "not slicing a day: its files failed");
        Ok(None)
    };
    let spill = match tempfile::Builder::new()
        .prefix(SPILL_PREFIX)
        .tempfile_in(&dir)
    {
        Ok(f) => f,
        Err(e) => return unsliced(e),
    };
    let (spilled, spill) = match spill_filters(store, day, hours, live, opts, spill).await? {
        Spill::Done(spilled, file) => (spilled, file),
        Spill::Skipped => return Ok(None),
        Spill::Failed(e) => return unsliced(e),
    };
    let (min_group, band) = (opts.min_day_group, opts.day_band_bytes);
    let day_owned = day.to_owned();
    let out_dir = dir.clone();
    // Disk and CPU for seconds at 1 TB a day: off the async threads.
    let built = tokio::task::spawn_blocking(move || {
        write_sliced_file(&spilled, spill.as_file(), &out_dir, min_group, band)
    })
    .await
    .map_err(|e| StorageError::new(StorageErrorKind::Io, &day_owned, format!("slicing: {e}")))?;
    let (file, content) = match built {
        Ok(Some(built)) => built,
        Ok(None) => return Ok(None),
        Err(e) => return unsliced(e),
    };
    let key = slices_key(day, digest, content);
    store.put_file(&key, file.path()).await?;
    Ok(Some(key))
}

/// What reading a day's filters into the spill file came to.
enum Spill {
    /// Every wanted filter, sorted by name, and the file that holds them.
    Done(Vec<Spilled>, tempfile::NamedTempFile),
    /// The day is not to be sliced (over a limit, a pack gone or unreadable).
    Skipped,
    /// The spill file failed.
    Failed(std::io::Error),
}

/// Names of the packer's files in the spill directory.
const SPILL_PREFIX: &str = "skidder-day-slices-";

/// Deletes files a killed packer left in `dir`: ours, by name, and older
/// than any pass takes, so another packer's open files are left alone.
fn sweep_spill_dir(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let stale = std::time::Duration::from_secs(6 * 3600);
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(SPILL_PREFIX);
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > stale);
        if ours && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads the day's packs, four at a time, and writes each wanted
/// filter's bitmap to `file`, keeping only its name and shape in memory.
async fn spill_filters(
    store: &dyn ObjectStore,
    day: &str,
    hours: &[HourPacks],
    live: &[(String, u64)],
    opts: &PackOptions,
    file: tempfile::NamedTempFile,
) -> StorageResult<Spill> {
    use tokio::io::AsyncWriteExt;
    let wanted: HashMap<&str, u64> = live.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let keys: Vec<(&HourPacks, &String)> = hours
        .iter()
        .flat_map(|h| h.packs.iter().map(move |k| (h, k)))
        .collect();
    let mut fetched = stream::iter(keys)
        .map(|(h, key)| async move { (h, store.get(key).await) })
        .buffered(opts.concurrency.clamp(1, DAY_PACK_FETCHES));
    let (std_file, path) = file.into_parts();
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
    let mut spilled: Vec<Spilled> = Vec::with_capacity(live.len());
    let mut held: u64 = 0;
    while let Some((h, r)) = fetched.next().await {
        let bytes = match r {
            Ok(b) => b,
            // Repacked since (a later pass slices the day again).
            Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(Spill::Skipped),
            Err(e) => return Err(e),
        };
        let Ok(members) = pack::decode(&bytes) else {
            tracing::warn!(day, "not slicing a day with an unreadable pack");
            return Ok(Spill::Skipped);
        };
        for m in members {
            let name = h.day_relative(day, m.name);
            if wanted.get(name.as_str()) != Some(&(m.index.len() as u64)) {
                continue;
            }
            // A member that does not decode is left out: readers prune
            // that block from its own index.
            let Ok((index, bloom)) = BlockIndex::decode_with_bloom(m.index) else {
                continue;
            };
            if held + bloom.bits() / 8 > opts.max_day_slices_bytes
                || spilled.len() >= slices::MAX_BLOCKS as usize
            {
                tracing::info!(day, "not slicing a day whose filters are over the limit");
                return Ok(Spill::Skipped);
            }
            if let Err(e) = out.write_all(bloom.bitmap()).await {
                return Ok(Spill::Failed(e));
            }
            spilled.push(Spilled {
                name,
                index_size: m.index.len() as u64,
                index_version: index.version,
                bits: bloom.bits(),
                header: bloom.header().to_vec(),
                at: held,
            });
            held += bloom.bits() / 8;
        }
    }
    if let Err(e) = out.flush().await {
        return Ok(Spill::Failed(e));
    }
    let std_file = out.into_inner().into_std().await;
    spilled.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Spill::Done(
        spilled,
        tempfile::NamedTempFile::from_parts(std_file, path),
    ))
}

/// A block's filter in the spill file: its bitmap is `bits / 8` bytes at
/// `at`.
struct Spilled {
    name: String,
    index_size: u64,
    index_version: u16,
    bits: u64,
    header: Vec<u8>,
    at: u64,
}

/// Writes the sliced blooms of `spilled` (sorted by name; bitmaps in
/// `spill`) to a new file in `dir`, in bands of about `band_bytes`; returns
/// it and the xxh3-64 of its bytes, or `None` if no block is sliced.
fn write_sliced_file(
    spilled: &[Spilled],
    spill: &std::fs::File,
    dir: &std::path::Path,
    min_group: usize,
    band_bytes: usize,
) -> std::io::Result<Option<(tempfile::NamedTempFile, u64)>> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let columns: Vec<slices::Column<'_>> = spilled
        .iter()
        .map(|s| slices::Column {
            name: &s.name,
            index_size: s.index_size,
            index_version: s.index_version,
            bits: s.bits,
            header: &s.header,
        })
        .collect();
    // A size shared by a few blocks of the day is left to their hours'
    // own slices (or indexes), which cost a reader no more.
    let Some(plan) = slices::plan(&columns, min_group) else {
        return Ok(None);
    };
    let mut file = tempfile::Builder::new()
        .prefix(SPILL_PREFIX)
        .tempfile_in(dir)?;
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        out.write_all(plan.head())?;
        hash.update(plan.head());
        plan.write_rows(
            band_bytes,
            |i, start, buf| spill.read_exact_at(buf, spilled[i].at + start),
            |bytes| {
                hash.update(bytes);
                out.write_all(bytes)
            },
        )?;
        out.flush()?;
    }
    Ok(Some((file, hash.digest())))
}

/// Packs one hour, named by its prefix; also returns how many listed
/// indexes were left out as undecodable, and what slicing its day needs.
async fn pack_hour(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &PackOptions,
) -> StorageResult<(HourOutcome, usize, Option<HourPacks>)> {
    let listed = list_all(store, prefix).await?;
    let mut indexes: BTreeSet<(String, u64)> = listed
        .iter()
        .filter(|m| m.key.ends_with(INDEX_SUFFIX))
        .filter_map(|m| Some((m.key.strip_prefix(prefix)?.to_owned(), m.size)))
        .collect();
    // Only what readers read: not the sources a compacted block replaced,
    // nor compacted blocks no manifest names, nor blocks a newer epoch
    // superseded. An unreadable manifest
    // leaves readers on the small blocks, which are then all packed.
    let manifest = match newest_manifest(store, prefix, &listed).await {
        Ok(m) => m,
        Err(CompactError::Storage(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(%prefix, error = %e, "packing as if the hour had no manifest");
            None
        }
    };
    let fence = claims::fence_for(store, indexes.iter().map(|(n, _)| n.as_str())).await?;
    let live = Live::new(
        manifest.as_ref(),
        indexes.iter().map(|(n, s)| (n.as_str(), *s)),
        &fence,
    );
    indexes.retain(|(n, _)| live.reads(n));
    let old_packs: Vec<(String, PackName)> = listed
        .iter()
        .filter_map(|m| Some((m.key.clone(), PackName::parse(prefix, &m.key)?)))
        .collect();
    // Packs and sliced blooms, which are rewritten together, and the
    // indexer's tail packs, which the hour's packs make redundant.
    let old_objects: Vec<String> = old_packs
        .iter()
        .map(|(k, _)| k.clone())
        .chain(
            listed
                .iter()
                .filter(|m| {
                    parse_slices_key(prefix, &m.key).is_some()
                        || parse_tail_pack_key(prefix, &m.key).is_some()
                })
                .map(|m| m.key.clone()),
        )
        .collect();
    let digest = pack_digest(indexes.iter().map(|(n, s)| (n.as_str(), *s)));
    if indexes.is_empty() {
        for k in &old_objects {
            store.delete(k).await?;
        }
        return Ok((HourOutcome::Empty, 0, None));
    }
    if !opts.rewrite && is_complete(&old_packs, digest) {
        for m in &listed {
            if parse_tail_pack_key(prefix, &m.key).is_some() {
                store.delete(&m.key).await?;
            }
        }
        let packs = HourPacks {
            prefix: prefix.to_owned(),
            live: indexes.into_iter().collect(),
            packs: old_packs.into_iter().map(|(k, _)| k).collect(),
        };
        return Ok((HourOutcome::Current, 0, Some(packs)));
    }
    // Fresh copies of every index: an old pack's copy of a rewritten
    // index would be stale, and its size alone cannot tell.
    let fetched: Vec<(String, StorageResult<Bytes>)> = stream::iter(indexes)
        .map(|(name, _)| async move {
            let r = store.get(&format!("{prefix}{name}")).await;
            (name, r)
        })
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut members: Vec<(String, Bytes)> = Vec::with_capacity(fetched.len());
    let mut blooms: Vec<(u16, BloomFilter)> = Vec::with_capacity(fetched.len());
    let mut skipped = 0;
    for (name, r) in fetched {
        let bytes = match r {
            Ok(b) => b,
            // Deleted since the listing (retention): nothing to pack.
            Err(e) if e.kind == StorageErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match BlockIndex::decode_with_bloom(&bytes) {
            Ok((index, bloom)) => blooms.push((index.version, bloom)),
            Err(e) => {
                tracing::warn!(key = %format!("{prefix}{name}"), error = %e, "not packing a corrupt index");
                skipped += 1;
                continue;
            }
        }
        members.push((name, bytes));
    }
    let groups = runs_by_size(&members, opts.max_pack_bytes as u64, |(name, index)| {
        pack::member_len(name, index) as u64
    });
    let count = groups.len();
    let mut new_keys = Vec::with_capacity(count);
    let mut written = 0;
    for (n, group) in groups.into_iter().enumerate() {
        let ms: Vec<Member<'_>> = group
            .iter()
            .map(|(name, index)| Member {
                name: name.as_str(),
                index: index.as_ref(),
            })
            .collect();
        let body = pack::encode(&ms);
        written += body.len();
        let key = PackName { digest, n, count }.key(prefix);
        store.put(&key, Bytes::from(body)).await?;
        new_keys.push(key);
    }
    let packs = HourPacks {
        prefix: prefix.to_owned(),
        live: members
            .iter()
            .map(|(name, index)| (name.clone(), index.len() as u64))
            .collect(),
        packs: new_keys.clone(),
    };
    let inputs: Vec<slices::Input<'_>> = members
        .iter()
        .zip(&blooms)
        .map(|((name, index), (version, bloom))| slices::Input {
            name,
            index_size: index.len() as u64,
            index_version: *version,
            bloom,
        })
        .collect();
    // Slices of a few odd-sized filters (blocks from before filters came in
    // size steps) would cost a reader more GETs than they save.
    let sliced = slices::encode(&inputs).filter(|(_, blocks)| blocks * 2 >= members.len());
    if let Some((body, _)) = sliced {
        written += body.len();
        let key = slices_key(prefix, digest, xxhash_rust::xxh3::xxh3_64(&body));
        store.put(&key, Bytes::from(body)).await?;
        new_keys.push(key);
    } else {
        tracing::info!(%prefix, "not slicing the hour's bloom filters: too few share a size");
    }
    // Only once the new objects are all there; a reader that meanwhile
    // sees old and new ones uses whichever copies the listing vouches for.
    for k in &old_objects {
        if !new_keys.contains(k) {
            store.delete(k).await?;
        }
    }
    Ok((
        HourOutcome::Packed {
            indexes: members.len(),
            packs: count,
            bytes: written,
        },
        skipped,
        Some(packs),
    ))
}

/// Whether the listed packs are exactly packs `0..count` of one packing of
/// the listing whose digest is `digest`.
fn is_complete(packs: &[(String, PackName)], digest: u64) -> bool {
    let Some((_, first)) = packs.first() else {
        return false;
    };
    let ns: BTreeSet<usize> = packs
        .iter()
        .filter(|(_, p)| p.digest == digest && p.count == first.count)
        .map(|(_, p)| p.n)
        .collect();
    packs.len() == first.count && ns.len() == first.count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(digest: u64, parts: &[(usize, usize)]) -> Vec<(String, PackName)> {
        parts
            .iter()
            .map(|&(n, count)| (format!("{n}"), PackName { digest, n, count }))
            .collect()
    }

    #[test]
    fn the_sweep_deletes_only_old_files_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, age_hours: u64| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            let then =
                std::time::SystemTime::now() - std::time::Duration::from_secs(age_hours * 3600);
            f.set_modified(then).unwrap();
            path
        };
        let old = file(&format!("{SPILL_PREFIX}old"), 7);
        let new = file(&format!("{SPILL_PREFIX}new"), 1);
        let other = file("someone-elses", 30);
        sweep_spill_dir(dir.path());
        assert!(!old.exists());
        assert!(new.exists() && other.exists());
    }

    #[test]
    fn an_hour_is_current_only_with_every_pack_of_its_digest() {
        assert!(is_complete(&listed(7, &[(0, 2), (1, 2)]), 7));
        assert!(is_complete(&listed(7, &[(0, 1)]), 7));
        assert!(
            !is_complete(&listed(7, &[(0, 2), (1, 2)]), 8),
            "listing changed"
        );
        assert!(!is_complete(&listed(7, &[(0, 2)]), 7), "a pack missing");
        assert!(
            !is_complete(&listed(7, &[(0, 1), (0, 2), (1, 2)]), 7),
            "two packings"
        );
        assert!(!is_complete(&[], 7));
    }
}
