//! Stage 3: groups records by (tenant, app, hour) per partition into
//! blocks, and cuts a block when it reaches its target size, when it has
//! been open for the flush interval, when open blocks outgrow their memory
//! budget, or when told to flush.
//!
//! Beside the stage: `open_block.rs` (a block as it fills, and sealing
//! it), `replay.rs` (where a replayed record goes after a restart, and
//! the rebuilds that follows from it).

mod open_block;
mod replay;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skidder_common::format::layout::{hour_of, BlockName};

use super::StageExit;
use crate::config::BlockConfig;
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::{
    Control, Item, ParsedBatch, ParsedRecord, PartitionPlan, SealedBlock, TopicPartition,
};
use crate::offsets::OffsetTracker;
use crate::queue::{PopError, Receiver, Sender};
use open_block::{BlockKey, OpenBlock};
use replay::{unfinished_rebuild, PartitionState, Target};

pub struct BlockMaker {
    cfg: BlockConfig,
    /// Cut the largest blocks when all open blocks exceed this.
    open_budget: usize,
    parts: HashMap<TopicPartition, PartitionState>,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    out: Sender<Item<SealedBlock>>,
}

/// The downstream stage is gone.
#[derive(Debug)]
pub struct Closed;

impl From<Closed> for StageExit {
    fn from(_: Closed) -> Self {
        StageExit::DownstreamClosed
    }
}

impl BlockMaker {
    pub fn new(
        cfg: BlockConfig,
        open_budget: usize,
        tracker: Arc<OffsetTracker>,
        metrics: Arc<Metrics>,
        out: Sender<Item<SealedBlock>>,
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

    fn emit(&self, block: OpenBlock) -> Result<(), Closed> {
        let sealed = block.seal(&self.cfg);
        self.metrics.stage(
            "block_maker",
            0,
            0,
            sealed.records.len() as u64,
            sealed.raw_bytes,
        );
        self.out.push(Item::Data(sealed)).map_err(|_| Closed)
    }

    fn emit_all(&self, blocks: Vec<OpenBlock>) -> Result<(), Closed> {
        blocks.into_iter().try_for_each(|b| self.emit(b))
    }

    fn assign(&mut self, plan: PartitionPlan) {
        self.parts
            .insert(plan.tp.clone(), PartitionState::new(plan));
    }

    /// Cuts every open block of the partitions (all when `None`). A rebuild
    /// that has not seen all its records is not written: its first offset
    /// is pinned so no commit passes it, and the next start rebuilds it.
    fn flush(&mut self, partitions: Option<&[TopicPartition]>, forget: bool) -> Result<(), Closed> {
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
                if unfinished_rebuild(&b) {
                    self.tracker.pin(&tp, b.name.first_offset);
                    self.tracker.release(&tp, b.name.first_offset);
                } else {
                    self.emit(b)?;
                }
            }
            if forget {
                self.parts.remove(&tp);
            }
        }
        Ok(())
    }

    /// Puts a batch's records into open blocks, and cuts the blocks that
    /// are full, between messages, never inside one.
    pub fn process(&mut self, batch: ParsedBatch) -> Result<(), Closed> {
        let tp = TopicPartition {
            topic: batch.topic.clone(),
            partition: batch.partition,
        };
        let mut skipped = 0u64;
        let mut to_emit: Vec<OpenBlock> = Vec::new();
        let state = self.parts.entry(tp.clone()).or_default();
        let placer = Placer {
            tp: &tp,
            tracker: &self.tracker,
            metrics: &self.metrics,
            target_bytes: self.cfg.target_bytes,
        };
        let half = batch.records.len() / 2;
        let mut done = 0;
        let mut touched: Vec<BlockKey> = Vec::new();
        for message in batch.records.chunk_by(|a, b| a.offset == b.offset) {
            touched.clear();
            for r in message {
                match placer.place(state, &batch, r, &mut to_emit) {
                    Some(key) if !touched.contains(&key) => touched.push(key),
                    Some(_) => {}
                    None => skipped += 1,
                }
            }
            to_emit.extend(placer.take_full(state, &touched));
            if done < half && done + message.len() >= half {
                crash_point("block_maker::mid_batch");
            }
            done += message.len();
        }
        to_emit.extend(state.take_finished_rebuilds(batch.last_offset));
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
        self.emit_all(to_emit)?;
        self.cut_for_memory()?;
        self.metrics.open_block_bytes.set(self.open_bytes() as i64);
        Ok(())
    }

    /// Cuts the largest normal blocks while open blocks exceed their
    /// budget: one sort, however many blocks are open.
    fn cut_for_memory(&mut self) -> Result<(), Closed> {
        let mut total = self.open_bytes();
        if total <= self.open_budget {
            return Ok(());
        }
        let mut by_size: Vec<(usize, TopicPartition, BlockKey)> = self
            .parts
            .iter()
            .flat_map(|(tp, p)| p.open.iter().map(move |(k, b)| (tp, k, b)))
            .filter(|(_, _, b)| b.rebuild_last_offset.is_none())
            .map(|(tp, k, b)| (b.footprint(), tp.clone(), k.clone()))
            .collect();
        by_size.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (size, tp, key) in by_size {
            if total <= self.open_budget {
                break;
            }
            if let Some(b) = self.parts.get_mut(&tp).and_then(|p| p.open.remove(&key)) {
                self.metrics.memory_cuts.inc();
                self.emit(b)?;
                total -= size;
            }
        }
        Ok(())
    }

    /// Cuts normal blocks that have been open for the flush interval.
    pub fn cut_expired(&mut self) -> Result<(), Closed> {
        let interval = Duration::from_secs(self.cfg.flush_interval_secs);
        let mut expired = Vec::new();
        for p in self.parts.values_mut() {
            let keys: Vec<BlockKey> = p
                .open
                .iter()
                .filter(|(_, b)| b.rebuild_last_offset.is_none() && b.opened.elapsed() >= interval)
                .map(|(k, _)| k.clone())
                .collect();
            expired.extend(keys.iter().filter_map(|k| p.open.remove(k)));
        }
        self.emit_all(expired)?;
        self.metrics.open_block_bytes.set(self.open_bytes() as i64);
        Ok(())
    }

    pub fn handle(&mut self, item: Item<ParsedBatch>) -> Result<(), Closed> {
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
                    .map_err(|_| Closed)
            }
        }
    }
}

/// What placing a record needs besides the partition's state.
struct Placer<'a> {
    tp: &'a TopicPartition,
    tracker: &'a OffsetTracker,
    metrics: &'a Metrics,
    target_bytes: usize,
}

impl Placer<'_> {
    /// Puts one record into the open block it belongs to, opening one if
    /// needed (and cutting a block of the other kind into `to_emit`).
    /// Returns the block's key, or `None` when replay skips the record.
    fn place(
        &self,
        state: &mut PartitionState,
        batch: &ParsedBatch,
        r: &ParsedRecord,
        to_emit: &mut Vec<OpenBlock>,
    ) -> Option<BlockKey> {
        let s = &batch.streams[r.stream as usize];
        let key = BlockKey {
            tenant: s.tenant.clone(),
            app: s.app.clone(),
            hour: hour_of(r.time_ns),
        };
        let rebuild = match state.target(&key, r.offset) {
            Target::Skip => return None,
            Target::Rebuild(e) => Some(e),
            Target::Normal => None,
        };
        to_emit.extend(state.take_if_other_kind(&key, rebuild.as_ref(), r.offset));
        let block = state.open.entry(key.clone()).or_insert_with(|| {
            let first = rebuild.as_ref().map_or(r.offset, |e| e.first_offset);
            self.tracker.hold(self.tp, first);
            if rebuild.is_some() {
                self.metrics.replayed_blocks.inc();
            }
            OpenBlock::new(
                BlockName {
                    tenant: key.tenant.to_string(),
                    app: key.app.to_string(),
                    hour: key.hour,
                    topic: self.tp.topic.to_string(),
                    partition: self.tp.partition,
                    first_offset: first,
                    epoch: state.epoch,
                },
                rebuild.as_ref().map(|e| e.last_offset),
            )
        });
        block.append(batch, r, &s.labels, self.target_bytes);
        Some(key)
    }

    /// The normal blocks among `keys` that reached their target size.
    fn take_full(&self, state: &mut PartitionState, keys: &[BlockKey]) -> Vec<OpenBlock> {
        let full =
            |b: &OpenBlock| b.rebuild_last_offset.is_none() && b.bytes() >= self.target_bytes;
        let full_keys: Vec<&BlockKey> = keys
            .iter()
            .filter(|k| state.open.get(*k).is_some_and(full))
            .collect();
        full_keys
            .into_iter()
            .filter_map(|k| state.open.remove(k))
            .collect()
    }
}

/// The stage loop.
pub fn run(mut maker: BlockMaker, input: Receiver<Item<ParsedBatch>>) -> StageExit {
    let mut last_check = Instant::now();
    loop {
        let result = match input.pop(Duration::from_millis(500)) {
            Ok(item) => maker.handle(item),
            Err(PopError::Timeout) if maker.out.is_closed() => Err(Closed),
            Err(PopError::Timeout) => Ok(()),
            Err(PopError::Closed) => {
                return match maker.flush(None, false) {
                    Ok(()) => StageExit::Success,
                    Err(closed) => closed.into(),
                };
            }
        };
        if let Err(closed) = result {
            return closed.into();
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if let Err(closed) = maker.cut_expired() {
                return closed.into();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::StreamKey;
    use skidder_common::format::ledger::LedgerEntry;
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
            epoch: 1,
        }
    }

    fn maker(target_bytes: usize) -> (BlockMaker, Receiver<Item<SealedBlock>>, Arc<OffsetTracker>) {
        let m = Arc::new(Metrics::new());
        let (out, rx) = crate::queue::byte_queue(
            1024,
            1 << 30,
            m.queue_bytes.with_label_values(&["t"]),
            m.queue_blocked_seconds.with_label_values(&["t"]),
        );
        let tracker = Arc::new(OffsetTracker::default());
        let cfg = BlockConfig {
            target_bytes,
            ..Default::default()
        };
        (
            BlockMaker::new(cfg, usize::MAX, tracker.clone(), m, out),
            rx,
            tracker,
        )
    }

    /// (app, first offset, lines) of every block emitted so far.
    fn drain(out: &Receiver<Item<SealedBlock>>) -> Vec<(String, i64, Vec<String>)> {
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
        tracker.assign(&tp(), 1, 4, Some(4), vec![]);
        m.handle(Item::Control(Control::Assign(PartitionPlan {
            tp: tp(),
            start_offset: 4,
            epoch: 2,
            // a: block [2, 5] began below the start, so it is stored: skip 4 and 5.
            // b: block [6, 8] began at or past the start: rebuild exactly 6..=8.
            ledger: vec![entry("a", 2, 5), entry("b", 6, 8)],
            stored_checkpoint: Some(4),
            stale_ledger_keys: Vec::new(),
            claim: Default::default(),
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
        tracker.assign(&tp(), 1, 0, Some(0), vec![]);
        m.handle(Item::Control(Control::Assign(PartitionPlan {
            tp: tp(),
            start_offset: 0,
            epoch: 2,
            ledger: vec![entry("a", 1, 9)],
            stored_checkpoint: Some(0),
            stale_ledger_keys: Vec::new(),
            claim: Default::default(),
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
