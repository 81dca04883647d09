//! The replay half of exactly-once (`docs/DESIGN.md`, "Replay"): after a
//! restart, each record that a ledger entry places in an already-named
//! block is either skipped, because that block is stored for certain, or
//! put into a rebuild of exactly that block, which then overwrites the
//! original byte for byte.

use rustc_hash::FxHashMap;
use skidder_common::format::ledger::LedgerEntry;

use super::open_block::{BlockKey, OpenBlock};
use crate::models::PartitionPlan;

/// Where a record goes.
pub(super) enum Target {
    /// Its block is stored: the record is already there.
    Skip,
    /// Into the rebuild of this ledger entry's block.
    Rebuild(LedgerEntry),
    /// Into the open block of its key, as any new record.
    Normal,
}

/// A partition's replay plan and its open blocks.
#[derive(Default)]
pub(super) struct PartitionState {
    start_offset: i64,
    /// The epoch claimed for the partition: its blocks' names carry it.
    pub(super) epoch: u64,
    /// Ledger entries not yet passed, sorted by first offset.
    plan: Vec<LedgerEntry>,
    pub(super) open: FxHashMap<BlockKey, OpenBlock>,
}

impl PartitionState {
    pub(super) fn new(plan: PartitionPlan) -> Self {
        let mut ledger = plan.ledger;
        ledger.sort_by_key(|e| e.first_offset);
        PartitionState {
            start_offset: plan.start_offset,
            epoch: plan.epoch,
            plan: ledger,
            open: FxHashMap::default(),
        }
    }

    /// Where the record at `offset` with block key `key` goes. A ledger
    /// entry begun below the start offset was stored whole (the start only
    /// passes stored blocks); one begun at or past it may not have been.
    pub(super) fn target(&mut self, key: &BlockKey, offset: i64) -> Target {
        // Entries wholly behind this offset can never match again.
        self.plan.retain(|e| e.last_offset >= offset);
        let found = self.plan.iter().find(|e| {
            e.first_offset <= offset
                && offset <= e.last_offset
                && e.hour == key.hour
                && *e.tenant == *key.tenant
                && *e.app == *key.app
        });
        match found {
            None => Target::Normal,
            Some(e) if e.first_offset < self.start_offset => Target::Skip,
            Some(e) => Target::Rebuild(e.clone()),
        }
    }

    /// Removes the open block of `key` if a record for `rebuild` at
    /// `offset` may not join it. A block covers every record of its key in
    /// its offset range, so a normal block ends before a rebuild starts,
    /// and a rebuild ends once its range is passed.
    pub(super) fn take_if_other_kind(
        &mut self,
        key: &BlockKey,
        rebuild: Option<&LedgerEntry>,
        offset: i64,
    ) -> Option<OpenBlock> {
        let other = self
            .open
            .get(key)
            .is_some_and(|b| match (rebuild, b.rebuild_last_offset) {
                (Some(e), Some(_)) => b.name.first_offset != e.first_offset,
                (None, Some(last)) => offset > last,
                (Some(_), None) => true,
                (None, None) => false,
            });
        other.then(|| self.open.remove(key)).flatten()
    }

    /// Rebuilds that have read their whole range, up to `read_up_to`: they
    /// are complete and can be written.
    pub(super) fn take_finished_rebuilds(&mut self, read_up_to: i64) -> Vec<OpenBlock> {
        let done: Vec<BlockKey> = self
            .open
            .iter()
            .filter(|(_, b)| b.rebuild_last_offset.is_some_and(|last| last <= read_up_to))
            .map(|(k, _)| k.clone())
            .collect();
        done.iter().filter_map(|k| self.open.remove(k)).collect()
    }
}

/// Whether a rebuild stopped before the end of its range (a flush or a
/// revocation came first): writing it would lose the records it has not
/// read, so it is not written, and its first offset is pinned instead.
pub(super) fn unfinished_rebuild(b: &OpenBlock) -> bool {
    b.rebuild_last_offset
        .is_some_and(|last| b.last_offset < last)
}
