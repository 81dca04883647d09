//! `skidder retention`: deletes what a retention policy has expired, once
//! or on a timer; `skidder compact --retention` runs the same pass after
//! each compaction pass. See `skidder_indexer::retention` for the rules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use skidder_common::format::layout::{now_ns, NS_PER_HOUR};
use skidder_common::service::{load_toml, Shutdown};
use skidder_common::storage::ObjectStore;
use skidder_indexer::metrics::MaintenanceMetrics;
use skidder_indexer::packer::tenants;
use skidder_indexer::retention::{
    delete_planned, expired_dead_letters, plan_tenant, Policy, PolicyFile, Progress,
    RetentionOptions, TenantReport,
};

use crate::flags::{runtime, stop_after_pass, StoreFlags};

#[derive(Args)]
pub struct RetentionFlags {
    #[command(flatten)]
    pub store: StoreFlags,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// Only these tenants (repeatable); by default every tenant.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// Print what would be deleted, and publish and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run a pass this often until stopped, e.g. `1h`; by default once.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,
    /// Serve the pass's metrics on `/metrics` here, e.g. `0.0.0.0:9465`.
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

/// The policy, and how long searchers need to learn new cut-offs.
#[derive(Args, Clone)]
pub struct PolicyFlags {
    /// The policy file (TOML with a `[retention]` table; see the README).
    #[arg(long = "retention", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Wait this long between publishing new cut-offs and deleting what
    /// they hide: longer than every searcher's `listing_cache_secs` plus
    /// its `query_timeout_secs`.
    #[arg(
        long,
        env = "SKIDDER_RETENTION_GRACE",
        default_value = "3m",
        value_parser = humantime::parse_duration
    )]
    pub retention_grace: Duration,
}

impl PolicyFlags {
    pub fn load(&self) -> anyhow::Result<Option<Policy>> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let path = path.to_string_lossy();
        let file: PolicyFile = load_toml(&path)?;
        Ok(Some(file.retention))
    }
}

pub fn run(flags: RetentionFlags) -> anyhow::Result<ExitCode> {
    skidder_indexer::failpoints::setup();
    let Some(policy) = flags.policy.load()? else {
        bail!("name the policy with --retention <file>");
    };
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let rt = runtime()?;
    let Some(store) = flags.store.open(&rt)? else {
        bail!("name the store with --store or SKIDDER_STORE");
    };
    let metrics = MaintenanceMetrics::new();
    let store = metrics.store_requests.wrap(store, "maintenance");
    if let Some(addr) = &flags.metrics_listen {
        rt.block_on(skidder_indexer::pipeline::serve_metrics(
            addr,
            metrics.registry.clone(),
        ))?;
    }
    loop {
        let pass = rt.block_on(async {
            let tenants = if flags.tenants.is_empty() {
                tenants(&*store).await.context("listing tenants")?
            } else {
                flags.tenants.clone()
            };
            let grace = flags.policy.retention_grace;
            retention_pass(&*store, &policy, &tenants, grace, flags.dry_run, &metrics).await
        });
        match pass {
            Ok(()) => {}
            Err(e) if flags.every.is_some() => {
                tracing::error!(error = %format!("{e:#}"), "retention pass failed");
            }
            Err(e) => return Err(e),
        }
        if stop_after_pass(&rt, flags.every, &shutdown) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// One pass over `tenants`: publish every tenant's cut-offs, wait until
/// searchers have had `grace` to read them, delete, then delete expired
/// dead letters. A dry run prints the plan instead.
pub async fn retention_pass(
    store: &dyn ObjectStore,
    policy: &Policy,
    tenants: &[String],
    grace: Duration,
    dry_run: bool,
    metrics: &MaintenanceMetrics,
) -> anyhow::Result<()> {
    let result = pass(store, policy, tenants, grace, dry_run, metrics).await;
    if !dry_run {
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        metrics.retention_passes.with_label_values(&[outcome]).inc();
        if result.is_ok() {
            metrics.retention_last_success.set(now_ns() as f64 / 1e9);
        }
    }
    result
}

async fn pass(
    store: &dyn ObjectStore,
    policy: &Policy,
    tenants: &[String],
    grace: Duration,
    dry_run: bool,
    metrics: &MaintenanceMetrics,
) -> anyhow::Result<()> {
    let now = now_ns();
    let opts = RetentionOptions {
        grace,
        dry_run,
        now_ns: now,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}] {wide_bar} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let progress = |p: Progress| match p {
        Progress::Listed(n) => {
            bar.set_message(format!("listed {n} objects"));
            bar.tick();
        }
        Progress::Deleted { done, total } => {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let mut plans: Vec<(TenantReport, Vec<String>)> = Vec::new();
    for tenant in tenants {
        bar.set_message(format!("listing tenant {tenant}"));
        let plan = plan_tenant(store, policy, tenant, &opts, &progress)
            .await
            .with_context(|| format!("planning retention of tenant {tenant}"))?;
        plans.push(plan);
    }
    let dead = match policy.dead_letters {
        Some(age) => expired_dead_letters(store, age, now)
            .await
            .context("listing dead letters")?,
        None => Vec::new(),
    };
    if dry_run {
        bar.finish_and_clear();
        for (r, _) in &plans {
            print_plan(r, now);
        }
        let bytes: u64 = dead.iter().map(|m| m.size).sum();
        println!(
            "dead letters: would delete {} objects, {bytes} bytes",
            dead.len()
        );
        return Ok(());
    }
    // Searchers must have read the cut-offs before anything they hide
    // goes: a reader never sees half an hour.
    let ready_at = plans
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(r, _)| r.cutoffs.written_ns)
        .max()
        .map(|w| w.saturating_add(i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX)));
    if let Some(ready_at) = ready_at {
        let wait = ready_at.saturating_sub(now_ns());
        if wait > 0 {
            bar.set_message(format!(
                "waiting {:?} for searchers",
                Duration::from_nanos(wait as u64)
            ));
            tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
        }
    }
    for (r, keys) in &plans {
        bar.set_message(format!("deleting from tenant {}", r.tenant));
        delete_planned(store, keys, &progress)
            .await
            .with_context(|| format!("deleting expired hours of tenant {}", r.tenant))?;
        let t = [r.tenant.as_str()];
        metrics
            .retention_deleted_bytes
            .with_label_values(&t)
            .inc_by(r.deleted_bytes);
        metrics
            .retention_deleted_objects
            .with_label_values(&t)
            .inc_by(r.deleted_objects);
        let kept = |stored: u64, deleted: u64| i64::try_from(stored - deleted).unwrap_or(i64::MAX);
        metrics
            .tenant_stored_bytes
            .with_label_values(&t)
            .set(kept(r.stored_bytes, r.deleted_bytes));
        metrics
            .tenant_stored_objects
            .with_label_values(&t)
            .set(kept(r.stored_objects, r.deleted_objects));
        let age = r
            .oldest_hour_kept
            .map_or(0, |h| (now - h.saturating_mul(NS_PER_HOUR)) / 1_000_000_000);
        metrics
            .retention_oldest_hour_age
            .with_label_values(&t)
            .set(age);
        tracing::info!(
            tenant = %r.tenant,
            deleted_objects = r.deleted_objects,
            deleted_bytes = r.deleted_bytes,
            units = r.deleted.len(),
            "retention deleted expired hours"
        );
    }
    let dead_keys: Vec<String> = dead.iter().map(|m| m.key.clone()).collect();
    delete_planned(store, &dead_keys, &progress)
        .await
        .context("deleting expired dead letters")?;
    bar.finish_and_clear();
    if !dead_keys.is_empty() {
        tracing::info!(
            objects = dead_keys.len(),
            "retention deleted expired dead letters"
        );
    }
    Ok(())
}

/// The dry run's plan for one tenant, one line per hour or app folder.
fn print_plan(r: &TenantReport, now: i64) {
    println!(
        "tenant {}: stores {} objects, {} bytes; would delete {} objects, {} bytes",
        r.tenant, r.stored_objects, r.stored_bytes, r.deleted_objects, r.deleted_bytes
    );
    for (unit, bytes) in &r.deleted {
        println!("  delete {unit} ({bytes} bytes)");
    }
    if let Some(h) = r.oldest_hour_kept {
        let age = Duration::from_secs(((now - h * NS_PER_HOUR) / 1_000_000_000).max(0) as u64);
        println!(
            "  oldest hour kept: {} ago",
            humantime::format_duration(age)
        );
    }
}
