//! `skidder compact` and `skidder pack`: maintenance of settled hours, once
//! or on a timer. `compact` rewrites each app-hour's small blocks into a
//! few large ones under a manifest, deletes what the grace period has
//! freed, then packs; `pack` only writes index packs and sliced blooms, so
//! cold searches read an hour's indexes in one GET and rule out its blocks
//! with a few small ranged ones.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use skidder_common::format::layout::{hour_of, now_ns};
use skidder_common::service::Shutdown;
use skidder_common::storage::RequestCounters;
use skidder_indexer::compactor::{compact_hours, CompactOptions};
use skidder_indexer::metrics::MaintenanceMetrics;
use skidder_indexer::packer::{pack_hours, tenants, PackOptions};
use skidder_indexer::retention::Policy;

use crate::flags::{runtime, stop_after_pass, StoreFlags};
use crate::retention::{retention_pass, PolicyFlags};

#[derive(Args)]
pub struct PackFlags {
    #[command(flatten)]
    pub store: StoreFlags,
    /// Pack only these tenants (repeatable); by default every tenant.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// How far back to look, e.g. `48h` or `30d`.
    #[arg(long, default_value = "48h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// Pack an hour only once it ended at least this long ago, e.g. `10m`.
    /// Blocks that arrive later are still found; the next pass repacks it.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Run a pass this often until stopped, e.g. `15m`; by default once.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,
    /// Largest pack in MiB; a bigger hour gets several.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_pack_mib: u64,
    /// Repack every hour in range, even those whose packs are current (to
    /// replace a damaged pack; searchers skip one, at the cost of GETs).
    #[arg(long)]
    pub rewrite: bool,
    /// A day whose bloom filters are over this many MiB is not sliced
    /// whole; its hours' own serve. Slicing spills the filters, then the
    /// object, to `--spill-dir`: twice this on disk at most, and about
    /// 330 MiB of memory.
    #[arg(long, default_value_t = 16384)]
    pub max_day_slices_mib: u64,
    /// Where a day's filters are spilled while sliced (about 10 GB at
    /// 1 TB a day); the system's temp directory by default.
    #[arg(long)]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Serve the passes' metrics on `/metrics` here, e.g. `0.0.0.0:9465`.
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

#[derive(Args)]
pub struct CompactFlags {
    #[command(flatten)]
    pub pack: PackFlags,
    /// Raw MiB of log lines a compacted block holds at most.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub target_mib: u64,
    /// How long the small blocks a manifest replaced are kept after it is
    /// published, e.g. `30m`: longer than any query and any searcher's
    /// listing cache (`listing_cache_secs`).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Compact an app-hour once it has at least this many small blocks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_blocks: u64,
    /// Must equal the indexer's `parse.max_token_value_len`.
    #[arg(long, default_value_t = CompactOptions::default().max_token_value_len)]
    pub max_token_value_len: usize,
    /// After each pass, apply this retention policy (as `skidder retention`).
    #[command(flatten)]
    pub retention: PolicyFlags,
}

/// `list=12 get=340 put=24`: the requests made since `before`, by operation.
fn requests_since(counters: &RequestCounters, before: &[(&'static str, u64); 7]) -> String {
    let now = counters.totals();
    let parts: Vec<String> = now
        .iter()
        .zip(before)
        .filter(|((_, n), (_, b))| n > b)
        .map(|((op, n), (_, b))| format!("{op}={}", n - b))
        .collect();
    parts.join(" ")
}

pub fn run(flags: PackFlags) -> anyhow::Result<ExitCode> {
    run_passes(flags, None, None)
}

pub fn run_compact(flags: CompactFlags) -> anyhow::Result<ExitCode> {
    skidder_indexer::failpoints::setup();
    let opts = CompactOptions {
        target_raw_bytes: flags.target_mib << 20,
        grace_ns: i64::try_from(flags.grace.as_nanos()).unwrap_or(i64::MAX),
        min_sources: usize::try_from(flags.min_blocks).unwrap_or(usize::MAX),
        max_token_value_len: flags.max_token_value_len,
        ..Default::default()
    };
    let retention = match flags.retention.load()? {
        Some(policy) => Some((policy, flags.retention.retention_grace)),
        None => None,
    };
    run_passes(flags.pack, Some(opts), retention)
}

/// Runs passes over the settled hours until stopped: compaction first
/// when `compact` is set, then packing, then retention when a policy is
/// given.
fn run_passes(
    flags: PackFlags,
    compact: Option<CompactOptions>,
    retention: Option<(Policy, Duration)>,
) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let rt = runtime()?;
    let Some(store) = flags.store.open(&rt)? else {
        bail!("name the store with --store or SKIDDER_STORE");
    };
    // Each pass logs the requests it made: what packing costs on S3.
    let metrics = MaintenanceMetrics::new();
    let counters = &metrics.store_requests;
    let store = counters.wrap(store, "maintenance");
    if let Some(addr) = &flags.metrics_listen {
        rt.block_on(skidder_indexer::pipeline::serve_metrics(
            addr,
            metrics.registry.clone(),
        ))?;
    }
    let opts = PackOptions {
        max_pack_bytes: (flags.max_pack_mib << 20) as usize,
        rewrite: flags.rewrite,
        max_day_slices_bytes: flags.max_day_slices_mib.saturating_mul(1 << 20),
        spill_dir: flags.spill_dir.clone(),
        ..Default::default()
    };
    let stop = || shutdown.is_triggered();
    loop {
        let before = counters.totals();
        let now = now_ns();
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let first = hour_of(now.saturating_sub(nanos(flags.since)));
        // The last hour that ended at least `settle` ago.
        let last = hour_of(now.saturating_sub(nanos(flags.settle))) - 1;
        let pass = rt.block_on(async {
            let tenants = if flags.tenants.is_empty() {
                tenants(&*store).await.context("listing tenants")?
            } else {
                flags.tenants.clone()
            };
            if let Some(copts) = &compact {
                let c = compact_hours(&*store, &tenants, (first, last), copts, &stop).await;
                let outcome = if c.is_ok() { "ok" } else { "failed" };
                metrics.compactor_passes.with_label_values(&[outcome]).inc();
                let c = c.context("compacting")?;
                metrics.hours_compacted.inc_by(c.hours_compacted as u64);
                metrics.hours_failed.inc_by(c.hours_failed as u64);
                metrics
                    .compacted_blocks_written
                    .inc_by(c.blocks_written as u64);
                metrics.compacted_bytes_written.inc_by(c.bytes_written);
                metrics.compactor_objects_deleted.inc_by(c.deleted as u64);
                if c.hours_failed == 0 {
                    metrics.compactor_last_success.set(now_ns() as f64 / 1e9);
                }
                tracing::info!(
                    hours_listed = c.hours_listed,
                    hours_compacted = c.hours_compacted,
                    hours_failed = c.hours_failed,
                    sources = c.sources,
                    blocks_written = c.blocks_written,
                    bytes_written = c.bytes_written,
                    deleted = c.deleted,
                    lost_races = c.lost_races,
                    "compaction pass done"
                );
                if c.hours_failed > 0 && flags.every.is_none() {
                    bail!(
                        "{} hours could not be compacted (see the log)",
                        c.hours_failed
                    );
                }
            }
            let report = pack_hours(&*store, &tenants, (first, last), &opts, &stop)
                .await
                .context("packing")?;
            if let Some((policy, grace)) = &retention {
                retention_pass(&*store, policy, &tenants, *grace, false, &metrics).await?;
            }
            anyhow::Ok((tenants.len(), report))
        });
        match pass {
            Ok((tenants, report)) => {
                tracing::info!(
                    tenants,
                    hours_listed = report.hours_listed,
                    hours_packed = report.hours_packed,
                    hours_current = report.hours_current,
                    hours_failed = report.hours_failed,
                    indexes_packed = report.indexes_packed,
                    indexes_skipped = report.indexes_skipped,
                    days_sliced = report.days_sliced,
                    bytes_written = report.bytes_written,
                    requests = %requests_since(counters, &before),
                    "pack pass done"
                );
                if report.hours_failed > 0 && flags.every.is_none() {
                    bail!(
                        "{} hours could not be packed (see the log)",
                        report.hours_failed
                    );
                }
            }
            // On a timer, a failed pass (the store is down) is retried at
            // the next one; packs only ever save GETs.
            Err(e) if flags.every.is_some() => {
                tracing::error!(error = %format!("{e:#}"), "pack pass failed");
            }
            Err(e) => return Err(e),
        }
        if stop_after_pass(&rt, flags.every, &shutdown) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
