//! Stage 3: groups records by (tenant, app, hour) per partition into
//! blocks, and cuts a block when it reaches its target size, when it has
//! been open for the flush interval, or when told to flush.
//!
//! It also carries out the replay half of exactly-once (`docs/DESIGN.md`):
//! a record that a ledger entry says belongs to an already-named block is
//! either skipped (that block is stored for certain) or put into a rebuild
//! of exactly that block, which then overwrites the original.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skidder_common::format::index::{
    bloom_fp_rate, build_bloom_with_bytes, sliceable_bloom_bytes, StreamEntry,
};
use skidder_common::format::layout::{hour_of, BlockName};
use skidder_common::format::ledger::LedgerEntry;

use super::StageExit;
use crate::config::BlockConfig;
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::{Control, Item, ParsedBatch, PartitionPlan, SealedBlock, TopicPartition};
use crate::offsets::OffsetTracker;
use crate::queue::{ByteQueue, PopError, Weighted};

impl Weighted for Item<ParsedBatch> {
    fn weight(&self) -> usize {
        match self {
            Item::Data(b) => b.weight(),
            Item::Control(_) => 64,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    tenant: Arc<str>,
    app: Arc<str>,
    hour: i64,
}

struct OpenBlock {
    name: BlockName,
    /// Set for a rebuild: the ledger entry's last offset.
    forced_last: Option<i64>,
    last_offset: i64,
    opened: Instant,
    stream_ids: FxHashMap<Arc<[(String, String)]>, u32>,
    stream_labels: Vec<Arc<[(String, String)]>>,
    /// (stream, time, line start, line len)
    records: Vec<(u32, i64, u32, u32)>,
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
    fn new(name: BlockName, forced_last: Option<i64>) -> Self {
        OpenBlock {
            last_offset: name.first_offset,
            name,
            forced_last,
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
    fn bytes(&self) -> usize {
        self.lines.len()
    }

    /// Memory held, for the open-block budget.
    fn footprint(&self) -> usize {
        BLOCK_OVERHEAD
            + self.lines.capacity()
            + self.records.capacity() * std::mem::size_of::<(u32, i64, u32, u32)>()
            + self.tokens.capacity() * 9
            + self.recent.len() * 8
            + self.repeats.capacity() * 9
            + self.stream_labels.len() * 64
    }

    /// Sorts by stream then time and builds the bloom filter.
    fn seal(self, cfg: &BlockConfig) -> SealedBlock {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by_key(|&i| (self.records[i].0, self.records[i].1, i));
        let mut streams: Vec<StreamEntry> = Vec::new();
        let mut records = Vec::with_capacity(order.len());
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (n, &i) in order.iter().enumerate() {
            let (stream, t, start, len) = self.records[i];
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
            lines: self.lines,
            min_time_ns: min_t,
            max_time_ns: max_t,
        }
    }
}

#[derive(Default)]
struct PartitionState {
    start_offset: i64,
    /// Ledger entries not yet passed, sorted by first offset.
    plan: Vec<LedgerEntry>,
    open: FxHashMap<BlockKey, OpenBlock>,
}

pub struct BlockMaker {
    cfg: BlockConfig,
    /// Cut the largest blocks when all open blocks exceed this.
    open_budget: usize,
    parts: HashMap<TopicPartition, PartitionState>,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    out: Arc<ByteQueue<Item<SealedBlock>>>,
}

enum Target {
    Skip,
    Forced(LedgerEntry),
    Normal,
}

impl BlockMaker {
    pub fn new(
        cfg: BlockConfig,
        open_budget: usize,
        tracker: Arc<OffsetTracker>,
        metrics: Arc<Metrics>,
        out: Arc<ByteQueue<Item<SealedBlock>>>,
    ) -> Self {
        BlockMaker {
            cfg,
            open_budget,
            parts: HashMap::new(),
            tracker,
            metrics,
            out,
        }
    }

    fn open_bytes(&self) -> usize {
        self.parts
            .values()
            .flat_map(|p| p.open.values())
            .map(OpenBlock::footprint)
            .sum()
    }

    fn emit(&self, tp: &TopicPartition, block: OpenBlock) -> Result<(), StageExit> {
        let _ = tp;
        let sealed = block.seal(&self.cfg);
        self.metrics.stage(
            "block_maker",
            0,
            0,
            sealed.records.len() as u64,
            sealed.raw_bytes,
        );
        self.out
            .push(Item::Data(sealed))
            .map_err(|_| StageExit::DownstreamClosed)
    }

    fn assign(&mut self, plan: PartitionPlan) {
        let mut ledger = plan.ledger;
        ledger.sort_by_key(|e| e.first_offset);
        self.parts.insert(
            plan.tp,
            PartitionState {
                start_offset: plan.start_offset,
                plan: ledger,
                open: FxHashMap::default(),
            },
        );
    }

    /// Cuts every open block of the partitions (all when `None`). A rebuild
    /// that has not seen all its records is not written: its first offset
    /// is pinned so no commit passes it, and the next start rebuilds it.
    fn flush(
        &mut self,
        partitions: Option<&[TopicPartition]>,
        forget: bool,
    ) -> Result<(), StageExit> {
        let tps: Vec<TopicPartition> = self
            .parts
            .keys()
            .filter(|tp| partitions.is_none_or(|ps| ps.contains(tp)))
            .cloned()
            .collect();
        for tp in tps {
            let Some(state) = self.parts.get_mut(&tp) else {
                continue;
            };
            let blocks: Vec<OpenBlock> = state.open.drain().map(|(_, b)| b).collect();
            for b in blocks {
                if b.forced_last.is_some_and(|last| b.last_offset < last) {
                    self.tracker.pin(&tp, b.name.first_offset);
                    self.tracker.release(&tp, b.name.first_offset);
                } else {
                    self.emit(&tp, b)?;
                }
            }
            if forget {
                self.parts.remove(&tp);
            }
        }
        Ok(())
    }

    fn target(state: &mut PartitionState, key: &BlockKey, offset: i64) -> Target {
        // Entries wholly behind this offset can never match again.
        state.plan.retain(|e| e.last_offset >= offset);
        let found = state.plan.iter().find(|e| {
            e.first_offset <= offset
                && offset <= e.last_offset
                && e.hour == key.hour
                && *e.tenant == *key.tenant
                && *e.app == *key.app
        });
        match found {
            None => Target::Normal,
            Some(e) if e.first_offset < state.start_offset => Target::Skip,
            Some(e) => Target::Forced(e.clone()),
        }
    }

    pub fn process(&mut self, batch: ParsedBatch) -> Result<(), StageExit> {
        let tp = TopicPartition {
            topic: batch.topic.clone(),
            partition: batch.partition,
        };
        let mut skipped = 0u64;
        let mut touched: Vec<BlockKey> = Vec::new();
        let mut to_emit: Vec<OpenBlock> = Vec::new();
        {
            let state = self.parts.entry(tp.clone()).or_default();
            let recs = &batch.records;
            let mut i = 0;
            while i < recs.len() {
                let offset = recs[i].offset;
                let mut j = i;
                touched.clear();
                while j < recs.len() && recs[j].offset == offset {
                    let r = &recs[j];
                    j += 1;
                    let s = &batch.streams[r.stream as usize];
                    let key = BlockKey {
                        tenant: s.tenant.clone(),
                        app: s.app.clone(),
                        hour: hour_of(r.time_ns),
                    };
                    let forced_last = match Self::target(state, &key, offset) {
                        Target::Skip => {
                            skipped += 1;
                            continue;
                        }
                        Target::Forced(e) => Some(e),
                        Target::Normal => None,
                    };
                    // A block covers every record of its key in its offset
                    // range, so a normal block ends before a rebuild starts,
                    // and a rebuild ends once its range is passed.
                    let wrong_kind =
                        state
                            .open
                            .get(&key)
                            .is_some_and(|b| match (&forced_last, b.forced_last) {
                                (Some(e), Some(_)) => b.name.first_offset != e.first_offset,
                                (None, Some(last)) => offset > last,
                                (Some(_), None) => true,
                                (None, None) => false,
                            });
                    if wrong_kind {
                        if let Some(b) = state.open.remove(&key) {
                            to_emit.push(b);
                        }
                    }
                    let block = state.open.entry(key.clone()).or_insert_with(|| {
                        let first = forced_last.as_ref().map_or(offset, |e| e.first_offset);
                        self.tracker.hold(&tp, first);
                        if forced_last.is_some() {
                            self.metrics.replayed_blocks.inc();
                        }
                        OpenBlock::new(
                            BlockName {
                                tenant: key.tenant.to_string(),
                                app: key.app.to_string(),
                                hour: key.hour,
                                topic: tp.topic.to_string(),
                                partition: tp.partition,
                                first_offset: first,
                            },
                            forced_last.as_ref().map(|e| e.last_offset),
                        )
                    });
                    let line = batch.line(r);
                    let stream = match block.stream_ids.get(&s.labels) {
                        Some(&id) => id,
                        None => {
                            let id = block.stream_labels.len() as u32;
                            block.stream_ids.insert(s.labels.clone(), id);
                            block.stream_labels.push(s.labels.clone());
                            id
                        }
                    };
                    let start = block.lines.len() as u32;
                    block.push_line(line, self.cfg.target_bytes);
                    block
                        .records
                        .push((stream, r.time_ns, start, line.len() as u32));
                    batch.for_each_token_run(r, |repeat, run| {
                        // The words of a repeated value the block already
                        // holds are in its set: skipped.
                        if repeat.is_none_or(|id| block.repeats.insert(id)) {
                            block.add_tokens(run);
                        }
                    });
                    block.last_offset = offset;
                    if !touched.contains(&key) {
                        touched.push(key);
                    }
                }
                // Size cuts happen between messages, never inside one.
                for key in &touched {
                    let full = state.open.get(key).is_some_and(|b| {
                        b.forced_last.is_none() && b.bytes() >= self.cfg.target_bytes
                    });
                    if full {
                        if let Some(b) = state.open.remove(key) {
                            to_emit.push(b);
                        }
                    }
                }
                if i < recs.len() / 2 && j >= recs.len() / 2 {
                    crash_point("block_maker::mid_batch");
                }
                i = j;
            }
            // Rebuilds whose whole range has been read are complete.
            let done: Vec<BlockKey> = state
                .open
                .iter()
                .filter(|(_, b)| b.forced_last.is_some_and(|last| last <= batch.last_offset))
                .map(|(k, _)| k.clone())
                .collect();
            for k in done {
                if let Some(b) = state.open.remove(&k) {
                    to_emit.push(b);
                }
            }
        }
        self.metrics.replay_skipped_records.inc_by(skipped);
        self.metrics.stage(
            "block_maker",
            batch.records.len() as u64,
            batch.lines.len() as u64,
            0,
            0,
        );
        // The batch's records now sit in open blocks, which hold their own offsets.
        self.tracker.release(&tp, batch.first_offset);
        for b in to_emit {
            self.emit(&tp, b)?;
        }
        self.cut_for_memory()?;
        self.metrics.open_block_bytes.set(self.open_bytes() as i64);
        Ok(())
    }

    /// Cuts the largest normal blocks while open blocks exceed their
    /// budget: one sort, however many blocks are open.
    fn cut_for_memory(&mut self) -> Result<(), StageExit> {
        let mut total = self.open_bytes();
        if total <= self.open_budget {
            return Ok(());
        }
        let mut by_size: Vec<(usize, TopicPartition, BlockKey)> = self
            .parts
            .iter()
            .flat_map(|(tp, p)| p.open.iter().map(move |(k, b)| (tp, k, b)))
            .filter(|(_, _, b)| b.forced_last.is_none())
            .map(|(tp, k, b)| (b.footprint(), tp.clone(), k.clone()))
            .collect();
        by_size.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (size, tp, key) in by_size {
            if total <= self.open_budget {
                break;
            }
            if let Some(b) = self.parts.get_mut(&tp).and_then(|p| p.open.remove(&key)) {
                self.metrics.memory_cuts.inc();
                self.emit(&tp, b)?;
                total -= size;
            }
        }
        Ok(())
    }

    /// Cuts normal blocks that have been open for the flush interval.
    pub fn cut_expired(&mut self) -> Result<(), StageExit> {
        let interval = Duration::from_secs(self.cfg.flush_interval_secs);
        let mut expired = Vec::new();
        for (tp, p) in &mut self.parts {
            let keys: Vec<BlockKey> = p
                .open
                .iter()
                .filter(|(_, b)| b.forced_last.is_none() && b.opened.elapsed() >= interval)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                if let Some(b) = p.open.remove(&k) {
                    expired.push((tp.clone(), b));
                }
            }
        }
        for (tp, b) in expired {
            self.emit(&tp, b)?;
        }
        self.metrics.open_block_bytes.set(self.open_bytes() as i64);
        Ok(())
    }

    pub fn handle(&mut self, item: Item<ParsedBatch>) -> Result<(), StageExit> {
        match item {
            Item::Data(batch) => self.process(batch),
            Item::Control(Control::Assign(plan)) => {
                self.assign(plan);
                Ok(())
            }
            Item::Control(Control::Flush { partitions, forget }) => {
                self.flush(partitions.as_deref(), forget)?;
                self.out
                    .push(Item::Control(Control::Flush { partitions, forget }))
                    .map_err(|_| StageExit::DownstreamClosed)
            }
        }
    }
}

pub fn run(mut maker: BlockMaker, input: &ByteQueue<Item<ParsedBatch>>) -> StageExit {
    let mut last_check = Instant::now();
    loop {
        let result = match input.pop(Duration::from_millis(500)) {
            Ok(item) => maker.handle(item),
            Err(PopError::Timeout) => Ok(()),
            Err(PopError::Closed) => {
                let r = maker.flush(None, false);
                maker.out.close();
                return r.err().unwrap_or(StageExit::Success);
            }
        };
        if let Err(exit) = result {
            return exit;
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if let Err(exit) = maker.cut_expired() {
                return exit;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ParsedRecord, StreamKey};
    use skidder_common::format::ledger::LEDGER_VERSION;

    const HOUR_NS: i64 = 3_600_000_000_000;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "logs".into(),
            partition: 0,
        }
    }

    /// A batch of one record per offset; `apps[i]` is the app of offset `first + i`.
    fn batch(first: i64, apps: &[&str]) -> ParsedBatch {
        let mut b = ParsedBatch {
            topic: "logs".into(),
            partition: 0,
            first_offset: first,
            last_offset: first + apps.len() as i64 - 1,
            ..Default::default()
        };
        for (i, app) in apps.iter().enumerate() {
            let stream = b
                .streams
                .iter()
                .position(|s| &*s.app == *app)
                .unwrap_or_else(|| {
                    b.streams.push(StreamKey {
                        tenant: "t".into(),
                        app: (*app).into(),
                        labels: Vec::new().into(),
                    });
                    b.streams.len() - 1
                }) as u32;
            let line = format!("line {}", first + i as i64);
            b.records.push(ParsedRecord {
                offset: first + i as i64,
                time_ns: 10 * HOUR_NS,
                stream,
                line_start: b.lines.len() as u32,
                line_len: line.len() as u32,
                tokens_start: 0,
                tokens_len: 0,
                repeats_start: 0,
                repeats_len: 0,
            });
            b.lines.extend_from_slice(line.as_bytes());
        }
        b
    }

    fn entry(app: &str, first: i64, last: i64) -> LedgerEntry {
        LedgerEntry {
            version: LEDGER_VERSION,
            tenant: "t".into(),
            app: app.into(),
            hour: 10,
            topic: "logs".into(),
            partition: 0,
            first_offset: first,
            last_offset: last,
        }
    }

    fn maker(
        target_bytes: usize,
    ) -> (
        BlockMaker,
        Arc<ByteQueue<Item<SealedBlock>>>,
        Arc<OffsetTracker>,
    ) {
        let m = Arc::new(Metrics::new());
        let out = Arc::new(ByteQueue::new(
            1024,
            1 << 30,
            m.queue_bytes.with_label_values(&["t"]),
            m.queue_blocked_us.with_label_values(&["t"]),
        ));
        let tracker = Arc::new(OffsetTracker::default());
        let cfg = BlockConfig {
            target_bytes,
            ..Default::default()
        };
        (
            BlockMaker::new(cfg, usize::MAX, tracker.clone(), m, out.clone()),
            out,
            tracker,
        )
    }

    /// (app, first offset, lines) of every block emitted so far.
    fn drain(out: &ByteQueue<Item<SealedBlock>>) -> Vec<(String, i64, Vec<String>)> {
        let mut v = Vec::new();
        while let Ok(item) = out.pop(Duration::ZERO) {
            if let Item::Data(b) = item {
                let lines = b
                    .records
                    .iter()
                    .map(|&(_, s, l)| {
                        String::from_utf8(b.lines[s as usize..(s + l) as usize].to_vec()).unwrap()
                    })
                    .collect();
                v.push((b.name.app.clone(), b.name.first_offset, lines));
            }
        }
        v.sort();
        v
    }

    #[test]
    fn replay_skips_stored_blocks_and_rebuilds_unsure_ones_exactly() {
        let (mut m, out, tracker) = maker(usize::MAX);
        tracker.assign(&tp(), 4, Some(4), vec![]);
        m.handle(Item::Control(Control::Assign(PartitionPlan {
            tp: tp(),
            start_offset: 4,
            // a: block [2, 5] began below the start, so it is stored: skip 4 and 5.
            // b: block [6, 8] began at or past the start: rebuild exactly 6..=8.
            ledger: vec![entry("a", 2, 5), entry("b", 6, 8)],
            stored_checkpoint: Some(4),
            stale_ledger_keys: Vec::new(),
        })))
        .unwrap();
        // Offsets 4..=10 replayed; a normal "b" block opens at 4 and must be
        // cut before the rebuild starts at 6.
        m.handle(Item::Data(batch(4, &["b", "a", "b", "a", "b", "b", "a"])))
            .unwrap();
        m.flush(None, false).unwrap();
        assert_eq!(
            drain(&out),
            vec![
                ("a".into(), 7, vec!["line 7".into(), "line 10".into()]),
                ("b".into(), 4, vec!["line 4".into()]),
                ("b".into(), 6, vec!["line 6".into(), "line 8".into()]),
                ("b".into(), 9, vec!["line 9".into()]),
            ]
        );
    }

    #[test]
    fn an_unfinished_rebuild_is_not_written_and_pins_the_watermark() {
        let (mut m, out, tracker) = maker(usize::MAX);
        tracker.assign(&tp(), 0, Some(0), vec![]);
        m.handle(Item::Control(Control::Assign(PartitionPlan {
            tp: tp(),
            start_offset: 0,
            ledger: vec![entry("a", 1, 9)],
            stored_checkpoint: Some(0),
            stale_ledger_keys: Vec::new(),
        })))
        .unwrap();
        tracker.hold(&tp(), 0);
        tracker.advance(&tp(), 3);
        m.handle(Item::Data(batch(0, &["b", "a", "a"]))).unwrap();
        m.flush(None, false).unwrap();
        // Only the normal block is written; the half-read rebuild of [1, 9] is not.
        assert_eq!(drain(&out), vec![("b".into(), 0, vec!["line 0".into()])]);
        tracker.release(&tp(), 0);
        // No commit may pass the rebuild's first offset.
        assert_eq!(tracker.watermark(&tp()), Some(1));
    }

    #[test]
    fn repeated_values_keep_their_words_in_every_block() {
        use crate::config::ParseConfig;
        use crate::models::RawBatch;
        use crate::stages::parser::Parser;
        use skidder_common::format::index::BloomFilter;
        use skidder_common::format::tokens::for_each_word_hash;

        // The same long `kubernetes` object on every line, which the parser
        // gives one id; lines in two hours, so in at least two blocks.
        let meta = format!(
            r#""kubernetes":{{"pod_name":"api-7f9c","labels":{{"team":"{}"}}}}"#,
            "payments ".repeat(40)
        );
        let lines: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    r#"{{"ts":{},"msg":"event {i}",{meta}}}"#,
                    36_000 + i * 1_000
                )
            })
            .collect();
        let mut raw = RawBatch::new("logs".into(), 0);
        for (i, l) in lines.iter().enumerate() {
            raw.push(i as i64, None, l.as_bytes());
        }
        let parsed = Parser::new(ParseConfig::default())
            .unwrap()
            .parse_batch(&raw);
        assert!(parsed.repeats.len() >= 4, "{:?}", parsed.repeats);
        // Cut after every message, and then one block per hour.
        for target in [1, usize::MAX] {
            let (mut m, out, _) = maker(target);
            m.handle(Item::Data(ParsedBatch {
                records: parsed.records.clone(),
                streams: parsed.streams.clone(),
                lines: parsed.lines.clone(),
                tokens: parsed.tokens.clone(),
                repeats: parsed.repeats.clone(),
                topic: parsed.topic.clone(),
                ..Default::default()
            }))
            .unwrap();
            m.flush(None, false).unwrap();
            let mut blocks = 0;
            while let Ok(Item::Data(b)) = out.pop(Duration::ZERO) {
                blocks += 1;
                let bloom = BloomFilter::decode(&b.bloom).unwrap();
                for &(_, start, len) in &b.records {
                    let line = &b.lines[start as usize..(start + len) as usize];
                    for_each_word_hash(line, |h| assert!(bloom.may_contain(h), "target {target}"));
                }
            }
            assert!(blocks >= 2, "target {target}: {blocks} blocks");
        }
    }

    #[test]
    fn size_cuts_fall_between_messages_and_keep_every_record() {
        let (mut m, out, _) = maker(12);
        m.handle(Item::Data(batch(0, &["a"; 5]))).unwrap();
        m.flush(None, false).unwrap();
        let blocks = drain(&out);
        let all: Vec<String> = blocks.iter().flat_map(|b| b.2.clone()).collect();
        assert_eq!(all, (0..5).map(|i| format!("line {i}")).collect::<Vec<_>>());
        assert!(blocks.len() >= 2, "{blocks:?}");
    }

    #[test]
    fn many_tiny_blocks_are_cut_by_their_footprint_and_keep_every_record() {
        // 900 apps in one batch (the test queue holds 1,024 blocks): each
        // block holds one short line, but its overhead counts, so a 64 KiB
        // budget cuts most of them at once.
        let (mut m, out, _) = maker(1 << 20);
        m.open_budget = 64 << 10;
        let names: Vec<String> = (0..900).map(|i| format!("app-{i}")).collect();
        let apps: Vec<&str> = names.iter().map(String::as_str).collect();
        m.process(batch(0, &apps)).unwrap();
        assert!(m.open_bytes() <= 64 << 10, "{}", m.open_bytes());
        let cut = drain(&out);
        assert!(cut.len() > 700, "only {} cut", cut.len());
        m.handle(Item::Control(Control::Flush {
            partitions: None,
            forget: false,
        }))
        .unwrap();
        let mut lines: Vec<String> = cut
            .into_iter()
            .chain(drain(&out))
            .flat_map(|(_, _, l)| l)
            .collect();
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 900, "every record once");
    }
}
