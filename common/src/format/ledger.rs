//! Ledger entries and partition checkpoints: the indexer's only metadata,
//! kept in the object store beside the data (see `docs/DESIGN.md`).
//!
//! A ledger entry says "the records of key (tenant, app, hour) in Kafka
//! offsets `first..=last` of this partition go to exactly one block". It is
//! written before the block, so a replay after a crash rebuilds that very
//! block and overwrites it instead of writing a second copy.

use serde::{Deserialize, Serialize};

use super::layout::{ledger_prefix, BlockName};

pub const LEDGER_VERSION: u32 = 1;
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

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
        }
    }

    /// `_ledger/topic=<t>/partition=<p>/<first>-<last>-<key hash>.json`. The
    /// offsets come first so a listing is in offset order and can be
    /// filtered without reading the bodies.
    pub fn key(&self) -> String {
        let h = xxhash_rust::xxh3::xxh3_64(
            format!("{}\0{}\0{}", self.tenant, self.app, self.hour).as_bytes(),
        );
        format!(
            "{}{:020}-{:020}-{h:016x}.json",
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

pub fn checkpoint_key(topic: &str, partition: i32) -> String {
    format!("{}{CHECKPOINT_FILE}", ledger_prefix(topic, partition))
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
        };
        assert_eq!(LedgerEntry::parse_key(&e.key()), Some((7, 99)));
        assert_eq!(LedgerEntry::from_json(&e.to_json()).unwrap(), e);
        assert_eq!(LedgerEntry::parse_key(&checkpoint_key("logs", 1)), None);
    }
}
