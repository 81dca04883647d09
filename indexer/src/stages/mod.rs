//! The five pipeline stages, one file each, in data-flow order:
//! kafka_reader -> parser -> block_maker -> compressor -> uploader.
//! Each runs on its own thread, owns the handles of its input and output
//! queues, and ends with a [`StageExit`]. A stage that ends for any reason,
//! a panic included, drops its handles, which closes both queues: the
//! stages behind it drain and stop, the ones before it find their output
//! gone and stop too.

pub mod block_maker;
pub mod compressor;
pub mod kafka_reader;
pub mod parser;
pub mod uploader;

use std::time::Duration;

use thiserror::Error;

use crate::assignment::AssignError;
use crate::models::Item;
use crate::queue::{PopError, Receiver, Sender, Weighted};
use crate::writer::PutError;

/// How long a stage waits on its input before it checks that its output
/// still has a reader.
pub(crate) const POP_WAIT: Duration = Duration::from_millis(200);

/// The loop of a stage that maps each data item to one output item and
/// passes control messages through in order. Closing the input (once
/// drained) closes the output; a closed output ends the loop too.
pub fn map_stage<I, O>(
    input: Receiver<Item<I>>,
    output: Sender<Item<O>>,
    mut f: impl FnMut(I) -> Result<O, StageError>,
) -> StageExit
where
    I: Weighted,
    O: Weighted,
{
    loop {
        let item = match input.pop(POP_WAIT) {
            Ok(item) => item,
            Err(PopError::Timeout) if output.is_closed() => return StageExit::DownstreamClosed,
            Err(PopError::Timeout) => continue,
            Err(PopError::Closed) => return StageExit::Success,
        };
        let out = match item {
            Item::Data(d) => match f(d) {
                Ok(o) => Item::Data(o),
                Err(e) => return StageExit::Failure(e),
            },
            Item::Control(c) => Item::Control(c),
        };
        if output.push(out).is_err() {
            return StageExit::DownstreamClosed;
        }
    }
}

/// How a stage ended.
#[derive(Debug)]
pub enum StageExit {
    /// Its input closed and it drained everything.
    Success,
    /// It was told to stop.
    Quit,
    /// The next stage went away.
    DownstreamClosed,
    Failure(StageError),
}

/// Why a stage failed. Each is fatal to the indexer, which exits non-zero
/// having committed no offset past what was stored.
#[derive(Debug, Error)]
pub enum StageError {
    #[error("loading the state of an assigned partition")]
    Assign(#[from] AssignError),
    #[error(transparent)]
    Store(#[from] PutError),
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("shutdown timed out before every block was stored")]
    DrainTimeout,
}

impl StageError {
    /// A panic's message, from the payload `catch_unwind` or `join` gives.
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let msg = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(p) => p
                .downcast_ref::<&str>()
                .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
        };
        StageError::Panicked(msg)
    }
}
