//! Runs LogQL queries the way the searcher serves them (`api::run_range`)
//! and reports the median latency, the bytes fetched and the pruning.
//!
//! Each query is timed twice over. Cold: on a fresh engine, so every hour
//! is listed and every index fetched, as the first query after a searcher
//! starts. Warm: again on one engine that has served the query once, so
//! listings and decoded indexes come from its cache (data blocks never
//! do), as in a searcher that has been running; this is the state
//! ripgrep is measured in, with the raw files in the page cache.
//!
//! The store holds index packs and sliced blooms (`skidder pack`); runs
//! that read fewer of them ([`Reads`]) show what a cold query costs
//! without them.

use std::sync::Arc;
use std::time::Instant;

use skidder_common::storage::ObjectStore;
use skidder_searcher::api::{run_range, RangeRequest};
use skidder_searcher::engine::{Direction, Engine, EngineConfig};
use skidder_searcher::metrics::Metrics;

/// One query of the benchmark and its ripgrep equivalent.
pub struct QueryCase {
    pub name: &'static str,
    pub logql: String,
    /// Arguments to `rg` (before the paths), or none when rg has no
    /// equivalent.
    pub rg: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct QueryReport {
    /// Median latency on a fresh engine.
    pub median_ms: f64,
    /// Median latency on an engine that has run the query before.
    pub warm_median_ms: f64,
    /// Bytes fetched by a warm run: only data blocks.
    pub warm_bytes_fetched: u64,
    /// Index and data bytes read from the store.
    pub bytes_fetched: u64,
    pub blocks_listed: u64,
    pub blocks_scanned: u64,
    pub bytes_scanned: u64,
    /// Lines returned, or the sum of a metric's last values.
    pub result: String,
    pub warnings: usize,
}

impl QueryReport {
    /// Fraction of listed blocks never fetched.
    pub fn pruned(&self) -> f64 {
        if self.blocks_listed == 0 {
            return 0.0;
        }
        1.0 - self.blocks_scanned as f64 / self.blocks_listed as f64
    }
}

fn summarize(v: &serde_json::Value) -> String {
    match v["resultType"].as_str() {
        Some("streams") => {
            let n: usize = v["result"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s["values"].as_array().map_or(0, Vec::len))
                        .sum()
                })
                .unwrap_or(0);
            format!("{n} lines")
        }
        Some("matrix") => {
            let mut total = 0.0;
            let series = v["result"].as_array().map_or(0, Vec::len);
            for s in v["result"].as_array().into_iter().flatten() {
                for p in s["values"].as_array().into_iter().flatten() {
                    total += p[1]
                        .as_str()
                        .and_then(|x| x.parse::<f64>().ok())
                        .unwrap_or(0.0);
                }
            }
            format!("{series} series, total {total}")
        }
        _ => "?".into(),
    }
}

/// Which of `skidder pack`'s objects the searcher reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub packs: bool,
    pub slices: bool,
}

impl Reads {
    pub const ALL: Reads = Reads {
        packs: true,
        slices: true,
    };
}

fn engine(store: &Arc<dyn ObjectStore>, reads: Reads) -> (Engine, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            max_hours: 1_000_000,
            read_packs: reads.packs,
            read_slices: reads.slices,
            ..EngineConfig::default()
        },
        metrics.clone(),
    );
    (engine, metrics)
}

/// One timed run: milliseconds, the response and its stats.
async fn once(
    engine: &Engine,
    tenant: &str,
    q: &QueryCase,
    start: i64,
    end: i64,
    step: Option<i64>,
) -> Result<(f64, serde_json::Value, skidder_searcher::engine::Stats), String> {
    let req = RangeRequest {
        query: &q.logql,
        start,
        end,
        limit: 100,
        direction: Direction::Backward,
        step,
        tenant_hint: false,
    };
    let t = Instant::now();
    let (v, stats) = run_range(engine, tenant, req)
        .await
        .map_err(|e| format!("{}: {e:?}", q.name))?;
    Ok((t.elapsed().as_secs_f64() * 1e3, v, stats))
}

/// Runs `q` `runs` times against `store` on a cold engine each time, then
/// `runs` times on one warm engine, reading `reads`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Arc<dyn ObjectStore>,
    reads: Reads,
    tenant: &str,
    q: &QueryCase,
    start: i64,
    end: i64,
    step: Option<i64>,
    runs: usize,
) -> Result<QueryReport, String> {
    let mut times = Vec::new();
    let mut report = QueryReport::default();
    for _ in 0..runs {
        let (engine, metrics) = engine(&store, reads);
        let (ms, v, stats) = once(&engine, tenant, q, start, end, step).await?;
        times.push(ms);
        report = QueryReport {
            bytes_fetched: metrics.bytes_fetched.get(),
            blocks_listed: stats.blocks_listed,
            blocks_scanned: stats.blocks_scanned,
            bytes_scanned: stats.bytes_scanned,
            result: summarize(&v),
            warnings: stats.warnings.len(),
            ..QueryReport::default()
        };
    }
    report.median_ms = crate::measure::median(times);

    let (engine, metrics) = engine(&store, reads);
    once(&engine, tenant, q, start, end, step).await?;
    let mut warm = Vec::new();
    for _ in 0..runs {
        let before = metrics.bytes_fetched.get();
        let (ms, _, _) = once(&engine, tenant, q, start, end, step).await?;
        warm.push(ms);
        report.warm_bytes_fetched = metrics.bytes_fetched.get() - before;
    }
    report.warm_median_ms = crate::measure::median(warm);
    Ok(report)
}

/// The least any cold query over `[start, end)` pays: listing every hour
/// in range, side by side as the engine does. The searcher finds blocks
/// only by listing, so a cold query can never beat this; the median of
/// `runs`, in milliseconds.
pub async fn listing_floor(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    start: i64,
    end: i64,
    runs: usize,
) -> Result<f64, String> {
    use futures::StreamExt;
    use skidder_common::format::layout::{hour_of, hour_prefix};
    let concurrency = EngineConfig::default().index_fetch_concurrency.max(1);
    let prefixes: Vec<String> = (hour_of(start)..=hour_of(end - 1))
        .map(|h| hour_prefix(tenant, h))
        .collect();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let listed: Vec<_> = futures::stream::iter(&prefixes)
            .map(|p| skidder_common::storage::list_all(&**store, p))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for l in listed {
            l.map_err(|e| format!("listing: {e}"))?;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::measure::median(times))
}
