//! Skidder's indexer: Kafka in, LZ4 SequenceFile blocks and bloom-filter
//! indexes out, on object storage, exactly once. See `indexer/README.md`
//! for the pipeline diagram and `docs/DESIGN.md` for the guarantees.

pub mod assignment;
pub mod compactor;
pub mod config;
pub mod dead_letter;
pub mod failpoints;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod offsets;
pub mod packer;
pub mod pipeline;
pub mod queue;
pub mod retention;
pub mod span_words;
pub mod stages;
pub mod tail_packs;
pub mod writer;
