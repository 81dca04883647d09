//! Data blocks come from object storage: the SequenceFile reader and the
//! Hadoop Lz4Codec decompressor must reject corrupt input with an error,
//! never panic, and never allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_common::format::hadoop_lz4;
use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};

fuzz_target!(|data: &[u8]| {
    // The whole input as a SequenceFile, walked the way the searcher does.
    if let Ok(mut reader) = SeqFileReader::new(data) {
        let _ = reader.header().get("skidder.streams");
        let mut block = RecordBlock::default();
        while let Ok(true) = reader.next_block(&mut block) {
            let n = block.records().count();
            assert_eq!(n, block.len(), "records() disagrees with the count");
        }
    }

    // The whole input as a bare Lz4Codec stream, with the output cap the
    // reader uses per buffer and a small one that must stop bombs.
    let mut out = Vec::new();
    let _ = hadoop_lz4::decompress(data, 0, 1 << 20, &mut out);
    assert!(out.len() <= 1 << 20, "decompress wrote past its limit");
    out.clear();
    if hadoop_lz4::decompress(data, 0, 1024, &mut out).is_ok() {
        assert!(out.len() <= 1024, "decompress wrote past its limit");
    }
});
