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
mod datasets;
mod day_slices;
mod index_rows;
mod report;
mod scale_rows;
mod search_rows;

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
    /// Store requests of cold queries on stores shaped like 1 TB/day,
    /// through an S3 server with a fixed latency; extrapolated.
    Scale(scale_rows::ScaleOpts),
    /// Slicing a day's bloom filters whole at the 1 TB/day shape: time
    /// and peak memory, against reading the day's packs.
    DaySlices(day_slices::DaySlicesOpts),
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
            index_rows::index(&o, &c, &mut t)?;
            search_rows::search_rows(&o, &c, &mut t)?;
            datasets::datasets(&o, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Index(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            index_rows::index(&o, &c, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Kafka(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            index_rows::kafka_rows(&o, &c, &mut t, None)?;
            t.finish(&o.work)
        }
        Cmd::Search(o) => {
            let mut t = Table::new(&o);
            let c = generated(&o, &mut t)?;
            search_rows::search_rows(&o, &c, &mut t)?;
            t.finish(&o.work)
        }
        Cmd::Scale(o) => scale_rows::scale_rows(&o),
        Cmd::DaySlices(o) => day_slices::day_slices(&o),
        Cmd::Datasets(o) => {
            let mut t = Table::new(&o);
            datasets::datasets(&o, &mut t)?;
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
