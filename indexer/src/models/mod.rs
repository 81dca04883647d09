//! The messages that flow between pipeline stages, one file per message.
//! Every queue carries batches (or control messages), never single records.

pub mod control;
pub mod encoded_block;
pub mod parsed_batch;
pub mod raw_batch;
pub mod sealed_block;
pub mod template;

pub use control::{Control, Item, PartitionPlan, TopicPartition};
pub use encoded_block::EncodedBlock;
pub use parsed_batch::{ParsedBatch, ParsedRecord, RepeatedWords, StreamKey};
pub use raw_batch::{RawBatch, RawMessage};
pub use sealed_block::SealedBlock;
