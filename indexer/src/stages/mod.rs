//! The five pipeline stages, one file each, in data-flow order:
//! kafka_reader -> parser -> block_maker -> compressor -> uploader.
//! Each runs on its own thread and ends with a [`StageExit`].

pub mod block_maker;
pub mod compressor;
pub mod kafka_reader;
pub mod parser;
pub mod uploader;

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageExit {
    /// Its input closed and it drained everything.
    Success,
    /// It was told to stop.
    Quit,
    /// The next stage went away.
    DownstreamClosed,
    Failure(String),
}
