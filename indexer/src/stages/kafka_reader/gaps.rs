//! Offset jumps while reading, and which of them were deletions.
//!
//! Offsets skip for three reasons: transaction markers and aborted records
//! (never delivered under `read_committed`), compacted topics, and records
//! deleted before they were read (retention or `kafka-delete-records`
//! overtaking a consumer; librdkafka then resets to the log start, as
//! `auto.offset.reset = earliest` says). Only the last loses data, and the
//! jump alone cannot tell which it was. The log start can: librdkafka
//! reports each partition's (`lo_offset`, from every fetch response) in its
//! statistics. A jump whose skipped offsets lie below the log start was a
//! deletion.
//!
//! The statistics that arrive next may have been taken before the jump was
//! read, so a jump waits: it is settled as soon as the log start covers it
//! whole, or after [`SETTLE_AFTER`] statistics with whatever part the log
//! start covers then. That is an upper bound: markers and aborted records
//! inside a deleted range count too, and so does a transaction's gap that
//! retention reaches within those few seconds.

use std::collections::{HashMap, VecDeque};

use crate::models::TopicPartition;

/// Statistics callbacks (5 s apart) a jump waits for its log start.
pub const SETTLE_AFTER: u32 = 6;

/// Jumps kept per partition; beyond that the oldest is dropped uncounted
/// (transactional topics leave one per transaction, thousands between two
/// statistics).
pub const MAX_PER_PARTITION: usize = 10_000;

/// One jump: `expected` was the next offset, `got` came instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub expected: i64,
    pub got: i64,
    /// Statistics seen since the jump.
    age: u32,
}

#[derive(Default)]
pub struct Gaps {
    open: HashMap<TopicPartition, VecDeque<Gap>>,
}

/// Offsets of `gap` below `log_start`.
fn deleted(gap: &Gap, log_start: i64) -> u64 {
    (log_start.min(gap.got) - gap.expected).max(0) as u64
}

impl Gaps {
    pub fn record(&mut self, tp: &TopicPartition, expected: i64, got: i64) {
        let gaps = self.open.entry(tp.clone()).or_default();
        if gaps.len() >= MAX_PER_PARTITION {
            gaps.pop_front();
        }
        gaps.push_back(Gap {
            expected,
            got,
            age: 0,
        });
    }

    /// The partition left this member: its jumps are the next owner's.
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.open.remove(tp);
    }

    /// One round of statistics: `log_start` gives each partition's log
    /// start offset where known. Returns the jumps settled as deletions,
    /// with how many offsets each lost.
    pub fn settle(
        &mut self,
        log_start: impl Fn(&TopicPartition) -> Option<i64>,
    ) -> Vec<(TopicPartition, Gap, u64)> {
        let mut out = Vec::new();
        for (tp, gaps) in &mut self.open {
            let start = log_start(tp);
            gaps.retain_mut(|g| {
                g.age += 1;
                let Some(start) = start else {
                    return g.age < SETTLE_AFTER;
                };
                let covered = start >= g.got;
                if !covered && g.age < SETTLE_AFTER {
                    return true;
                }
                let n = deleted(g, start);
                if n > 0 {
                    out.push((tp.clone(), *g, n));
                }
                false
            });
        }
        self.open.retain(|_, g| !g.is_empty());
        out
    }

    #[cfg(test)]
    fn open(&self, tp: &TopicPartition) -> usize {
        self.open.get(tp).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition: 0,
        }
    }

    fn lost(out: &[(TopicPartition, Gap, u64)]) -> Vec<(i64, i64, u64)> {
        out.iter()
            .map(|(_, g, n)| (g.expected, g.got, *n))
            .collect()
    }

    #[test]
    fn a_jump_over_deleted_offsets_counts_once_the_log_start_covers_it() {
        let mut g = Gaps::default();
        g.record(&tp(), 100, 250);
        // Statistics taken before the jump was read: the old log start.
        assert!(g.settle(|_| Some(10)).is_empty());
        assert_eq!(g.open(&tp()), 1);
        assert_eq!(lost(&g.settle(|_| Some(250))), [(100, 250, 150)]);
        assert_eq!(g.open(&tp()), 0, "counted once");
        assert!(g.settle(|_| Some(400)).is_empty());
    }

    #[test]
    fn transaction_markers_below_a_live_log_start_are_not_deletions() {
        let mut g = Gaps::default();
        // One marker after each transaction.
        for t in 0..5 {
            g.record(&tp(), t * 11 + 10, t * 11 + 11);
        }
        for _ in 0..SETTLE_AFTER {
            assert!(g.settle(|_| Some(0)).is_empty());
        }
        assert_eq!(g.open(&tp()), 0, "expired");
    }

    #[test]
    fn a_partly_deleted_jump_counts_its_part_when_it_expires() {
        let mut g = Gaps::default();
        g.record(&tp(), 100, 200);
        for _ in 0..SETTLE_AFTER - 1 {
            assert!(g.settle(|_| Some(150)).is_empty());
        }
        assert_eq!(lost(&g.settle(|_| Some(150))), [(100, 200, 50)]);
    }

    #[test]
    fn no_statistics_for_a_partition_counts_nothing_and_keeps_nothing() {
        let mut g = Gaps::default();
        g.record(&tp(), 1, 5);
        for _ in 0..SETTLE_AFTER {
            assert!(g.settle(|_| None).is_empty());
        }
        assert_eq!(g.open(&tp()), 0);
    }

    #[test]
    fn forgetting_a_partition_drops_its_jumps_and_memory_is_bounded() {
        let mut g = Gaps::default();
        for i in 0..(MAX_PER_PARTITION as i64 + 50) {
            g.record(&tp(), 2 * i, 2 * i + 1);
        }
        assert_eq!(g.open(&tp()), MAX_PER_PARTITION);
        g.forget(&tp());
        assert_eq!(g.open(&tp()), 0);
        assert!(g.settle(|_| Some(1 << 40)).is_empty());
    }
}
