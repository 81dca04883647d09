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

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::claims;
use skidder_common::format::index::{BlockIndex, BloomFilter};
use skidder_common::format::layout::{
    decode_component, hour_prefix, pack_digest, parse_slices_key, parse_tail_pack_key, slices_key,
    tenant_prefix, PackName, INDEX_SUFFIX,
};
use skidder_common::format::manifest::Live;
use skidder_common::format::pack::{self, runs_by_size, Member};
use skidder_common::format::slices;

use crate::compactor::{newest_manifest, CompactError};
use skidder_common::storage::{
    list_all, list_folders, ObjectStore, StorageErrorKind, StorageResult,
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
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            max_pack_bytes: 64 << 20,
            concurrency: 32,
            rewrite: false,
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
/// until `stop` says to. An hour the store fails on is logged and counted,
/// and the pass goes on; listing a tenant's days must succeed.
pub async fn pack_hours(
    store: &dyn ObjectStore,
    tenants: &[String],
    (first, last): (i64, i64),
    opts: &PackOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> StorageResult<PackReport> {
    let mut report = PackReport::default();
    for tenant in tenants {
        for prefix in hours_with_days(store, tenant, (first, last)).await? {
            if stop() {
                return Ok(report);
            }
            report.hours_listed += 1;
            let (outcome, skipped) = match pack_hour(store, &prefix, opts).await {
                Ok(r) => r,
                Err(e) => {
                    report.hours_failed += 1;
                    tracing::error!(%prefix, error = %e, "could not pack an hour");
                    continue;
                }
            };
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
    }
    Ok(report)
}

/// Packs one hour, named by its prefix; also returns how many listed
/// indexes were left out as undecodable.
pub async fn pack_hour(
    store: &dyn ObjectStore,
    prefix: &str,
    opts: &PackOptions,
) -> StorageResult<(HourOutcome, usize)> {
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
        return Ok((HourOutcome::Empty, 0));
    }
    if !opts.rewrite && is_complete(&old_packs, digest) {
        for m in &listed {
            if parse_tail_pack_key(prefix, &m.key).is_some() {
                store.delete(&m.key).await?;
            }
        }
        return Ok((HourOutcome::Current, 0));
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
