//! The record-offsets column of an index (version 3): the Kafka topic,
//! partition and offset each record of a block came from, so that a Kafka
//! message can be traced to the lines it became (`skidder search
//! --offset`). It lives in the index, not the block, so the records Spark
//! reads keep Hadoop's (time, line) shape. Byte layout: `docs/FORMAT.md`,
//! "Record offsets".
//!
//! Offsets are delta-encoded per source, as zigzag LEB128 varints: records
//! are sorted by stream and then time, so a source's next record is
//! usually a few offsets past its last one (one byte), and a stream's
//! first record jumps back by about the block's offset span (two or three).

use integer_encoding::VarInt;

use super::vint::{write_bytes_u32, Cursor};
use super::FormatError;

/// Where a block's records came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOffsets {
    /// The (topic, partition) pairs its records came from: one for a small
    /// block, one per source partition for a compacted one.
    pub sources: Vec<(String, i32)>,
    /// Per record, in record order: its source (a position in `sources`)
    /// and its Kafka offset. A message of several lines gives several
    /// records the same offset.
    pub records: Vec<(u32, i64)>,
}

impl RecordOffsets {
    /// Appends the column. Deltas start from `base` (the index's first
    /// offset) for every source.
    pub fn encode(&self, base: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.sources.len() as u32).to_le_bytes());
        for (topic, partition) in &self.sources {
            write_bytes_u32(out, topic.as_bytes());
            out.extend_from_slice(&partition.to_le_bytes());
        }
        let many = self.sources.len() > 1;
        let mut last = vec![base; self.sources.len()];
        let mut buf = [0u8; 10];
        for &(source, offset) in &self.records {
            if many {
                let n = source.encode_var(&mut buf);
                out.extend_from_slice(&buf[..n]);
            }
            let prev = last.get_mut(source as usize);
            let delta = offset.wrapping_sub(prev.as_deref().copied().unwrap_or(base));
            if let Some(p) = prev {
                *p = offset;
            }
            let n = delta.encode_var(&mut buf);
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Decodes a column of `record_count` records whose offsets must lie
    /// in `first..=last` (the index's range), deltas starting at `first`.
    pub fn decode(
        bytes: &[u8],
        record_count: u64,
        first: i64,
        last: i64,
    ) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes);
        let n = c.u32_le()? as usize;
        // Each source takes at least 8 bytes.
        if n > c.remaining() / 8 || (n == 0 && record_count > 0) {
            return Err(FormatError::corrupt(
                c.position(),
                format!("{n} offset sources is impossible"),
            ));
        }
        let mut sources = Vec::with_capacity(n);
        for _ in 0..n {
            sources.push((c.str_u32()?.to_owned(), c.i32_le()?));
        }
        let rest = &bytes[c.position()..];
        // Each record takes at least a byte.
        if record_count > rest.len() as u64 {
            return Err(FormatError::corrupt(
                c.position(),
                format!("{record_count} records cannot fit {} bytes", rest.len()),
            ));
        }
        let at = |pos: usize| bytes.len() - rest.len() + pos;
        let mut records = Vec::with_capacity(record_count as usize);
        let mut prev = vec![first; n];
        let mut pos = 0;
        for r in 0..record_count {
            let source = if n > 1 {
                let (s, len) = u32::decode_var(&rest[pos..])
                    .ok_or_else(|| FormatError::corrupt(at(pos), "truncated varint"))?;
                pos += len;
                s
            } else {
                0
            };
            let Some(p) = prev.get_mut(source as usize) else {
                return Err(FormatError::corrupt(
                    at(pos),
                    format!("record {r} names source {source} of {n}"),
                ));
            };
            let (delta, len) = i64::decode_var(&rest[pos..])
                .ok_or_else(|| FormatError::corrupt(at(pos), "truncated varint"))?;
            pos += len;
            let offset = p.checked_add(delta).filter(|o| (first..=last).contains(o));
            let Some(offset) = offset else {
                return Err(FormatError::corrupt(
                    at(pos),
                    format!("record {r}'s offset lies outside {first}..={last}"),
                ));
            };
            *p = offset;
            records.push((source, offset));
        }
        if pos != rest.len() {
            return Err(FormatError::corrupt(
                at(pos),
                "trailing bytes in the offsets column",
            ));
        }
        Ok(RecordOffsets { sources, records })
    }

    /// The records (by number) that came from this message.
    pub fn records_of(&self, topic: &str, partition: i32, offset: i64) -> Vec<u32> {
        let Some(source) = self
            .sources
            .iter()
            .position(|(t, p)| t == topic && *p == partition)
        else {
            return Vec::new();
        };
        self.records
            .iter()
            .enumerate()
            .filter(|(_, &(s, o))| s as usize == source && o == offset)
            .map(|(n, _)| n as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> RecordOffsets {
        RecordOffsets {
            sources: vec![("logs".into(), 3), ("logs".into(), 7)],
            records: vec![(0, 105), (1, 100), (0, 101), (0, 101), (1, 180), (0, 100)],
        }
    }

    #[test]
    fn round_trips_and_finds_a_message_of_several_records() {
        let o = sample();
        let mut bytes = Vec::new();
        o.encode(100, &mut bytes);
        let back = RecordOffsets::decode(&bytes, 6, 100, 180).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.records_of("logs", 3, 101), vec![2, 3]);
        assert_eq!(back.records_of("logs", 7, 100), vec![1]);
        assert!(back.records_of("logs", 4, 101).is_empty());
        assert!(back.records_of("other", 3, 101).is_empty());
    }

    #[test]
    fn a_small_blocks_column_is_about_a_byte_a_record() {
        let o = RecordOffsets {
            sources: vec![("logs".into(), 0)],
            records: (0..1000).map(|i| (0, 5000 + i * 3)).collect(),
        };
        let mut bytes = Vec::new();
        o.encode(5000, &mut bytes);
        // Header: count, "logs", partition; then one byte per record.
        assert_eq!(bytes.len(), 4 + 8 + 4 + 1000);
        assert_eq!(RecordOffsets::decode(&bytes, 1000, 5000, 8000).unwrap(), o);
    }

    #[test]
    fn inconsistent_columns_are_errors() {
        let mut bytes = Vec::new();
        sample().encode(100, &mut bytes);
        // Too few or too many records, offsets out of the index's range.
        assert!(RecordOffsets::decode(&bytes, 5, 100, 180).is_err());
        assert!(RecordOffsets::decode(&bytes, 7, 100, 180).is_err());
        assert!(RecordOffsets::decode(&bytes, 6, 101, 180).is_err());
        assert!(RecordOffsets::decode(&bytes, 6, 100, 179).is_err());
        // No sources for some records.
        assert!(RecordOffsets::decode(&[0, 0, 0, 0, 0], 1, 0, 0).is_err());
        // A source index past the table.
        let one = RecordOffsets {
            sources: vec![("t".into(), 0), ("t".into(), 1)],
            records: vec![(0, 0)],
        };
        let mut b = Vec::new();
        one.encode(0, &mut b);
        let at = b.len() - 2;
        b[at] = 9;
        assert!(RecordOffsets::decode(&b, 1, 0, 0).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0u64..64) {
            let _ = RecordOffsets::decode(&bytes, n, i64::MIN, i64::MAX);
        }

        #[test]
        fn any_column_round_trips(
            recs in proptest::collection::vec((0u32..3, -1000i64..1000), 0..300),
        ) {
            let o = RecordOffsets {
                sources: vec![("a".into(), 0), ("b".into(), 1), ("a".into(), 2)],
                records: recs,
            };
            let mut bytes = Vec::new();
            o.encode(-1000, &mut bytes);
            let n = o.records.len() as u64;
            prop_assert_eq!(RecordOffsets::decode(&bytes, n, -1000, 1000).unwrap(), o);
        }
    }
}
