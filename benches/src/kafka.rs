//! The end-to-end path: the corpus is produced to a real Kafka-protocol
//! broker (Apache Kafka) first, then the real `skidder indexer` process reads it
//! into a local directory store. Its CPU time is read from `/proc` the
//! moment the last record is stored, so producing costs the indexer nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Debug, Clone, Default)]
pub struct KafkaReport {
    pub records: u64,
    pub raw_bytes: u64,
    pub produce_s: f64,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub threads: std::collections::BTreeMap<String, f64>,
    pub peak_rss: u64,
}

/// Produces the lines of `files`, up to `max_bytes`, one message per line,
/// as a log shipper does: batched for up to 20 ms into batches of up to
/// 1 MB, each lz4-compressed. Returns (records, bytes).
pub fn produce(
    bootstrap: &str,
    topic: &str,
    files: &[PathBuf],
    max_bytes: u64,
) -> Result<(u64, u64), String> {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.max.bytes", "10000000")
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    let (mut records, mut bytes) = (0u64, 0u64);
    'files: for f in files {
        let r =
            BufReader::with_capacity(1 << 20, std::fs::File::open(f).map_err(|e| e.to_string())?);
        for line in r.split(b'\n') {
            let line = line.map_err(|e| e.to_string())?;
            if bytes >= max_bytes {
                break 'files;
            }
            let mut rec = BaseRecord::<(), [u8]>::to(topic).payload(&line[..]);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((e, back)) => {
                        if !matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ) {
                            return Err(format!("produce: {e}"));
                        }
                        rec = back;
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
            records += 1;
            bytes += line.len() as u64 + 1;
        }
    }
    p.flush(Duration::from_secs(300))
        .map_err(|e| format!("flush: {e}"))?;
    Ok((records, bytes))
}

/// Reads one counter from a Prometheus text page.
fn scrape(addr: &str, metric: &str) -> Option<f64> {
    let body = ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(metric))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `skidder indexer` with `config` until it has read all `records`,
/// then stops it with SIGTERM, which stores everything it holds before it
/// exits 0. Its CPU time is the exited process's own (`wait4`), so the
/// figure is the whole path to stored blocks, and does not count the idle
/// wait for the last open blocks' flush interval.
pub fn run_indexer(
    skidder: &Path,
    config: &Path,
    metrics_addr: &str,
    records: u64,
    raw_bytes: u64,
) -> Result<KafkaReport, String> {
    let started = Instant::now();
    let mut child = Command::new(skidder)
        .args(["indexer", "--config"])
        .arg(config)
        .env("SKIDDER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", skidder.display()))?;
    let pid = child.id();
    let sampler = crate::measure::ThreadSampler::start(pid);
    let metric = r#"skidder_indexer_stage_records_in_total{stage="kafka_reader"}"#;
    let deadline = Instant::now() + Duration::from_secs(3_600);
    let mut last = 0.0;
    loop {
        // Each scrape costs the indexer CPU, so look every 200 ms.
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("indexer exited early: {st}"));
        }
        if let Some(n) = scrape(metrics_addr, metric) {
            last = n;
            if n as u64 >= records {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "indexer read {last} of {records} records in an hour"
            ));
        }
    }
    let peak_rss = crate::measure::peak_rss(pid);
    // SAFETY: kill only sends a signal to the child we started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let threads = sampler.finish();
    let (status, cpu_s) = wait_with_cpu(pid)?;
    if status != 0 {
        return Err(format!("indexer exited with status {status} after SIGTERM"));
    }
    Ok(KafkaReport {
        records,
        raw_bytes,
        produce_s: 0.0,
        cpu_s,
        wall_s: started.elapsed().as_secs_f64(),
        threads,
        peak_rss,
    })
}

/// Waits for child `pid` to exit: (exit code, user + system CPU seconds).
fn wait_with_cpu(pid: u32) -> Result<(i32, f64), String> {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the pointers outlive the call.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if r != pid as i32 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, secs(usage.ru_utime) + secs(usage.ru_stime)))
}
