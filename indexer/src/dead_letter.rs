//! Records a limit refuses are not dropped: each is written whole under
//! `_deadletter/` (see `layout::dead_letter_key`) and counted by reason.
//! The parser writes them before it passes their batch on, and the batch's
//! hold in the offset tracker covers them until then, so a refused record's
//! offset is never committed before its dead letter is stored. A replay
//! rewrites the same key with the same bytes.

use bytes::Bytes;
use skidder_common::format::layout::dead_letter_key;

use crate::writer::{PutError, Writer};

/// Why a record was refused; the names appear in keys and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Longer than `parse.max_line_bytes`.
    LineTooLong,
    /// Its tenant field is not a valid tenant id.
    InvalidTenant,
    /// Its app is longer than `layout::MAX_APP_LEN`.
    AppTooLong,
    /// A label value is longer than `parse.max_label_value_bytes`.
    LabelTooLong,
}

impl Reason {
    /// Every reason, so metrics can start each series at zero.
    pub const ALL: [Reason; 4] = [
        Reason::LineTooLong,
        Reason::InvalidTenant,
        Reason::AppTooLong,
        Reason::LabelTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LineTooLong => "line_too_long",
            Reason::InvalidTenant => "invalid_tenant",
            Reason::AppTooLong => "app_too_long",
            Reason::LabelTooLong => "label_too_long",
        }
    }
}

/// A refused record: where it sits in Kafka and its bytes as read.
#[derive(Debug)]
pub struct Refused {
    pub offset: i64,
    /// The line's place in its message, from 0.
    pub line: u32,
    pub reason: Reason,
    pub bytes: Vec<u8>,
}

/// Stores dead letters, retrying like block uploads do: a blip for ever,
/// with backoff, so a failing store stops intake instead of losing a
/// record; an error no retry can fix stops the indexer.
pub struct DeadLetters {
    pub writer: Writer,
    pub rt: tokio::runtime::Handle,
}

impl DeadLetters {
    pub fn write(&self, topic: &str, partition: i32, r: Refused) -> Result<(), PutError> {
        let key = dead_letter_key(topic, partition, r.offset, r.line, r.reason.as_str());
        let len = r.bytes.len() as u64;
        tracing::warn!(
            key,
            bytes = len,
            reason = r.reason.as_str(),
            "record refused"
        );
        self.rt.block_on(self.writer.put_retrying(
            "dead_letter",
            &key,
            Bytes::from(r.bytes),
            None,
        ))?;
        let m = &self.writer.metrics;
        m.refused_records
            .with_label_values(&[r.reason.as_str()])
            .inc();
        m.dead_letter_bytes.inc_by(len);
        Ok(())
    }
}
