//! Step 8 for a log query: the first `limit` matching lines in time order.
//! Blocks are scanned most promising first, a batch at a time, and the
//! scan stops as soon as no block left can beat the `limit`-th line, so a
//! query that finds its lines early reads (and is charged) little.

use std::sync::Arc;

use super::prune::raw_bytes;
use super::scan::Scan;
use super::{Direction, Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::{Labels, LinePipeline};
use crate::logql::LogQuery;

/// One matching line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ts: i64,
    pub labels: Arc<Labels>,
    pub line: String,
}

/// Orders entries by time in `direction`; ties by labels then line, so
/// every evaluation gives the same order.
pub fn sort_entries(entries: &mut [Entry], direction: Direction) {
    entries.sort_by(|a, b| {
        let o =
            a.ts.cmp(&b.ts)
                .then_with(|| a.labels.cmp(&b.labels))
                .then_with(|| a.line.cmp(&b.line));
        match direction {
            Direction::Forward => o,
            Direction::Backward => o.reverse(),
        }
    });
}

impl Engine {
    /// A log query: the first `limit` matching lines in `direction` order.
    pub async fn logs(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
        limit: usize,
        direction: Direction,
        prune: bool,
    ) -> Result<(Vec<Entry>, Stats), SearchError> {
        let mut stats = Stats::default();
        let mut cands = self.candidates(tenant, range, q, prune, &mut stats).await?;
        // Most promising blocks first, so the limit is certain early.
        match direction {
            Direction::Backward => cands.sort_by_key(|c| std::cmp::Reverse(c.idx.max_time_ns)),
            Direction::Forward => cands.sort_by_key(|c| c.idx.min_time_ns),
        }
        let pipeline = LinePipeline::new(q);
        let mut entries: Vec<Entry> = Vec::new();
        let mut i = 0;
        while i < cands.len() {
            // Stop once no remaining block can beat the limit-th line.
            if prune && entries.len() >= limit {
                if let Some(worst) = entries.last() {
                    let c = &cands[i].idx;
                    let hopeless = match direction {
                        Direction::Backward => c.max_time_ns < worst.ts,
                        Direction::Forward => c.min_time_ns > worst.ts,
                    };
                    if hopeless {
                        break;
                    }
                }
            }
            let end = (i + self.cfg.fetch_concurrency.max(1)).min(cands.len());
            let batch = &cands[i..end];
            // Charged batch by batch: a log query that stops early at its
            // limit is only refused if it would really scan too much.
            self.charge(&mut stats, raw_bytes(batch))?;
            let scan = Scan {
                tenant,
                range,
                query: q,
                pipeline: &pipeline,
            };
            self.scan_chunk(
                batch,
                &scan,
                &mut stats,
                &mut |ts, labels, extracted, line| {
                    let labels = pipeline.result_labels(labels, extracted);
                    entries.push(Entry {
                        ts,
                        labels,
                        line: line.to_owned(),
                    });
                },
            )
            .await?;
            sort_entries(&mut entries, direction);
            entries.truncate(limit);
            i = end;
        }
        self.metrics.lines_matched.inc_by(entries.len() as u64);
        Ok((entries, stats))
    }
}
