//! Builds and runs the five-stage pipeline, sink first and source last, as
//! Quickwit does: each stage gets its input queue, its output queue and the
//! shared shutdown flag. Shutdown cascades: the reader flushes, waits for
//! storage, commits, and closes its queue; each stage drains its input,
//! then closes its output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skidder_common::service::{render_metrics, Shutdown};
use skidder_common::storage::ObjectStore;
use thiserror::Error;

use crate::config::IndexerConfig;
use crate::memory::Monitor;
use crate::metrics::Metrics;
use crate::models::{Control, Item, RawBatch};
use crate::offsets::OffsetTracker;
use crate::queue::ByteQueue;
use crate::stages::{self, StageExit};

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("parser config: {0}")]
    Parser(String),
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
    #[error("stage {stage} failed: {reason}")]
    Stage { stage: &'static str, reason: String },
    #[error("starting thread: {0}")]
    Thread(std::io::Error),
}

/// Items per queue; the byte budget is the real bound.
const QUEUE_ITEMS: usize = 1024;

fn queue<T: crate::queue::Weighted>(name: &str, budget: usize, m: &Metrics) -> Arc<ByteQueue<T>> {
    Arc::new(ByteQueue::new(
        QUEUE_ITEMS,
        budget,
        m.queue_bytes.with_label_values(&[name]),
        m.queue_blocked_us.with_label_values(&[name]),
    ))
}

/// Serves `/metrics` until the runtime stops.
pub async fn serve_metrics(addr: &str, metrics: Arc<Metrics>) -> Result<(), PipelineError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| PipelineError::Metrics {
            addr: addr.into(),
            source,
        })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { render_metrics(&m.registry) }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

/// The four stages behind the source, running on their own threads.
struct Stages {
    q_raw: Arc<ByteQueue<Item<RawBatch>>>,
    tracker: Arc<OffsetTracker>,
    pause: Arc<AtomicBool>,
    threads: Vec<(&'static str, std::thread::JoinHandle<StageExit>)>,
    monitor: (Arc<AtomicBool>, std::thread::JoinHandle<()>),
}

impl Stages {
    /// Starts every stage but the source, sink first.
    fn start(
        cfg: &IndexerConfig,
        store: Arc<dyn ObjectStore>,
        rt: &tokio::runtime::Handle,
        metrics: &Arc<Metrics>,
    ) -> Result<Stages, PipelineError> {
        let budget = cfg.memory.queue_bytes;
        let tracker = Arc::new(OffsetTracker::default());
        let q_encoded = queue("compressor_to_uploader", budget, metrics);
        let q_sealed = queue("block_maker_to_compressor", budget, metrics);
        let q_parsed = queue("parser_to_block_maker", budget, metrics);
        let q_raw = queue("reader_to_parser", budget, metrics);

        let mut threads: Vec<(&'static str, std::thread::JoinHandle<StageExit>)> = Vec::new();
        let spawn = |name: &'static str, f: Box<dyn FnOnce() -> StageExit + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(|h| (name, h))
                .map_err(PipelineError::Thread)
        };
        let uploader = stages::uploader::Uploader {
            store,
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            cfg: cfg.upload.clone(),
        };
        let dead_letters = crate::dead_letter::DeadLetters {
            uploader: uploader.clone(),
            rt: rt.clone(),
        };
        {
            let (q, rt) = (q_encoded.clone(), rt.clone());
            threads.push(spawn(
                "uploader",
                Box::new(move || stages::uploader::run(uploader, &q, &rt)),
            )?);
        }
        {
            let (i, o, m) = (q_sealed.clone(), q_encoded.clone(), metrics.clone());
            threads.push(spawn(
                "compressor",
                Box::new(move || stages::compressor::run(&i, &o, &m)),
            )?);
        }
        {
            let maker = stages::block_maker::BlockMaker::new(
                cfg.blocks.clone(),
                (cfg.memory.limit_bytes / 4) as usize,
                tracker.clone(),
                metrics.clone(),
                q_sealed.clone(),
            );
            let i = q_parsed.clone();
            threads.push(spawn(
                "block_maker",
                Box::new(move || stages::block_maker::run(maker, &i)),
            )?);
        }
        {
            let parser =
                stages::parser::Parser::new(cfg.parse.clone()).map_err(PipelineError::Parser)?;
            let (i, o, m) = (q_raw.clone(), q_parsed.clone(), metrics.clone());
            threads.push(spawn(
                "parser",
                Box::new(move || stages::parser::run(parser, &dead_letters, &i, &o, &m)),
            )?);
        }

        let pause = Arc::new(AtomicBool::new(false));
        let stop_monitor = Arc::new(AtomicBool::new(false));
        let qs = (
            q_raw.clone(),
            q_parsed.clone(),
            q_sealed.clone(),
            q_encoded.clone(),
        );
        let m = metrics.clone();
        let monitor = Monitor {
            cfg: cfg.memory.clone(),
            metrics: metrics.clone(),
            in_flight: Box::new(move || {
                (qs.0.bytes() + qs.1.bytes() + qs.2.bytes() + qs.3.bytes()) as u64
                    + m.open_block_bytes.get().max(0) as u64
                    + m.uploading_bytes.get().max(0) as u64
            }),
            pause: pause.clone(),
            stop: stop_monitor.clone(),
        };
        let monitor = std::thread::Builder::new()
            .name("memory_monitor".into())
            .spawn(move || monitor.run())
            .map_err(PipelineError::Thread)?;
        Ok(Stages {
            q_raw,
            tracker,
            pause,
            threads,
            monitor: (stop_monitor, monitor),
        })
    }

    /// Waits for every stage to drain and stop; the source has already
    /// closed its queue. Returns the first failure, the source's first.
    fn join(self, source_exit: (&'static str, StageExit)) -> Result<(), PipelineError> {
        let mut first_error = match source_exit {
            (stage, StageExit::Failure(reason)) => Some(PipelineError::Stage { stage, reason }),
            _ => None,
        };
        for (name, h) in self.threads {
            let exit = h
                .join()
                .unwrap_or_else(|_| StageExit::Failure("thread panicked".into()));
            tracing::info!(stage = name, ?exit, "stage stopped");
            if let StageExit::Failure(reason) = exit {
                first_error.get_or_insert(PipelineError::Stage {
                    stage: name,
                    reason,
                });
            }
        }
        self.monitor.0.store(true, Ordering::Relaxed);
        let _ = self.monitor.1.join();
        first_error.map_or(Ok(()), Err)
    }
}

/// Runs the indexer until `shutdown` is triggered or a stage fails.
pub fn run(
    cfg: &IndexerConfig,
    store: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let stages = Stages::start(cfg, store.clone(), rt, &metrics)?;
    // Source last.
    let ctx = stages::kafka_reader::ReaderContext::new(
        store,
        rt.clone(),
        stages.tracker.clone(),
        metrics.clone(),
        stages.q_raw.clone(),
        cfg.kafka.clone(),
        Duration::from_secs(cfg.upload.drain_timeout_secs),
    );
    let consumer = match stages::kafka_reader::consumer(&cfg.kafka, ctx) {
        Ok(c) => c,
        Err(e) => {
            stages.q_raw.close();
            let _ = stages.join(("kafka_reader", StageExit::Quit));
            return Err(e.into());
        }
    };
    let exit = stages::kafka_reader::run(consumer, &shutdown, &stages.pause);
    stages.join(("kafka_reader", exit))
}

/// Runs the pipeline behind an in-process source instead of Kafka, for
/// benchmarks that isolate the broker: `feed` pushes raw batches until it
/// returns, then every open block is flushed and stored. Offsets are not
/// committed anywhere.
pub fn run_with_source(
    cfg: &IndexerConfig,
    store: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    feed: impl FnOnce(&ByteQueue<Item<RawBatch>>, &AtomicBool),
) -> Result<(), PipelineError> {
    let stages = Stages::start(cfg, store, rt, &metrics)?;
    feed(&stages.q_raw, &stages.pause);
    let flushed = stages.q_raw.push(Item::Control(Control::Flush {
        partitions: None,
        forget: false,
    }));
    stages.q_raw.close();
    let exit = match flushed {
        Ok(()) => StageExit::Success,
        Err(_) => StageExit::DownstreamClosed,
    };
    stages.join(("source", exit))
}
