use std::sync::Arc;

use skidder_common::format::ledger::{EpochClaim, LedgerEntry};

use crate::queue::Weighted;

/// A Kafka topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// What the block maker must know before the first record of a newly
/// assigned partition: where reading starts and which blocks a crash may
/// have left half-written (see `docs/DESIGN.md`, "Replay").
#[derive(Debug, Clone)]
pub struct PartitionPlan {
    pub tp: TopicPartition,
    /// Every record below this offset is stored.
    pub start_offset: i64,
    /// The epoch this indexer claimed for the partition: every block,
    /// ledger entry and checkpoint it writes carries it.
    pub epoch: u64,
    /// Ledger entries with `last_offset >= start_offset`, in offset order.
    pub ledger: Vec<LedgerEntry>,
    /// The checkpoint found in the store, if any; Kafka's commit may be ahead.
    pub stored_checkpoint: Option<i64>,
    /// Keys of ledger entries wholly below the start: done, to be deleted
    /// with the next checkpoint, as (last offset, key).
    pub stale_ledger_keys: Vec<(i64, String)>,
    /// The claim as written, not yet confirmed.
    pub claim: EpochClaim,
}

/// Control messages travel in order with the data through every queue.
#[derive(Debug, Clone)]
pub enum Control {
    /// A partition was assigned to this indexer.
    Assign(PartitionPlan),
    /// Cut every open block of these partitions (all when `None`) and, when
    /// `forget` is set, drop their state: they were revoked.
    Flush {
        partitions: Option<Vec<TopicPartition>>,
        forget: bool,
    },
}

/// A queue item: data or a control message.
#[derive(Debug)]
pub enum Item<T> {
    Data(T),
    Control(Control),
}

/// What a control message is charged in a queue's byte budget.
const CONTROL_WEIGHT: usize = 64;

impl<T: Weighted> Weighted for Item<T> {
    fn weight(&self) -> usize {
        match self {
            Item::Data(d) => d.weight(),
            Item::Control(_) => CONTROL_WEIGHT,
        }
    }
}
