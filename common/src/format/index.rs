//! The index object that sits next to each data block: what the block holds
//! (time range, streams, Kafka provenance), how to verify it (data size and
//! CRC32C), and a bloom filter of its tokens. The searcher prunes on these
//! few KB instead of fetching the block. Byte layout: `docs/FORMAT.md`.

use bloomfilter::Bloom;

use super::offsets::RecordOffsets;
use super::vint::{check_crc32c_at, push_crc32c, write_bytes_u32, Cursor};
use super::FormatError;

pub const MAGIC: &[u8; 4] = b"SKIX";
/// The version writers write. Versions share one layout and differ in what
/// the bloom filter holds (`docs/FORMAT.md`, "Tokens"):
/// - 1: words of the line, plus `key=value` for each scalar JSON field;
/// - 2: words of the line, plus the words of each scalar JSON value;
/// - 3: version 2's tokens, and a record-offsets column after the bloom
///   filter (`format::offsets`).
pub const VERSION: u16 = 3;
/// The versions this reader accepts.
pub const MIN_VERSION: u16 = 1;
pub const MAX_VERSION: u16 = 3;
/// The first version with a record-offsets column.
pub const OFFSETS_VERSION: u16 = 3;
const HEADER_LEN: usize = 12;
/// Seed of every block's bloom filter, fixed so that a rebuilt block is
/// byte-identical to the original.
pub const BLOOM_SEED: [u8; 32] = *b"skidder-bloom-v1-seed-0123456789";
/// Most hash functions a bloom filter may use. Every membership check runs
/// all k of them, so a corrupt k near `u32::MAX` would turn one check into
/// minutes of work. [`build_bloom`] never writes more than about 1,100 (the
/// optimum for one item at the smallest positive false-positive rate).
pub const MAX_BLOOM_HASHES: u32 = 4096;

/// One stream: a distinct label set, stored once per block. The block's
/// records are sorted by stream, so a stream is a contiguous record range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Label names and values, sorted by name.
    pub labels: Vec<(String, String)>,
    pub first_record: u32,
    pub record_count: u32,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIndex {
    /// The format version, which says which tokens the bloom filter holds.
    pub version: u16,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub record_count: u64,
    /// Bytes of log lines before compression.
    pub raw_bytes: u64,
    pub tenant: String,
    pub app: String,
    /// Hours since the Unix epoch.
    pub hour: i64,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub data_key: String,
    pub data_size: u64,
    pub data_crc32c: u32,
    pub streams: Vec<StreamEntry>,
    /// The `bloomfilter` crate's serialisation of a `Bloom<u64>` over token
    /// hashes (see `docs/FORMAT.md`).
    pub bloom: Vec<u8>,
    /// Each record's Kafka topic, partition and offset: written from
    /// version 3 on (a version 3 index written without it has an empty
    /// column). `None` below version 3, and when decoded for pruning
    /// ([`decode_with_bloom`](Self::decode_with_bloom) skips the column).
    pub offsets: Option<RecordOffsets>,
}

/// The false-positive rate to build a block's filter at: `wanted`, unless
/// a filter that good for `tokens` tokens would exceed `budget_bytes`;
/// then the rate that fits the budget, but never worse than `worst`.
///
/// A lower rate means fewer blocks fetched for a needle; a block of many
/// distinct tokens (network logs full of addresses) would pay for it with
/// an index out of proportion to its data.
pub fn bloom_fp_rate(tokens: usize, budget_bytes: usize, wanted: f64, worst: f64) -> f64 {
    let ln2_sq = std::f64::consts::LN_2 * std::f64::consts::LN_2;
    let n = tokens.max(1) as f64;
    let budget_bits = budget_bytes as f64 * 8.0;
    if -n * wanted.ln() / ln2_sq <= budget_bits {
        return wanted;
    }
    (-budget_bits * ln2_sq / n)
        .exp()
        .clamp(wanted, worst.max(wanted))
}

/// `fp_rate` if it is a usable rate (strictly between 0 and 1), else 1%.
fn usable_fp_rate(fp_rate: f64) -> f64 {
    if fp_rate > 0.0 && fp_rate < 1.0 {
        fp_rate
    } else {
        0.01
    }
}

/// Builds a bloom filter for `hashes` at false-positive rate `fp_rate`,
/// sized exactly for them.
pub fn build_bloom(hashes: impl ExactSizeIterator<Item = u64>, fp_rate: f64) -> Vec<u8> {
    let n = hashes.len().max(1);
    let bytes = Bloom::<u64>::compute_bitmap_size(n, usable_fp_rate(fp_rate));
    build_bloom_with_bytes(hashes, bytes)
}

/// Bitmap bytes for a block's filter of `tokens` tokens at `fp_rate`,
/// rounded to 2^a or 3 * 2^(a-1) bytes, so that an hour's filters come in
/// a few sizes and the packer can slice them (`format::slices`). It rounds
/// up (a lower false-positive rate) unless that passes `budget_bytes`;
/// then down, as long as the rate stays at most `worst`. A filter at both
/// limits (a block dense in distinct words, already past its budget at
/// the worst rate) rounds up to the next eighth of a power of two,
/// 2^a * (8 + j) / 8 bytes: at most 12.5% larger than its exact size,
/// and blocks of similar token counts (an app's compacted hours) then
/// share a length, so they can be sliced together.
pub fn sliceable_bloom_bytes(
    tokens: usize,
    fp_rate: f64,
    budget_bytes: usize,
    worst: f64,
) -> usize {
    let fp = usable_fp_rate(fp_rate);
    let n = tokens.max(1);
    let exact = Bloom::<u64>::compute_bitmap_size(n, fp).max(1);
    // The largest 2^a or 3 * 2^(a-1) at most `exact`, and the next one up.
    let pow = 1usize << (usize::BITS - 1 - exact.leading_zeros());
    let down = if pow >= 2 && exact >= pow / 2 * 3 {
        pow / 2 * 3
    } else {
        pow
    };
    if down == exact {
        return exact;
    }
    let up = if down == pow && pow >= 2 {
        pow / 2 * 3
    } else {
        pow * 2
    };
    let ln2_sq = std::f64::consts::LN_2 * std::f64::consts::LN_2;
    let fp_of = |bytes: usize| (-(bytes as f64 * 8.0 / n as f64) * ln2_sq).exp();
    if up <= budget_bytes.max(exact) {
        up
    } else if fp_of(down) <= worst {
        down
    } else {
        // `pow <= exact`, so an eighth of it fits; filters under 8 bytes
        // keep their size.
        let eighth = (pow / 8).max(1);
        exact.div_ceil(eighth) * eighth
    }
}

/// Builds a bloom filter for `hashes` with a bitmap of `bytes` bytes and
/// the number of hash functions best for that size.
pub fn build_bloom_with_bytes(hashes: impl ExactSizeIterator<Item = u64>, bytes: usize) -> Vec<u8> {
    let n = hashes.len().max(1);
    // Both arguments are positive, so construction cannot fail.
    let mut bloom = Bloom::<u64>::new_with_seed(bytes.max(1), n, &BLOOM_SEED)
        .expect("positive size and item count");
    for h in hashes {
        bloom.set(&h);
    }
    bloom.into_bytes()
}

/// Calls `f` with the number of each set bit of a bitmap as the
/// `bloomfilter` crate lays it out (bit `i` is bit `i % 8` of byte `i / 8`).
pub fn for_each_set_bit(bitmap: &[u8], mut f: impl FnMut(u64)) {
    for (at, chunk) in bitmap.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let mut w = u64::from_le_bytes(word);
        while w != 0 {
            f(at as u64 * 64 + u64::from(w.trailing_zeros()));
            w &= w - 1;
        }
    }
}

/// A decoded bloom filter, ready for membership checks.
pub struct BloomFilter(Bloom<u64>);

impl BloomFilter {
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let bloom = Bloom::<u64>::from_slice(bytes)
            .map_err(|e| FormatError::corrupt(0, format!("bloom filter: {e}")))?;
        // `Bloom::is_empty` means "no bit set"; this asks for no bits at all,
        // which would make every membership check divide by zero.
        #[allow(clippy::len_zero)]
        if bloom.len() == 0 {
            return Err(FormatError::corrupt(0, "bloom filter has no bits"));
        }
        let k = bloom.number_of_hash_functions();
        if k > MAX_BLOOM_HASHES {
            return Err(FormatError::corrupt(
                0,
                format!("bloom filter uses {k} hash functions, more than {MAX_BLOOM_HASHES}"),
            ));
        }
        Ok(BloomFilter(bloom))
    }

    /// False means the token is certainly absent.
    pub fn may_contain(&self, token_hash: u64) -> bool {
        self.0.check(&token_hash)
    }

    /// Bits in the bitmap.
    pub fn bits(&self) -> u64 {
        self.0.len()
    }

    /// The serialisation's bytes before the bitmap: the crate's header,
    /// which fixes the seed and the number of hash functions.
    pub fn header(&self) -> &[u8] {
        let all = self.0.as_slice();
        &all[..all.len() - self.bitmap().len()]
    }

    /// The bitmap, [`for_each_set_bit`]'s layout.
    pub fn bitmap(&self) -> &[u8] {
        let all = self.0.as_slice();
        let len = usize::try_from(self.bits() / 8).unwrap_or(usize::MAX);
        &all[all.len().saturating_sub(len)..]
    }

    /// The bits `tokens` set in an empty filter of `bits` bits whose
    /// serialisation starts with `header`, in order: the bits a filter of
    /// that shape must all have set to hold every one of `tokens`.
    pub fn bits_of(header: &[u8], bits: u64, tokens: &[u64]) -> Result<Vec<u64>, FormatError> {
        if !bits.is_multiple_of(8) {
            return Err(FormatError::corrupt(
                0,
                format!("{bits} bits is not whole bytes"),
            ));
        }
        let mut bytes = Vec::with_capacity(header.len() + (bits / 8) as usize);
        bytes.extend_from_slice(header);
        bytes.resize(header.len() + (bits / 8) as usize, 0);
        let mut empty = BloomFilter::decode(&bytes)?;
        if empty.bits() != bits {
            return Err(FormatError::corrupt(
                0,
                format!("header says {} bits, not {bits}", empty.bits()),
            ));
        }
        for t in tokens {
            empty.0.set(t);
        }
        let mut out = Vec::new();
        for_each_set_bit(empty.bitmap(), |b| out.push(b));
        Ok(out)
    }
}

impl BlockIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.bloom.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // body length, patched below
        out.extend_from_slice(&self.min_time_ns.to_le_bytes());
        out.extend_from_slice(&self.max_time_ns.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
        out.extend_from_slice(&self.raw_bytes.to_le_bytes());
        write_bytes_u32(&mut out, self.tenant.as_bytes());
        write_bytes_u32(&mut out, self.app.as_bytes());
        out.extend_from_slice(&self.hour.to_le_bytes());
        write_bytes_u32(&mut out, self.topic.as_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.last_offset.to_le_bytes());
        write_bytes_u32(&mut out, self.data_key.as_bytes());
        out.extend_from_slice(&self.data_size.to_le_bytes());
        out.extend_from_slice(&self.data_crc32c.to_le_bytes());
        out.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        for s in &self.streams {
            out.extend_from_slice(&s.first_record.to_le_bytes());
            out.extend_from_slice(&s.record_count.to_le_bytes());
            out.extend_from_slice(&s.min_time_ns.to_le_bytes());
            out.extend_from_slice(&s.max_time_ns.to_le_bytes());
            out.extend_from_slice(&(s.labels.len() as u32).to_le_bytes());
            for (k, v) in &s.labels {
                write_bytes_u32(&mut out, k.as_bytes());
                write_bytes_u32(&mut out, v.as_bytes());
            }
        }
        write_bytes_u32(&mut out, &self.bloom);
        if self.version >= OFFSETS_VERSION {
            let mut column = Vec::new();
            if let Some(o) = &self.offsets {
                o.encode(self.first_offset, &mut column);
            }
            write_bytes_u32(&mut out, &column);
        }
        let body_len = (out.len() - HEADER_LEN) as u32;
        out[8..12].copy_from_slice(&body_len.to_le_bytes());
        push_crc32c(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let (mut index, raw, column) = Self::decode_parts(bytes, true)?;
        BloomFilter::decode(raw)?;
        index.bloom = raw.to_vec();
        if let Some(column) = column {
            let o = RecordOffsets::decode(
                column,
                index.record_count,
                index.first_offset,
                index.last_offset,
            )?;
            index.offsets = Some(o);
        }
        Ok(index)
    }

    /// [`decode`](Self::decode) for a reader that keeps the bloom filter
    /// decoded (the searcher's cache): the decoded filter comes back beside
    /// the index, whose raw `bloom` bytes stay empty rather than be copied
    /// for nothing.
    pub fn decode_with_bloom(bytes: &[u8]) -> Result<(Self, BloomFilter), FormatError> {
        let (index, raw, _) = Self::decode_parts(bytes, true)?;
        Ok((index, BloomFilter::decode(raw)?))
    }

    /// [`decode_with_bloom`](Self::decode_with_bloom) for an index whose
    /// bytes a checksum of their container has just verified (a pack
    /// member): everything but its own CRC is checked, which would only
    /// read the same bytes again.
    pub fn decode_with_bloom_verified(bytes: &[u8]) -> Result<(Self, BloomFilter), FormatError> {
        let (index, raw, _) = Self::decode_parts(bytes, false)?;
        Ok((index, BloomFilter::decode(raw)?))
    }

    /// Decodes and validates all but the bloom filter and the offsets
    /// column, whose bytes come back as they lie (the column's only from
    /// version 3); the caller decodes them, which checks them.
    #[allow(clippy::type_complexity)]
    fn decode_parts(
        bytes: &[u8],
        check_crc: bool,
    ) -> Result<(Self, &[u8], Option<&[u8]>), FormatError> {
        let mut c = Cursor::new(bytes);
        c.magic(MAGIC)?;
        let version = c.u16_le()?;
        FormatError::check_version(version as u32, MIN_VERSION as u32, MAX_VERSION as u32)?;
        let _flags = c.u16_le()?;
        let body_len = c.u32_le()? as usize;
        let expected_len = HEADER_LEN.saturating_add(body_len).saturating_add(4);
        if bytes.len() != expected_len {
            return Err(FormatError::Truncated {
                offset: 0,
                needed: expected_len,
                available: bytes.len(),
            });
        }
        let crc_at = HEADER_LEN + body_len;
        if check_crc {
            check_crc32c_at(bytes, crc_at)?;
        }
        let mut c = Cursor::new(&bytes[HEADER_LEN..crc_at]);
        let mut index = BlockIndex {
            version,
            min_time_ns: c.i64_le()?,
            max_time_ns: c.i64_le()?,
            record_count: c.u64_le()?,
            raw_bytes: c.u64_le()?,
            tenant: c.str_u32()?.to_owned(),
            app: c.str_u32()?.to_owned(),
            hour: c.i64_le()?,
            topic: c.str_u32()?.to_owned(),
            partition: c.i32_le()?,
            first_offset: c.i64_le()?,
            last_offset: c.i64_le()?,
            data_key: c.str_u32()?.to_owned(),
            data_size: c.u64_le()?,
            data_crc32c: c.u32_le()?,
            streams: Vec::new(),
            bloom: Vec::new(),
            offsets: None,
        };
        let n = c.u32_le()? as usize;
        // Each stream takes at least 28 bytes; reject impossible counts before allocating.
        if n > c.remaining() / 28 {
            return Err(FormatError::corrupt(
                HEADER_LEN + c.position(),
                format!("stream count {n} is impossible"),
            ));
        }
        for _ in 0..n {
            let first_record = c.u32_le()?;
            let record_count = c.u32_le()?;
            let min_time_ns = c.i64_le()?;
            let max_time_ns = c.i64_le()?;
            let nl = c.u32_le()? as usize;
            if nl > c.remaining() / 8 {
                return Err(FormatError::corrupt(
                    HEADER_LEN + c.position(),
                    format!("label count {nl} is impossible"),
                ));
            }
            let mut labels = Vec::with_capacity(nl);
            for _ in 0..nl {
                labels.push((c.str_u32()?.to_owned(), c.str_u32()?.to_owned()));
            }
            index.streams.push(StreamEntry {
                labels,
                first_record,
                record_count,
                min_time_ns,
                max_time_ns,
            });
        }
        let bloom = c.bytes_u32()?;
        let column = match version >= OFFSETS_VERSION {
            true => Some(c.bytes_u32()?),
            false => None,
        };
        if !c.is_empty() {
            return Err(FormatError::corrupt(
                HEADER_LEN + c.position(),
                "trailing bytes in the index body",
            ));
        }
        index.validate()?;
        Ok((index, bloom, column))
    }

    /// Checks the invariants a reader relies on, but the bloom filter's
    /// (its decoding checks those).
    fn validate(&self) -> Result<(), FormatError> {
        let bad = |why: String| Err(FormatError::corrupt(HEADER_LEN, why));
        if self.min_time_ns > self.max_time_ns {
            return bad("min time is after max time".into());
        }
        if self.first_offset > self.last_offset {
            return bad("first offset is after last offset".into());
        }
        let mut next = 0u64;
        for s in &self.streams {
            if s.first_record as u64 != next {
                return bad(format!(
                    "stream starts at record {}, expected {next}",
                    s.first_record
                ));
            }
            next += s.record_count as u64;
        }
        if next != self.record_count {
            return bad(format!(
                "streams hold {next} records, the header says {}",
                self.record_count
            ));
        }
        Ok(())
    }

    pub fn bloom_filter(&self) -> Result<BloomFilter, FormatError> {
        BloomFilter::decode(&self.bloom)
    }

    /// Verifies a data block's bytes against the size and CRC32C recorded here.
    pub fn verify_data(&self, data: &[u8]) -> Result<(), FormatError> {
        if data.len() as u64 != self.data_size {
            return Err(FormatError::Truncated {
                offset: 0,
                needed: self.data_size as usize,
                available: data.len(),
            });
        }
        let computed = crc32c::crc32c(data);
        if computed != self.data_crc32c {
            return Err(FormatError::Checksum {
                stored: self.data_crc32c,
                computed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f64::consts::LN_2;

    #[test]
    fn sliceable_sizes_come_in_steps_and_keep_the_rate() {
        let steps =
            |b: usize| b.is_power_of_two() || (b.is_multiple_of(3) && (b / 3).is_power_of_two());
        for n in [1usize, 7, 100, 5_000, 123_457] {
            let exact = Bloom::<u64>::compute_bitmap_size(n, 0.001);
            // A roomy budget rounds up: never a worse rate than asked.
            let up = sliceable_bloom_bytes(n, 0.001, usize::MAX, 0.01);
            assert!(
                steps(up) && up >= exact && up <= exact * 3 / 2 + 1,
                "{n}: {up} vs {exact}"
            );
            // A tight one rounds down, within the worst rate.
            let down = sliceable_bloom_bytes(n, 0.001, exact, 0.01);
            assert!(steps(down) && down <= exact.max(up), "{n}: {down}");
            let fp = (-(down as f64 * 8.0 / n as f64) * LN_2 * LN_2).exp();
            assert!(down == up || fp <= 0.01, "{n}: {fp}");
        }
        // At both limits (past the budget at the worst rate): up to the
        // next eighth of a power of two, never more than 12.5% up, and
        // filters of close token counts share that length.
        let eighths = |b: usize| {
            let pow = 1usize << (usize::BITS - 1 - b.leading_zeros());
            b.is_multiple_of((pow / 8).max(1))
        };
        let mut lengths = std::collections::BTreeSet::new();
        for n in (9_800..10_200).step_by(7) {
            let exact = Bloom::<u64>::compute_bitmap_size(n, 0.01);
            let at_limits = sliceable_bloom_bytes(n, 0.01, exact / 2, 0.01);
            assert!(
                eighths(at_limits) && at_limits >= exact && at_limits <= exact * 9 / 8,
                "{n}: {at_limits} vs {exact}"
            );
            lengths.insert(at_limits);
        }
        // Token counts 4% apart, less than a step: at most one boundary.
        assert!(lengths.len() <= 2, "{lengths:?}");
        // Tiny filters keep their size.
        let exact = Bloom::<u64>::compute_bitmap_size(1, 0.01);
        assert!(exact < 8);
        assert_eq!(sliceable_bloom_bytes(1, 0.01, 0, 0.01), exact);
    }

    #[test]
    fn fp_rate_is_the_wanted_one_unless_the_budget_is_too_small() {
        // 1,000 tokens at 0.1% need about 1,800 bytes.
        assert_eq!(bloom_fp_rate(1_000, 2_000, 0.001, 0.01), 0.001);
        let p = bloom_fp_rate(1_000, 1_200, 0.001, 0.01);
        assert!(p > 0.001 && p < 0.01, "{p}");
        let bytes = build_bloom((0..1_000u32).map(u64::from), p).len();
        assert!((1_100..=1_300).contains(&bytes), "{bytes} bytes at {p}");
        assert_eq!(bloom_fp_rate(1_000_000, 100, 0.001, 0.01), 0.01);
        assert_eq!(bloom_fp_rate(0, 0, 0.001, 0.01), 0.01);
    }

    pub fn sample() -> BlockIndex {
        BlockIndex {
            version: VERSION,
            min_time_ns: 1_700_000_000_000_000_000,
            max_time_ns: 1_700_000_001_000_000_000,
            record_count: 3,
            raw_bytes: 120,
            tenant: "acme".into(),
            app: "checkout".into(),
            hour: 472_222,
            topic: "logs".into(),
            partition: 2,
            first_offset: 10,
            last_offset: 12,
            data_key: "tenant=acme/x.seq".into(),
            data_size: 999,
            data_crc32c: 0xdead_beef,
            streams: vec![
                StreamEntry {
                    labels: vec![
                        ("level".into(), "info".into()),
                        ("service".into(), "api".into()),
                    ],
                    first_record: 0,
                    record_count: 2,
                    min_time_ns: 1_700_000_000_000_000_000,
                    max_time_ns: 1_700_000_001_000_000_000,
                },
                StreamEntry {
                    labels: vec![("level".into(), "error".into())],
                    first_record: 2,
                    record_count: 1,
                    min_time_ns: 1_700_000_000_500_000_000,
                    max_time_ns: 1_700_000_000_500_000_000,
                },
            ],
            bloom: build_bloom([1u64, 2, 3].into_iter(), 0.01),
            offsets: Some(RecordOffsets {
                sources: vec![("logs".into(), 2)],
                records: vec![(0, 10), (0, 12), (0, 10)],
            }),
        }
    }

    #[test]
    fn round_trips() {
        let idx = sample();
        assert_eq!(BlockIndex::decode(&idx.encode()).unwrap(), idx);
    }

    #[test]
    fn version_2_has_no_offsets_column_and_pruning_skips_it() {
        let mut v2 = sample();
        v2.version = 2;
        v2.offsets = None;
        let bytes = v2.encode();
        assert_eq!(bytes.len() + 23, sample().encode().len());
        assert_eq!(BlockIndex::decode(&bytes).unwrap(), v2);
        let (idx, _) = BlockIndex::decode_with_bloom(&sample().encode()).unwrap();
        assert_eq!((idx.version, idx.offsets), (3, None));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    BlockIndex::decode(&b).is_err(),
                    "flip at byte {i} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn verified_decoding_skips_only_the_crc() {
        let mut bytes = sample().encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(BlockIndex::decode_with_bloom(&bytes).is_err());
        let (idx, _) = BlockIndex::decode_with_bloom_verified(&bytes).unwrap();
        assert_eq!(idx.streams, sample().streams);
        // Structure is still checked: a wrong body length, a bad bloom.
        let mut short = sample().encode();
        short[8] ^= 1;
        assert!(BlockIndex::decode_with_bloom_verified(&short).is_err());
        let mut b = sample().encode();
        b.truncate(b.len() - 5);
        assert!(BlockIndex::decode_with_bloom_verified(&b).is_err());
    }

    #[test]
    fn unknown_versions_are_rejected() {
        let mut bytes = sample().encode();
        bytes[4] = 4;
        assert!(matches!(
            BlockIndex::decode(&bytes),
            Err(FormatError::UnsupportedVersion { found: 4, .. })
        ));
    }

    /// Found while writing the `index_decode` fuzz target: a bloom filter
    /// claiming 2^32-1 hash functions over an all-ones bitmap made every
    /// `may_contain` spin for about ten seconds.
    #[test]
    fn bloom_with_a_huge_hash_count_is_rejected() {
        let bloom = include_bytes!("../../tests/regressions/bloom-huge-hash-count.bin");
        assert!(BloomFilter::decode(bloom).is_err());
        let idx = include_bytes!("../../tests/regressions/index-bloom-huge-hash-count.idx");
        assert!(BlockIndex::decode(idx).is_err());
    }

    #[test]
    fn the_hash_count_cap_admits_every_filter_build_bloom_writes() {
        // One item at the smallest positive rate needs the most hash functions.
        for fp in [f64::from_bits(1), f64::MIN_POSITIVE, 1e-9] {
            let bytes = build_bloom([42u64].into_iter(), fp);
            assert!(
                BloomFilter::decode(&bytes).unwrap().may_contain(42),
                "fp {fp}"
            );
        }
    }

    proptest! {
        #[test]
        fn bloom_has_no_false_negatives(hashes in proptest::collection::hash_set(any::<u64>(), 1..2000)) {
            let bloom = BloomFilter::decode(&build_bloom(hashes.iter().copied(), 0.01)).unwrap();
            for h in &hashes {
                prop_assert!(bloom.may_contain(*h));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = BlockIndex::decode(&bytes);
        }

        #[test]
        fn truncations_are_errors(cut in 0usize..200) {
            let bytes = sample().encode();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(BlockIndex::decode(&bytes[..cut]).is_err());
        }
    }
}
