//! Retention's cut-offs (`format::retention`): hours a retention pass has
//! expired are skipped whole, from the moment the searcher reads the
//! tenant's marker, so a query never sees an hour half deleted. The marker
//! is re-read after `listing_cache_secs`, as listings are; retention waits
//! longer than that before it deletes.

use std::sync::Arc;
use std::time::Instant;

use skidder_common::format::layout::app_of;
use skidder_common::format::retention::{marker_key, Cutoffs};
use skidder_common::storage::StorageErrorKind;

use super::listing::HourListing;
use super::{Engine, SearchError};

/// A tenant's cut-offs as last read, and when.
pub(super) struct CachedCutoffs {
    read_at: Instant,
    cutoffs: Option<Arc<Cutoffs>>,
}

impl Engine {
    /// The tenant's published cut-offs, if it has any; cached for
    /// `listing_cache_secs`. An unreadable marker hides nothing, and is
    /// counted as a corrupt object.
    pub(super) async fn cutoffs(&self, tenant: &str) -> Result<Option<Arc<Cutoffs>>, SearchError> {
        let ttl = std::time::Duration::from_secs(self.cfg.listing_cache_secs);
        if let Some(c) = self.lock_cutoffs().get(tenant) {
            if c.read_at.elapsed() < ttl {
                return Ok(c.cutoffs.clone());
            }
        }
        let read_at = Instant::now();
        let key = marker_key(tenant);
        let cutoffs = match self.stores.retention.get(&key).await {
            Ok(bytes) => match Cutoffs::from_json(&bytes) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    self.metrics.corrupt_objects.inc();
                    tracing::warn!(%key, error = %e, "unreadable retention marker; hiding nothing");
                    None
                }
            },
            Err(e) if e.kind == StorageErrorKind::NotFound => None,
            Err(e) => return Err(self.store_fault("get_retention", e)),
        };
        let mut cached = self.lock_cutoffs();
        // A cap on tenants remembered; beyond it, start again.
        if cached.len() > 100_000 {
            cached.clear();
        }
        cached.insert(
            tenant.to_owned(),
            CachedCutoffs {
                read_at,
                cutoffs: cutoffs.clone(),
            },
        );
        Ok(cutoffs)
    }

    fn lock_cutoffs(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CachedCutoffs>> {
        self.cutoffs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `listing` without the blocks of apps whose hour `cutoffs` hides.
pub(super) fn without_expired(
    listing: Arc<HourListing>,
    hour: i64,
    cutoffs: &Cutoffs,
) -> Arc<HourListing> {
    if !cutoffs.hides_any(hour) {
        return listing;
    }
    let kept =
        |key: &String| app_of(&listing.prefix, key).is_none_or(|app| !cutoffs.hides(hour, &app));
    if listing.indexes.iter().all(|(k, _)| kept(k)) {
        return listing;
    }
    Arc::new(HourListing {
        prefix: listing.prefix.clone(),
        indexes: listing
            .indexes
            .iter()
            .filter(|(k, _)| kept(k))
            .cloned()
            .collect(),
        packs: listing.packs.clone(),
        pack_bytes: listing.pack_bytes,
        slices: listing.slices.clone(),
        labels: listing.labels.clone(),
        scoped: listing.scoped,
        // Not the cached listing: its manifest, once read, is not cached.
        manifest: listing.manifest.as_ref().map(|m| m.uncached()),
    })
}
