//! Stage 4: writes each sealed block as an LZ4 block-compressed Hadoop
//! SequenceFile and completes its index with the data's size and CRC32C.

use bytes::Bytes;
use skidder_common::format::index::{BlockIndex, StreamEntry};
use skidder_common::format::ledger::{LedgerEntry, LEDGER_VERSION};
use skidder_common::format::offsets::RecordOffsets;
use skidder_common::format::seqfile::SeqFileWriter;
use std::collections::BTreeMap;

use super::StageExit;
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::{EncodedBlock, Item, SealedBlock};
use crate::queue::{Receiver, Sender};

/// SequenceFile metadata keys.
pub mod meta {
    pub const FORMAT: &str = "skidder.format";
    pub const TENANT: &str = "skidder.tenant";
    pub const APP: &str = "skidder.app";
    pub const TOPIC: &str = "skidder.topic";
    pub const PARTITION: &str = "skidder.partition";
    pub const FIRST_OFFSET: &str = "skidder.first_offset";
    pub const LAST_OFFSET: &str = "skidder.last_offset";
    /// JSON: `[{"labels":{..},"first_record":n,"record_count":n}, ..]`.
    pub const STREAMS: &str = "skidder.streams";
    /// A compacted block's: how many small blocks it replaces. Its
    /// partition is then -1 and its offsets span all of theirs.
    pub const COMPACTED_FROM: &str = "skidder.compacted_from";
}

/// The stream dictionary as SequenceFile metadata JSON.
pub fn streams_json(streams: &[StreamEntry]) -> String {
    let v: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| {
            let labels: BTreeMap<&str, &str> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            serde_json::json!({
                "labels": labels,
                "first_record": s.first_record,
                "record_count": s.record_count,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

pub fn encode(block: SealedBlock, buf: Vec<u8>) -> EncodedBlock {
    let name = &block.name;
    let data_key = name.data_key();
    let streams = streams_json(&block.streams);
    let (partition, first, last) = (
        name.partition.to_string(),
        name.first_offset.to_string(),
        block.last_offset.to_string(),
    );
    let metadata = [
        (meta::FORMAT, "1"),
        (meta::TENANT, name.tenant.as_str()),
        (meta::APP, name.app.as_str()),
        (meta::TOPIC, name.topic.as_str()),
        (meta::PARTITION, partition.as_str()),
        (meta::FIRST_OFFSET, first.as_str()),
        (meta::LAST_OFFSET, last.as_str()),
        (meta::STREAMS, streams.as_str()),
    ];
    // A sync marker derived from the name keeps rebuilt blocks byte-identical.
    let sync = xxhash_rust::xxh3::xxh3_128(data_key.as_bytes()).to_le_bytes();
    let mut w = SeqFileWriter::new(buf, &metadata, sync);
    for &(t, start, len) in &block.records {
        w.append(t, &block.lines[start as usize..(start + len) as usize]);
    }
    let data = w.finish();
    let index = BlockIndex {
        version: skidder_common::format::index::VERSION,
        min_time_ns: block.min_time_ns,
        max_time_ns: block.max_time_ns,
        record_count: block.records.len() as u64,
        raw_bytes: block.raw_bytes,
        tenant: name.tenant.clone(),
        app: name.app.clone(),
        hour: name.hour,
        topic: name.topic.clone(),
        partition: name.partition,
        first_offset: name.first_offset,
        last_offset: block.last_offset,
        data_key: data_key.clone(),
        data_size: data.len() as u64,
        data_crc32c: crc32c::crc32c(&data),
        streams: block.streams,
        bloom: block.bloom,
        offsets: Some(RecordOffsets {
            sources: vec![(name.topic.clone(), name.partition)],
            records: block.offsets.iter().map(|&o| (0, o)).collect(),
        }),
    };
    EncodedBlock {
        ledger: LedgerEntry {
            version: LEDGER_VERSION,
            tenant: name.tenant.clone(),
            app: name.app.clone(),
            hour: name.hour,
            topic: name.topic.clone(),
            partition: name.partition,
            first_offset: name.first_offset,
            last_offset: block.last_offset,
            epoch: name.epoch,
        },
        index_key: name.index_key(),
        data_key,
        index: Bytes::from(index.encode()),
        data: Bytes::from(data),
        records: block.records.len() as u64,
        raw_bytes: block.raw_bytes,
    }
}

pub fn run(
    input: Receiver<Item<SealedBlock>>,
    output: Sender<Item<EncodedBlock>>,
    metrics: &Metrics,
) -> StageExit {
    super::map_stage(input, output, |block| {
        crash_point("compressor::block");
        let (n, raw) = (block.records.len() as u64, block.raw_bytes);
        let enc = encode(block, Vec::with_capacity(raw as usize / 3));
        metrics.stage("compressor", n, raw, n, enc.data.len() as u64);
        Ok(enc)
    })
}
