//! What the indexer reads from the store when Kafka assigns it a
//! partition: the stored checkpoint and the ledger entries at or past it,
//! which tell the block maker where to start and which blocks a crash may
//! have left half-written (`docs/DESIGN.md`, "Replay").
//!
//! A store blip is retried, a corrupt checkpoint or ledger entry is not:
//! no retry mends it, and starting without it could duplicate or lose
//! records, so the indexer stops with the key named.
//!
//! The start is then checked against what Kafka holds ([`check_range`]):
//! records deleted before they were indexed are counted and logged, and a
//! partition that ends below what is stored (the topic was deleted and
//! re-created) stops the indexer rather than be skipped in silence.

use std::time::Duration;

use skidder_common::format::layout::ledger_prefix;
use skidder_common::format::ledger::{checkpoint_key, Checkpoint, LedgerEntry};
use skidder_common::storage::{list_all, ObjectStore, StorageError, StorageErrorKind};
use thiserror::Error;

use crate::models::{PartitionPlan, TopicPartition};

/// Attempts at loading a partition's state before the indexer gives up;
/// with the backoff, about 30 s of store faults.
pub const LOAD_ATTEMPTS: u32 = 10;

#[derive(Debug, Error)]
pub enum AssignError {
    #[error("fetching committed offsets from Kafka")]
    Committed(#[source] rdkafka::error::KafkaError),
    #[error("reading the store")]
    Store(#[from] StorageError),
    #[error("{key}: corrupt checkpoint")]
    CorruptCheckpoint {
        key: String,
        source: serde_json::Error,
    },
    #[error("{key}: corrupt ledger entry")]
    CorruptLedger {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "{topic}/{partition} ends at offset {end}, but its records below {stored} are stored \
         already: the topic was deleted and re-created, or truncated. Nothing is read from it. \
         To index it from its start, move its ledger (_ledger/topic={topic}/partition={partition}/) \
         out of the store; docs/DESIGN.md, \"When the topic changes\""
    )]
    TopicBehindStore {
        topic: String,
        partition: i32,
        stored: i64,
        end: i64,
    },
}

impl AssignError {
    /// Only a store blip is worth another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AssignError::Store(e) if e.is_retryable())
    }
}

/// The stored checkpoint and the ledger entries at or past it. The start
/// is the later of the stored checkpoint and Kafka's committed offset.
pub async fn load_partition(
    store: &dyn ObjectStore,
    tp: &TopicPartition,
    kafka_committed: Option<i64>,
) -> Result<PartitionPlan, AssignError> {
    let ck_key = checkpoint_key(&tp.topic, tp.partition);
    let stored = match store.get(&ck_key).await {
        Ok(b) => Some(
            serde_json::from_slice::<Checkpoint>(&b)
                .map_err(|source| AssignError::CorruptCheckpoint {
                    key: ck_key.clone(),
                    source,
                })?
                .next_offset,
        ),
        Err(e) if e.kind == StorageErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let start = stored.unwrap_or(0).max(kafka_committed.unwrap_or(0));
    let mut ledger = Vec::new();
    let mut stale_ledger_keys = Vec::new();
    for obj in list_all(store, &ledger_prefix(&tp.topic, tp.partition)).await? {
        let Some((_, last)) = LedgerEntry::parse_key(&obj.key) else {
            continue;
        };
        if last < start {
            stale_ledger_keys.push((last, obj.key));
            continue;
        }
        let body = store.get(&obj.key).await?;
        let entry = LedgerEntry::from_json(&body).map_err(|source| AssignError::CorruptLedger {
            key: obj.key.clone(),
            source,
        })?;
        ledger.push(entry);
    }
    tracing::info!(
        topic = %tp.topic, partition = tp.partition, start,
        kafka_committed, stored_checkpoint = stored, ledger_entries = ledger.len(),
        "partition assigned"
    );
    Ok(PartitionPlan {
        tp: tp.clone(),
        start_offset: start,
        ledger,
        stored_checkpoint: stored,
        stale_ledger_keys,
    })
}

/// Checks a partition's start offset against Kafka's log start (`low`)
/// and end (`high`). Returns how many records below the start were
/// deleted (retention, or `kafka-delete-records`) before they were
/// indexed: Kafka then resets the fetch to its log start, and those
/// records are gone. A start past the end means the offsets began again
/// below what is stored: reading on would skip every new record up to the
/// stored offset, then write blocks whose names the old ones hold.
pub fn check_range(
    tp: &TopicPartition,
    start: i64,
    low: i64,
    high: i64,
) -> Result<u64, AssignError> {
    if start > high {
        return Err(AssignError::TopicBehindStore {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            stored: start,
            end: high,
        });
    }
    Ok((low - start).max(0) as u64)
}

/// [`load_partition`] with up to [`LOAD_ATTEMPTS`] attempts for store
/// blips; any other error ends it at once.
pub fn load_with_retries(
    rt: &tokio::runtime::Handle,
    store: &dyn ObjectStore,
    tp: &TopicPartition,
    kafka_committed: Option<i64>,
) -> Result<PartitionPlan, AssignError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match rt.block_on(load_partition(store, tp, kafka_committed)) {
            Ok(plan) => return Ok(plan),
            // About 30 s of a flaky store before giving up: each attempt
            // reads every ledger entry of the partition, so a brown-out
            // can fail several in a row.
            Err(e) if e.is_retryable() && attempt < LOAD_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "loading partition state, retrying");
                std::thread::sleep(Duration::from_millis((200 << attempt).min(5_000)));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use skidder_common::storage::LocalStore;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "logs".into(),
            partition: 3,
        }
    }

    fn local() -> (tempfile::TempDir, LocalStore, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (dir, store, rt)
    }

    #[test]
    fn a_corrupt_checkpoint_fails_at_once_naming_its_key() {
        let (_dir, store, rt) = local();
        let key = checkpoint_key("logs", 3);
        rt.block_on(store.put(&key, Bytes::from_static(b"{not json")))
            .unwrap();
        let err = load_with_retries(rt.handle(), &store, &tp(), None).unwrap_err();
        assert!(
            matches!(&err, AssignError::CorruptCheckpoint { key: k, .. } if *k == key),
            "{err}"
        );
        assert!(!err.is_retryable(), "not retried");
    }

    #[test]
    fn deleted_records_are_counted_and_a_topic_behind_the_store_refused() {
        // Start inside the log, at its start, at its end: nothing deleted.
        for start in [5, 3, 9] {
            assert_eq!(check_range(&tp(), start, 3, 9).unwrap(), 0);
        }
        // Retention took 40..100 before they were indexed.
        assert_eq!(check_range(&tp(), 40, 100, 250).unwrap(), 60);
        // Re-created: it ends at 7 and 500 are stored.
        let err = check_range(&tp(), 500, 0, 7).unwrap_err();
        assert!(
            matches!(
                err,
                AssignError::TopicBehindStore {
                    stored: 500,
                    end: 7,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("_ledger/topic=logs/partition=3/"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_checkpoint_starts_at_kafkas_commit() {
        let (_dir, store, rt) = local();
        let plan = load_with_retries(rt.handle(), &store, &tp(), Some(42)).unwrap();
        assert_eq!((plan.start_offset, plan.stored_checkpoint), (42, None));
    }
}
