//! Step 2 of the read path: rule out blocks with an hour's sliced blooms
//! (`format::slices`, written by `skidder pack`) before any of its indexes
//! is read. For a query with tokens, a few small ranged GETs of the rows
//! the tokens pick replace a GET of every index of a cold hour.
//!
//! Sliced blooms are a shortcut, never a source of truth: gone or
//! unreadable ones rule nothing out, and only blocks whose listed index
//! name and size they vouch for are probed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use skidder_common::format::slices::{self, Chunks, Head};
use skidder_common::format::FormatError;
use skidder_common::storage::StorageErrorKind;

use super::listing::HourListing;
use super::{Engine, SearchError};

/// Bytes a reader asks for first from sliced blooms: the head of a busy
/// hour's (about 60 bytes per block) in one GET.
const SLICES_HEAD_READ: u64 = 64 << 10;

/// What an hour's sliced blooms said.
enum Sliced {
    /// These index keys' blocks lack a token the query needs.
    RuledOut(Vec<String>),
    /// Nothing to rule out (every index is cached), or replaced or
    /// deleted since the listing.
    Unused,
    /// The object does not decode: nothing is ruled out.
    Unreadable(FormatError),
}

/// What reading the head of sliced blooms gave.
enum SlicesHead {
    /// Decoded, checked, and as long as the listing said.
    Read(Arc<Head>),
    /// Replaced or deleted since the listing.
    Gone,
    /// Does not decode, or is not the length the listing said.
    Unreadable(FormatError),
}

impl Engine {
    /// The index keys of `hours` whose blocks each hour's sliced blooms
    /// rule out for `tokens` (per index version). Only uncached indexes
    /// the slices vouch for (the listed name and size) are probed; sliced
    /// blooms that are gone or do not decode rule nothing out.
    pub(super) async fn read_slices(
        &self,
        hours: &[Arc<HourListing>],
        tokens: &Arc<Vec<Vec<u64>>>,
    ) -> Result<HashSet<String>, SearchError> {
        let mut out = HashSet::new();
        if !self.cfg.read_slices || tokens.iter().all(Vec::is_empty) {
            return Ok(out);
        }
        // Owned items: borrowed ones trip the `Send` check of the handlers'
        // futures (see `fetch_many`).
        let jobs: Vec<_> = hours
            .iter()
            .filter_map(|h| Some((h.clone(), h.slices.clone()?, tokens.clone())))
            .collect();
        let mut sliced = stream::iter(jobs)
            .map(|(hour, (key, size), tokens)| async move {
                let r = self.hour_slices(&hour, &key, size, &tokens).await;
                (key, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1));
        while let Some((key, r)) = sliced.next().await {
            match r? {
                Sliced::RuledOut(keys) => {
                    self.metrics.slices_read.with_label_values(&["ok"]).inc();
                    out.extend(keys);
                }
                Sliced::Unused => {}
                Sliced::Unreadable(error) => {
                    self.unreadable(&self.metrics.slices_read, &key, &error, "sliced blooms")
                }
            }
        }
        Ok(out)
    }

    /// One hour of [`read_slices`](Self::read_slices).
    async fn hour_slices(
        &self,
        hour: &HourListing,
        key: &str,
        size: u64,
        tokens: &[Vec<u64>],
    ) -> Result<Sliced, SearchError> {
        let wanted: HashMap<&str, u64> = self
            .uncached(hour)
            .map(|(_, name, size)| (name, size))
            .collect();
        if wanted.is_empty() {
            return Ok(Sliced::Unused);
        }
        let head = match self.slices_head(key, size).await? {
            SlicesHead::Read(h) => h,
            SlicesHead::Gone => return Ok(Sliced::Unused),
            SlicesHead::Unreadable(e) => return Ok(Sliced::Unreadable(e)),
        };
        let vouched = head
            .blocks
            .iter()
            .filter(|b| wanted.get(b.name.as_str()) == Some(&b.index_size));
        let probe = match head.probe(vouched, tokens) {
            Ok(p) => p,
            Err(e) => return Ok(Sliced::Unreadable(e)),
        };
        let mut chunks = Chunks::new();
        let mut missing = Vec::new();
        for (at, range) in probe.chunks() {
            match self.chunks.get(&(key.to_owned(), at.0, at.1)) {
                Some(rows) => {
                    chunks.insert(at, rows);
                }
                None => missing.push((at, range)),
            }
        }
        let fetched: Vec<_> = stream::iter(missing)
            .map(|(at, range)| async move {
                let r = self.stores.slices.get_range(key, range.clone()).await;
                (at, range, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1))
            .collect()
            .await;
        for (at, range, r) in fetched {
            let bytes = match r {
                Ok(b) => b,
                Err(e) if e.kind == StorageErrorKind::NotFound => return Ok(Sliced::Unused),
                Err(e) => return Err(self.store_fault("get_slices", e)),
            };
            self.metrics.bytes_fetched.inc_by(bytes.len() as u64);
            let rows = match slices::chunk_rows(&bytes, &range) {
                Ok(rows) => Arc::new(rows),
                Err(e) => return Ok(Sliced::Unreadable(e)),
            };
            let len = rows.len() + key.len() + 64;
            self.chunks
                .put((key.to_owned(), at.0, at.1), rows.clone(), len);
            chunks.insert(at, rows);
        }
        let keys = probe
            .ruled_out(&chunks)
            .iter()
            .map(|b| format!("{}{}", hour.prefix, b.name))
            .collect();
        Ok(Sliced::RuledOut(keys))
    }

    /// The head of the sliced blooms at `key`, listed with `size` bytes:
    /// cached, or read with one ranged GET (two for a head over
    /// [`SLICES_HEAD_READ`]).
    async fn slices_head(&self, key: &str, size: u64) -> Result<SlicesHead, SearchError> {
        if let Some(h) = self.heads.get(&key.to_owned()) {
            return Ok(SlicesHead::Read(h));
        }
        let get = |end: u64| async move {
            match self.stores.slices.get_range(key, 0..end).await {
                Ok(b) => {
                    self.metrics.bytes_fetched.inc_by(b.len() as u64);
                    Ok(Some(b))
                }
                Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.store_fault("get_slices", e)),
            }
        };
        let Some(mut bytes) = get(size.min(SLICES_HEAD_READ)).await? else {
            return Ok(SlicesHead::Gone);
        };
        let len = match slices::head_len(&bytes) {
            Ok(len) => len as u64,
            Err(e) => return Ok(SlicesHead::Unreadable(e)),
        };
        if len > bytes.len() as u64 && len <= size {
            let Some(b) = get(len).await? else {
                return Ok(SlicesHead::Gone);
            };
            bytes = b;
        }
        let head = match Head::decode(&bytes) {
            Ok(h) if h.total_len == size => h,
            Ok(h) => {
                return Ok(SlicesHead::Unreadable(FormatError::Corrupt {
                    offset: 0,
                    reason: format!("{} bytes long, listed with {size}", h.total_len),
                }))
            }
            Err(e) => return Ok(SlicesHead::Unreadable(e)),
        };
        let head = Arc::new(head);
        self.heads
            .put(key.to_owned(), head.clone(), len as usize * 2);
        Ok(SlicesHead::Read(head))
    }
}
