//! Step 2 of the read path: rule out blocks with sliced blooms
//! (`format::slices`, written by `skidder pack`) before any index is read.
//! For a query with tokens, a few small ranged GETs of the rows the tokens
//! pick replace a GET of every index of a cold hour. A day's sliced blooms
//! hold the rows of all its hours, so a cold needle over a day reads k rows
//! per filter size once, not once per hour.
//!
//! Sliced blooms are a shortcut, never a source of truth: gone or
//! unreadable ones rule nothing out, and only blocks whose listed index
//! name and size they vouch for are probed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use skidder_common::format::layout::{day_prefix_of, day_slices_prefix, parse_slices_key};
use skidder_common::format::slices::{self, Chunks, Head};
use skidder_common::format::FormatError;
use skidder_common::storage::{list_all, ObjectStore, StorageErrorKind};

use super::listing::{HourListing, Listing};
use super::{Engine, SearchError};

/// Bytes a reader asks for first from sliced blooms: the head of a busy
/// hour's (about 60 bytes per block) in one GET.
const SLICES_HEAD_READ: u64 = 64 << 10;

/// What sliced blooms said.
enum Sliced {
    /// Of the blocks they vouch for (by index key), these lack a token the
    /// query needs.
    Probed {
        vouched: Vec<String>,
        ruled_out: Vec<String>,
    },
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

/// One probe of sliced blooms: the object, and the uncached indexes it may
/// vouch for, by name relative to `prefix` (an hour's or a day's).
struct Job {
    prefix: String,
    key: String,
    size: u64,
    wanted: HashMap<String, u64>,
    /// A day's, not an hour's: counted apart in the store's requests.
    day: bool,
}

impl Engine {
    /// The index keys of `hours` whose blocks sliced blooms rule out for
    /// `tokens` (per index version). A day's sliced blooms, where the day
    /// has them, are probed first, for the rows of every hour at once;
    /// each hour's own then only for the blocks the day's did not vouch
    /// for. Only uncached indexes whose listed name and size the slices
    /// vouch for are probed; sliced blooms that are gone or do not decode
    /// rule nothing out.
    pub(super) async fn read_slices(
        &self,
        hours: &[Arc<HourListing>],
        tokens: &Arc<Vec<Vec<u64>>>,
    ) -> Result<HashSet<String>, SearchError> {
        let mut out = HashSet::new();
        if !self.cfg.read_slices || tokens.iter().all(Vec::is_empty) {
            return Ok(out);
        }
        let mut days: BTreeMap<&str, HashMap<String, u64>> = BTreeMap::new();
        for h in hours {
            let Some(day) = day_prefix_of(&h.prefix) else {
                continue;
            };
            let wanted = days.entry(day).or_default();
            for (key, _, size) in self.uncached(h) {
                if let Some(name) = key.strip_prefix(day) {
                    wanted.insert(name.to_owned(), size);
                }
            }
        }
        // Each day's LIST, side by side (owned items, as below).
        let days: Vec<(String, HashMap<String, u64>)> = days
            .into_iter()
            .filter(|(_, wanted)| wanted.len() >= 2)
            .map(|(day, wanted)| (day.to_owned(), wanted))
            .collect();
        let found: Vec<_> = stream::iter(days)
            .map(|(day, wanted)| async move {
                let r = self.day_slices(&day).await;
                (day, wanted, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1))
            .collect()
            .await;
        let mut day_jobs = Vec::new();
        for (prefix, wanted, r) in found {
            if let Some((key, size)) = r? {
                day_jobs.push(Job {
                    prefix,
                    key,
                    size,
                    wanted,
                    day: true,
                });
            }
        }
        let vouched = self.run_slices(day_jobs, tokens, &mut out).await?;
        let hour_jobs = hours
            .iter()
            .filter_map(|h| {
                let (key, size) = h.slices.clone()?;
                let wanted: HashMap<String, u64> = self
                    .uncached(h)
                    .filter(|(k, _, _)| !vouched.contains(*k))
                    .map(|(_, name, size)| (name.to_owned(), size))
                    .collect();
                (!wanted.is_empty()).then(|| Job {
                    prefix: h.prefix.clone(),
                    key,
                    size,
                    wanted,
                    day: false,
                })
            })
            .collect();
        self.run_slices(hour_jobs, tokens, &mut out).await?;
        Ok(out)
    }

    /// Probes `jobs` side by side, adding what they rule out to `out`;
    /// returns the index keys they vouched for.
    async fn run_slices(
        &self,
        jobs: Vec<Job>,
        tokens: &Arc<Vec<Vec<u64>>>,
        out: &mut HashSet<String>,
    ) -> Result<HashSet<String>, SearchError> {
        let mut vouched_all = HashSet::new();
        // Owned items: borrowed ones trip the `Send` check of the handlers'
        // futures (see `fetch_many`).
        let jobs: Vec<_> = jobs.into_iter().map(|j| (j, tokens.clone())).collect();
        let mut sliced = stream::iter(jobs)
            .map(|(job, tokens)| async move {
                let r = self.probe_slices(&job, &tokens).await;
                (job.key, r)
            })
            .buffer_unordered(self.cfg.index_fetch_concurrency.max(1));
        while let Some((key, r)) = sliced.next().await {
            match r? {
                Sliced::Probed { vouched, ruled_out } => {
                    self.metrics.slices_read.with_label_values(&["ok"]).inc();
                    vouched_all.extend(vouched);
                    out.extend(ruled_out);
                }
                Sliced::Unused => {}
                Sliced::Unreadable(error) => {
                    self.unreadable(&self.metrics.slices_read, &key, &error, "sliced blooms")
                }
            }
        }
        Ok(vouched_all)
    }

    /// A day's sliced blooms, if it has them, and their listed size: one
    /// LIST of `<day>_blooms.`, cached for `listing_cache_secs`. Of two
    /// (a packer between writing one and deleting the other), either
    /// serves: each vouches only for what the listing agrees with.
    async fn day_slices(&self, day: &str) -> Result<Option<(String, u64)>, SearchError> {
        let cache_key = format!("\n{day}");
        let ttl = std::time::Duration::from_secs(self.cfg.listing_cache_secs);
        if let Some(v) = self.listings.get(&cache_key) {
            if v.read_at.elapsed() < ttl {
                return Ok(v.hour.slices.clone());
            }
        }
        let read_at = std::time::Instant::now();
        let listed = list_all(&*self.stores.day_slices, &day_slices_prefix(day))
            .await
            .map_err(|e| self.store_fault("list", e))?;
        let slices = listed
            .into_iter()
            .filter(|m| parse_slices_key(day, &m.key).is_some())
            .max_by_key(|m| m.size)
            .map(|m| (m.key, m.size));
        if !ttl.is_zero() {
            let bytes = cache_key.len() + slices.as_ref().map_or(0, |(k, _)| k.len()) + 64;
            let hour = Arc::new(HourListing::day(day, slices.clone()));
            self.listings
                .put(cache_key, Arc::new(Listing { read_at, hour }), bytes);
        }
        Ok(slices)
    }

    /// One [`Job`]: the head, then the chunks of the rows the tokens pick.
    async fn probe_slices(&self, job: &Job, tokens: &[Vec<u64>]) -> Result<Sliced, SearchError> {
        let key = job.key.as_str();
        let store = if job.day {
            &self.stores.day_slices
        } else {
            &self.stores.slices
        };
        let head = match self.slices_head(store, key, job.size).await? {
            SlicesHead::Read(h) => h,
            SlicesHead::Gone => return Ok(Sliced::Unused),
            SlicesHead::Unreadable(e) => return Ok(Sliced::Unreadable(e)),
        };
        let vouched: Vec<_> = head
            .blocks
            .iter()
            .filter(|b| job.wanted.get(b.name.as_str()) == Some(&b.index_size))
            .collect();
        if vouched.is_empty() {
            return Ok(Sliced::Unused);
        }
        let probe = match head.probe(vouched.iter().copied(), tokens) {
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
                let r = store.get_range(key, range.clone()).await;
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
        let full = |name: &str| format!("{}{name}", job.prefix);
        Ok(Sliced::Probed {
            vouched: vouched.iter().map(|b| full(&b.name)).collect(),
            ruled_out: probe
                .ruled_out(&chunks)
                .iter()
                .map(|b| full(&b.name))
                .collect(),
        })
    }

    /// The head of the sliced blooms at `key`, listed with `size` bytes:
    /// cached, or read with one ranged GET (two for a head over
    /// [`SLICES_HEAD_READ`]).
    async fn slices_head(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &str,
        size: u64,
    ) -> Result<SlicesHead, SearchError> {
        if let Some(h) = self.heads.get(&key.to_owned()) {
            return Ok(SlicesHead::Read(h));
        }
        let get = |end: u64| async move {
            match store.get_range(key, 0..end).await {
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
