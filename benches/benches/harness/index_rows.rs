//! The indexing rows: each pipeline stage alone, the in-process indexer
//! against `lz4` and tantivy, and the end-to-end path from a real broker
//! through the real `skidder indexer` process.

use super::*;

fn stage_rows(
    t: &mut Table,
    path: &str,
    records: u64,
    threads: &std::collections::BTreeMap<String, f64>,
) {
    let total: f64 = threads.values().sum();
    let mut v: Vec<_> = threads.iter().filter(|(_, c)| **c > 0.0).collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1));
    for (name, cpu) in v {
        t.row(
            "indexing, per stage",
            &format!("{path}: {name}"),
            format!(
                "{:.0} ns/record, {:.1}% of CPU",
                cpu * 1e9 / records.max(1) as f64,
                100.0 * cpu / total.max(1e-9)
            ),
            "",
            "",
        );
    }
}

pub(crate) fn index(o: &Opts, c: &corpus::Corpus, t: &mut Table) -> Result<()> {
    std::fs::create_dir_all(&o.work)?;
    let store = store_dir(o);
    // In-process source.
    let cfg = write_config(&o.work, "bench-inproc.toml", &bench_config(&store, ""))?;
    // Three runs, each next to an lz4 run, so that both see the same
    // machine; the medians are reported, and the stages of the median run.
    let mut runs = Vec::new();
    let mut lz4s = Vec::new();
    for _ in 0..3 {
        runs.push(inproc(&cfg, &store, &c.files, None)?);
        lz4s.push(baselines::lz4_cpu(&c.files)?);
    }
    runs.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
    let spread = format!(
        "{:.0}-{:.0}",
        mb(runs[0].raw_bytes) / runs[2].cpu_s,
        mb(runs[0].raw_bytes) / runs[0].cpu_s
    );
    let r = runs.swap_remove(1);
    let lz4 = measure::median(lz4s);
    let rate = mb(r.raw_bytes) / r.cpu_s;
    t.row(
        "indexing",
        "in-process source -> local store",
        format!(
            "{rate:.0} MB/s per CPU-s, median of 3 (range {spread}; {:.1} CPU-s, {:.1} s wall)",
            r.cpu_s, r.wall_s
        ),
        format!(
            "lz4 -1 alone: {:.0} MB/s per CPU-s; skidder takes {:.2}x lz4's CPU",
            mb(r.raw_bytes) / lz4,
            r.cpu_s / lz4
        ),
        "within 4x of lz4",
    );
    stage_rows(t, "in-process", r.records, &r.threads);
    t.row(
        "memory",
        "peak RSS, in-process, full speed",
        format!("{:.0} MiB", r.peak_rss as f64 / (1u64 << 20) as f64),
        format!(
            "limit {:.0} MiB",
            r.memory_limit as f64 / (1u64 << 20) as f64
        ),
        "never above the limit",
    );
    // Storage of the generated corpus.
    let s = storage::report(&store, 2_000).map_err(anyhow::Error::msg)?;
    storage_rows(t, "generated Kubernetes logs", r.raw_bytes, &s);

    // tantivy baseline.
    let tfiles = baselines::prefix_files(&c.files, o.baseline_bytes);
    let out = Command::new(std::env::current_exe()?)
        .arg("tantivy")
        .arg("--dir")
        .arg(o.work.join("tantivy"))
        .args(&tfiles)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("tantivy baseline failed: {}", out.status);
    }
    let tv: baselines::TantivyReport = serde_json::from_slice(&out.stdout)?;
    let tv_rate = mb(tv.raw_bytes) / tv.cpu_s;
    t.row(
        "indexing",
        "tantivy (Quickwit's engine), same records",
        format!(
            "{tv_rate:.1} MB/s per CPU-s on {:.0} MB; index {:.0}% of raw",
            mb(tv.raw_bytes),
            100.0 * tv.index_bytes as f64 / tv.raw_bytes as f64
        ),
        format!("skidder is {:.1}x faster", rate / tv_rate),
        "baseline",
    );

    if !o.no_kafka {
        kafka_rows(o, c, t, Some((rate, tv_rate)))?;
    }

    // Memory with a stalled store: only backpressure holds it down.
    let stalled = o.work.join("store-stalled");
    for limit in [256u64 << 20, 1 << 30] {
        let scfg = write_config(
            &o.work,
            "bench-stalled.toml",
            &bench_config(&stalled, &format!("[memory]\nlimit_bytes = {limit}")),
        )?;
        let r = inproc(&scfg, &stalled, &c.files, Some(20))?;
        t.row(
            "memory",
            &format!(
                "peak RSS, uploads stalled for 20 s, limit {} MiB",
                limit >> 20
            ),
            format!("{:.0} MiB", r.peak_rss as f64 / (1u64 << 20) as f64),
            format!(
                "{:.0}% of the limit",
                100.0 * r.peak_rss as f64 / limit as f64
            ),
            "never above the limit",
        );
    }
    let _ = std::fs::remove_dir_all(&stalled);
    Ok(())
}

const KAFKA_PARTITIONS: i32 = 2;

/// The end-to-end path: Apache Kafka and the real `skidder indexer`. The
/// topic is produced (batched, lz4) before the indexer starts, so it is
/// never starved; the broker's CPU while it reads is reported on its own.
/// `beside` holds the in-process and tantivy rates when this run measured
/// them; `lz4` over the same records is always measured next to it.
pub(crate) fn kafka_rows(
    o: &Opts,
    c: &corpus::Corpus,
    t: &mut Table,
    beside: Option<(f64, f64)>,
) -> Result<()> {
    let kfiles = baselines::prefix_files(&c.files, o.kafka_bytes);
    let broker = skidder_common::testing::KafkaBroker::start();
    broker.create_topic("logs", KAFKA_PARTITIONS as u32);
    let t0 = Instant::now();
    let (records, bytes) = kafka::produce(&broker.bootstrap(), "logs", &kfiles, o.kafka_bytes)
        .map_err(anyhow::Error::msg)?;
    let produce_s = t0.elapsed().as_secs_f64();
    let kstore = o.work.join("store-kafka");
    let _ = std::fs::remove_dir_all(&kstore);
    let port = skidder_common::testing::free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let kcfg = write_config(
            &o.work,
            "bench-kafka.toml",
            &bench_config(
                &kstore,
                &format!(
                    "metrics_listen = \"{metrics_addr}\"\n[kafka]\nbrokers = \"{}\"\ntopics = [\"logs\"]\ngroup_id = \"bench\"",
                    broker.bootstrap()
                ),
            ),
        )?;
    let skidder = std::fs::canonicalize(&o.skidder).with_context(|| {
        format!(
            "{} (build it with cargo build --release)",
            o.skidder.display()
        )
    })?;
    let broker_cpu = || -> f64 { broker.pids().into_iter().map(measure::process_cpu).sum() };
    let broker_before = broker_cpu();
    let k = kafka::run_indexer(&skidder, &kcfg, &metrics_addr, records, bytes)
        .map_err(anyhow::Error::msg)?;
    let broker_s = broker_cpu() - broker_before;
    let lz4 = baselines::lz4_cpu(&kfiles)?;
    let krate = mb(bytes) / k.cpu_s;
    let mut compared = format!("lz4 -1 alone {:.0} MB/s per CPU-s", mb(bytes) / lz4);
    if let Some((inproc, tv)) = beside {
        compared += &format!("; in-process {inproc:.0}; {:.1}x tantivy", krate / tv);
    }
    t.row(
            "indexing",
            "Apache Kafka (batched, lz4) -> skidder indexer -> local store",
            format!("{krate:.0} MB/s per CPU-s of the indexer ({:.0} MB, {records} records, {:.1} CPU-s, {:.1} s wall; broker {broker_s:.1} CPU-s besides; produced in {produce_s:.0} s beforehand)", mb(bytes), k.cpu_s, k.wall_s),
            compared + "; Episilia 10, Quickwit 7.5-13",
            ">= 150 MB/s per CPU-s",
        );
    stage_rows(t, "Kafka", records, &k.threads);
    t.row(
        "memory",
        "peak RSS, Kafka path, full speed",
        format!("{:.0} MiB", k.peak_rss as f64 / (1u64 << 20) as f64),
        "limit 1024 MiB",
        "never above the limit",
    );
    Ok(())
}

/// Runs the in-process indexer in a child process of this harness.
pub(crate) fn inproc(
    config: &Path,
    store: &Path,
    files: &[PathBuf],
    stall: Option<u64>,
) -> Result<RunReport> {
    let _ = std::fs::remove_dir_all(store);
    std::fs::create_dir_all(store)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("inproc")
        .arg("--config")
        .arg(config)
        .arg("--store")
        .arg(store);
    if let Some(s) = stall {
        cmd.arg("--stall").arg(s.to_string());
    }
    let out = cmd.args(files).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("in-process indexer failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("in-process report")
}
