//! The indexer pipeline behind an in-process source that reads the corpus
//! files, which isolates Kafka. The harness runs this in a child process
//! (`harness inproc ...`) so that its CPU time and peak memory are the
//! pipeline's alone.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skidder_common::storage::{ListOptions, ListPage, ObjectMeta, ObjectStore, StorageResult};
use skidder_indexer::config::IndexerConfig;
use skidder_indexer::metrics::Metrics;
use skidder_indexer::models::{Item, RawBatch};
use skidder_indexer::queue::Sender;

/// Kafka-sized batches: about 1 MiB of messages each.
const BATCH_BYTES: usize = 1 << 20;

/// Reads newline-delimited files into raw batches, one message per line,
/// with consecutive offsets, as a Kafka partition would deliver them.
/// Waits while `pause` is set, as the Kafka reader does.
pub fn feed(
    files: &[PathBuf],
    q: &Sender<Item<RawBatch>>,
    pause: &AtomicBool,
) -> std::io::Result<u64> {
    let topic: Arc<str> = "bench".into();
    let mut offset = 0i64;
    let mut batch = RawBatch::new(topic.clone(), 0);
    let mut line = Vec::new();
    for f in files {
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(f)?);
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let l = line.strip_suffix(b"\n").unwrap_or(&line);
            batch.push(offset, None, l);
            offset += 1;
            if batch.payload.len() >= BATCH_BYTES {
                while pause.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let full = std::mem::replace(&mut batch, RawBatch::new(topic.clone(), 0));
                if q.push(Item::Data(full)).is_err() {
                    return Ok(offset as u64);
                }
            }
        }
    }
    if !batch.messages.is_empty() && q.push(Item::Data(batch)).is_err() {
        return Ok(offset as u64);
    }
    Ok(offset as u64)
}

/// A store whose data uploads never finish: everything else passes through.
/// With it, only backpressure keeps the indexer's memory down.
#[derive(Debug)]
pub struct StalledStore(pub Arc<dyn ObjectStore>);

#[async_trait::async_trait]
impl ObjectStore for StalledStore {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        if key.ends_with(".seq") {
            std::future::pending::<()>().await;
        }
        self.0.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.0.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.0.get(key).await
    }
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> StorageResult<Bytes> {
        self.0.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.0.head(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage> {
        self.0.list(prefix, opts).await
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.0.delete(key).await
    }
    fn url(&self) -> String {
        format!("stalled+{}", self.0.url())
    }
}

/// What one in-process run measured.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    pub records: u64,
    pub raw_bytes: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    /// CPU seconds by thread name (the stages are named threads).
    pub threads: std::collections::BTreeMap<String, f64>,
    pub peak_rss: u64,
    pub memory_limit: u64,
    pub completed: bool,
}

/// Indexes `files` into `store`. With `stall_for`, uploads never finish and
/// the run stops after that long, reporting memory only.
pub fn run(
    cfg: &IndexerConfig,
    store: Arc<dyn ObjectStore>,
    files: &[PathBuf],
    stall_for: Option<Duration>,
) -> Result<RunReport, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let raw_bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let store: Arc<dyn ObjectStore> = match stall_for {
        Some(_) => Arc::new(StalledStore(store)),
        None => store,
    };
    let metrics = Arc::new(Metrics::new());
    let started = Instant::now();
    let cpu0 = crate::measure::self_cpu();
    let sampler = crate::measure::ThreadSampler::start(std::process::id());
    if let Some(d) = stall_for {
        // The pipeline never drains; watch it for a while, then report.
        let (limit, cfg, files, handle) = (
            cfg.memory.limit_bytes,
            cfg.clone(),
            files.to_vec(),
            rt.handle().clone(),
        );
        std::thread::spawn(move || {
            let _ = skidder_indexer::pipeline::run_with_source(
                &cfg,
                store,
                &handle,
                metrics,
                |q, p| {
                    let _ = feed(&files, q, p);
                },
            );
        });
        std::thread::sleep(d);
        let me = std::process::id();
        let (threads, cpu_s) = without_sampler(sampler, cpu0);
        return Ok(RunReport {
            records: 0,
            raw_bytes,
            cpu_s,
            wall_s: started.elapsed().as_secs_f64(),
            threads,
            peak_rss: crate::measure::peak_rss(me),
            memory_limit: limit,
            completed: false,
        });
    }
    let mut records = 0;
    skidder_indexer::pipeline::run_with_source(cfg, store, rt.handle(), metrics, |q, p| {
        records = feed(files, q, p).unwrap_or(0);
    })
    .map_err(|e| e.to_string())?;
    let me = std::process::id();
    let (threads, cpu_s) = without_sampler(sampler, cpu0);
    Ok(RunReport {
        records,
        raw_bytes,
        cpu_s,
        wall_s: started.elapsed().as_secs_f64(),
        threads,
        peak_rss: crate::measure::peak_rss(me),
        memory_limit: cfg.memory.limit_bytes,
        completed: true,
    })
}

/// Per-thread CPU and the process's CPU since `cpu0`, less the sampler's own.
fn without_sampler(
    sampler: crate::measure::ThreadSampler,
    cpu0: Duration,
) -> (std::collections::BTreeMap<String, f64>, f64) {
    let total = (crate::measure::self_cpu() - cpu0).as_secs_f64();
    let mut threads = sampler.finish();
    let own = threads.remove("cpu_sampler").unwrap_or(0.0);
    (threads, total - own)
}
