use skidder_common::format::index::StreamEntry;
use skidder_common::format::layout::BlockName;

/// A cut block: its records sorted by stream then time, its stream
/// dictionary and its bloom filter, ready to be compressed.
#[derive(Debug)]
pub struct SealedBlock {
    pub name: BlockName,
    pub last_offset: i64,
    pub streams: Vec<StreamEntry>,
    /// (event time ns, line start, line length) into `lines`, in file order.
    pub records: Vec<(i64, u32, u32)>,
    /// Each record's Kafka offset, in file order (a message of several
    /// lines gives several records the same offset).
    pub offsets: Vec<i64>,
    pub lines: Vec<u8>,
    pub bloom: Vec<u8>,
    pub min_time_ns: i64,
    pub max_time_ns: i64,
    pub raw_bytes: u64,
}

impl crate::queue::Weighted for SealedBlock {
    fn weight(&self) -> usize {
        self.lines.len() + self.records.len() * 24 + self.bloom.len()
    }
}
