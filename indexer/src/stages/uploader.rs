//! Stage 5: stores each block and reports back to the offset tracker.
//!
//! Per block, in this order (see `docs/DESIGN.md`): the ledger entry, the
//! data object, then the index that makes the data visible to searchers.
//! Only then is the block's hold released, which lets the Kafka reader
//! commit past it. Every put is retried with exponential backoff and jitter
//! until it succeeds: data is never dropped, and backpressure holds memory
//! down while the store is failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use skidder_common::format::ledger::{checkpoint_key, Checkpoint, LEDGER_VERSION};
use skidder_common::storage::ObjectStore;
use tokio::sync::Semaphore;

use super::StageExit;
use crate::config::UploadConfig;
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::{EncodedBlock, Item, TopicPartition};
use crate::offsets::OffsetTracker;
use crate::queue::{ByteQueue, PopError, Weighted};

impl Weighted for Item<EncodedBlock> {
    fn weight(&self) -> usize {
        match self {
            Item::Data(b) => b.weight(),
            Item::Control(_) => 64,
        }
    }
}

#[derive(Clone)]
pub struct Uploader {
    pub store: Arc<dyn ObjectStore>,
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub cfg: UploadConfig,
}

fn kind_label(kind: skidder_common::storage::StorageErrorKind) -> &'static str {
    use skidder_common::storage::StorageErrorKind as K;
    match kind {
        K::NotFound => "not_found",
        K::AlreadyExists => "already_exists",
        K::Unauthorized => "unauthorized",
        K::Timeout => "timeout",
        K::InvalidRequest => "invalid_request",
        K::Io => "io",
        K::Service => "service",
    }
}

impl Uploader {
    /// Puts until it succeeds or `max_attempts` (unbounded when `None`) run out.
    pub(crate) async fn put_retrying(
        &self,
        what: &str,
        key: &str,
        body: Bytes,
        max_attempts: Option<u32>,
    ) -> bool {
        let mut backoff = Duration::from_millis(self.cfg.initial_backoff_ms.max(1));
        let max = Duration::from_millis(self.cfg.max_backoff_ms.max(1));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.metrics.upload_retries.inc();
            }
            let started = Instant::now();
            match self.store.put(key, body.clone()).await {
                Ok(()) => {
                    self.metrics
                        .upload_seconds
                        .with_label_values(&[what])
                        .observe(started.elapsed().as_secs_f64());
                    return true;
                }
                Err(e) => {
                    self.metrics
                        .upload_errors
                        .with_label_values(&[kind_label(e.kind)])
                        .inc();
                    tracing::warn!(key, attempt, error = %e, "upload failed, retrying");
                    if max_attempts.is_some_and(|m| attempt >= m) {
                        return false;
                    }
                    let jitter = rand::rng().random_range(0.5..1.5);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    async fn upload(&self, b: EncodedBlock) {
        let tp = TopicPartition {
            topic: b.ledger.topic.as_str().into(),
            partition: b.ledger.partition,
        };
        let ledger_key = b.ledger.key();
        self.put_retrying("ledger", &ledger_key, Bytes::from(b.ledger.to_json()), None)
            .await;
        self.tracker
            .add_ledger_key(&tp, b.ledger.last_offset, ledger_key);
        crash_point("uploader::after_ledger");
        self.put_retrying("data", &b.data_key, b.data.clone(), None)
            .await;
        crash_point("uploader::after_data");
        self.put_retrying("index", &b.index_key, b.index.clone(), None)
            .await;
        crash_point("uploader::after_index");
        self.metrics.blocks_written.inc();
        self.metrics.data_bytes_written.inc_by(b.data.len() as u64);
        self.metrics
            .index_bytes_written
            .inc_by(b.index.len() as u64);
        self.metrics.stage(
            "uploader",
            b.records,
            b.raw_bytes,
            b.records,
            (b.data.len() + b.index.len()) as u64,
        );
        tracing::debug!(key = %b.index_key, records = b.records, "block stored");
        self.tracker.release(&tp, b.ledger.first_offset);
    }

    /// Writes checkpoints for partitions whose watermark moved, then deletes
    /// the ledger entries wholly below them.
    pub async fn checkpoint(&self) {
        for due in self.tracker.take_checkpoints() {
            let body = serde_json::to_vec(&Checkpoint {
                version: LEDGER_VERSION,
                next_offset: due.next_offset,
            })
            .unwrap_or_default();
            let key = checkpoint_key(&due.tp.topic, due.tp.partition);
            if !self
                .put_retrying("checkpoint", &key, Bytes::from(body), Some(5))
                .await
            {
                // Offered again next time, even if the watermark stays put.
                self.tracker.checkpoint_failed(due);
                continue;
            }
            crash_point("uploader::after_checkpoint");
            for (_, k) in &due.ledger_keys {
                if let Err(e) = self.store.delete(k).await {
                    tracing::warn!(key = %k, error = %e, "ledger cleanup failed");
                }
            }
        }
    }
}

pub fn run(
    up: Uploader,
    input: &ByteQueue<Item<EncodedBlock>>,
    rt: &tokio::runtime::Handle,
) -> StageExit {
    let concurrency = up.cfg.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let checkpoints = {
        let up = up.clone();
        let every = Duration::from_secs(up.cfg.checkpoint_interval_secs.max(1));
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                up.checkpoint().await;
            }
        })
    };
    loop {
        match input.pop(Duration::from_millis(200)) {
            Ok(Item::Data(block)) => {
                let Ok(permit) = rt.block_on(permits.clone().acquire_owned()) else {
                    return StageExit::Failure("upload semaphore closed".into());
                };
                let up = up.clone();
                let w = block.weight() as i64;
                up.metrics.uploading_bytes.add(w);
                rt.spawn(async move {
                    up.upload(block).await;
                    up.metrics.uploading_bytes.sub(w);
                    drop(permit);
                });
            }
            // Flushes need nothing here: the reader waits on the tracker.
            Ok(Item::Control(_)) | Err(PopError::Timeout) => {}
            Err(PopError::Closed) => break,
        }
    }
    let _ = rt.block_on(permits.acquire_many(concurrency as u32));
    checkpoints.abort();
    rt.block_on(up.checkpoint());
    StageExit::Success
}
