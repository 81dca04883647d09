//! An open block: the records of one (tenant, app, hour) of a partition
//! as they arrive, their streams and the distinct word hashes of their
//! lines; sealing sorts the records by stream and time and builds the
//! block's bloom filter.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;
use skidder_common::format::index::{
    bloom_fp_rate, build_bloom_with_bytes, sliceable_bloom_bytes, StreamEntry,
};
use skidder_common::format::layout::BlockName;

use crate::config::BlockConfig;
use crate::models::{ParsedBatch, ParsedRecord, SealedBlock};

/// Token hashes are already xxh3 output: hash them no further.
#[derive(Default)]
struct IdentityHasher(u64);
impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}
type TokenSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// Blocks are cut per (tenant, app, hour) within a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct BlockKey {
    pub(super) tenant: Arc<str>,
    pub(super) app: Arc<str>,
    pub(super) hour: i64,
}

pub(super) struct OpenBlock {
    pub(super) name: BlockName,
    /// Set for a rebuild: the last offset of the ledger entry it rebuilds.
    /// A rebuild is written only once it has read up to there.
    pub(super) rebuild_last_offset: Option<i64>,
    pub(super) last_offset: i64,
    pub(super) opened: Instant,
    stream_ids: FxHashMap<Arc<[(String, String)]>, u32>,
    stream_labels: Vec<Arc<[(String, String)]>>,
    records: Vec<OpenRecord>,
    lines: Vec<u8>,
    tokens: TokenSet,
    /// A direct-mapped cache of recently added tokens: most of a line's
    /// words were in the lines just before it, and this skips the set for
    /// them. A miss only costs a set insert, so collisions are harmless.
    /// Allocated only once the block has [`RECENT_AFTER`] tokens, so that
    /// 100k tiny blocks (a cardinality explosion) do not cost 32 KiB each.
    recent: Box<[u64]>,
    /// Ids of the repeated values whose words the block holds.
    repeats: rustc_hash::FxHashSet<u64>,
}

/// (stream, time, line start, line len, Kafka offset)
type OpenRecord = (u32, i64, u32, u32, i64);

/// Slots of [`OpenBlock::recent`]; a power of two.
const RECENT_SLOTS: usize = 4096;
/// Room past `blocks.target_bytes` for the message that crosses it.
const LINES_SLACK: usize = 256 << 10;
/// Distinct tokens a block holds before it gets its [`OpenBlock::recent`] cache.
const RECENT_AFTER: usize = 512;
/// What an open block costs beyond its buffers: the struct, its maps' and
/// its name's headers. An estimate; it matters only for many tiny blocks.
const BLOCK_OVERHEAD: usize = 512;

impl OpenBlock {
    pub(super) fn new(name: BlockName, rebuild_last_offset: Option<i64>) -> Self {
        OpenBlock {
            last_offset: name.first_offset,
            name,
            rebuild_last_offset,
            opened: Instant::now(),
            stream_ids: FxHashMap::default(),
            stream_labels: Vec::new(),
            records: Vec::new(),
            lines: Vec::new(),
            tokens: TokenSet::default(),
            recent: Box::default(),
            repeats: Default::default(),
        }
    }

    /// Adds one record of `batch`: its stream, its line and its words; the
    /// words of a repeated value the block already holds are in its set
    /// already, so they are skipped.
    pub(super) fn append(
        &mut self,
        batch: &ParsedBatch,
        r: &ParsedRecord,
        labels: &Arc<[(String, String)]>,
        target_bytes: usize,
    ) {
        let stream = match self.stream_ids.get(labels) {
            Some(&id) => id,
            None => {
                let id = self.stream_labels.len() as u32;
                self.stream_ids.insert(labels.clone(), id);
                self.stream_labels.push(labels.clone());
                id
            }
        };
        let line = batch.line(r);
        let start = self.lines.len() as u32;
        self.push_line(line, target_bytes);
        self.records
            .push((stream, r.time_ns, start, line.len() as u32, r.offset));
        batch.for_each_token_run(r, |repeat, run| {
            if repeat.is_none_or(|id| self.repeats.insert(id)) {
                self.add_tokens(run);
            }
        });
        self.last_offset = r.offset;
    }

    fn add_tokens(&mut self, hashes: &[u64]) {
        if self.recent.is_empty() {
            if self.tokens.len() < RECENT_AFTER {
                self.tokens.extend(hashes);
                return;
            }
            self.recent = vec![0; RECENT_SLOTS].into_boxed_slice();
        }
        for &h in hashes {
            // Token hashes are uniform: the top bits pick the slot.
            let slot = (h >> (64 - RECENT_SLOTS.trailing_zeros())) as usize;
            // A zero hash matches an empty slot, so it always goes in.
            if self.recent[slot] != h || h == 0 {
                self.recent[slot] = h;
                self.tokens.insert(h);
            }
        }
    }

    /// Appends a line. Lines grow by doubling, but not far past the size
    /// the block is cut at: a 4 MiB block would otherwise double to 8 MiB
    /// for its last line, copying 4 MiB and holding 4 MiB it never uses.
    fn push_line(&mut self, line: &[u8], target_bytes: usize) {
        let need = self.lines.len() + line.len();
        let cap = self.lines.capacity();
        if need > cap {
            let limit = target_bytes.saturating_add(LINES_SLACK);
            let grown = if cap >= limit {
                cap * 2
            } else {
                (cap * 2).min(limit)
            };
            self.lines.reserve_exact(grown.max(need) - self.lines.len());
        }
        self.lines.extend_from_slice(line);
    }

    /// Raw line bytes: what `blocks.target_bytes` measures.
    pub(super) fn bytes(&self) -> usize {
        self.lines.len()
    }

    /// Memory held, for the open-block budget.
    pub(super) fn footprint(&self) -> usize {
        BLOCK_OVERHEAD
            + self.lines.capacity()
            + self.records.capacity() * std::mem::size_of::<OpenRecord>()
            + self.tokens.capacity() * 9
            + self.recent.len() * 8
            + self.repeats.capacity() * 9
            + self.stream_labels.len() * 64
    }

    /// Sorts by stream then time and builds the bloom filter.
    pub(super) fn seal(self, cfg: &BlockConfig) -> SealedBlock {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by_key(|&i| (self.records[i].0, self.records[i].1, i));
        let mut streams: Vec<StreamEntry> = Vec::new();
        let mut records = Vec::with_capacity(order.len());
        let mut offsets = Vec::with_capacity(order.len());
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (n, &i) in order.iter().enumerate() {
            let (stream, t, start, len, offset) = self.records[i];
            min_t = min_t.min(t);
            max_t = max_t.max(t);
            let current = streams.len().checked_sub(1) == Some(stream as usize);
            match streams.last_mut() {
                Some(s) if current => {
                    s.record_count += 1;
                    s.min_time_ns = s.min_time_ns.min(t);
                    s.max_time_ns = s.max_time_ns.max(t);
                }
                _ => {
                    // Streams are numbered in first-seen order, and every
                    // stream has at least one record, so ids come in order.
                    streams.push(StreamEntry {
                        labels: self.stream_labels[stream as usize].to_vec(),
                        first_record: n as u32,
                        record_count: 1,
                        min_time_ns: t,
                        max_time_ns: t,
                    });
                }
            }
            records.push((t, start, len));
            offsets.push(offset);
        }
        SealedBlock {
            bloom: {
                let budget = (self.lines.len() as f64 * cfg.bloom_max_share) as usize;
                let fp = bloom_fp_rate(
                    self.tokens.len(),
                    budget,
                    cfg.bloom_fp_rate,
                    cfg.bloom_max_fp_rate,
                );
                // In size steps, so the packer can slice an hour's filters.
                let bytes =
                    sliceable_bloom_bytes(self.tokens.len(), fp, budget, cfg.bloom_max_fp_rate);
                build_bloom_with_bytes(self.tokens.iter().copied(), bytes)
            },
            raw_bytes: self.lines.len() as u64,
            name: self.name,
            last_offset: self.last_offset,
            streams,
            records,
            offsets,
            lines: self.lines,
            min_time_ns: min_t,
            max_time_ns: max_t,
        }
    }
}
