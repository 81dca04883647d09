//! Compaction manifests come from object storage like every other object:
//! decoding one must return an error, never panic.
#![no_main]

#[path = "shared/crc32c.rs"]
mod shared_crc;

use libfuzzer_sys::fuzz_target;
use shared_crc::resigned;
use skidder_common::format::fence::Fence;
use skidder_common::format::manifest::{Live, Manifest};

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = resigned(data) {
        check(&fixed);
    }
});

fn check(bytes: &[u8]) {
    let Ok(m) = Manifest::decode(bytes) else {
        return;
    };
    // Whatever decodes re-encodes to the same bytes: one reading per manifest.
    assert_eq!(m.encode(), bytes, "manifest changed in a round trip");
    let listed: Vec<(&str, u64)> = m
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.index_size))
        .collect();
    let fence = Fence::default();
    let live = Live::new(Some(&m), listed, &fence);
    // No name is both a live compacted block and a replaced source read.
    for s in m.sources() {
        let _ = live.reads(s);
    }
}
