//! Index objects come from object storage, which anyone with write access
//! (or a bit flip) can corrupt: decoding must return an error, never panic.
#![no_main]

#[path = "shared/crc32c.rs"]
mod shared_crc;

use libfuzzer_sys::fuzz_target;
use shared_crc::crc32c;
use skidder_common::format::index::{BlockIndex, BloomFilter};

/// Header length (magic, version, flags, body length) and trailing CRC length.
const HEADER_LEN: usize = 12;
const CRC_LEN: usize = 4;

fuzz_target!(|data: &[u8]| {
    check_index(data);

    // The CRC rejects almost every mutation before the body parser runs, so
    // also decode the input with its body length and CRC recomputed. For
    // a well-formed seed this is the seed itself.
    if data.len() >= HEADER_LEN + CRC_LEN {
        let mut fixed = data[..data.len() - CRC_LEN].to_vec();
        let body_len = (fixed.len() - HEADER_LEN) as u32;
        fixed[8..12].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32c(&fixed);
        fixed.extend_from_slice(&crc.to_le_bytes());
        check_index(&fixed);
    }

    // The input as a bare bloom filter, as the searcher decodes it per query.
    if let Ok(bloom) = BloomFilter::decode(data) {
        probe(&bloom);
    }
});

fn check_index(bytes: &[u8]) {
    let Ok(index) = BlockIndex::decode(bytes) else {
        return;
    };
    // Whatever decodes must survive a round trip: the searcher caches
    // decoded indexes and tools re-encode them.
    let again = BlockIndex::decode(&index.encode()).expect("re-encoded index decodes");
    assert_eq!(again, index, "index changed in an encode/decode round trip");
    let bloom = index
        .bloom_filter()
        .expect("decode already validated the bloom filter");
    probe(&bloom);
    let _ = index.verify_data(bytes);
}

fn probe(bloom: &BloomFilter) {
    for h in [0u64, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
        let _ = bloom.may_contain(h);
    }
}
