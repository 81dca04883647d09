//! Step 1 of the read path: list an hour's prefix. A query's time range
//! picks whole hours, and listing one is the only way to learn which
//! blocks, packs and sliced blooms it holds. Listings of closed hours are
//! cached for `listing_cache_secs`, as a cold query over many hours is
//! mostly listing round trips.

use std::sync::Arc;

use skidder_common::format::layout::{
    hour_prefix, now_ns, parse_slices_key, PackName, INDEX_SUFFIX, NS_PER_HOUR,
};
use skidder_common::storage::list_all;

use super::{Engine, SearchError};

/// What listing an hour found: its index keys with their listed sizes,
/// and its index packs.
pub(super) struct HourListing {
    pub(super) prefix: String,
    pub(super) indexes: Vec<(String, u64)>,
    pub(super) packs: Vec<String>,
    /// Listed bytes of the packs.
    pub(super) pack_bytes: u64,
    /// The hour's sliced blooms, if listed, and their listed size.
    pub(super) slices: Option<(String, u64)>,
}

/// A cached listing, and when it was read.
pub(super) struct Listing {
    read_at: std::time::Instant,
    hour: Arc<HourListing>,
}

impl Engine {
    /// The index keys and packs under one hour prefix; cached, once the
    /// hour is closed, for `listing_cache_secs`.
    pub(super) async fn hour_listing(
        &self,
        tenant: &str,
        hour: i64,
    ) -> Result<Arc<HourListing>, SearchError> {
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
        for m in list_all(&*self.stores.listing, &prefix)
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
        let closed =
            (hour + 1) * NS_PER_HOUR + self.cfg.closed_after_secs * 1_000_000_000 < now_ns();
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

    /// An hour's listed indexes that are not cached, as (key, name
    /// relative to the hour prefix, listed size): what sliced blooms and
    /// packs may save GETs for.
    pub(super) fn uncached<'a>(
        &'a self,
        hour: &'a HourListing,
    ) -> impl Iterator<Item = (&'a str, &'a str, u64)> + 'a {
        hour.indexes
            .iter()
            .filter(|(k, _)| !self.indexes.contains(k))
            .map(|(k, size)| (k.as_str(), k.strip_prefix(&hour.prefix).unwrap_or(k), *size))
    }
}
