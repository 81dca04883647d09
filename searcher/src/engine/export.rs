//! Step 8 for an export: every matching line of a log query, with no
//! `limit`, handed over a batch of blocks at a time so that the whole
//! result is never in memory. Blocks are read oldest first, up to
//! `fetch_concurrency` at a time and up to `BATCH_RAW_BYTES` of raw lines
//! (at least one block), so a batch of compacted blocks (up to 128 MiB
//! each) stays as small as one of small blocks; each batch's lines come
//! back sorted by time. Batches overlap in time where blocks do (several partitions
//! write the same minutes), so the result is ordered within a batch only.
//!
//! An export is a background job, not an interactive query: it is not
//! charged to `max_bytes_scanned` (that limit protects the searcher from a
//! query it has to answer within its timeout).

use super::log_query::{sort_entries, Entry};
use super::prune::Candidate;
use super::scan::Scan;
use super::{Direction, Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::LinePipeline;
use crate::logql::LogQuery;

/// Raw line bytes a batch reads at most, unless one block alone is larger.
pub const BATCH_RAW_BYTES: u64 = 64 << 20;

/// A log query's matches, read batch by batch (`next_batch`).
pub struct LogBatches<'e> {
    engine: &'e Engine,
    tenant: String,
    range: TimeRange,
    query: LogQuery,
    pipeline: LinePipeline,
    cands: Vec<Candidate>,
    next: usize,
    /// What the batches read so far cost, and their warnings (a block
    /// missing or corrupt: the result has a hole).
    pub stats: Stats,
}

impl Engine {
    /// Prunes `q` over `range` and returns its candidate blocks, ready to
    /// be scanned batch by batch.
    pub async fn log_batches(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
    ) -> Result<LogBatches<'_>, SearchError> {
        let mut stats = Stats::default();
        let mut cands = self.candidates(tenant, range, q, true, &mut stats).await?;
        cands.sort_by(|a, b| {
            (a.idx.min_time_ns, &a.data_key).cmp(&(b.idx.min_time_ns, &b.data_key))
        });
        Ok(LogBatches {
            engine: self,
            tenant: tenant.to_owned(),
            range,
            query: q.clone(),
            pipeline: LinePipeline::new(q),
            cands,
            next: 0,
            stats,
        })
    }
}

impl LogBatches<'_> {
    /// Blocks left after pruning: what the export will read.
    pub fn blocks_total(&self) -> usize {
        self.cands.len()
    }

    /// Blocks read so far.
    pub fn blocks_done(&self) -> usize {
        self.next
    }

    /// The next batch's matching lines, oldest first; `None` once every
    /// block is read. A batch may be empty.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Entry>>, SearchError> {
        if self.next >= self.cands.len() {
            return Ok(None);
        }
        let most = (self.next + self.engine.cfg.fetch_concurrency.max(1)).min(self.cands.len());
        let mut end = self.next + 1;
        let mut bytes = self.cands[self.next].idx.raw_bytes;
        while end < most {
            bytes = bytes.saturating_add(self.cands[end].idx.raw_bytes);
            if bytes > BATCH_RAW_BYTES {
                break;
            }
            end += 1;
        }
        let scan = Scan {
            tenant: &self.tenant,
            range: self.range,
            query: &self.query,
            pipeline: &self.pipeline,
        };
        let pipeline = &self.pipeline;
        let mut entries = Vec::new();
        self.engine
            .scan_chunk(
                &self.cands[self.next..end],
                &scan,
                &mut self.stats,
                &mut |ts, labels, extracted, line| {
                    entries.push(Entry {
                        ts,
                        labels: pipeline.result_labels(labels, extracted),
                        line: line.to_owned(),
                    });
                },
            )
            .await?;
        self.next = end;
        sort_entries(&mut entries, Direction::Forward);
        Ok(Some(entries))
    }
}
