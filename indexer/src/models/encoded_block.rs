use bytes::Bytes;
use skidder_common::format::ledger::LedgerEntry;

/// A block as it will be stored: the SequenceFile, its index and its ledger
/// entry, in the order the uploader writes them.
#[derive(Debug)]
pub struct EncodedBlock {
    pub ledger: LedgerEntry,
    pub data_key: String,
    pub data: Bytes,
    pub index_key: String,
    pub index: Bytes,
    pub records: u64,
    pub raw_bytes: u64,
}

impl crate::queue::Weighted for EncodedBlock {
    fn weight(&self) -> usize {
        self.data.len() + self.index.len()
    }
}
