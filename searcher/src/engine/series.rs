//! Step 8 for the label and stats endpoints (`/series`, `/labels`,
//! `/label/<name>/values`, `index/stats`): answered from the candidates'
//! indexes alone, so no block is fetched and nothing is charged to the
//! byte budget.

use std::collections::HashSet;

use super::prune::{stream_labels, stream_matches};
use super::{Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::Labels;
use crate::logql::{LogQuery, MatchOp, Matcher};

/// What `index/stats` reports: streams, blocks, records and raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub streams: u64,
    pub chunks: u64,
    pub entries: u64,
    pub bytes: u64,
}

impl Engine {
    /// Distinct stream label sets (with `__app__`) in the range that match.
    pub async fn series(
        &self,
        tenant: &str,
        range: TimeRange,
        matchers: &[Vec<Matcher>],
    ) -> Result<(Vec<Labels>, Stats), SearchError> {
        let mut stats = Stats::default();
        let any = LogQuery {
            matchers: vec![Matcher {
                name: "__app__".into(),
                op: MatchOp::Re,
                value: ".*".into(),
                re: regex::Regex::new("^(?:.*)$").ok(),
            }],
            stages: Vec::new(),
        };
        let cands = self
            .candidates(tenant, range, &any, true, &mut stats)
            .await?;
        let mut out: Vec<Labels> = Vec::new();
        for c in &cands {
            for &s in &c.streams {
                if matchers.is_empty()
                    || matchers
                        .iter()
                        .any(|ms| stream_matches(ms, tenant, &c.idx, s))
                {
                    out.push(stream_labels(&c.idx, s));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok((out, stats))
    }

    /// Blocks, records and raw bytes of the streams a selector picks.
    pub async fn index_stats(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
    ) -> Result<(IndexStats, Stats), SearchError> {
        let mut stats = Stats::default();
        let cands = self.candidates(tenant, range, q, true, &mut stats).await?;
        let mut streams = HashSet::new();
        let (mut entries, mut bytes) = (0u64, 0u64);
        for c in &cands {
            let total: u64 = c
                .idx
                .streams
                .iter()
                .map(|s| s.record_count as u64)
                .sum::<u64>()
                .max(1);
            for &s in &c.streams {
                let n = c.idx.streams[s].record_count as u64;
                entries += n;
                // n <= total, so the share fits; wide, as raw_bytes is
                // whatever an index says.
                let share = c.idx.raw_bytes as u128 * n as u128 / total as u128;
                bytes = bytes.saturating_add(share as u64);
                streams.insert(stream_labels(&c.idx, s));
            }
        }
        let out = IndexStats {
            streams: streams.len() as u64,
            chunks: cands.len() as u64,
            entries,
            bytes,
        };
        Ok((out, stats))
    }
}
