//! Index packs come from object storage like every other object: decoding
//! one, and each member as an index, must return an error, never panic.
#![no_main]

#[path = "shared/crc32c.rs"]
mod shared_crc;

use libfuzzer_sys::fuzz_target;
use shared_crc::resigned;
use skidder_common::format::index::BlockIndex;
use skidder_common::format::pack;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = resigned(data) {
        check(&fixed);
    }
});

fn check(bytes: &[u8]) {
    let Ok(members) = pack::decode(bytes) else {
        return;
    };
    // Whatever decodes re-encodes to the same bytes: one reading per pack.
    assert_eq!(
        pack::encode(&members),
        bytes,
        "pack changed in a round trip"
    );
    for m in &members {
        let _ = BlockIndex::decode(m.index);
    }
}
