//! Runs LogQL queries the way the searcher serves them (`api::run_range`),
//! each on a fresh engine so no index or listing is cached between runs,
//! and reports the median latency, the bytes fetched and the pruning.

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
    pub median_ms: f64,
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

/// Runs `q` `runs` times against `store`, each time on a cold engine.
pub async fn run(
    store: Arc<dyn ObjectStore>,
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
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::new(
            store.clone(),
            EngineConfig {
                max_hours: 1_000_000,
                ..EngineConfig::default()
            },
            metrics.clone(),
        );
        let t = Instant::now();
        let (v, stats) = run_range(
            &engine,
            tenant,
            RangeRequest {
                query: &q.logql,
                start,
                end,
                limit: 100,
                direction: Direction::Backward,
                step,
            },
        )
        .await
        .map_err(|e| format!("{}: {e:?}", q.name))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        report = QueryReport {
            median_ms: 0.0,
            bytes_fetched: metrics.bytes_fetched.get(),
            blocks_listed: stats.blocks_listed,
            blocks_scanned: stats.blocks_scanned,
            bytes_scanned: stats.bytes_scanned,
            result: summarize(&v),
            warnings: stats.warnings.len(),
        };
    }
    report.median_ms = crate::measure::median(times);
    Ok(report)
}
