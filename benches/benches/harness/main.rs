//! Skidder's benchmark harness: one command, one table.
//!
//! ```text
//! cargo bench -p skidder-benches --bench harness -- all [--size 2GB]
//! ```
//!
//! See `docs/BENCHMARKS.md` for what each row means and the last results.
//! Every rate is raw input bytes per CPU-second of the process doing the
//! work, read from the kernel; every latency is a median of several runs;
//! and each comes with a baseline measured in the same run.

mod baselines;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use skidder_benches::inproc::RunReport;
use skidder_benches::search::{self, QueryCase, Reads};
use skidder_benches::{corpus, kafka, measure, storage};
use skidder_common::format::layout::hour_of;
use skidder_common::storage::{LocalStore, ObjectStore};
use skidder_indexer::config::IndexerConfig;
use skidder_indexer::packer::{pack_hours, PackOptions};

use report::Table;

#[derive(Parser)]
#[command(about = "Skidder's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Opts {
    /// Raw bytes of generated corpus (suffixes K, M, G).
    #[arg(long, default_value = "2G", value_parser = parse_size)]
    size: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the corpus and stores go. Defaults are under the workspace's
    /// `target/`, wherever cargo runs the harness from (`benches/`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-work"))]
    work: PathBuf,
    /// Bytes sent through Kafka for the end-to-end rate.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    kafka_bytes: u64,
    /// Bytes tantivy indexes for its baseline rate.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    baseline_bytes: u64,
    /// Runs per query and per ripgrep search; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The skidder binary for the Kafka path.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/skidder"))]
    skidder: PathBuf,
    /// Skip the S3 (moto) search rows.
    #[arg(long)]
    no_s3: bool,
    /// Skip the Kafka path.
    #[arg(long)]
    no_kafka: bool,
    /// Search: run only the queries whose name contains this
    /// (e.g. `--only needle`).
    #[arg(long)]
    only: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything below, one table.
    All(Opts),
    /// Indexing rates, the per-stage split and the baselines.
    Index(Opts),
    /// Only the end-to-end Kafka path.
    Kafka(Opts),
    /// Search latency and pruning on the local and S3 stores.
    Search(Opts),
    /// Each real dataset in ../shared/data: rate and size.
    Datasets(Opts),
    /// Internal: index files in this process and print a JSON report.
    #[command(hide = true)]
    Inproc {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        store: PathBuf,
        /// Stall data uploads and report memory after this many seconds.
        #[arg(long)]
        stall: Option<u64>,
        files: Vec<PathBuf>,
    },
    /// Internal: the tantivy baseline, printed as JSON.
    #[command(hide = true)]
    Tantivy {
        #[arg(long)]
        dir: PathBuf,
        files: Vec<PathBuf>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim().trim_end_matches(['B', 'b']);
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<f64>()
        .map(|n| (n * mult as f64) as u64)
        .map_err(|e| format!("size {s:?}: {e}"))
}

fn data_dir() -> PathBuf {
    skidder_common::testing::shared_data_dir()
}

/// The indexer settings of every run: the generated records' fields, with
/// the labels promtail's Kubernetes defaults give (namespace, pod,
/// container) plus the level.
fn bench_config(store: &Path, extra: &str) -> String {
    format!(
        r#"{extra}
[store]
url = "file://{}"
[parse]
app = {{ template = "{{service}}" }}
tenant = {{ fixed = "bench" }}
label_fields = ["level", "kubernetes.namespace_name", "kubernetes.pod_name", "kubernetes.container_name"]
"#,
        store.display()
    )
}

fn write_config(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    IndexerConfig::from_file(&p.to_string_lossy()).context("bench config")?;
    Ok(p)
}

/// Runs the in-process indexer in a child process of this harness.
fn inproc(config: &Path, store: &Path, files: &[PathBuf], stall: Option<u64>) -> Result<RunReport> {
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

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn main() -> Result<()> {
    // `cargo bench` appends `--bench`; it means nothing here.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let cli = Cli::parse_from(args);
    match cli.cmd {
        Cmd::Inproc {
            config,
            store,
            stall,
            files,
        } => {
            let cfg = IndexerConfig::from_file(&config.to_string_lossy())?;
            let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&store)?);
            let r =
                skidder_benches::inproc::run(&cfg, local, &files, stall.map(Duration::from_secs))
                    .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&r)?);
            // A stalled pipeline never drains; leave without waiting for it.
            std::process::exit(0);
        }
        Cmd::Tantivy { dir, files } => {
            let _ = std::fs::remove_dir_all(&dir);
            let r = baselines::tantivy_index(&files, &dir)?;
            let _ = std::fs::remove_dir_all(&dir);
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::All(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            index(&o, &c, &mut t)?;
            search_rows(&o, &c, &mut t)?;
            datasets(&o, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Index(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            index(&o, &c, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Kafka(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            kafka_rows(&o, &c, &mut t, None)?;
            t.finish(&o.work)
        }
        Cmd::Search(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            search_rows(&o, &c, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Datasets(o) => {
            let mut t = Table::new(&o);
            datasets(&o, &mut t)?;
            t.finish(&o.work)
        }
    }
}

fn generated(o: &Opts, t: &mut Table) -> Result<corpus::Corpus> {
    let started = Instant::now();
    let c = corpus::generate(&data_dir(), &o.work.join("corpus"), o.seed, o.size)?;
    t.note(format!(
        "corpus: {:.0} MB, {} records of generated Kubernetes JSON logs (seed {}, {} files), ready in {:.0} s",
        mb(c.bytes),
        c.records,
        o.seed,
        c.files.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(c)
}

fn store_dir(o: &Opts) -> PathBuf {
    o.work.join(format!("store-{}-{}", o.seed, o.size))
}

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

fn index(o: &Opts, c: &corpus::Corpus, t: &mut Table) -> Result<()> {
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
        kafka_rows(o, c, t, Some(tv_rate))?;
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

/// The end-to-end path: a real broker and the real `skidder indexer`.
fn kafka_rows(o: &Opts, c: &corpus::Corpus, t: &mut Table, tv_rate: Option<f64>) -> Result<()> {
    let kfiles = baselines::prefix_files(&c.files, o.kafka_bytes);
    let broker = skidder_common::testing::TansuBroker::start();
    // tansu holds every fetch for the whole fetch.wait.max.ms, which
    // paces it to a few MB/s; a shorter wait made it lose its place
    // near the end, so the default stays and the wall time is long.
    broker.create_topic("logs", KAFKA_PARTITIONS as u32);
    let t0 = Instant::now();
    let (records, bytes) = kafka::produce(
        &broker.bootstrap(),
        "logs",
        KAFKA_PARTITIONS,
        &kfiles,
        o.kafka_bytes,
    )
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
    let k = kafka::run_indexer(&skidder, &kcfg, &metrics_addr, records, bytes)
        .map_err(anyhow::Error::msg)?;
    let krate = mb(bytes) / k.cpu_s;
    t.row(
            "indexing",
            "Kafka (tansu) -> skidder indexer -> local store",
            format!("{krate:.0} MB/s per CPU-s ({:.0} MB, {records} records, {:.1} CPU-s, {:.1} s wall; produced in {produce_s:.0} s beforehand)", mb(bytes), k.cpu_s, k.wall_s),
            tv_rate.map_or(String::new(), |tv| format!("{:.1}x tantivy; ", krate / tv)) + "Episilia 10, Quickwit 7.5-13",
            ">= 100 MB/s per CPU-s",
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

fn storage_rows(t: &mut Table, name: &str, raw: u64, s: &storage::StoreReport) {
    let stored = s.data_bytes + s.index_bytes;
    t.row(
        "storage",
        &format!("{name}: raw / stored (data + index)"),
        format!(
            "{:.1}x ({:.0} MB -> {:.1} MB data + {:.2} MB index, {} blocks)",
            raw as f64 / stored as f64,
            mb(raw),
            mb(s.data_bytes),
            mb(s.index_bytes),
            s.blocks
        ),
        "Episilia ~10x; Quickwit, Loki ~4x",
        ">= 10x (generated logs)",
    );
    t.row(
        "storage",
        &format!("{name}: index size, bloom false positives"),
        format!(
            "{:.2}% of raw; {:.2}% false positives",
            100.0 * s.index_bytes as f64 / raw as f64,
            100.0 * s.fp_rate()
        ),
        format!("{} absent tokens probed", s.probes),
        "<= 1% at <= 1% FP",
    );
}

fn search_rows(o: &Opts, c: &corpus::Corpus, t: &mut Table) -> Result<()> {
    let store = store_dir(o);
    if !store.join("tenant=bench").exists() {
        let cfg = write_config(&o.work, "bench-inproc.toml", &bench_config(&store, ""))?;
        inproc(&cfg, &store, &c.files, None)?;
    }
    let sel = r#"{level=~".+"}"#;
    let hour = 3_600_000_000_000i64;
    let start = c.start_ns;
    let end = start + (c.end_ns - start + hour - 1) / hour * hour;
    let needle = &c.needle;
    let s = |x: &str| x.to_string();
    let regex = "Failed password for (invalid user )?[a-z0-9]+ from";
    let cases = [
        QueryCase {
            name: "needle by field",
            logql: format!(r#"{sel} | trace_id="{needle}""#),
            rg: Some(vec![s("-F"), s("-c"), format!(r#""trace_id":"{needle}""#)]),
        },
        QueryCase {
            name: "needle by line filter",
            logql: format!(r#"{sel} |= "{needle}""#),
            rg: Some(vec![s("-F"), s("-c"), needle.clone()]),
        },
        QueryCase {
            name: "rare word",
            logql: format!(r#"{sel} |= "{}""#, corpus::RARE_WORD),
            rg: Some(vec![s("-F"), s("-c"), s(corpus::RARE_WORD)]),
        },
        QueryCase {
            name: "common word, full scan (counted)",
            logql: format!(r#"sum(count_over_time({sel} |= "info" [1h]))"#),
            rg: Some(vec![s("-F"), s("-c"), s("info")]),
        },
        QueryCase {
            name: "regex (counted)",
            logql: format!(r#"sum(count_over_time({sel} |~ "{regex}" [1h]))"#),
            rg: Some(vec![s("-c"), s(regex)]),
        },
        QueryCase {
            name: "count_over_time by level",
            logql: format!(r#"sum by (level) (count_over_time({sel} [1h]))"#),
            rg: Some(vec![s("-F"), s("-c"), s(r#""level":""#)]),
        },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(&store)?);
    // Index packs, as `skidder pack` writes them once the hours settle.
    let t0 = Instant::now();
    let packed = rt.block_on(pack_hours(
        &*local,
        &["bench".to_owned()],
        (hour_of(start), hour_of(end - 1)),
        &PackOptions::default(),
        &|| false,
    ))?;
    let listed = rt.block_on(skidder_common::storage::list_all(&*local, "tenant=bench/"))?;
    let bytes_of = |suffix: &str| -> u64 {
        listed
            .iter()
            .filter(|m| m.key.ends_with(suffix))
            .map(|m| m.size)
            .sum()
    };
    let (pack_bytes, slices_bytes) = (bytes_of(".pack"), bytes_of(".slices"));
    t.note(format!(
        "index packs: {} bytes ({:.2}% of raw); sliced blooms: {} bytes ({:.2}% of raw) in {} objects; for {} hours; this run packed {} hours in {:.1} s",
        pack_bytes,
        100.0 * pack_bytes as f64 / c.bytes as f64,
        slices_bytes,
        100.0 * slices_bytes as f64 / c.bytes as f64,
        listed.iter().filter(|m| m.key.ends_with(".slices")).count(),
        packed.hours_packed + packed.hours_current,
        packed.hours_packed,
        t0.elapsed().as_secs_f64()
    ));
    let mut stores: Vec<(&str, Arc<dyn ObjectStore>)> = vec![("local", local.clone())];
    let _moto;
    if !o.no_s3 {
        let moto = skidder_common::testing::MotoServer::start();
        let s3 = rt.block_on(async {
            let s3 = skidder_common::storage::S3Store::new("bench", "", &moto.s3_config()).await;
            s3.create_bucket().await.map(|_| s3)
        })?;
        let s3: Arc<dyn ObjectStore> = Arc::new(s3);
        let t0 = Instant::now();
        let n = rt.block_on(copy_store(&local, &s3))?;
        t.note(format!(
            "S3 store: moto, {n} objects uploaded in {:.0} s",
            t0.elapsed().as_secs_f64()
        ));
        stores.push(("S3 (moto)", s3));
        _moto = moto;
    }
    // What listing alone costs on each store: no cold query can be faster.
    let mut floors = std::collections::HashMap::new();
    for (sname, st) in &stores {
        let ms = rt
            .block_on(search::listing_floor(st, "bench", start, end, o.runs))
            .map_err(anyhow::Error::msg)?;
        t.note(format!(
            "{sname}: listing the {} hours in range, side by side, takes {ms:.1} ms (median of {}): the floor of every cold query",
            hour_of(end - 1) - hour_of(start) + 1,
            o.runs
        ));
        floors.insert(*sname, ms);
    }
    let wanted = |q: &&QueryCase| o.only.as_ref().is_none_or(|w| q.name.contains(w.as_str()));
    for q in cases.iter().filter(wanted) {
        let rg = match &q.rg {
            Some(args) => Some(baselines::rg_ms(args, &c.files, o.runs)?),
            None => None,
        };
        // With fewer of the packer's objects too, for the needle: the cold
        // cost each removes.
        let packs_only = Reads {
            packs: true,
            slices: false,
        };
        let neither = Reads {
            packs: false,
            slices: false,
        };
        let variants: &[Reads] = if q.name == "needle by field" {
            &[Reads::ALL, packs_only, neither]
        } else {
            &[Reads::ALL]
        };
        let runs = stores
            .iter()
            .flat_map(|(n, st)| variants.iter().map(move |&p| (*n, st, p)));
        for (sname, st, reads) in runs {
            let floor = floors.get(sname).copied().unwrap_or(0.0);
            let sname = match (reads.packs, reads.slices) {
                (true, true) => sname.to_owned(),
                (true, false) => format!("{sname}, packs but no sliced blooms"),
                _ => format!("{sname}, neither packs nor sliced blooms"),
            };
            let step = q.logql.starts_with("sum").then_some(hour);
            let r = rt
                .block_on(search::run(
                    st.clone(),
                    reads,
                    "bench",
                    q,
                    start,
                    end,
                    step,
                    o.runs,
                ))
                .map_err(anyhow::Error::msg)?;
            let target = match q.name {
                "needle by field" => ">= 20x rg, < 1% of blocks fetched",
                "common word, full scan (counted)" => ">= 1 GB/s of raw log per core",
                _ => "",
            };
            let base = match rg {
                Some(ms) => format!(
                    "rg {ms:.0} ms: skidder {:.1}x faster cold, {:.1}x warm; listing alone {floor:.0} ms, so cold can reach {:.1}x at best",
                    ms / r.median_ms,
                    ms / r.warm_median_ms,
                    ms / floor.max(f64::MIN_POSITIVE)
                ),
                None => String::new(),
            };
            let scan_rate = mb(r.bytes_scanned) / (r.warm_median_ms / 1e3) / 2.0;
            t.row(
                &format!("search, {sname}"),
                q.name,
                format!(
                    "cold {:.1} ms, {:.2} MB fetched; warm {:.1} ms, {:.2} MB fetched; {} of {} blocks scanned ({:.2}% pruned); {:.0} MB/s/core scanned (warm); {}{}",
                    r.median_ms,
                    mb(r.bytes_fetched),
                    r.warm_median_ms,
                    mb(r.warm_bytes_fetched),
                    r.blocks_scanned,
                    r.blocks_listed,
                    100.0 * r.pruned(),
                    scan_rate,
                    r.result,
                    if r.warnings > 0 { format!("; {} warnings", r.warnings) } else { String::new() }
                ),
                base,
                target,
            );
        }
    }
    Ok(())
}

/// Copies every object of one store to another; returns how many.
async fn copy_store(from: &Arc<dyn ObjectStore>, to: &Arc<dyn ObjectStore>) -> Result<usize> {
    use futures::StreamExt;
    let objs = skidder_common::storage::list_all(&**from, "").await?;
    let n = objs.len();
    let results: Vec<_> = futures::stream::iter(objs)
        .map(|m| async move {
            let body = from.get(&m.key).await?;
            to.put(&m.key, body).await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}

/// Indexes each real dataset as it is, one store each.
fn datasets(o: &Opts, t: &mut Table) -> Result<()> {
    let data = data_dir();
    let sets: Vec<(&str, Vec<PathBuf>)> = vec![
        ("zeek (NDJSON)", glob(&data.join("zeek"), "json")),
        ("suricata (NDJSON)", glob(&data.join("suricata"), "ndjson")),
        (
            "elastic nginx status (NDJSON)",
            vec![data.join("elastic/nginxplus_status.ndjson")],
        ),
        ("loghub (plain text)", glob(&data.join("loghub"), "log")),
        ("elastic apache + auth + kafka (plain text)", {
            let mut v = vec![
                data.join("elastic/apache_access.log"),
                data.join("elastic/auth.log"),
            ];
            v.extend(glob(&data.join("elastic/kafka_broker_logs"), ""));
            v
        }),
    ];
    std::fs::create_dir_all(&o.work)?;
    for (name, files) in sets {
        if files.is_empty() {
            bail!("dataset {name}: no files under {}", data.display());
        }
        let store = o.work.join("store-dataset");
        let cfg = write_config(
            &o.work,
            "bench-dataset.toml",
            &format!(
                "[store]\nurl = \"file://{}\"\n[parse]\ntenant = {{ fixed = \"bench\" }}\n",
                store.display()
            ),
        )?;
        let r = inproc(&cfg, &store, &files, None)?;
        let s = storage::report(&store, 2_000).map_err(anyhow::Error::msg)?;
        t.row(
            "datasets",
            &format!("{name}: indexing"),
            format!(
                "{:.0} MB/s per CPU-s ({:.1} MB, {} records)",
                mb(r.raw_bytes) / r.cpu_s,
                mb(r.raw_bytes),
                r.records
            ),
            "",
            "",
        );
        storage_rows(t, name, r.raw_bytes, &s);
        let _ = std::fs::remove_dir_all(&store);
    }
    Ok(())
}

/// Files directly or recursively under `dir` ending in `ext` (any when empty).
fn glob(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with("LICENSE")
                && !name.starts_with("README")
                && (ext.is_empty() || name.ends_with(ext))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
