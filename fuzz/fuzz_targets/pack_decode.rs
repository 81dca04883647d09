//! Index packs come from object storage like every other object: decoding
//! one, and each member as an index, must return an error, never panic.
#![no_main]

#[path = "shared/crc32c.rs"]
mod shared_crc;

use libfuzzer_sys::fuzz_target;
use shared_crc::crc32c;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::pack;

fuzz_target!(|data: &[u8]| {
    check(data);
    // The CRC rejects almost every mutation before the member parser runs,
    // so also decode the input with its CRC recomputed.
    if data.len() >= 4 {
        let mut fixed = data[..data.len() - 4].to_vec();
        let crc = crc32c(&fixed);
        fixed.extend_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});

fn check(bytes: &[u8]) {
    let Ok(members) = pack::decode(bytes) else {
        return;
    };
    // Whatever decodes re-encodes to the same bytes: one reading per pack.
    assert_eq!(pack::encode(&members), bytes, "pack changed in a round trip");
    for m in &members {
        let _ = BlockIndex::decode(m.index);
    }
}
