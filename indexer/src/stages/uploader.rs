//! Stage 5: stores each block and reports back to the offset tracker.
//!
//! Per block, in this order (see `docs/DESIGN.md`): the ledger entry, the
//! data object, then the index that makes the data visible to searchers.
//! Only then is the block's hold released, which lets the Kafka reader
//! commit past it. Every put is retried by the [`Writer`]'s policy: a blip
//! until it succeeds, so data is never dropped and backpressure holds
//! memory down while the store is failing; an error no retry can fix
//! stops the indexer.
//!
//! Each stored index is also kept for the hour's next tail pack
//! (`crate::tail_packs`), written on a timer or once an hour holds enough:
//! a shortcut for readers of the newest hours, so never waited on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skidder_common::format::ledger::{checkpoint_key, Checkpoint, LEDGER_VERSION};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use super::{StageError, StageExit, POP_WAIT};
use crate::failpoints::crash_point;
use crate::models::{EncodedBlock, Item, TopicPartition};
use crate::offsets::OffsetTracker;
use crate::queue::{PopError, Receiver, Weighted};
use crate::tail_packs::{TailPack, TailPacks};
use crate::writer::{PutError, Writer};

/// Attempts at a tail pack's PUT before it is given up.
const TAIL_PACK_ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct Uploader {
    pub writer: Writer,
    pub tracker: Arc<OffsetTracker>,
    /// `None` when `upload.tail_pack_secs` is 0.
    pub tail: Option<Arc<TailPacks>>,
}

impl Uploader {
    async fn upload(&self, b: EncodedBlock) -> Result<(), PutError> {
        crash_point("uploader::before_ledger");
        let w = &self.writer;
        let tp = TopicPartition {
            topic: b.ledger.topic.as_str().into(),
            partition: b.ledger.partition,
        };
        let ledger_key = b.ledger.key();
        w.put_retrying("ledger", &ledger_key, Bytes::from(b.ledger.to_json()), None)
            .await?;
        self.tracker
            .add_ledger_key(&tp, b.ledger.last_offset, ledger_key);
        crash_point("uploader::after_ledger");
        w.put_retrying("data", &b.data_key, b.data.clone(), None)
            .await?;
        crash_point("uploader::after_data");
        w.put_retrying("index", &b.index_key, b.index.clone(), None)
            .await?;
        crash_point("uploader::after_index");
        let m = &w.metrics;
        m.blocks_written.inc();
        m.data_bytes_written.inc_by(b.data.len() as u64);
        m.index_bytes_written.inc_by(b.index.len() as u64);
        m.stage(
            "uploader",
            b.records,
            b.raw_bytes,
            b.records,
            (b.data.len() + b.index.len()) as u64,
        );
        tracing::debug!(key = %b.index_key, records = b.records, "block stored");
        self.tracker.release(&tp, b.ledger.first_offset);
        if let Some(tail) = &self.tail {
            let full = tail.add(&b.index_key, b.index);
            m.tail_pack_bytes.set(tail.held_bytes() as i64);
            if let Some(pack) = full {
                self.put_tail_pack(pack).await;
            }
        }
        Ok(())
    }

    /// Writes every hour's pending tail pack.
    pub async fn tail_packs(&self) {
        let Some(tail) = &self.tail else { return };
        let packs = tail.take_all();
        self.writer
            .metrics
            .tail_pack_bytes
            .set(tail.held_bytes() as i64);
        for pack in packs {
            self.put_tail_pack(pack).await;
        }
    }

    /// A tail pack is only a shortcut: after a few attempts it is given up,
    /// and readers GET its indexes one by one.
    async fn put_tail_pack(&self, pack: TailPack) {
        let put = self
            .writer
            .put_retrying("tail_pack", &pack.key, pack.body, Some(TAIL_PACK_ATTEMPTS))
            .await;
        let result = if put.is_ok() { "ok" } else { "failed" };
        self.writer
            .metrics
            .tail_packs_written
            .with_label_values(&[result])
            .inc();
        tracing::debug!(key = %pack.key, members = pack.members, result, "tail pack");
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
            let key = checkpoint_key(&due.tp.topic, due.tp.partition, due.epoch);
            let put = self
                .writer
                .put_retrying("checkpoint", &key, Bytes::from(body), Some(5))
                .await;
            if put.is_err() {
                // Offered again next time, even if the watermark stays put.
                self.tracker.checkpoint_failed(due);
                continue;
            }
            crash_point("uploader::after_checkpoint");
            for (_, k) in &due.ledger_keys {
                if let Err(e) = self.writer.store.delete(k).await {
                    tracing::warn!(key = %k, error = %e, "ledger cleanup failed");
                }
            }
        }
    }
}

/// The stage loop. Uploads run as tasks on the runtime, at most
/// `upload.concurrency` at once; a task that fails or panics fails the
/// stage, whose receiver then closes and stops the pipeline.
pub fn run(
    up: Uploader,
    input: Receiver<Item<EncodedBlock>>,
    rt: &tokio::runtime::Handle,
) -> StageExit {
    let concurrency = up.writer.cfg.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<Result<(), PutError>> = JoinSet::new();
    let cfg = &up.writer.cfg;
    let checkpoints = spawn_every(rt, cfg.checkpoint_interval_secs, &up, |up| async move {
        up.checkpoint().await
    });
    let tail_packs = spawn_every(rt, cfg.tail_pack_secs, &up, |up| async move {
        up.tail_packs().await
    });
    let failed = 'run: loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = task_result(done) {
                break 'run Some(e);
            }
        }
        match input.pop(POP_WAIT) {
            Ok(Item::Data(block)) => {
                let Ok(permit) = rt.block_on(permits.clone().acquire_owned()) else {
                    unreachable!("the semaphore is never closed");
                };
                let up = up.clone();
                let w = block.weight() as i64;
                up.writer.metrics.uploading_bytes.add(w);
                tasks.spawn_on(
                    async move {
                        let stored = up.upload(block).await;
                        up.writer.metrics.uploading_bytes.sub(w);
                        drop(permit);
                        stored
                    },
                    rt,
                );
            }
            // Flushes need nothing here: the reader waits on the tracker.
            Ok(Item::Control(_)) | Err(PopError::Timeout) => {}
            Err(PopError::Closed) => break None,
        }
    };
    let failed = failed.or_else(|| {
        rt.block_on(async {
            while let Some(done) = tasks.join_next().await {
                if let Err(e) = task_result(done) {
                    return Some(e);
                }
            }
            None
        })
    });
    checkpoints.abort();
    tail_packs.abort();
    match failed {
        // Nothing more is stored: the tracker's holds keep every offset of
        // an unstored block from a commit or a checkpoint.
        Some(e) => StageExit::Failure(e),
        None => {
            rt.block_on(async {
                up.checkpoint().await;
                up.tail_packs().await;
            });
            StageExit::Success
        }
    }
}

/// Runs `tick` every `secs` (at least 1) until aborted.
fn spawn_every<F, Fut>(
    rt: &tokio::runtime::Handle,
    secs: u64,
    up: &Uploader,
    tick: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(Uploader) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let up = up.clone();
    let every = Duration::from_secs(secs.max(1));
    rt.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            tick(up.clone()).await;
        }
    })
}

/// A finished upload task's outcome; a panic is a failure too.
fn task_result(done: Result<Result<(), PutError>, JoinError>) -> Result<(), StageError> {
    match done {
        Ok(stored) => Ok(stored?),
        Err(e) if e.is_panic() => Err(StageError::from_panic(e.into_panic())),
        Err(e) => Err(StageError::Panicked(format!("upload task: {e}"))),
    }
}
