//! Builds and runs the five-stage pipeline, sink first and source last, as
//! Quickwit does: each stage gets its input queue, its output queue and the
//! shared shutdown flag. Shutdown cascades: the reader flushes, waits for
//! storage, commits, and closes its queue; each stage drains its input,
//! then closes its output.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use skidder_common::service::{render_metrics, Shutdown};
use skidder_common::storage::ObjectStore;
use thiserror::Error;

use crate::config::IndexerConfig;
use crate::memory::Monitor;
use crate::metrics::Metrics;
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

/// Runs the indexer until `shutdown` is triggered or a stage fails.
pub fn run(
    cfg: &IndexerConfig,
    store: Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Result<(), PipelineError> {
    let budget = cfg.memory.queue_bytes;
    let tracker = Arc::new(OffsetTracker::default());

    // Sink first.
    let q_encoded = queue("compressor_to_uploader", budget, &metrics);
    let q_sealed = queue("block_maker_to_compressor", budget, &metrics);
    let q_parsed = queue("parser_to_block_maker", budget, &metrics);
    let q_raw = queue("reader_to_parser", budget, &metrics);

    let mut threads: Vec<(&'static str, std::thread::JoinHandle<StageExit>)> = Vec::new();
    let spawn = |name: &'static str, f: Box<dyn FnOnce() -> StageExit + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map(|h| (name, h))
            .map_err(PipelineError::Thread)
    };

    let uploader = stages::uploader::Uploader {
        store: store.clone(),
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        cfg: cfg.upload.clone(),
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
            Box::new(move || stages::parser::run(parser, &i, &o, &m)),
        )?);
    }

    let pause = Arc::new(AtomicBool::new(false));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = {
        let qs = (
            q_raw.clone(),
            q_parsed.clone(),
            q_sealed.clone(),
            q_encoded.clone(),
        );
        let m = metrics.clone();
        Monitor {
            cfg: cfg.memory.clone(),
            metrics: metrics.clone(),
            in_flight: Box::new(move || {
                (qs.0.bytes() + qs.1.bytes() + qs.2.bytes() + qs.3.bytes()) as u64
                    + m.open_block_bytes.get().max(0) as u64
                    + m.uploading_bytes.get().max(0) as u64
            }),
            pause: pause.clone(),
            stop: stop_monitor.clone(),
        }
    };
    let monitor = std::thread::Builder::new()
        .name("memory_monitor".into())
        .spawn(move || monitor.run())
        .map_err(PipelineError::Thread)?;

    // Source last.
    let ctx = stages::kafka_reader::ReaderContext::new(
        store,
        rt.clone(),
        tracker,
        metrics.clone(),
        q_raw.clone(),
        cfg.kafka.clone(),
        Duration::from_secs(cfg.upload.drain_timeout_secs),
    );
    let consumer = match stages::kafka_reader::consumer(&cfg.kafka, ctx) {
        Ok(c) => c,
        Err(e) => {
            q_raw.close();
            for (_, h) in threads {
                let _ = h.join();
            }
            return Err(e.into());
        }
    };
    let reader_exit = stages::kafka_reader::run(consumer, &shutdown, &pause);

    let mut first_error = match reader_exit {
        StageExit::Failure(reason) => Some(PipelineError::Stage {
            stage: "kafka_reader",
            reason,
        }),
        _ => None,
    };
    for (name, h) in threads {
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
    stop_monitor.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = monitor.join();
    first_error.map_or(Ok(()), Err)
}
