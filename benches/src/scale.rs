//! The scale benchmark: what a query costs in store requests when a
//! tenant's blocks are shaped like 1 TB a day.
//!
//! The store is built by the real indexer pipeline from unkeyed records:
//! every app writes to every partition, and each (app, partition) is cut
//! at every flush, as `blocks.flush_interval_secs` (120 s) cuts it in
//! production. So an hour holds `apps x partitions x flushes` blocks, as
//! the paper model of the scale issue has it, only with fewer apps,
//! partitions and records. Every hour but the newest is packed (index
//! packs and sliced blooms), as `skidder pack` leaves a store.
//!
//! Queries run on a cold engine against an S3 server behind the fault
//! proxy, which delays every request by a fixed latency: request counts
//! then turn into the time a real S3 user would see. Each row counts the
//! requests by operation (`skidder_store_requests_total`).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use skidder_common::format::layout::NS_PER_HOUR;
use skidder_common::storage::{LocalStore, ObjectStore, RequestCounters, OPS};
use skidder_common::testing::SeededRng;
use skidder_indexer::config::{AppSource, IndexerConfig, TenantSource};
use skidder_indexer::metrics::Metrics as IndexerMetrics;
use skidder_indexer::models::{Control, Item, RawBatch};
use skidder_indexer::queue::Sender;
use skidder_searcher::api::{run_range, RangeRequest};
use skidder_searcher::engine::{Direction, Engine, EngineConfig};
use skidder_searcher::metrics::Metrics;

/// The tenant every record belongs to.
pub const TENANT: &str = "scale";
/// Blocks cut per (app, partition) per hour at the default 120 s flush.
pub const FLUSHES_PER_HOUR: u32 = 30;
/// The first hour of the store, since the epoch (2026-11-21 00:00 UTC).
pub const FIRST_HOUR: i64 = 498_672;

/// How many of each thing the store has.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub apps: u32,
    pub partitions: u32,
    pub hours: u32,
    /// Records per block: per (app, partition, flush).
    pub records: u32,
}

impl Shape {
    /// Blocks in one hour.
    pub fn blocks_per_hour(&self) -> u64 {
        u64::from(self.apps) * u64::from(self.partitions) * u64::from(FLUSHES_PER_HOUR)
    }

    /// The app a record of `id` goes to; `app-0007`.
    pub fn app(i: u32) -> String {
        format!("app-{i:04}")
    }
}

/// The store built, and the needle: a trace id that is in it once.
pub struct Built {
    pub needle: String,
    pub needle_app: String,
    /// The hour the needle is in (the first one, packed).
    pub needle_hour: i64,
    pub records: u64,
    /// Blocks the indexer wrote, and the PUTs it made for them.
    pub blocks: u64,
    pub puts: u64,
}

fn trace_id(rng: &mut SeededRng) -> String {
    format!("{:016x}{:016x}", rng.next(), rng.next())
}

/// The indexer settings: app from the record, one tenant, `level` a label.
pub fn config(store: &Path) -> IndexerConfig {
    let mut cfg = IndexerConfig::default();
    cfg.store.url = format!("file://{}", store.display());
    cfg.parse.app = AppSource::Template("{app}".into());
    cfg.parse.tenant = TenantSource::Fixed(TENANT.into());
    cfg.parse.label_fields = vec!["level".into()];
    cfg.parse.timestamp_fields = vec!["ts".into()];
    cfg
}

/// Builds the store at `dir` with the real pipeline: per hour, per flush,
/// one batch per partition holding `records` lines of every app, then a
/// flush that cuts every open block.
pub fn build(dir: &Path, shape: Shape, seed: u64) -> Result<Built, String> {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::new(dir).map_err(|e| format!("store {}: {e}", dir.display()))?);
    let cfg = config(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut rng = SeededRng::new(seed);
    // The needle: one record, somewhere in the first hour.
    let needle_at = (
        rng.below(FLUSHES_PER_HOUR as usize) as u32,
        rng.below(shape.partitions as usize) as u32,
        rng.below(shape.apps as usize) as u32,
    );
    let needle = trace_id(&mut rng);
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let mut records = 0u64;
    let feed = |q: &Sender<Item<RawBatch>>, _pause: &AtomicBool| {
        let mut offsets = vec![0i64; shape.partitions as usize];
        for h in 0..shape.hours {
            for f in 0..FLUSHES_PER_HOUR {
                let slot_ms = (FIRST_HOUR + i64::from(h)) * 3_600_000 + i64::from(f) * 120_000;
                for p in 0..shape.partitions {
                    let mut batch = RawBatch::new("logs".into(), p as i32);
                    for a in 0..shape.apps {
                        for r in 0..shape.records {
                            let id = if h == 0 && (f, p, a) == needle_at && r == 0 {
                                needle.clone()
                            } else {
                                trace_id(&mut rng)
                            };
                            let ts = slot_ms + rng.below(120_000) as i64;
                            let line = format!(
                                r#"{{"ts":{ts},"app":"{}","level":"{}","trace_id":"{id}","msg":"request {} served in {} ms"}}"#,
                                Shape::app(a),
                                rng.pick(&levels),
                                rng.below(100_000),
                                rng.below(900)
                            );
                            batch.push(offsets[p as usize], None, line.as_bytes());
                            offsets[p as usize] += 1;
                            records += 1;
                        }
                    }
                    if q.push(Item::Data(batch)).is_err() {
                        return;
                    }
                }
                let flush = Item::Control(Control::Flush {
                    partitions: None,
                    forget: false,
                });
                if q.push(flush).is_err() {
                    return;
                }
            }
        }
    };
    let metrics = Arc::new(IndexerMetrics::new());
    skidder_indexer::pipeline::run_with_source(&cfg, store, rt.handle(), metrics.clone(), feed)
        .map_err(|e| format!("indexing: {e}"))?;
    let puts = metrics.store_requests.requests("put", "uploader")
        + metrics.store_requests.requests("put_if_absent", "uploader");
    Ok(Built {
        needle,
        needle_app: Shape::app(needle_at.2),
        needle_hour: FIRST_HOUR,
        records,
        blocks: metrics.blocks_written.get(),
        puts,
    })
}

/// One query's cost on a cold engine.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// Requests by operation, in [`OPS`] order.
    pub requests: [u64; 7],
    pub bytes_fetched: u64,
    /// Requests for sliced blooms, an hour's or a day's (heads and rows).
    pub slices: u64,
    /// Of those, a day's (and the LIST that finds them): read once for all
    /// its hours.
    pub day_slices: u64,
    /// LISTs of runs of a day's settled hours (`listing_runs`): paged by
    /// the objects of the hours, not one per hour.
    pub runs: u64,
    /// Requests an answer makes once, whatever it spans: the tenant's
    /// retention cut-offs, and the LIST of tenants that explains an empty
    /// answer.
    pub once: u64,
    pub ms: f64,
    /// Lines returned, or the number of series.
    pub result: String,
}

impl Cost {
    pub fn total(&self) -> u64 {
        self.requests.iter().sum()
    }

    pub fn of(&self, op: &str) -> u64 {
        OPS.iter()
            .position(|o| *o == op)
            .map_or(0, |i| self.requests[i])
    }
}

/// Runs `logql` over `[start, end)` on a fresh engine over `store`.
pub async fn cold(
    store: &Arc<dyn ObjectStore>,
    logql: &str,
    start: i64,
    end: i64,
    step: Option<i64>,
) -> Result<Cost, String> {
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            max_hours: 1_000_000,
            ..EngineConfig::default()
        },
        metrics.clone(),
    );
    let req = RangeRequest {
        query: logql,
        start,
        end,
        limit: 1000,
        direction: Direction::Backward,
        step,
        tenant_hint: false,
    };
    let t = Instant::now();
    let (v, _) = run_range(&engine, TENANT, req)
        .await
        .map_err(|e| format!("{logql}: {e:?}"))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let counters: &RequestCounters = &metrics.store_requests;
    let totals = counters.totals();
    let result = match v["resultType"].as_str() {
        Some("streams") => {
            let lines: usize = v["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum();
            format!("{lines} lines")
        }
        _ => format!("{} series", v["result"].as_array().map_or(0, Vec::len)),
    };
    Ok(Cost {
        requests: totals.map(|(_, n)| n),
        bytes_fetched: metrics.bytes_fetched.get(),
        slices: counters.of_caller("slices") + counters.of_caller("day_slices"),
        day_slices: counters.of_caller("day_slices"),
        runs: counters.requests("list", "listing_runs"),
        once: counters.of_caller("tenants") + counters.of_caller("retention"),
        ms,
        result,
    })
}

/// The hours `[first, first + n)` as a query range in nanoseconds.
pub fn hours(first: i64, n: i64) -> (i64, i64) {
    (first * NS_PER_HOUR, (first + n) * NS_PER_HOUR)
}

/// A trace id that no record holds: the twin of a needle query, whose
/// cost is what every hour costs when nothing in it matches.
pub const ABSENT: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Fits `y = a + b * x` through two points; `None` when the x are equal.
pub fn line_through(p: (f64, f64), q: (f64, f64)) -> Option<(f64, f64)> {
    let dx = q.0 - p.0;
    if dx == 0.0 {
        return None;
    }
    let b = (q.1 - p.1) / dx;
    Some((p.1 - b * p.0, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_through_two_points() {
        // Through (1, 5) and (3, 9): slope (9 - 5) / (3 - 1) = 2, and
        // 5 = a + 2 * 1 gives a = 3.
        assert_eq!(line_through((1.0, 5.0), (3.0, 9.0)), Some((3.0, 2.0)));
        assert_eq!(line_through((2.0, 5.0), (2.0, 9.0)), None);
    }

    #[test]
    fn blocks_per_hour_is_apps_by_partitions_by_flushes() {
        let s = Shape {
            apps: 300,
            partitions: 32,
            hours: 1,
            records: 1,
        };
        // The scale issue's model: 300 x 32 x 30 = 288,000.
        assert_eq!(s.blocks_per_hour(), 288_000);
    }
}
