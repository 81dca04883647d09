//! Reads the epoch claims a [`Fence`] needs (`format::fence`). Claims
//! never change once written, so a reader may keep them; a claim that is
//! missing (removed by hand) or does not decode decides nothing, and its
//! blocks are read, with a warning: skipping them could lose records.

use futures::stream::{self, StreamExt};

use crate::format::fence::{ClaimId, Fence};
use crate::format::ledger::{
    checkpoint_key, claim_key, claims_prefix, parse_claim_key, Checkpoint, EpochClaim,
};
use crate::storage::{ObjectStore, StorageErrorKind, StorageResult};

/// Claims read at once.
const CONCURRENCY: usize = 16;

/// Reads the claims `ids` into `fence`, skipping those it knows already.
pub async fn load_into(
    store: &dyn ObjectStore,
    fence: &mut Fence,
    ids: Vec<ClaimId>,
) -> StorageResult<()> {
    let wanted: Vec<ClaimId> = ids
        .into_iter()
        .filter(|id| fence.start(id).is_none())
        .collect();
    let mut reads = stream::iter(wanted)
        .map(|id| async move {
            let key = claim_key(&id.0, id.1, id.2);
            let claim = read_json::<EpochClaim>(store, &key).await?;
            if claim.is_none() {
                tracing::warn!(%key, "no readable epoch claim: its blocks are all read");
            }
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
/// is the later of the newest claim's start and that epoch's checkpoint
/// (`checkpoint.json` where no epoch was ever claimed); `None` when there
/// is neither, or one does not decode (with a warning).
pub async fn stored_offset(
    store: &dyn ObjectStore,
    topic: &str,
    partition: i32,
) -> StorageResult<Option<i64>> {
    let claims = crate::storage::list_all(store, &claims_prefix(topic, partition)).await?;
    let newest = claims
        .iter()
        .filter_map(|m| parse_claim_key(&m.key))
        .max()
        .unwrap_or(0);
    let start = match newest {
        0 => None,
        e => read_json::<EpochClaim>(store, &claim_key(topic, partition, e))
            .await?
            .map(|c| c.start_offset),
    };
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
