use std::sync::Arc;

/// Kafka messages of one partition, as read. Payloads share one buffer, so a
/// batch costs two allocations however many messages it holds.
#[derive(Debug, Default)]
pub struct RawBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    pub messages: Vec<RawMessage>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
pub struct RawMessage {
    pub offset: i64,
    /// The Kafka message timestamp, the fallback event time.
    pub timestamp_ms: Option<i64>,
    pub start: u32,
    pub len: u32,
}

impl RawBatch {
    pub fn new(topic: Arc<str>, partition: i32) -> Self {
        RawBatch {
            topic,
            partition,
            ..Default::default()
        }
    }

    pub fn push(&mut self, offset: i64, timestamp_ms: Option<i64>, payload: &[u8]) {
        let start = self.payload.len() as u32;
        self.payload.extend_from_slice(payload);
        self.messages.push(RawMessage {
            offset,
            timestamp_ms,
            start,
            len: payload.len() as u32,
        });
    }

    pub fn payload_of(&self, m: &RawMessage) -> &[u8] {
        &self.payload[m.start as usize..(m.start + m.len) as usize]
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.messages.first().map(|m| m.offset)
    }
}

impl crate::queue::Weighted for RawBatch {
    /// Bytes charged against queue budgets.
    fn weight(&self) -> usize {
        self.payload.len() + self.messages.len() * std::mem::size_of::<RawMessage>()
    }
}
