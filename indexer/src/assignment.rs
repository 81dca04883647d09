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

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use skidder_common::format::fence::Fence;
use skidder_common::format::layout::{ledger_prefix, now_ns};
use skidder_common::format::ledger::{
    claim_key, parse_checkpoint_key, parse_claim_key, Checkpoint, EpochClaim, LedgerEntry,
    LEDGER_VERSION,
};
use skidder_common::storage::{list_all, ObjectMeta, ObjectStore, StorageError, StorageErrorKind};
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
    #[error("{key}: another indexer claimed this epoch first")]
    ClaimTaken { key: String },
    #[error("{key}: listed, then gone before it was read (another indexer changed the ledger)")]
    LedgerChanged { key: String },
    #[error(
        "{topic}/{partition}: Kafka refused the commit that confirms epoch {epoch}: this member \
         is not in the group's current generation (it was frozen, or the group rebalanced), so \
         its claim stays unconfirmed and decides nothing"
    )]
    NotConfirmed {
        topic: String,
        partition: i32,
        epoch: u64,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error(
        "{topic}/{partition}: epoch {epoch} was not confirmed soon enough after its commit (the \
         indexer stalled); it stays unconfirmed and decides nothing"
    )]
    ConfirmTooLate {
        topic: String,
        partition: i32,
        epoch: u64,
    },
    #[error("{key}: corrupt ledger object")]
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
        match self {
            AssignError::Store(e) => e.is_retryable(),
            // The next attempt claims the epoch after it; a stale claimer's
            // claim is never confirmed, so the retry cannot hurt.
            AssignError::ClaimTaken { .. } => true,
            // Listed again, the folder shows what changed.
            AssignError::LedgerChanged { .. } => true,
            _ => false,
        }
    }
}

/// What one listing of a partition's ledger folder holds.
#[derive(Default)]
struct LedgerFolder {
    claims: BTreeSet<u64>,
    checkpoints: HashMap<u64, String>,
    /// (first, last, epoch, key)
    entries: Vec<(i64, i64, u64, String)>,
}

impl LedgerFolder {
    fn sort(listed: Vec<ObjectMeta>) -> LedgerFolder {
        let mut f = LedgerFolder::default();
        for obj in listed {
            if let Some(e) = parse_claim_key(&obj.key) {
                f.claims.insert(e);
            } else if let Some(e) = parse_checkpoint_key(&obj.key) {
                f.checkpoints.insert(e, obj.key);
            } else if let (Some((first, last)), Some(epoch)) = (
                LedgerEntry::parse_key(&obj.key),
                LedgerEntry::parse_key_epoch(&obj.key),
            ) {
                f.entries.push((first, last, epoch, obj.key));
            }
        }
        f
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<T>, AssignError> {
    match store.get(key).await {
        Ok(b) => {
            serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| AssignError::CorruptLedger {
                    key: key.to_owned(),
                    source,
                })
        }
        Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Claims the partition's next epoch and loads what replay needs: the
/// start, which is the latest of Kafka's committed offset, the newest
/// confirmed claim's start and that epoch's checkpoint, and the ledger
/// entries at or past it that no confirmed newer claim supersedes
/// (`format::fence`). The claim is written unconfirmed: the Kafka reader
/// confirms it ([`confirm_claim`]) once a commit proves this member is in
/// the group's current generation. A claim taken by another indexer in
/// between fails with [`AssignError::ClaimTaken`], which a retry resolves
/// by claiming the one after.
pub async fn load_partition(
    store: &dyn ObjectStore,
    tp: &TopicPartition,
    kafka_committed: Option<i64>,
) -> Result<PartitionPlan, AssignError> {
    let folder =
        LedgerFolder::sort(list_all(store, &ledger_prefix(&tp.topic, tp.partition)).await?);
    let newest = folder.claims.last().copied().unwrap_or(0);
    // Claims read so far, by epoch: most assignments read one or two.
    let mut claims: HashMap<u64, EpochClaim> = HashMap::new();
    let mut read_claim = async |e: u64| -> Result<EpochClaim, AssignError> {
        if let Some(c) = claims.get(&e) {
            return Ok(c.clone());
        }
        let key = claim_key(&tp.topic, tp.partition, e);
        let c: EpochClaim = get_json(store, &key)
            .await?
            .ok_or(AssignError::LedgerChanged { key })?;
        claims.insert(e, c.clone());
        Ok(c)
    };
    // The newest confirmed claim: its owner's checkpoint and straddling
    // entries count; newer unconfirmed ones were stale or died at once.
    let mut confirmed: Option<EpochClaim> = None;
    for &e in folder.claims.iter().rev() {
        let c = read_claim(e).await?;
        if c.confirmed {
            confirmed = Some(c);
            break;
        }
    }
    let owner_epoch = confirmed.as_ref().map_or(0, |c| c.epoch);
    let stored = match folder.checkpoints.get(&owner_epoch) {
        Some(key) => get_json::<Checkpoint>(store, key)
            .await?
            .map(|c| c.next_offset),
        None => None,
    };
    let claimed_at = confirmed.as_ref().map_or(0, |c| c.start_offset);
    let start = stored
        .unwrap_or(0)
        .max(kafka_committed.unwrap_or(0))
        .max(claimed_at);

    // Entries of older epochs are read only if the first confirmed claim
    // above theirs did not supersede them: a fenced-off indexer may have
    // written those.
    let mut fence = Fence::default();
    for e in folder
        .entries
        .iter()
        .map(|e| e.2)
        .collect::<BTreeSet<u64>>()
    {
        for above in (e + 1)..=newest {
            if !folder.claims.contains(&above) {
                continue;
            }
            let c = read_claim(above).await?;
            if c.confirmed {
                fence.insert((tp.topic.to_string(), tp.partition, e + 1), c.start_offset);
                break;
            }
        }
    }
    let superseded = |first: i64, epoch: u64| {
        fence
            .start(&(tp.topic.to_string(), tp.partition, epoch + 1))
            .is_some_and(|s| first >= s)
    };
    let mut ledger = Vec::new();
    let mut stale_ledger_keys = Vec::new();
    for (first, last, epoch, key) in folder.entries {
        if last < start {
            stale_ledger_keys.push((last, key));
            continue;
        }
        if superseded(first, epoch) {
            stale_ledger_keys.push((start - 1, key));
            continue;
        }
        let entry: LedgerEntry = get_json(store, &key)
            .await?
            .ok_or(AssignError::LedgerChanged { key })?;
        ledger.push(entry);
    }
    // Straddling entries the fenced-off indexer may have deleted since.
    for e in confirmed.into_iter().flat_map(|c| c.straddling) {
        if e.last_offset >= start && !ledger.iter().any(|l| l.key() == e.key()) {
            ledger.push(e);
        }
    }
    // The older checkpoints go with this epoch's first checkpoint.
    for (e, key) in folder.checkpoints {
        if e <= newest {
            stale_ledger_keys.push((start - 1, key));
        }
    }
    let epoch = newest + 1;
    let claim = EpochClaim {
        version: LEDGER_VERSION,
        epoch,
        start_offset: start,
        created_ns: now_ns(),
        straddling: ledger
            .iter()
            .filter(|e| e.first_offset < start)
            .cloned()
            .collect(),
        confirmed: false,
    };
    let key = claim_key(&tp.topic, tp.partition, epoch);
    let body = Bytes::from(serde_json::to_vec(&claim).unwrap_or_default());
    tracing::info!(topic = %tp.topic, partition = tp.partition, epoch, start, "claiming epoch");
    crate::failpoints::crash_point("assignment::before_claim");
    match store.put_if_absent(&key, body).await {
        Ok(()) => {}
        Err(e) if e.kind == StorageErrorKind::AlreadyExists => {
            return Err(AssignError::ClaimTaken { key })
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(
        topic = %tp.topic, partition = tp.partition, start, epoch,
        kafka_committed, stored_checkpoint = stored, ledger_entries = ledger.len(),
        "partition assigned"
    );
    Ok(PartitionPlan {
        tp: tp.clone(),
        start_offset: start,
        epoch,
        ledger,
        stored_checkpoint: stored,
        stale_ledger_keys,
        claim,
    })
}

/// Marks the plans' claims confirmed, once the caller's Kafka commit
/// succeeded, several at once; a store blip is retried until `deadline`,
/// after which a claim stays unconfirmed ([`AssignError::ConfirmTooLate`]).
pub fn confirm_claims(
    rt: &tokio::runtime::Handle,
    store: &dyn ObjectStore,
    plans: &[&PartitionPlan],
    deadline: std::time::Instant,
) -> Result<(), AssignError> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    rt.block_on(
        stream::iter(plans.iter().map(|p| confirm_one(store, p, deadline)))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>(),
    )?;
    Ok(())
}

async fn confirm_one(
    store: &dyn ObjectStore,
    plan: &PartitionPlan,
    deadline: std::time::Instant,
) -> Result<(), AssignError> {
    let key = claim_key(&plan.tp.topic, plan.tp.partition, plan.epoch);
    let claim = EpochClaim {
        confirmed: true,
        ..plan.claim.clone()
    };
    let body = Bytes::from(serde_json::to_vec(&claim).unwrap_or_default());
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if std::time::Instant::now() > deadline {
            return Err(AssignError::ConfirmTooLate {
                topic: plan.tp.topic.to_string(),
                partition: plan.tp.partition,
                epoch: plan.epoch,
            });
        }
        match store.put(&key, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, attempt, "confirming an epoch claim, retrying");
                tokio::time::sleep(Duration::from_millis((50 << attempt.min(4)).min(500))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
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
    use skidder_common::format::ledger::checkpoint_key;
    use skidder_common::storage::LocalStore;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "logs".into(),
            partition: 3,
        }
    }

    /// A confirmation deadline no test reaches.
    fn far() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(600)
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
        let key = checkpoint_key("logs", 3, 0);
        rt.block_on(store.put(&key, Bytes::from_static(b"{not json")))
            .unwrap();
        let err = load_with_retries(rt.handle(), &store, &tp(), None).unwrap_err();
        assert!(
            matches!(&err, AssignError::CorruptLedger { key: k, .. } if *k == key),
            "{err}"
        );
        assert!(!err.is_retryable(), "not retried");
    }

    fn entry(first: i64, last: i64, epoch: u64) -> LedgerEntry {
        LedgerEntry {
            version: LEDGER_VERSION,
            tenant: "t".into(),
            app: format!("a{first}"),
            hour: 0,
            topic: "logs".into(),
            partition: 3,
            first_offset: first,
            last_offset: last,
            epoch,
        }
    }

    fn put_json(rt: &tokio::runtime::Runtime, store: &LocalStore, key: &str, body: Vec<u8>) {
        rt.block_on(store.put(key, Bytes::from(body))).unwrap();
    }

    #[test]
    fn each_assignment_claims_the_next_epoch_and_skips_what_it_supersedes() {
        let (_dir, store, rt) = local();
        // Each claimer's commit succeeded: its claim is confirmed.
        let load = |kafka| {
            let plan = load_with_retries(rt.handle(), &store, &tp(), kafka).unwrap();
            confirm_claims(rt.handle(), &store, &[&plan], far()).unwrap();
            plan
        };
        let first = load(Some(10));
        assert_eq!((first.epoch, first.start_offset), (1, 10));
        // Epoch 1 stored a block straddling 40, and was working on two more
        // when epoch 2 took over at 40 (its checkpoint said so).
        let straddles = entry(30, 60, 1);
        let unsure = entry(45, 70, 1);
        for e in [&straddles, &unsure] {
            put_json(&rt, &store, &e.key(), e.to_json());
        }
        let ck = serde_json::to_vec(&Checkpoint {
            version: LEDGER_VERSION,
            next_offset: 40,
        })
        .unwrap();
        put_json(&rt, &store, &checkpoint_key("logs", 3, 1), ck);
        let second = load(Some(12));
        assert_eq!((second.epoch, second.start_offset), (2, 40));
        assert_eq!(second.ledger, vec![straddles.clone(), unsure.clone()]);
        let claim: EpochClaim =
            serde_json::from_slice(&rt.block_on(store.get(&claim_key("logs", 3, 2))).unwrap())
                .unwrap();
        assert_eq!(
            (claim.start_offset, claim.straddling),
            (40, vec![straddles.clone()])
        );

        // Epoch 1, a zombie now, deletes its straddling entry and writes
        // an entry past epoch 2's start; epoch 2 died without a checkpoint.
        rt.block_on(store.delete(&straddles.key())).unwrap();
        let zombie = entry(50, 80, 1);
        put_json(&rt, &store, &zombie.key(), zombie.to_json());
        let third = load(None);
        assert_eq!((third.epoch, third.start_offset), (3, 40));
        // The straddler comes back from claim 2; the zombie's entry and the
        // unsure one (45 >= 40) are superseded by claim 2 and go stale.
        let mut got: Vec<_> = third.ledger.iter().map(|e| e.first_offset).collect();
        got.sort();
        assert_eq!(got, vec![30]);
        let stale: Vec<&str> = third
            .stale_ledger_keys
            .iter()
            .map(|(_, k)| k.as_str())
            .collect();
        for k in [zombie.key(), unsure.key(), checkpoint_key("logs", 3, 1)] {
            assert!(stale.contains(&k.as_str()), "{k} in {stale:?}");
        }
    }

    #[test]
    fn a_claim_never_confirmed_supersedes_nothing() {
        let (_dir, store, rt) = local();
        let load = |kafka| load_with_retries(rt.handle(), &store, &tp(), kafka).unwrap();
        let first = load(Some(10));
        confirm_claims(rt.handle(), &store, &[&first], far()).unwrap();
        // The owner of epoch 1 stored up to 50, and has a block at 50.
        let stored = entry(50, 60, 1);
        put_json(&rt, &store, &stored.key(), stored.to_json());
        let ck = serde_json::to_vec(&Checkpoint {
            version: LEDGER_VERSION,
            next_offset: 50,
        })
        .unwrap();
        put_json(&rt, &store, &checkpoint_key("logs", 3, 1), ck);
        // A stale member claims epoch 2 at 55; Kafka refuses its commit, so
        // it never confirms. The owner of epoch 1 goes on past 55.
        let stale = load(Some(55));
        assert_eq!((stale.epoch, stale.start_offset), (2, 55));
        let later = entry(70, 80, 1);
        put_json(&rt, &store, &later.key(), later.to_json());
        let deciding = |e| {
            rt.block_on(skidder_common::claims::deciding_claim(&store, "logs", 3, e))
                .unwrap()
                .map(|c| (c.epoch, c.start_offset))
        };
        assert_eq!(deciding(1), None, "an unconfirmed claim decides nothing");
        // The next owner starts from epoch 1's checkpoint and keeps both
        // of epoch 1's entries: the stale claim superseded neither.
        let next = load(Some(12));
        assert_eq!((next.epoch, next.start_offset), (3, 50));
        let firsts: Vec<i64> = next.ledger.iter().map(|e| e.first_offset).collect();
        assert_eq!(firsts, vec![50, 70]);
        confirm_claims(rt.handle(), &store, &[&next], far()).unwrap();
        assert_eq!(deciding(1), Some((3, 50)), "claim 3 decides, past 2");
        assert_eq!(
            rt.block_on(skidder_common::claims::stored_offset(&store, "logs", 3))
                .unwrap(),
            Some(50)
        );
    }

    #[test]
    fn a_claim_taken_first_is_retried_with_the_next_epoch() {
        let (_dir, store, rt) = local();
        put_json(&rt, &store, &claim_key("logs", 3, 1), b"{}".to_vec());
        // Listed and unreadable: refused, not skipped.
        let err = load_with_retries(rt.handle(), &store, &tp(), None).unwrap_err();
        assert!(matches!(err, AssignError::CorruptLedger { .. }), "{err}");
        let err = AssignError::ClaimTaken { key: "k".into() };
        assert!(err.is_retryable());
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
        assert_eq!(plan.epoch, 1);
    }
}
