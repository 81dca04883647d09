//! Step 6 of the read path: fetch a candidate's data block and verify it
//! against its index's checksum before a byte of it is scanned. A block
//! that fails may be newer than a packed or cached index, so the index
//! object is read again before the block is called corrupt.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::format::layout::index_key_of;
use skidder_common::storage::StorageErrorKind;

use super::indexes::{IndexRead, Indexed};
use super::prune::Candidate;
use super::{Engine, SearchError};

/// What fetching a candidate's block gave.
pub(super) enum FetchedBlock {
    /// The block passed the checksum of the index it was pruned with.
    Verified(Bytes),
    /// The block failed the index it was pruned with but passes the index
    /// object read again: that index was out of date, so scan with this one.
    VerifiedByFreshIndex { data: Bytes, index: Arc<Indexed> },
    /// Missing or corrupt: a warning says which, and the block is left out.
    Skipped,
}

impl Engine {
    /// Fetches and verifies a data block. A missing or corrupt one is
    /// skipped with a warning; a store fault is an error. A block that
    /// fails its index's checksum may have been rewritten after the index
    /// was read (a packed copy, or a cached one, of an index a newer writer
    /// replaced under the same name): the index object is read again, and
    /// if the block passes it, that index comes back too, to scan with.
    async fn fetch(
        &self,
        idx: &Indexed,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<FetchedBlock, SearchError> {
        let data = match self.stores.blocks.get(key).await {
            Ok(d) => d,
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                self.metrics.corrupt_objects.inc();
                warnings.push(format!("index points to a missing block {key}"));
                return Ok(FetchedBlock::Skipped);
            }
            Err(e) => return Err(self.store_fault("get_block", e)),
        };
        self.metrics.blocks_fetched.inc();
        self.metrics.bytes_fetched.inc_by(data.len() as u64);
        let Err(e) = idx.verify_data(&data) else {
            return Ok(FetchedBlock::Verified(data));
        };
        if let IndexRead::Decoded(fresh) = self.fetch_index(&index_key_of(key), warnings).await? {
            if fresh.verify_data(&data).is_ok() {
                self.metrics.stale_indexes.inc();
                tracing::info!(key, "an index read earlier was out of date; read it again");
                return Ok(FetchedBlock::VerifiedByFreshIndex { data, index: fresh });
            }
        }
        self.metrics.corrupt_objects.inc();
        tracing::warn!(key, error = %e, "skipping corrupt block");
        warnings.push(format!("skipped corrupt block {key}: {e}"));
        Ok(FetchedBlock::Skipped)
    }

    /// Fetches the candidates' blocks, a few at a time, in order, each with
    /// the warnings its fetch raised.
    pub(super) async fn fetch_many(
        &self,
        cands: &[Candidate],
    ) -> Vec<(Result<FetchedBlock, SearchError>, Vec<String>)> {
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
}
