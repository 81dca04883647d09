//! Writes index packs (`format::pack`): copies of an hour's index objects
//! in one object, so a cold searcher reads the hour with one GET instead of
//! one per block.
//!
//! Packing is maintenance, not part of the write path: the indexer's
//! exactly-once bookkeeping never looks at a pack, and a searcher uses a
//! packed index only where the hour's listing agrees with it. So a pack may
//! be missing, late or out of date without losing or duplicating a line; it
//! only saves GETs. `skidder pack` runs [`pack_hours`] once or on a timer.
//! It rewrites an hour only when the hour's listed indexes differ from what
//! its packs hold, so a pass over settled hours is one LIST and a few GETs
//! per hour.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::format::index::BlockIndex;
use skidder_common::format::layout::{
    decode_component, hour_prefix, is_pack_key, pack_key, tenant_prefix, INDEX_SUFFIX,
};
use skidder_common::format::pack::{self, Member};
use skidder_common::storage::{
    list_all, ListOptions, ObjectStore, StorageErrorKind, StorageResult,
};

/// How the packer writes.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// A pack stops growing past this many bytes and the next one starts,
    /// so a huge hour becomes several GETs a reader can run side by side.
    pub max_pack_bytes: usize,
    /// Index GETs in flight while an hour is packed.
    pub concurrency: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            max_pack_bytes: 64 << 20,
            concurrency: 32,
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
}

/// The folders directly under `prefix` (S3's common prefixes), in full.
async fn folders(store: &dyn ObjectStore, prefix: &str) -> StorageResult<Vec<String>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(
                prefix,
                ListOptions {
                    delimiter: Some("/"),
                    page_token: token,
                    ..Default::default()
                },
            )
            .await?;
        out.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Every tenant with a folder at the store's root.
pub async fn tenants(store: &dyn ObjectStore) -> StorageResult<Vec<String>> {
    Ok(folders(store, "tenant=")
        .await?
        .iter()
        .filter_map(|p| decode_component(p.strip_prefix("tenant=")?.strip_suffix('/')?))
        .collect())
}

/// Packs hours `first..=last` (hours since the epoch) of each tenant.
pub async fn pack_hours(
    store: &dyn ObjectStore,
    tenants: &[String],
    first: i64,
    last: i64,
    opts: &PackOptions,
) -> StorageResult<PackReport> {
    let mut report = PackReport::default();
    for tenant in tenants {
        // Only the days that exist, so a long look back costs one LIST
        // per hour of data, not per hour of calendar.
        let days: BTreeSet<String> = folders(store, &tenant_prefix(tenant))
            .await?
            .into_iter()
            .collect();
        for hour in first..=last {
            let prefix = hour_prefix(tenant, hour);
            let Some(day) = prefix.find("hour=").map(|at| &prefix[..at]) else {
                continue;
            };
            if !days.contains(day) {
                continue;
            }
            let (outcome, skipped) = pack_hour(store, &prefix, opts).await?;
            report.hours_listed += 1;
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
    let indexes: BTreeSet<(String, u64)> = listed
        .iter()
        .filter(|m| m.key.ends_with(INDEX_SUFFIX))
        .filter_map(|m| Some((m.key.strip_prefix(prefix)?.to_owned(), m.size)))
        .collect();
    let old_packs: Vec<String> = listed
        .iter()
        .filter(|m| is_pack_key(prefix, &m.key))
        .map(|m| m.key.clone())
        .collect();
    if indexes.is_empty() {
        for k in &old_packs {
            store.delete(k).await?;
        }
        return Ok((HourOutcome::Empty, 0));
    }
    if packed_members(store, &old_packs).await?.as_ref() == Some(&indexes) {
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
    let mut skipped = 0;
    for (name, r) in fetched {
        let bytes = match r {
            Ok(b) => b,
            // Deleted since the listing (retention): nothing to pack.
            Err(e) if e.kind == StorageErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Err(e) = BlockIndex::decode(&bytes) {
            tracing::warn!(key = %format!("{prefix}{name}"), error = %e, "not packing a corrupt index");
            skipped += 1;
            continue;
        }
        members.push((name, bytes));
    }
    let mut written = 0;
    let mut packs = 0;
    for group in groups(&members, opts.max_pack_bytes) {
        let ms: Vec<Member<'_>> = group
            .iter()
            .map(|(name, index)| Member {
                name: name.as_str(),
                index: index.as_ref(),
            })
            .collect();
        let body = pack::encode(&ms);
        written += body.len();
        store
            .put(&pack_key(prefix, packs), Bytes::from(body))
            .await?;
        packs += 1;
    }
    // Old packs past the new count; the new ones overwrote the rest.
    for k in &old_packs {
        if !(0..packs).any(|n| pack_key(prefix, n) == *k) {
            store.delete(k).await?;
        }
    }
    Ok((
        HourOutcome::Packed {
            indexes: members.len(),
            packs,
            bytes: written,
        },
        skipped,
    ))
}

/// The (name, size) of every member of an hour's packs, or `None` if a
/// pack is missing or unreadable (then the hour is simply repacked).
async fn packed_members(
    store: &dyn ObjectStore,
    packs: &[String],
) -> StorageResult<Option<BTreeSet<(String, u64)>>> {
    if packs.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for key in packs {
        let bytes = match store.get(key).await {
            Ok(b) => b,
            Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(members) = pack::decode(&bytes) else {
            tracing::warn!(%key, "rewriting an unreadable index pack");
            return Ok(None);
        };
        for m in members {
            if !out.insert((m.name.to_owned(), m.index.len() as u64)) {
                // The same index in two packs: an interrupted rewrite.
                return Ok(None);
            }
        }
    }
    Ok(Some(out))
}

/// Splits members, in order, into runs of at most `max_bytes` (a single
/// member larger than that gets a pack of its own).
fn groups(members: &[(String, Bytes)], max_bytes: usize) -> Vec<&[(String, Bytes)]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    for (i, (name, index)) in members.iter().enumerate() {
        let len = 8 + name.len() + index.len();
        if i > start && size + len > max_bytes {
            out.push(&members[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < members.len() {
        out.push(&members[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, len: usize) -> (String, Bytes) {
        (name.to_owned(), Bytes::from(vec![0u8; len]))
    }

    #[test]
    fn groups_split_at_the_size_cap_and_keep_order() {
        let ms = vec![
            member("a", 40),
            member("b", 40),
            member("c", 100),
            member("d", 1),
        ];
        let g = groups(&ms, 100);
        let names: Vec<Vec<&str>> = g
            .iter()
            .map(|g| g.iter().map(|(n, _)| n.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
        assert!(groups(&[], 100).is_empty());
    }
}
