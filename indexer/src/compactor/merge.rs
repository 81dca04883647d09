//! The merge of one compacted block: its sources' records by stream and
//! time, the SequenceFile and index they make, and the tokens of its bloom
//! filter, re-derived by the indexer's own parser. Pure code over bytes.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use skidder_common::format::index::{
    self, bloom_fp_rate, build_bloom_with_bytes, sliceable_bloom_bytes, BlockIndex, StreamEntry,
};
use skidder_common::format::offsets::RecordOffsets;
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader, SeqFileWriter};

use super::{CompactError, Source};
use crate::config::{AppSource, BlockConfig, ParseConfig, TenantSource};
use crate::models::RawBatch;
use crate::stages::compressor::{meta, streams_json};
use crate::stages::parser::Parser;

/// One record of a compacted block: where its line lies in the block's
/// line buffer, where it came from (for a stable order), and its Kafka
/// partition (a position in the block's offset sources) and offset.
struct Rec {
    time_ns: i64,
    source: u32,
    n: u32,
    start: usize,
    len: usize,
    kafka: (u32, i64),
}

/// Merges the sources' records by stream and time, and encodes the
/// compacted SequenceFile and its index. Pure: the same sources give the
/// same bytes, so two compactors racing on them write identical objects.
pub(super) fn build(
    prefix: &str,
    run: &[Source],
    datas: &[Bytes],
    data_key: &str,
    fp_rate: f64,
    max_token_value_len: usize,
) -> Result<(Vec<u8>, BlockIndex), CompactError> {
    let mut lines: Vec<u8> = Vec::new();
    // Each distinct label set's records, found through its slot once per
    // stream rather than once per record.
    let mut slot_of: BTreeMap<Vec<(String, String)>, usize> = BTreeMap::new();
    let mut groups: Vec<Vec<Rec>> = Vec::new();
    let mut block = RecordBlock::default();
    // The offsets column, kept only if every source has one (index
    // version 3): the compacted block answers offset lookups exactly, or
    // (as its older sources did) only by its offset range.
    let keep_offsets = run.iter().all(|s| s.index.offsets.is_some());
    let mut kafka_sources: Vec<(String, i32)> = Vec::new();
    for (i, (Source { name, index }, data)) in run.iter().zip(datas).enumerate() {
        let key = format!("{prefix}{name}");
        let bad = |source| CompactError::Block {
            key: key.clone(),
            source,
        };
        index.verify_data(data).map_err(bad)?;
        let slots: Vec<usize> = index
            .streams
            .iter()
            .map(|s| {
                let next = slot_of.len();
                *slot_of.entry(s.labels.clone()).or_insert_with(|| {
                    groups.push(Vec::new());
                    next
                })
            })
            .collect();
        let offsets = index.offsets.as_ref().filter(|_| keep_offsets);
        // This source's offset sources, as positions in the block's.
        let kafka_of: Vec<u32> = offsets.map_or(Vec::new(), |o| {
            o.sources
                .iter()
                .map(|s| match kafka_sources.iter().position(|k| k == s) {
                    Some(p) => p as u32,
                    None => {
                        kafka_sources.push(s.clone());
                        kafka_sources.len() as u32 - 1
                    }
                })
                .collect()
        });
        // Streams are contiguous record ranges in order (the index
        // decoder checked it): the record's number says its stream.
        let (mut n, mut stream) = (0u32, 0usize);
        let mut reader = SeqFileReader::new(data).map_err(bad)?;
        while reader.next_block(&mut block).map_err(bad)? {
            for (time_ns, line) in block.records() {
                while index
                    .streams
                    .get(stream)
                    .is_some_and(|s| n >= s.first_record + s.record_count)
                {
                    stream += 1;
                }
                let Some(&slot) = slots.get(stream) else {
                    return Err(CompactError::Mismatch {
                        key,
                        why: format!("record {n} lies past its index's streams"),
                    });
                };
                let kafka = match offsets {
                    Some(o) => {
                        let (s, offset) = o.records.get(n as usize).copied().unwrap_or_default();
                        (
                            kafka_of.get(s as usize).copied().unwrap_or_default(),
                            offset,
                        )
                    }
                    None => (0, 0),
                };
                groups[slot].push(Rec {
                    time_ns,
                    source: i as u32,
                    n,
                    start: lines.len(),
                    len: line.len(),
                    kafka,
                });
                lines.extend_from_slice(line);
                n += 1;
            }
        }
        if u64::from(n) != index.record_count {
            return Err(CompactError::Mismatch {
                key,
                why: format!("{n} records, its index says {}", index.record_count),
            });
        }
    }
    let streams: Vec<_> = slot_of
        .into_iter()
        .map(|(labels, slot)| (labels, std::mem::take(&mut groups[slot])))
        .collect();
    let mut entries = Vec::with_capacity(streams.len());
    let mut order = Vec::new();
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    for (labels, mut recs) in streams {
        recs.sort_by_key(|r| (r.time_ns, r.source, r.n));
        let first = recs.first().map_or(0, |r| r.time_ns);
        let last = recs.last().map_or(0, |r| r.time_ns);
        min_t = min_t.min(first);
        max_t = max_t.max(last);
        entries.push(StreamEntry {
            labels,
            first_record: order.len() as u32,
            record_count: recs.len() as u32,
            min_time_ns: first,
            max_time_ns: last,
        });
        order.extend(recs);
    }
    let tokens =
        tokens_of(&lines, &order, max_token_value_len).map_err(|why| CompactError::Mismatch {
            key: data_key.to_owned(),
            why,
        })?;
    let cfg = BlockConfig::default();
    let budget = (lines.len() as f64 * cfg.bloom_max_share) as usize;
    let fp = bloom_fp_rate(tokens.len(), budget, fp_rate, cfg.bloom_max_fp_rate);
    let bloom_bytes = sliceable_bloom_bytes(tokens.len(), fp, budget, cfg.bloom_max_fp_rate);
    let bloom = build_bloom_with_bytes(tokens.into_iter(), bloom_bytes);

    let first = run.iter().map(|s| s.index.first_offset).min().unwrap_or(0);
    let last = run.iter().map(|s| s.index.last_offset).max().unwrap_or(0);
    let topics: HashSet<&str> = run.iter().map(|s| s.index.topic.as_str()).collect();
    let topic = match topics.len() {
        1 => topics.into_iter().next().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    let (tenant, app, hour) = run
        .first()
        .map(|s| (s.index.tenant.clone(), s.index.app.clone(), s.index.hour))
        .unwrap_or_default();
    let streams_meta = streams_json(&entries);
    let (first_s, last_s, sources_s) = (first.to_string(), last.to_string(), run.len().to_string());
    let metadata = [
        (meta::FORMAT, "1"),
        (meta::TENANT, tenant.as_str()),
        (meta::APP, app.as_str()),
        (meta::TOPIC, topic.as_str()),
        (meta::PARTITION, "-1"),
        (meta::FIRST_OFFSET, first_s.as_str()),
        (meta::LAST_OFFSET, last_s.as_str()),
        (meta::STREAMS, streams_meta.as_str()),
        (meta::COMPACTED_FROM, sources_s.as_str()),
    ];
    let sync = xxhash_rust::xxh3::xxh3_128(data_key.as_bytes()).to_le_bytes();
    let mut w = SeqFileWriter::new(Vec::with_capacity(lines.len() / 3), &metadata, sync);
    for r in &order {
        w.append(r.time_ns, &lines[r.start..r.start + r.len]);
    }
    let data = w.finish();
    let offsets = keep_offsets.then(|| RecordOffsets {
        sources: kafka_sources,
        records: order.iter().map(|r| r.kafka).collect(),
    });
    let index = BlockIndex {
        version: match offsets {
            Some(_) => index::VERSION,
            None => index::OFFSETS_VERSION - 1,
        },
        min_time_ns: if order.is_empty() { 0 } else { min_t },
        max_time_ns: if order.is_empty() { 0 } else { max_t },
        record_count: order.len() as u64,
        raw_bytes: lines.len() as u64,
        tenant,
        app,
        hour,
        topic,
        partition: -1,
        first_offset: first,
        last_offset: last.max(first),
        data_key: data_key.to_owned(),
        data_size: data.len() as u64,
        data_crc32c: crc32c::crc32c(&data),
        streams: entries,
        bloom,
        offsets,
    };
    Ok((data, index))
}

/// The distinct tokens of the records' lines, by the indexer's own parser
/// and rules, so a compacted filter admits every query its sources did.
/// A line the parser would not take whole is an error: a filter missing
/// its tokens would hide the line from queries.
fn tokens_of(
    lines: &[u8],
    order: &[Rec],
    max_token_value_len: usize,
) -> Result<HashSet<u64>, String> {
    let cfg = ParseConfig {
        app: AppSource::Fixed("compacted".into()),
        tenant: TenantSource::Fixed("compacted".into()),
        label_fields: Vec::new(),
        max_token_value_len,
        max_line_bytes: usize::MAX,
        max_label_value_bytes: usize::MAX,
        ..ParseConfig::default()
    };
    let mut parser = Parser::new(cfg).map_err(|e| format!("the token parser: {e}"))?;
    let mut out = HashSet::new();
    let topic: Arc<str> = Arc::from("");
    for chunk in order.chunks(4096) {
        let mut raw = RawBatch::new(topic.clone(), 0);
        for (i, r) in chunk.iter().enumerate() {
            raw.push(i as i64, None, &lines[r.start..r.start + r.len]);
        }
        let parsed = parser.parse_batch(&raw);
        if parsed.records.len() != chunk.len() || !parser.refused.is_empty() {
            return Err(format!(
                "{} of {} lines re-parsed for tokens",
                parsed.records.len(),
                chunk.len()
            ));
        }
        out.extend(parsed.tokens);
    }
    Ok(out)
}
