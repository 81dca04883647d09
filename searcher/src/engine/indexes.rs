//! Step 4 of the read path: a listed block's index, from the cache, from
//! this round's packs, or from the store (one GET). An index vanished
//! since its listing or corrupt is a warning, not a failure: a listing may
//! be cached past retention, and one bad object must not hide the rest.

use std::sync::Arc;

use skidder_common::format::index::{self, BlockIndex};
use skidder_common::storage::StorageErrorKind;

use super::packs::{PackedIndex, PackedIndexes};
use super::{Engine, SearchError};

/// A decoded index as the cache holds it: its bloom filter is decoded
/// once, when read, not on every query that checks it (the index's raw
/// `bloom` bytes are left empty).
pub struct Indexed {
    pub(super) index: BlockIndex,
    pub(super) bloom: index::BloomFilter,
}

impl std::ops::Deref for Indexed {
    type Target = BlockIndex;
    fn deref(&self) -> &BlockIndex {
        &self.index
    }
}

/// What looking up a listed block's index gave.
pub(super) enum IndexRead {
    Decoded(Arc<Indexed>),
    /// Gone since the listing, or corrupt: a warning says which, and the
    /// block is left out.
    Skipped,
}

impl Engine {
    /// A decoded index, from the cache, from this round's packs, or from
    /// the store.
    pub(super) async fn index(
        &self,
        key: &str,
        packed: &PackedIndexes,
        warnings: &mut Vec<String>,
    ) -> Result<IndexRead, SearchError> {
        if let Some(i) = self.indexes.get(&key.to_owned()) {
            self.metrics
                .cache
                .with_label_values(&["index", "hit"])
                .inc();
            return Ok(IndexRead::Decoded(i));
        }
        if let Some(PackedIndex { index, cache_bytes }) = packed.get(key) {
            self.metrics
                .cache
                .with_label_values(&["index", "pack"])
                .inc();
            self.indexes
                .put(key.to_owned(), index.clone(), *cache_bytes);
            return Ok(IndexRead::Decoded(index.clone()));
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
    pub(super) async fn fetch_index(
        &self,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<IndexRead, SearchError> {
        let bytes = match self.stores.indexes.get(key).await {
            Ok(b) => b,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                self.metrics.corrupt_objects.inc();
                warnings.push(format!("skipped listed index {key}: it no longer exists"));
                return Ok(IndexRead::Skipped);
            }
            Err(e) => return Err(self.store_fault("get_index", e)),
        };
        self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
        match BlockIndex::decode_with_bloom(&bytes) {
            Ok((index, bloom)) => {
                let idx = Arc::new(Indexed { index, bloom });
                self.indexes
                    .put(key.to_owned(), idx.clone(), bytes.len() + 256);
                Ok(IndexRead::Decoded(idx))
            }
            Err(e) => {
                self.metrics.corrupt_objects.inc();
                tracing::warn!(key, error = %e, "skipping corrupt index");
                warnings.push(format!("skipped corrupt index {key}: {e}"));
                Ok(IndexRead::Skipped)
            }
        }
    }
}
