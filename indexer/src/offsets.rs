//! Which Kafka offsets are safely stored.
//!
//! Every record is *held* from the moment it is read until the block that
//! holds it is in the object store. A hold is keyed by the first offset of
//! what holds it (a raw batch, then an open block), so the partition's
//! watermark, the lowest held offset, is the offset it is safe to commit:
//! every record below it is stored. The uploader releases holds; the Kafka
//! reader commits watermarks; shutdown and rebalances wait for holds to drain.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::models::TopicPartition;

#[derive(Debug, Default)]
struct PartitionState {
    holds: BTreeMap<i64, usize>,
    /// Offsets no commit may pass although nothing holds them: rebuilds
    /// that a flush could not finish (see the block maker).
    pins: BTreeSet<i64>,
    /// One past the highest offset read.
    next_offset: i64,
    committed: i64,
    checkpointed: i64,
    /// The epoch claimed for the partition: its checkpoints carry it.
    epoch: u64,
    /// Ledger keys written for this partition, by the block's last offset.
    ledger: BTreeMap<i64, Vec<String>>,
}

impl PartitionState {
    fn watermark(&self) -> i64 {
        let held = self
            .holds
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset);
        self.pins.first().map_or(held, |&p| p.min(held))
    }
}

/// A checkpoint to write: see [`OffsetTracker::take_checkpoints`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDue {
    pub tp: TopicPartition,
    pub epoch: u64,
    pub next_offset: i64,
    /// Ledger entries wholly below `next_offset`: (last offset, key).
    pub ledger_keys: Vec<(i64, String)>,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: Mutex<HashMap<TopicPartition, PartitionState>>,
    released: Condvar,
}

impl OffsetTracker {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<TopicPartition, PartitionState>) -> R) -> R {
        let mut g = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Starts tracking a partition whose records below `start` are stored,
    /// under the epoch claimed for it. `stored_checkpoint` is this epoch's
    /// in the object store (none for a new claim); when Kafka's commit is
    /// ahead of it, the next checkpoint brings it up to `start`.
    /// Whatever an earlier assignment of the partition left behind (a late
    /// hold or pin after a revoke) is dropped: it could hold the watermark
    /// below `start` for good.
    pub fn assign(
        &self,
        tp: &TopicPartition,
        epoch: u64,
        start: i64,
        stored_checkpoint: Option<i64>,
        ledger_keys: Vec<(i64, String)>,
    ) {
        let mut s = PartitionState {
            epoch,
            next_offset: start,
            committed: start,
            checkpointed: stored_checkpoint.unwrap_or(-1).min(start),
            ..PartitionState::default()
        };
        for (last, key) in ledger_keys {
            s.ledger.entry(last).or_default().push(key);
        }
        self.with(|p| p.insert(tp.clone(), s));
    }

    pub fn forget(&self, tp: &TopicPartition) {
        self.with(|p| p.remove(tp));
    }

    /// Records that offsets below `next` have been read.
    pub fn advance(&self, tp: &TopicPartition, next: i64) {
        self.with(|p| {
            let s = p.entry(tp.clone()).or_default();
            s.next_offset = s.next_offset.max(next);
        });
    }

    pub fn hold(&self, tp: &TopicPartition, offset: i64) {
        self.with(|p| {
            *p.entry(tp.clone())
                .or_default()
                .holds
                .entry(offset)
                .or_default() += 1
        });
    }

    pub fn pin(&self, tp: &TopicPartition, offset: i64) {
        self.with(|p| p.entry(tp.clone()).or_default().pins.insert(offset));
    }

    pub fn release(&self, tp: &TopicPartition, offset: i64) {
        self.with(|p| {
            if let Some(s) = p.get_mut(tp) {
                if let Some(n) = s.holds.get_mut(&offset) {
                    *n -= 1;
                    if *n == 0 {
                        s.holds.remove(&offset);
                    }
                }
            }
        });
        self.released.notify_all();
    }

    pub fn watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.with(|p| p.get(tp).map(PartitionState::watermark))
    }

    /// Watermarks that moved past the last commit, marking them committed.
    /// A commit that then fails is handed back with [`Self::commit_failed`].
    pub fn take_commits(&self) -> Vec<(TopicPartition, i64)> {
        self.with(|p| {
            p.iter_mut()
                .filter_map(|(tp, s)| {
                    let w = s.watermark();
                    (w > s.committed).then(|| {
                        s.committed = w;
                        (tp.clone(), w)
                    })
                })
                .collect()
        })
    }

    /// The commit of `offset` failed: the next [`Self::take_commits`]
    /// offers it again even if the watermark has not moved since.
    pub fn commit_failed(&self, tp: &TopicPartition, offset: i64) {
        self.with(|p| {
            if let Some(s) = p.get_mut(tp) {
                s.committed = s.committed.min(offset - 1);
            }
        });
    }

    /// Watermarks that moved past the last checkpoint, with the ledger keys
    /// (by last offset) that fall wholly below them and can be deleted once
    /// it is written. A write that fails is handed back with
    /// [`Self::checkpoint_failed`].
    pub fn take_checkpoints(&self) -> Vec<CheckpointDue> {
        self.with(|p| {
            p.iter_mut()
                .filter_map(|(tp, s)| {
                    let w = s.watermark();
                    if w <= s.checkpointed {
                        return None;
                    }
                    s.checkpointed = w;
                    let keep = s.ledger.split_off(&w);
                    let done = std::mem::replace(&mut s.ledger, keep);
                    Some(CheckpointDue {
                        tp: tp.clone(),
                        epoch: s.epoch,
                        next_offset: w,
                        ledger_keys: done
                            .into_iter()
                            .flat_map(|(last, keys)| keys.into_iter().map(move |k| (last, k)))
                            .collect(),
                    })
                })
                .collect()
        })
    }

    /// The checkpoint could not be written: the next
    /// [`Self::take_checkpoints`] offers it again, with its ledger keys.
    pub fn checkpoint_failed(&self, due: CheckpointDue) {
        self.with(|p| {
            if let Some(s) = p.get_mut(&due.tp) {
                s.checkpointed = s.checkpointed.min(due.next_offset - 1);
                for (last, key) in due.ledger_keys {
                    s.ledger.entry(last).or_default().push(key);
                }
            }
        });
    }

    /// One line per partition on where it stands, for the progress log:
    /// read up to, watermark, last commit and checkpoint, holds and pins.
    pub fn progress(&self) -> String {
        self.with(|p| {
            let mut parts: Vec<_> = p.iter().collect();
            parts.sort_by_key(|(tp, _)| (tp.topic.clone(), tp.partition));
            parts
                .iter()
                .map(|(tp, s)| {
                    format!(
                        "{}/{}: read {} watermark {} committed {} checkpointed {} holds {} pins {:?}",
                        tp.topic,
                        tp.partition,
                        s.next_offset,
                        s.watermark(),
                        s.committed,
                        s.checkpointed,
                        s.holds.len(),
                        s.pins
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub fn add_ledger_key(&self, tp: &TopicPartition, last_offset: i64, key: String) {
        self.with(|p| {
            p.entry(tp.clone())
                .or_default()
                .ledger
                .entry(last_offset)
                .or_default()
                .push(key)
        });
    }

    /// Waits until no record of these partitions (all when `None`) is held.
    /// Returns false on timeout.
    pub fn wait_drained(&self, partitions: Option<&[TopicPartition]>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let busy = g
                .iter()
                .any(|(tp, s)| !s.holds.is_empty() && partitions.is_none_or(|ps| ps.contains(tp)));
            if !busy {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .released
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
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

    #[test]
    fn watermark_is_the_lowest_hold() {
        let t = OffsetTracker::default();
        t.assign(&tp(), 1, 0, Some(0), vec![]);
        t.hold(&tp(), 0);
        t.advance(&tp(), 10);
        t.hold(&tp(), 3);
        t.release(&tp(), 0);
        assert_eq!(t.watermark(&tp()), Some(3));
        assert_eq!(t.take_commits(), vec![(tp(), 3)]);
        assert!(t.take_commits().is_empty());
        t.release(&tp(), 3);
        assert_eq!(t.watermark(&tp()), Some(10));
        assert!(t.wait_drained(None, Duration::ZERO));
    }

    fn due(next_offset: i64, keys: &[(i64, &str)]) -> CheckpointDue {
        CheckpointDue {
            tp: tp(),
            epoch: 1,
            next_offset,
            ledger_keys: keys.iter().map(|&(l, k)| (l, k.to_owned())).collect(),
        }
    }

    #[test]
    fn a_stale_stored_checkpoint_is_brought_up_to_kafkas_commit() {
        let t = OffsetTracker::default();
        // Kafka says 50 is stored, the store still says 20: nothing to read,
        // but the checkpoint must move to 50 and old ledger entries go.
        t.assign(&tp(), 1, 50, Some(20), vec![(30, "old".into())]);
        assert_eq!(t.take_checkpoints(), vec![due(50, &[(30, "old")])]);
        assert!(t.take_checkpoints().is_empty());
        let fresh = OffsetTracker::default();
        fresh.assign(&tp(), 1, 0, None, vec![]);
        assert_eq!(fresh.take_checkpoints(), vec![due(0, &[])]);
    }

    #[test]
    fn checkpoints_hand_back_ledger_keys_below_the_watermark() {
        let t = OffsetTracker::default();
        t.assign(&tp(), 1, 0, Some(0), vec![(4, "a".into())]);
        t.add_ledger_key(&tp(), 9, "b".into());
        t.advance(&tp(), 6);
        assert_eq!(t.take_checkpoints(), vec![due(6, &[(4, "a")])]);
        t.advance(&tp(), 12);
        assert_eq!(t.take_checkpoints(), vec![due(12, &[(9, "b")])]);
    }

    #[test]
    fn failed_commits_and_checkpoints_are_offered_again() {
        let t = OffsetTracker::default();
        t.assign(&tp(), 1, 0, Some(0), vec![(4, "a".into())]);
        t.advance(&tp(), 6);
        assert_eq!(t.take_commits(), vec![(tp(), 6)]);
        assert!(t.take_commits().is_empty());
        // The watermark stays at 6 (the end of the stream), yet the failed
        // commit must go out again.
        t.commit_failed(&tp(), 6);
        assert_eq!(t.take_commits(), vec![(tp(), 6)]);

        let first = t.take_checkpoints();
        assert_eq!(first, vec![due(6, &[(4, "a")])]);
        assert!(t.take_checkpoints().is_empty());
        t.checkpoint_failed(first[0].clone());
        assert_eq!(t.take_checkpoints(), first);
    }

    #[test]
    fn a_new_assignment_drops_what_the_last_one_left() {
        let t = OffsetTracker::default();
        t.assign(&tp(), 1, 0, Some(0), vec![]);
        t.forget(&tp());
        // A rebuild pinned (and a hold taken) after the revoke forgot the
        // partition must not hold the next assignment's watermark.
        t.pin(&tp(), 3);
        t.hold(&tp(), 4);
        t.assign(&tp(), 1, 10, Some(10), vec![]);
        assert_eq!(t.watermark(&tp()), Some(10));
        t.advance(&tp(), 12);
        assert_eq!(t.take_commits(), vec![(tp(), 12)]);
    }
}
