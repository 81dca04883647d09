//! Reads the epoch claims a [`Fence`] needs (`format::fence`). Blocks of
//! epoch `e` are decided by the first *confirmed* claim above `e`
//! ([`deciding_claim`]); a confirmed claim never changes, so a reader may
//! keep what it decides. A claim that does not decode decides nothing,
//! and its blocks are read, with a warning: skipping them could lose
//! records.

use futures::stream::{self, StreamExt};

use crate::format::fence::{ClaimId, Fence};
use crate::format::ledger::{
    checkpoint_key, claim_key, claims_prefix, parse_claim_key, Checkpoint, EpochClaim,
};
use crate::storage::{ObjectStore, StorageErrorKind, StorageResult};

/// Claims read at once.
const CONCURRENCY: usize = 16;

/// Unconfirmed claims a reader looks past before it gives up (each is an
/// assignment whose claimer was stale or died before confirming).
const MAX_UNCONFIRMED: u64 = 64;

/// The claim that decides for the blocks of `epoch`: the first confirmed
/// claim above it. `None`: no claim above it is confirmed (yet), so
/// nothing supersedes them.
pub async fn deciding_claim(
    store: &dyn ObjectStore,
    topic: &str,
    partition: i32,
    epoch: u64,
) -> StorageResult<Option<EpochClaim>> {
    for e in epoch + 1..=epoch + 1 + MAX_UNCONFIRMED {
        match read_json::<EpochClaim>(store, &claim_key(topic, partition, e)).await? {
            Some(c) if c.confirmed => return Ok(Some(c)),
            Some(_) => continue,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Reads into `fence` what decides each claim id `(topic, partition, e +
/// 1)` of `ids` (see [`deciding_claim`]), skipping those it knows already.
pub async fn load_into(
    store: &dyn ObjectStore,
    fence: &mut Fence,
    ids: Vec<ClaimId>,
) -> StorageResult<()> {
    let wanted: Vec<ClaimId> = ids
        .into_iter()
        .filter(|id| fence.start(id).is_none() && id.2 > 0)
        .collect();
    let mut reads = stream::iter(wanted)
        .map(|id| async move {
            let claim = deciding_claim(store, &id.0, id.1, id.2 - 1).await?;
            Ok::<_, crate::storage::StorageError>(claim.map(|c| (id, c.start_offset)))
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(read) = reads.next().await {
        if let Some((id, start)) = read? {
            fence.insert(id, start);
        }
    }
    Ok(())
}

/// The fence for the listed blocks `names` (see [`Fence::claims_needed`]).
pub async fn fence_for<'a>(
    store: &dyn ObjectStore,
    names: impl IntoIterator<Item = &'a str>,
) -> StorageResult<Fence> {
    let mut fence = Fence::default();
    load_into(store, &mut fence, Fence::claims_needed(names)).await?;
    Ok(fence)
}

/// Where a partition's stored records end: every record below the
/// returned offset is in a stored block that no claim will supersede. It
/// is the later of the newest confirmed claim's start and that epoch's
/// checkpoint (`checkpoint.json` where no epoch was ever confirmed);
/// `None` when there is neither, or one does not decode (with a warning).
/// A newer claim not confirmed yet cannot supersede any of it later: see
/// `MAX_CONFIRM_DELAY` in the Kafka reader.
pub async fn stored_offset(
    store: &dyn ObjectStore,
    topic: &str,
    partition: i32,
) -> StorageResult<Option<i64>> {
    let claims = crate::storage::list_all(store, &claims_prefix(topic, partition)).await?;
    let mut epochs: Vec<u64> = claims
        .iter()
        .filter_map(|m| parse_claim_key(&m.key))
        .collect();
    epochs.sort_unstable();
    let (mut newest, mut start) = (0, None);
    for e in epochs.into_iter().rev() {
        if let Some(c) = read_json::<EpochClaim>(store, &claim_key(topic, partition, e)).await? {
            if c.confirmed {
                (newest, start) = (e, Some(c.start_offset));
                break;
            }
        }
    }
    let checkpoint = read_json::<Checkpoint>(store, &checkpoint_key(topic, partition, newest))
        .await?
        .map(|c| c.next_offset);
    Ok(start.max(checkpoint))
}

async fn read_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
) -> StorageResult<Option<T>> {
    match store.get(key).await {
        Ok(body) => match serde_json::from_slice(&body) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(%key, error = %e, "unreadable ledger object");
                Ok(None)
            }
        },
        Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
