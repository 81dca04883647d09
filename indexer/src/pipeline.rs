//! Builds and runs the five-stage pipeline, sink first and source last, as
//! Quickwit does: each stage gets its input queue, its output queue and the
//! shared shutdown flag. Shutdown cascades: the reader flushes, waits for
//! storage, commits, and closes its queue; each stage drains its input,
//! then closes its output.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use skidder_common::service::{render_metrics, ErrorChain, Shutdown};
use skidder_common::storage::ObjectStore;
use thiserror::Error;

use crate::config::IndexerConfig;
use crate::memory::Monitor;
use crate::metrics::Metrics;
use crate::models::template::TemplateError;
use crate::models::{Control, Item, RawBatch};
use crate::offsets::OffsetTracker;
use crate::queue::{byte_queue, Probe, Receiver, Sender, Weighted};
use crate::stages::{self, StageError, StageExit};
use crate::writer::Writer;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("parser config")]
    Parser(#[from] TemplateError),
    #[error("metrics listener on {addr}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
    #[error("stage {stage} failed")]
    Stage {
        stage: &'static str,
        source: StageError,
    },
    #[error("starting thread: {0}")]
    Thread(std::io::Error),
}

/// Items per queue; the byte budget is the real bound.
const QUEUE_ITEMS: usize = 1024;

fn queue<T: Weighted + Send + 'static>(
    name: &str,
    budget: usize,
    m: &Metrics,
    probes: &mut Vec<Probe>,
) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = byte_queue(
        QUEUE_ITEMS,
        budget,
        m.queue_bytes.with_label_values(&[name]),
        m.queue_blocked_seconds.with_label_values(&[name]),
    );
    probes.push(tx.probe());
    (tx, rx)
}

/// Serves `registry` on `/metrics` until the runtime stops.
pub async fn serve_metrics(
    addr: &str,
    registry: prometheus::Registry,
) -> Result<(), PipelineError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| PipelineError::Metrics {
            addr: addr.into(),
            source,
        })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let r = registry.clone();
            async move { render_metrics(&r) }
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
    /// The source's output, until the source takes it.
    source_out: Option<Sender<Item<RawBatch>>>,
    tracker: Arc<OffsetTracker>,
    pause: Arc<AtomicBool>,
    threads: Vec<(&'static str, std::thread::JoinHandle<StageExit>)>,
    monitor: (Arc<AtomicBool>, std::thread::JoinHandle<()>),
}

impl Stages {
    /// Starts every stage but the source, sink first. Each stage thread
    /// owns its queue handles, so its end closes them.
    fn start(
        cfg: &IndexerConfig,
        store: Arc<dyn ObjectStore>,
        rt: &tokio::runtime::Handle,
        metrics: &Arc<Metrics>,
    ) -> Result<Stages, PipelineError> {
        let budget = cfg.memory.queue_bytes;
        let tracker = Arc::new(OffsetTracker::default());
        let mut probes = Vec::new();
        let (encoded_tx, encoded_rx) =
            queue("compressor_to_uploader", budget, metrics, &mut probes);
        let (sealed_tx, sealed_rx) =
            queue("block_maker_to_compressor", budget, metrics, &mut probes);
        let (parsed_tx, parsed_rx) = queue("parser_to_block_maker", budget, metrics, &mut probes);
        let (raw_tx, raw_rx) = queue("reader_to_parser", budget, metrics, &mut probes);

        let mut threads: Vec<(&'static str, std::thread::JoinHandle<StageExit>)> = Vec::new();
        let spawn = |name: &'static str, f: Box<dyn FnOnce() -> StageExit + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(|h| (name, h))
                .map_err(PipelineError::Thread)
        };
        let writer = |caller| Writer {
            store: metrics.store_requests.wrap(store.clone(), caller),
            metrics: metrics.clone(),
            cfg: cfg.upload.clone(),
        };
        let dead_letters = crate::dead_letter::DeadLetters {
            writer: writer("dead_letter"),
            rt: rt.clone(),
        };
        let uploader = stages::uploader::Uploader {
            writer: writer("uploader"),
            tracker: tracker.clone(),
            tail: (cfg.upload.tail_pack_secs > 0).then(|| {
                Arc::new(crate::tail_packs::TailPacks::new(
                    cfg.upload.tail_pack_max_blocks,
                ))
            }),
        };
        let parser = stages::parser::Parser::new(cfg.parse.clone())?;
        {
            let rt = rt.clone();
            threads.push(spawn(
                "uploader",
                Box::new(move || stages::uploader::run(uploader, encoded_rx, &rt)),
            )?);
        }
        {
            let m = metrics.clone();
            threads.push(spawn(
                "compressor",
                Box::new(move || stages::compressor::run(sealed_rx, encoded_tx, &m)),
            )?);
        }
        {
            let maker = stages::block_maker::BlockMaker::new(
                cfg.blocks.clone(),
                (cfg.memory.limit_bytes / 4) as usize,
                tracker.clone(),
                metrics.clone(),
                sealed_tx,
            );
            threads.push(spawn(
                "block_maker",
                Box::new(move || stages::block_maker::run(maker, parsed_rx)),
            )?);
        }
        {
            let m = metrics.clone();
            threads.push(spawn(
                "parser",
                Box::new(move || stages::parser::run(parser, &dead_letters, raw_rx, parsed_tx, &m)),
            )?);
        }

        let pause = Arc::new(AtomicBool::new(false));
        let stop_monitor = Arc::new(AtomicBool::new(false));
        let m = metrics.clone();
        let monitor = Monitor {
            cfg: cfg.memory.clone(),
            metrics: metrics.clone(),
            in_flight: Box::new(move || {
                probes.iter().map(Probe::bytes).sum::<usize>() as u64
                    + m.open_block_bytes.get().max(0) as u64
                    + m.uploading_bytes.get().max(0) as u64
                    + m.tail_pack_bytes.get().max(0) as u64
            }),
            pause: pause.clone(),
            stop: stop_monitor.clone(),
        };
        let monitor = std::thread::Builder::new()
            .name("memory_monitor".into())
            .spawn(move || monitor.run())
            .map_err(PipelineError::Thread)?;
        Ok(Stages {
            source_out: Some(raw_tx),
            tracker,
            pause,
            threads,
            monitor: (stop_monitor, monitor),
        })
    }

    /// The source's output queue; taken once.
    fn take_source_out(&mut self) -> Sender<Item<RawBatch>> {
        self.source_out
            .take()
            .expect("the source output is taken once, by the source")
    }

    /// Waits for every stage to stop; the source has already dropped or
    /// closed its output. Returns the first failure, the source's first.
    fn join(self, source: &'static str, source_exit: StageExit) -> Result<(), PipelineError> {
        drop(self.source_out);
        let mut first_error = match source_exit {
            StageExit::Failure(source_err) => Some(PipelineError::Stage {
                stage: source,
                source: source_err,
            }),
            _ => None,
        };
        for (name, h) in self.threads {
            let exit = h
                .join()
                .unwrap_or_else(|p| StageExit::Failure(StageError::from_panic(p)));
            match &exit {
                StageExit::Failure(e) => {
                    tracing::error!(stage = name, error = %ErrorChain(e), "stage failed")
                }
                _ => tracing::info!(stage = name, ?exit, "stage stopped"),
            }
            if let StageExit::Failure(e) = exit {
                first_error.get_or_insert(PipelineError::Stage {
                    stage: name,
                    source: e,
                });
            }
        }
        self.monitor.0.store(true, Ordering::Relaxed);
        let _ = self.monitor.1.join();
        first_error.map_or(Ok(()), Err)
    }
}

/// Runs the indexer until `shutdown` is triggered or a stage fails. A
/// stage that fails or panics closes its queues, so the pipeline unwinds
/// and this returns the cause; offsets are committed only for what was
/// stored before it.
pub fn run(
    cfg: &IndexerConfig,
    store: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let mut stages = Stages::start(cfg, store.clone(), rt, &metrics)?;
    // Source last.
    let ctx = stages::kafka_reader::ReaderContext::new(
        metrics.store_requests.wrap(store, "assignment"),
        rt.clone(),
        stages.tracker.clone(),
        metrics.clone(),
        stages.take_source_out(),
        cfg.kafka.clone(),
        Duration::from_secs(cfg.upload.drain_timeout_secs),
    );
    let consumer = match stages::kafka_reader::consumer(&cfg.kafka, ctx) {
        Ok(c) => c,
        Err(e) => {
            let _ = stages.join("kafka_reader", StageExit::Quit);
            return Err(e.into());
        }
    };
    let pause = stages.pause.clone();
    // The reader runs on this thread: a panic in it unwinds the pipeline
    // like any other stage's.
    let exit = std::panic::catch_unwind(AssertUnwindSafe(|| {
        stages::kafka_reader::run(consumer, &shutdown, &pause)
    }))
    .unwrap_or_else(|p| StageExit::Failure(StageError::from_panic(p)));
    stages.join("kafka_reader", exit)
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
    feed: impl FnOnce(&Sender<Item<RawBatch>>, &AtomicBool),
) -> Result<(), PipelineError> {
    let mut stages = Stages::start(cfg, store, rt, &metrics)?;
    let out = stages.take_source_out();
    feed(&out, &stages.pause);
    let flushed = out.push(Item::Control(Control::Flush {
        partitions: None,
        forget: false,
    }));
    drop(out);
    let exit = match flushed {
        Ok(()) => StageExit::Success,
        Err(_) => StageExit::DownstreamClosed,
    };
    stages.join("source", exit)
}
