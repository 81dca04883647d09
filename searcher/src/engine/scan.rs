//! Step 7 of the read path: run every record of a fetched block through
//! the query's line pipeline. Scanning re-checks time and labels record by
//! record, which is what makes every pruning step above an optimisation
//! only: a block pruned on a stale index, or not pruned at all, gives the
//! same matches.

use std::sync::Arc;

use skidder_common::format::seqfile::{RecordBlock, SeqFileReader};

use super::blocks::FetchedBlock;
use super::prune::{stream_labels, stream_matches, Candidate};
use super::{Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::{Labels, LinePipeline};
use crate::logql::LogQuery;

/// What a query scans with: the tenant, the time range, the query and its
/// compiled pipeline.
pub(super) struct Scan<'a> {
    pub(super) tenant: &'a str,
    pub(super) range: TimeRange,
    pub(super) query: &'a LogQuery,
    pub(super) pipeline: &'a LinePipeline,
}

/// Called for each match: time, stream labels, extracted labels, line.
pub(super) type OnMatch<'f> = dyn FnMut(i64, &Arc<Labels>, &Labels, &str) + Send + 'f;

impl Engine {
    /// Fetches a chunk of candidates' blocks and scans each; missing or
    /// corrupt blocks become warnings. The caller has charged the chunk to
    /// the query's byte budget.
    pub(super) async fn scan_chunk(
        &self,
        chunk: &[Candidate],
        scan: &Scan<'_>,
        stats: &mut Stats,
        f: &mut OnMatch<'_>,
    ) -> Result<(), SearchError> {
        let fetched = self.fetch_many(chunk).await;
        for (c, (block, w)) in chunk.iter().zip(fetched) {
            stats.warnings.extend(w);
            match block? {
                FetchedBlock::Skipped => {}
                FetchedBlock::Verified(data) => {
                    stats.bytes_fetched += data.len() as u64;
                    self.scan(c, &data, scan, stats, f);
                }
                // Pruned on an out-of-date index: scan every stream, which
                // re-checks labels and times record by record.
                FetchedBlock::VerifiedByFreshIndex { data, index } => {
                    stats.bytes_fetched += data.len() as u64;
                    let c = Candidate {
                        streams: (0..index.streams.len()).collect(),
                        idx: index,
                        data_key: c.data_key.clone(),
                    };
                    self.scan(&c, &data, scan, stats, f);
                }
            }
        }
        Ok(())
    }

    /// Calls `f` for every record of the candidate's selected streams that
    /// falls in the range, matches the selector and passes the pipeline.
    fn scan(
        &self,
        c: &Candidate,
        data: &[u8],
        s: &Scan<'_>,
        stats: &mut Stats,
        f: &mut OnMatch<'_>,
    ) {
        let (tenant, range, q, pipeline) = (s.tenant, s.range, s.query, s.pipeline);
        let idx = &c.idx;
        let mut selected = vec![None; idx.streams.len()];
        for &s in &c.streams {
            if stream_matches(&q.matchers, tenant, idx, s) {
                selected[s] = Some(Arc::new(stream_labels(idx, s)));
            }
        }
        let mut reader = match SeqFileReader::new(data) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.corrupt_objects.inc();
                stats
                    .warnings
                    .push(format!("skipped unreadable block {}: {e}", c.data_key));
                return;
            }
        };
        self.metrics.blocks_scanned.inc();
        stats.blocks_scanned += 1;
        let mut block = RecordBlock::default();
        let mut extracted = Vec::new();
        let bytes_before = stats.bytes_scanned;
        let (mut n, mut stream) = (0usize, 0usize);
        loop {
            match reader.next_block(&mut block) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.metrics.corrupt_objects.inc();
                    stats.warnings.push(format!(
                        "block {} is corrupt past record {n}: {e}",
                        c.data_key
                    ));
                    break;
                }
            }
            for (ts, line) in block.records() {
                while stream + 1 < idx.streams.len()
                    && n >= (idx.streams[stream].first_record + idx.streams[stream].record_count)
                        as usize
                {
                    stream += 1;
                }
                n += 1;
                stats.lines_scanned += 1;
                stats.bytes_scanned += line.len() as u64;
                let Some(labels) = selected.get(stream).and_then(Option::as_ref) else {
                    continue;
                };
                if ts < range.start || ts >= range.end {
                    continue;
                }
                let Ok(line) = simdutf8::basic::from_utf8(line) else {
                    continue;
                };
                if let Some(out) = pipeline.eval(ts, line, labels, &mut extracted) {
                    f(ts, labels, &extracted, &out);
                }
            }
        }
        self.metrics
            .bytes_decompressed
            .inc_by(stats.bytes_scanned - bytes_before);
    }
}
