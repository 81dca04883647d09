//! Sliced blooms come from object storage like every other object:
//! decoding a head, probing it and checking its chunks must return an
//! error or a verdict, never panic.
#![no_main]

#[path = "shared/crc32c.rs"]
mod shared_crc;

use libfuzzer_sys::fuzz_target;
use shared_crc::crc32c;
use skidder_common::format::slices::{self, Chunks, Head};

fuzz_target!(|data: &[u8]| {
    check(data);
    // The head's CRC rejects almost every mutation before its parser runs,
    // so also decode the input with that CRC recomputed.
    if let Ok(len) = slices::head_len(data) {
        if len <= data.len() {
            let mut fixed = data.to_vec();
            let crc = crc32c(&fixed[..len - 4]);
            fixed[len - 4..len].copy_from_slice(&crc.to_le_bytes());
            check(&fixed);
        }
    }
});

fn check(bytes: &[u8]) {
    let Ok(head) = Head::decode(bytes) else {
        return;
    };
    // A probe allocates a filter of the group's size: keep it small here.
    if head.groups.iter().any(|g| g.bits > 1 << 16) {
        return;
    }
    let tokens = vec![vec![1u64], vec![2, 3], vec![u64::MAX]];
    let Ok(probe) = head.probe(&head.blocks, &tokens) else {
        return;
    };
    let mut chunks = Chunks::new();
    for (at, range) in probe.chunks() {
        let Some(b) = bytes.get(range.start as usize..range.end as usize) else {
            continue;
        };
        // Rows with a bad CRC are used anyway: the verdict must not panic
        // on any bytes.
        let rows = slices::chunk_rows(b, &range).unwrap_or_else(|_| b.to_vec());
        chunks.insert(at, rows.into());
    }
    let _ = probe.ruled_out(&chunks);
}
