//! Lookup by Kafka offset: which lines did one message become? For
//! pipeline debugging and audits (`skidder search --offset logs:3:42`,
//! `GET /skidder/api/v1/offset`).
//!
//! The blocks come from the usual listing and index reads over a time
//! range (packs and caches included), with no bloom filter: a block can
//! hold the message only if it is of the message's partition (or a
//! compacted block, of several) and its offset range covers the offset.
//! Only those few blocks' index objects are read whole, for the
//! record-offsets column (index version 3), and only the blocks with a
//! matching record are fetched. An index of version 1 or 2 keeps no
//! per-record offsets: such a block is reported, by its offset range,
//! as one that may hold the message. Dead letters of the message are
//! listed under `_deadletter/`, one LIST.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use skidder_common::format::index::{BlockIndex, OFFSETS_VERSION};
use skidder_common::format::layout::{dead_letter_key, decode_component, index_key_of};
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};
use skidder_common::storage::{list_all, ObjectStore, StorageErrorKind};

use super::prune::{stream_labels, Candidate};
use super::{Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::Labels;
use crate::logql::{parse, Query};

/// A Kafka message: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::str::FromStr for KafkaOffset {
    type Err = String;

    /// `topic:partition:offset`; the topic may itself hold colons.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not <topic>:<partition>:<offset>");
        let (rest, offset) = s.rsplit_once(':').ok_or_else(bad)?;
        let (topic, partition) = rest.rsplit_once(':').ok_or_else(bad)?;
        let partition: i32 = partition.parse().map_err(|_| bad())?;
        let offset: i64 = offset.parse().map_err(|_| bad())?;
        if topic.is_empty() || partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(KafkaOffset {
            topic: topic.to_owned(),
            partition,
            offset,
        })
    }
}

/// One stored record of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRecord {
    pub ts: i64,
    pub labels: Arc<Labels>,
    pub line: String,
    /// The data block that holds it, and its number there.
    pub block: String,
    pub record: u32,
}

/// A block whose index (version 1 or 2) has no offsets column, and whose
/// offset range covers the message: it may hold some of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnresolvedBlock {
    pub block: String,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A line of the message the indexer refused, kept whole under
/// `_deadletter/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub key: String,
    /// Its line number in the message, from 0.
    pub line: u32,
    pub reason: String,
    pub bytes: u64,
}

/// What a lookup found.
#[derive(Debug, Default)]
pub struct OffsetLookup {
    /// Sorted by time, then block and record.
    pub records: Vec<OffsetRecord>,
    pub unresolved: Vec<UnresolvedBlock>,
    pub dead_letters: Vec<DeadLetter>,
    pub stats: Stats,
}

/// Whether the block of `idx` can hold a record of message `m`, by its
/// partition and offset range.
fn may_hold(idx: &BlockIndex, m: &KafkaOffset) -> bool {
    let partition_ok = match idx.partition {
        -1 => idx.topic.is_empty() || idx.topic == m.topic,
        p => p == m.partition && idx.topic == m.topic,
    };
    partition_ok && (idx.first_offset..=idx.last_offset).contains(&m.offset)
}

impl Engine {
    /// The stored records of message `m` in `tenant`'s blocks of `range`.
    pub async fn by_offset(
        &self,
        tenant: &str,
        range: TimeRange,
        m: &KafkaOffset,
    ) -> Result<OffsetLookup, SearchError> {
        let mut out = OffsetLookup::default();
        let Ok(Query::Log(all)) = parse(r#"{__app__=~".+"}"#) else {
            unreachable!("a constant selector parses");
        };
        let cands = self
            .candidates(tenant, range, &all, false, &mut out.stats)
            .await?;
        let cands: Vec<Candidate> = cands.into_iter().filter(|c| may_hold(&c.idx, m)).collect();
        let found: Vec<_> = stream::iter(cands)
            .map(|c| async move {
                let mut w = Vec::new();
                let r = self.records_of(&c, m, &mut w).await;
                (c, r, w)
            })
            .buffered(self.cfg.fetch_concurrency.max(1))
            .collect()
            .await;
        for (c, r, w) in found {
            out.stats.warnings.extend(w);
            match r? {
                Some(records) => out.records.extend(records),
                None => out.unresolved.push(UnresolvedBlock {
                    block: c.data_key.clone(),
                    first_offset: c.idx.first_offset,
                    last_offset: c.idx.last_offset,
                }),
            }
        }
        out.records
            .sort_by(|a, b| (a.ts, &a.block, a.record).cmp(&(b.ts, &b.block, b.record)));
        out.dead_letters = self.dead_letters(m).await?;
        Ok(out)
    }

    /// The records of `m` in one candidate block, or `None` if its index
    /// has no offsets column. A missing or corrupt object is a warning.
    async fn records_of(
        &self,
        c: &Candidate,
        m: &KafkaOffset,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Vec<OffsetRecord>>, SearchError> {
        if c.idx.version < OFFSETS_VERSION {
            return Ok(None);
        }
        let Some(idx) = self
            .whole_index(&index_key_of(&c.data_key), warnings)
            .await?
        else {
            return Ok(Some(Vec::new()));
        };
        let Some(offsets) = &idx.offsets else {
            return Ok(None);
        };
        let wanted = offsets.records_of(&m.topic, m.partition, m.offset);
        if wanted.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let Some(data) = self
            .get_or_warn(&*self.stores.blocks, &c.data_key, warnings)
            .await?
        else {
            return Ok(Some(Vec::new()));
        };
        if let Err(e) = idx.verify_data(&data) {
            self.metrics.corrupt_objects.inc();
            warnings.push(format!("skipped corrupt block {}: {e}", c.data_key));
            return Ok(Some(Vec::new()));
        }
        self.metrics.blocks_fetched.inc();
        let mut out = Vec::new();
        let corrupt = |e| format!("skipped corrupt block {}: {e}", c.data_key);
        let mut reader = match SeqFileReader::new(&data) {
            Ok(r) => r,
            Err(e) => {
                warnings.push(corrupt(e));
                return Ok(Some(out));
            }
        };
        let (mut block, mut n, mut next) = (RecordBlock::default(), 0u32, 0usize);
        while next < wanted.len() {
            match reader.next_block(&mut block) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    warnings.push(corrupt(e));
                    break;
                }
            }
            for (ts, line) in block.records() {
                if wanted.get(next) == Some(&n) {
                    let stream = idx
                        .streams
                        .iter()
                        .position(|s| n < s.first_record + s.record_count)
                        .unwrap_or_default();
                    out.push(OffsetRecord {
                        ts,
                        labels: Arc::new(stream_labels(&idx, stream)),
                        line: String::from_utf8_lossy(line).into_owned(),
                        block: c.data_key.clone(),
                        record: n,
                    });
                    next += 1;
                }
                n += 1;
            }
        }
        Ok(Some(out))
    }

    /// An object's bytes; gone is a warning (`None`), a store fault an
    /// error.
    async fn get_or_warn(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Bytes>, SearchError> {
        match store.get(key).await {
            Ok(b) => {
                self.metrics.bytes_fetched.inc_by(b.len() as u64);
                Ok(Some(b))
            }
            Err(e) if e.kind == StorageErrorKind::NotFound => {
                warnings.push(format!("{key} no longer exists"));
                Ok(None)
            }
            Err(e) => Err(self.store_fault("get_offsets", e)),
        }
    }

    /// An index read whole, with its offsets column; corrupt is a warning.
    async fn whole_index(
        &self,
        key: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<BlockIndex>, SearchError> {
        let Some(bytes) = self
            .get_or_warn(&*self.stores.indexes, key, warnings)
            .await?
        else {
            return Ok(None);
        };
        match BlockIndex::decode(&bytes) {
            Ok(i) => Ok(Some(i)),
            Err(e) => {
                self.metrics.corrupt_objects.inc();
                warnings.push(format!("skipped corrupt index {key}: {e}"));
                Ok(None)
            }
        }
    }

    /// The message's dead letters: one LIST of its offset's keys.
    async fn dead_letters(&self, m: &KafkaOffset) -> Result<Vec<DeadLetter>, SearchError> {
        let key = dead_letter_key(&m.topic, m.partition, m.offset, 0, "");
        let prefix = match key.rsplit_once('-') {
            Some((p, _)) => format!("{p}-"),
            None => key,
        };
        let listed = list_all(&*self.stores.listing, &prefix)
            .await
            .map_err(|e| self.store_fault("list_dead_letters", e))?;
        let mut out: Vec<DeadLetter> = listed
            .into_iter()
            .filter_map(|o| {
                let (line, reason) = o.key.strip_prefix(&prefix)?.split_once('.')?;
                Some(DeadLetter {
                    line: line.parse().ok()?,
                    reason: decode_component(reason)?,
                    bytes: o.size,
                    key: o.key,
                })
            })
            .collect();
        out.sort_by_key(|d| d.line);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_topic_partition_offset() {
        let o: KafkaOffset = "logs:3:1234567".parse().unwrap();
        assert_eq!(
            (o.topic.as_str(), o.partition, o.offset),
            ("logs", 3, 1234567)
        );
        let o: KafkaOffset = "ns:logs:0:0".parse().unwrap();
        assert_eq!(o.topic, "ns:logs");
        for bad in [
            "logs",
            "logs:3",
            ":3:4",
            "logs:x:4",
            "logs:3:-1",
            "logs:-1:3",
        ] {
            assert!(bad.parse::<KafkaOffset>().is_err(), "{bad}");
        }
    }
}
