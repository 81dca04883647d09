//! Step 3 of the read path: read an hour's indexes from its index packs
//! (`format::pack`, written by `skidder pack`, or by the indexer as tail
//! packs of an hour not yet packed): one GET per pack rather than one per
//! block, which is what a cold query over many hours costs.
//!
//! A pack is a shortcut, never a source of truth: only members the hour's
//! listing vouches for (same key, same size) are used, and a pack that is
//! gone or does not decode only costs the GETs of its indexes, one by one.
//! Packs are read in rounds of about `cache_bytes` worth of hours, so what
//! a query holds at once stays bounded.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use skidder_common::format::index::BlockIndex;
use skidder_common::format::pack;
use skidder_common::format::FormatError;
use skidder_common::storage::StorageErrorKind;

use super::indexes::Indexed;
use super::listing::HourListing;
use super::{Engine, SearchError};

/// Index packs read and decoded at once per query: one per core (at
/// least 2, at most 8), as decoding is CPU work. Measured on 2 cores, 4 at
/// once were slower than 2 (`docs/BENCHMARKS.md`).
fn packs_in_flight() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Packs no larger than this on average are fetched
/// `index_fetch_concurrency` at once (and still decoded
/// [`packs_in_flight`] at once): an unsettled hour has hundreds of the
/// indexer's small tail packs, whose GETs would otherwise queue behind
/// one another.
const SMALL_PACK_BYTES: u64 = 8 << 20;

/// A query reads the packs of about `cache_bytes` worth of hours (at least
/// this much), prunes those hours, and drops the decoded indexes that are
/// not candidates before it reads the next hours' packs. What a query holds
/// is then bounded by that, its candidates and the cache; an hour whose
/// packs alone exceed it is still read whole.
pub(super) const MIN_PACK_BYTES_PER_ROUND: u64 = 64 << 20;

/// An index decoded from a pack, not yet in the cache.
pub(super) struct PackedIndex {
    pub(super) index: Arc<Indexed>,
    /// What it is charged in the cache once used.
    pub(super) cache_bytes: usize,
}

/// A round's packed indexes by full index key.
pub(super) type PackedIndexes = HashMap<String, PackedIndex>;

/// What reading one pack gave.
enum PackRead {
    /// The members the hour's listing vouches for, by full key.
    Decoded(Vec<(String, PackedIndex)>),
    /// Replaced or deleted since the listing: its indexes are fetched one
    /// by one.
    Gone,
    /// Does not decode: its indexes are fetched one by one.
    Unreadable(String),
}

/// Splits listed hours, in order, into runs whose packs together stay
/// under `max` bytes (an hour with more gets a run of its own).
pub(super) fn pack_rounds(hours: &[Arc<HourListing>], max: u64) -> Vec<&[Arc<HourListing>]> {
    pack::runs_by_size(hours, max, |h| h.pack_bytes)
}

/// Decodes the members of a pack of the hour at `prefix` that `wanted`
/// lists with their exact size; a member that does not decode is left out
/// (fetched on its own, which reports it if the index object is corrupt
/// too). Keys come back in full.
fn decode_pack(
    bytes: &[u8],
    prefix: &str,
    wanted: &HashMap<String, u64>,
) -> Result<Vec<(String, PackedIndex)>, FormatError> {
    let mut out = Vec::new();
    for m in pack::decode(bytes)? {
        if wanted.get(m.name) != Some(&(m.index.len() as u64)) {
            continue;
        }
        // The pack's CRC covered the member's bytes.
        if let Ok((index, bloom)) = BlockIndex::decode_with_bloom_verified(m.index) {
            let packed = PackedIndex {
                index: Arc::new(Indexed { index, bloom }),
                cache_bytes: m.index.len() + 256,
            };
            out.push((format!("{prefix}{}", m.name), packed));
        }
    }
    Ok(out)
}

impl Engine {
    /// Reads and decodes the packs of `hours`, a few at a time and off the
    /// async threads (a pack is megabytes of indexes). It keeps the packed
    /// indexes each hour's listing vouches for (the same key, listed with
    /// the same size) and the cache lacks; every other listed index is
    /// then fetched on its own, as if there were no pack, so an unreadable
    /// pack only costs GETs.
    /// Indexes in `ruled_out` are not wanted; an hour whose sliced blooms
    /// left few enough wanted for one wave of GETs reads them on their own.
    pub(super) async fn read_packs(
        &self,
        hours: &[Arc<HourListing>],
        ruled_out: &HashSet<String>,
    ) -> Result<PackedIndexes, SearchError> {
        let (mut jobs, mut largest) = (Vec::new(), 0u64);
        let packed = hours.iter().filter(|h| !h.packs.is_empty());
        for hour in packed.filter(|_| self.cfg.read_packs) {
            let wanted: HashMap<String, u64> = self
                .uncached(hour)
                .filter(|(key, _, _)| !ruled_out.contains(*key))
                .map(|(_, name, size)| (name.to_owned(), size))
                .collect();
            let sliced = hour.indexes.iter().any(|(k, _)| ruled_out.contains(k));
            // A pack holds every app's indexes: for a few apps' handful,
            // or what sliced blooms left, single GETs cost less.
            let few = wanted.len() <= self.cfg.index_fetch_concurrency.max(1);
            if wanted.is_empty() || ((sliced || hour.scoped) && few) {
                continue;
            }
            let wanted = Arc::new(wanted);
            for key in &hour.packs {
                jobs.push((key.clone(), hour.prefix.clone(), wanted.clone()));
            }
            largest = largest.max(hour.pack_bytes / hour.packs.len() as u64);
        }
        let decoding = Arc::new(tokio::sync::Semaphore::new(packs_in_flight()));
        let fetching = if largest <= SMALL_PACK_BYTES {
            self.cfg.index_fetch_concurrency.max(packs_in_flight())
        } else {
            packs_in_flight()
        };
        // Owned items: borrowed ones trip the `Send` check of the handlers'
        // futures (see `fetch_many`).
        let mut reads = stream::iter(jobs)
            .map(|(key, prefix, wanted)| {
                let decoding = decoding.clone();
                async move {
                    let bytes = match self.stores.packs.get(&key).await {
                        Ok(b) => b,
                        Err(e) if e.kind == StorageErrorKind::NotFound => {
                            return Ok((key, PackRead::Gone))
                        }
                        Err(e) => return Err(e),
                    };
                    self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
                    let Ok(_permit) = decoding.acquire_owned().await else {
                        unreachable!("the semaphore is never closed");
                    };
                    let decoded =
                        tokio::task::spawn_blocking(move || decode_pack(&bytes, &prefix, &wanted))
                            .await;
                    let read = match decoded {
                        Ok(Ok(members)) => PackRead::Decoded(members),
                        Ok(Err(e)) => PackRead::Unreadable(e.to_string()),
                        // The decoding task panicked or was cancelled.
                        Err(e) => PackRead::Unreadable(e.to_string()),
                    };
                    Ok((key, read))
                }
            })
            .buffer_unordered(fetching);
        let mut out = HashMap::new();
        while let Some(r) = reads.next().await {
            let (key, read) = r.map_err(|e| self.store_fault("get_pack", e))?;
            match read {
                PackRead::Decoded(members) => {
                    self.metrics.packs_read.with_label_values(&["ok"]).inc();
                    out.extend(members);
                }
                PackRead::Gone => {}
                PackRead::Unreadable(error) => {
                    self.unreadable(&self.metrics.packs_read, &key, &error, "an index pack")
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_rounds_bound_the_pack_bytes_held_at_once() {
        let hour = |mib: u64| {
            Arc::new(HourListing {
                prefix: String::new(),
                indexes: Vec::new(),
                packs: Vec::new(),
                pack_bytes: mib << 20,
                slices: None,
                labels: std::collections::HashMap::new(),
                scoped: false,
                manifest: None,
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
}
