//! Ledger entries and partition checkpoints: the indexer's only metadata,
//! kept in the object store beside the data (see `docs/DESIGN.md`).
//!
//! A ledger entry says "the records of key (tenant, app, hour) in Kafka
//! offsets `first..=last` of this partition go to exactly one block". It is
//! written before the block, so a replay after a crash rebuilds that very
//! block and overwrites it instead of writing a second copy.
//!
//! An epoch claim (`epoch.<e>.json`) is written with `put_if_absent` each
//! time an indexer is given a partition; every block, ledger entry and
//! checkpoint it writes then carries that epoch, and a claim supersedes
//! whatever older epochs wrote at or past its start (`format::fence`).
//! That is what fences off an indexer that lost its partition without
//! knowing it (`docs/DESIGN.md`, "Zombies and epochs").

use serde::{Deserialize, Serialize};

use super::layout::{ledger_prefix, BlockName};

pub const LEDGER_VERSION: u32 = 1;
/// The checkpoint of epoch 0: stores written before epochs.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
const CHECKPOINT_STEM: &str = "checkpoint.";
const CLAIM_STEM: &str = "epoch.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub version: u32,
    pub tenant: String,
    pub app: String,
    pub hour: i64,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The epoch of the indexer that wrote it; absent (0) before epochs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LedgerEntry {
    pub fn block_name(&self) -> BlockName {
        BlockName {
            tenant: self.tenant.clone(),
            app: self.app.clone(),
            hour: self.hour,
            topic: self.topic.clone(),
            partition: self.partition,
            first_offset: self.first_offset,
            epoch: self.epoch,
        }
    }

    /// `_ledger/topic=<t>/partition=<p>/<first>-<last>-<key hash>[-e<epoch>].json`.
    /// The offsets come first so a listing is in offset order and can be
    /// filtered without reading the bodies; the epoch keeps two indexers'
    /// entries for one range apart.
    pub fn key(&self) -> String {
        let h = xxhash_rust::xxh3::xxh3_64(
            format!("{}\0{}\0{}", self.tenant, self.app, self.hour).as_bytes(),
        );
        let epoch = match self.epoch {
            0 => String::new(),
            e => format!("-e{e:010}"),
        };
        format!(
            "{}{:020}-{:020}-{h:016x}{epoch}.json",
            ledger_prefix(&self.topic, self.partition),
            self.first_offset,
            self.last_offset
        )
    }

    /// The (first, last) offsets encoded in a ledger key, if it is one.
    pub fn parse_key(key: &str) -> Option<(i64, i64)> {
        let name = key.rsplit('/').next()?.strip_suffix(".json")?;
        let mut parts = name.split('-');
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        Some((first, last))
    }

    /// The epoch encoded in a ledger entry's key (0 without one).
    pub fn parse_key_epoch(key: &str) -> Option<u64> {
        LedgerEntry::parse_key(key)?;
        let name = key.rsplit('/').next()?.strip_suffix(".json")?;
        match name.rsplit_once("-e") {
            Some((_, e)) if e.len() == 10 => e.parse().ok(),
            _ => Some(0),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The partition's next offset to read: every record below it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    pub next_offset: i64,
}

/// `_ledger/topic=<t>/partition=<p>/checkpoint.<epoch>.json`, one per
/// epoch so that an indexer fenced off can never overwrite its successor's
/// (`checkpoint.json` for epoch 0).
pub fn checkpoint_key(topic: &str, partition: i32, epoch: u64) -> String {
    match epoch {
        0 => format!("{}{CHECKPOINT_FILE}", ledger_prefix(topic, partition)),
        e => format!(
            "{}{CHECKPOINT_STEM}{e:010}.json",
            ledger_prefix(topic, partition)
        ),
    }
}

/// The epoch of a checkpoint key, if it is one.
pub fn parse_checkpoint_key(key: &str) -> Option<u64> {
    let file = key.rsplit('/').next()?;
    if file == CHECKPOINT_FILE {
        return Some(0);
    }
    let e = file.strip_prefix(CHECKPOINT_STEM)?.strip_suffix(".json")?;
    (e.len() == 10 && e.bytes().all(|b| b.is_ascii_digit()))
        .then(|| e.parse().ok())
        .flatten()
}

/// An indexer's claim on a partition, from the offset it starts at:
/// written with `put_if_absent` at [`claim_key`], so each epoch has one
/// owner. Everything an older epoch wrote at or past `start_offset` is
/// superseded (`format::fence`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochClaim {
    pub version: u32,
    pub epoch: u64,
    /// Every record below it is stored: the claimer starts here.
    pub start_offset: i64,
    /// When it was claimed, in ns since the epoch (for people).
    pub created_ns: i64,
    /// The ledger entries that straddle the start (`first < start <=
    /// last`): their blocks are stored, and the records of theirs past the
    /// start must be skipped. Kept here because an indexer fenced off may
    /// still delete them from the ledger.
    pub straddling: Vec<LedgerEntry>,
    /// Set (by overwriting the claim) once the claimer's Kafka commit at
    /// `start_offset` succeeded, which proves it was in the consumer
    /// group's current generation. A claim never confirmed (a stale
    /// claimer's, or one whose claimer died first) decides nothing:
    /// readers look past it to the next confirmed claim.
    #[serde(default)]
    pub confirmed: bool,
}

/// `_ledger/topic=<t>/partition=<p>/epoch.<epoch, 10 digits>.json`.
pub fn claim_key(topic: &str, partition: i32, epoch: u64) -> String {
    format!(
        "{}{CLAIM_STEM}{epoch:010}.json",
        ledger_prefix(topic, partition)
    )
}

/// The epoch of a claim key, if it is one.
pub fn parse_claim_key(key: &str) -> Option<u64> {
    let e = key
        .rsplit('/')
        .next()?
        .strip_prefix(CLAIM_STEM)?
        .strip_suffix(".json")?;
    (e.len() == 10 && e.bytes().all(|b| b.is_ascii_digit()))
        .then(|| e.parse().ok())
        .flatten()
}

/// The prefix under which a partition's claims list, in epoch order.
pub fn claims_prefix(topic: &str, partition: i32) -> String {
    format!("{}{CLAIM_STEM}", ledger_prefix(topic, partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_offsets() {
        let e = LedgerEntry {
            version: 1,
            tenant: "t".into(),
            app: "a".into(),
            hour: 5,
            topic: "logs".into(),
            partition: 1,
            first_offset: 7,
            last_offset: 99,
            epoch: 0,
        };
        assert_eq!(LedgerEntry::parse_key(&e.key()), Some((7, 99)));
        assert_eq!(LedgerEntry::parse_key_epoch(&e.key()), Some(0));
        assert_eq!(LedgerEntry::from_json(&e.to_json()).unwrap(), e);
        // Entries written before epochs read as epoch 0.
        assert!(!String::from_utf8(e.to_json()).unwrap().contains("epoch"));
        let e3 = LedgerEntry {
            epoch: 3,
            ..e.clone()
        };
        assert_ne!(e3.key(), e.key());
        assert_eq!(LedgerEntry::parse_key(&e3.key()), Some((7, 99)));
        assert_eq!(LedgerEntry::parse_key_epoch(&e3.key()), Some(3));
        assert_eq!(LedgerEntry::from_json(&e3.to_json()).unwrap(), e3);
        for other in [
            checkpoint_key("logs", 1, 0),
            checkpoint_key("logs", 1, 4),
            claim_key("logs", 1, 4),
        ] {
            assert_eq!(LedgerEntry::parse_key(&other), None, "{other}");
        }
        assert_eq!(parse_checkpoint_key(&checkpoint_key("logs", 1, 0)), Some(0));
        assert_eq!(
            parse_checkpoint_key(&checkpoint_key("logs", 1, 12)),
            Some(12)
        );
        assert_eq!(parse_checkpoint_key(&claim_key("logs", 1, 12)), None);
        assert_eq!(parse_claim_key(&claim_key("logs", 1, 12)), Some(12));
        assert_eq!(parse_claim_key(&e3.key()), None);
        assert!(claim_key("logs", 1, 9).starts_with(&claims_prefix("logs", 1)));
        assert!(claim_key("logs", 1, 9) < claim_key("logs", 1, 10));
    }
}
