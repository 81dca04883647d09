//! The five pipeline stages, one file each, in data-flow order:
//! kafka_reader -> parser -> block_maker -> compressor -> uploader.
//! Each runs on its own thread and ends with a [`StageExit`].

pub mod block_maker;
pub mod compressor;
pub mod kafka_reader;
pub mod parser;
pub mod uploader;

use std::time::Duration;

use crate::models::Item;
use crate::queue::{ByteQueue, PopError, Weighted};

/// The loop of a stage that maps each data item to one output item and
/// passes control messages through in order. Closing the input (once
/// drained) closes the output.
pub fn map_stage<I, O>(
    input: &ByteQueue<Item<I>>,
    output: &ByteQueue<Item<O>>,
    mut f: impl FnMut(I) -> O,
) -> StageExit
where
    Item<I>: Weighted,
    Item<O>: Weighted,
{
    loop {
        let item = match input.pop(Duration::from_millis(200)) {
            Ok(item) => item,
            Err(PopError::Timeout) => continue,
            Err(PopError::Closed) => {
                output.close();
                return StageExit::Success;
            }
        };
        let out = match item {
            Item::Data(d) => Item::Data(f(d)),
            Item::Control(c) => Item::Control(c),
        };
        if output.push(out).is_err() {
            return StageExit::DownstreamClosed;
        }
    }
}

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
