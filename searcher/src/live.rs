//! Live records for `/loki/api/v1/tail`: what a feed of the newest records
//! hands the searcher, and how a tail session picks its own out of it.
//!
//! The feed itself is not here: the searcher crate knows nothing of Kafka.
//! `skidder searcher` plugs in one that reads the indexer's topics
//! (`src/live_kafka.rs`); tests can plug in their own. One feed serves
//! every session: each batch is shared (`Arc`) among the subscribed
//! sessions, and each session filters it by tenant, selector and pipeline.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::engine::Entry;
use crate::logql::eval::{Labels, LinePipeline};
use crate::logql::{LogQuery, Matcher};

/// One record as the indexer would store it: its tenant, its stream's
/// labels (with `__app__`, sorted), its time and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRecord {
    pub tenant: Arc<str>,
    pub labels: Arc<Labels>,
    pub ts: i64,
    pub line: String,
}

/// Records as they were read together, in Kafka order per partition.
pub type LiveBatch = Arc<Vec<LiveRecord>>;

/// A source of the newest records. `subscribe` starts reading if nobody
/// was; a feed may stop reading once every receiver is dropped.
pub trait LiveFeed: Send + Sync + std::fmt::Debug {
    fn subscribe(&self) -> broadcast::Receiver<LiveBatch>;
}

/// Limits on tails, per searcher.
#[derive(Debug, Clone)]
pub struct TailLimits {
    /// Tails one tenant may hold open at once; more are refused (429).
    pub max_per_tenant: usize,
    /// A tail is closed after this long.
    pub max_duration: std::time::Duration,
    /// Lines a session holds for a client that has not taken them; past
    /// this, lines are dropped and reported in `dropped_entries`.
    pub max_pending: usize,
}

impl Default for TailLimits {
    fn default() -> Self {
        TailLimits {
            max_per_tenant: 10,
            max_duration: std::time::Duration::from_secs(3600),
            max_pending: 10_000,
        }
    }
}

/// Whether a record's labels and tenant satisfy a selector, as the
/// engine's stream matching decides for stored streams.
pub fn selector_matches(matchers: &[Matcher], tenant: &str, labels: &Labels) -> bool {
    matchers.iter().all(|m| {
        let v = if m.name == "__tenant__" {
            tenant
        } else {
            labels
                .iter()
                .filter(|(k, _)| *k == m.name)
                .map(|(_, v)| v.as_str())
                .min()
                .unwrap_or("")
        };
        m.matches(v)
    })
}

/// A line the session had no room for: reported, not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub labels: Arc<Labels>,
    pub ts: i64,
}

/// One tail session's view of the feed: its tenant's records that pass
/// its query, held until sent, bounded by `max_pending`.
pub struct TailFilter {
    tenant: String,
    query: LogQuery,
    pipeline: LinePipeline,
    max_pending: usize,
    pending: VecDeque<Entry>,
    dropped: Vec<Dropped>,
    /// Dropped past what `dropped` keeps (a client that stopped reading).
    pub dropped_uncounted: u64,
    extracted: Labels,
}

/// `dropped_entries` kept per message; more are only counted.
const MAX_DROPPED_LISTED: usize = 1000;

impl TailFilter {
    pub fn new(tenant: &str, query: &LogQuery, max_pending: usize) -> Self {
        TailFilter {
            tenant: tenant.to_owned(),
            query: query.clone(),
            pipeline: LinePipeline::new(query),
            max_pending: max_pending.max(1),
            pending: VecDeque::new(),
            dropped: Vec::new(),
            dropped_uncounted: 0,
            extracted: Labels::new(),
        }
    }

    /// Takes this session's records out of a batch.
    pub fn offer(&mut self, batch: &[LiveRecord]) {
        for r in batch {
            if *r.tenant != *self.tenant
                || !selector_matches(&self.query.matchers, &self.tenant, &r.labels)
            {
                continue;
            }
            let Some(out) = self
                .pipeline
                .eval(r.ts, &r.line, &r.labels, &mut self.extracted)
            else {
                continue;
            };
            let labels = self.pipeline.result_labels(&r.labels, &self.extracted);
            if self.pending.len() >= self.max_pending {
                if self.dropped.len() < MAX_DROPPED_LISTED {
                    self.dropped.push(Dropped { labels, ts: r.ts });
                } else {
                    self.dropped_uncounted += 1;
                }
                continue;
            }
            self.pending.push_back(Entry {
                ts: r.ts,
                labels,
                line: out.into_owned(),
            });
        }
    }

    /// Whether there is anything to send.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.dropped.is_empty()
    }

    /// What to send now: the pending lines and the dropped ones.
    pub fn take(&mut self) -> (Vec<Entry>, Vec<Dropped>) {
        (
            self.pending.drain(..).collect(),
            std::mem::take(&mut self.dropped),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{parse, Query};

    fn rec(tenant: &str, app: &str, level: &str, ts: i64, line: &str) -> LiveRecord {
        let mut labels = vec![
            ("__app__".to_owned(), app.to_owned()),
            ("level".to_owned(), level.to_owned()),
        ];
        labels.sort();
        LiveRecord {
            tenant: tenant.into(),
            labels: Arc::new(labels),
            ts,
            line: line.into(),
        }
    }

    fn log_query(q: &str) -> LogQuery {
        match parse(q).unwrap() {
            Query::Log(q) => q,
            Query::Metric(_) => panic!("a log query"),
        }
    }

    #[test]
    fn a_session_takes_only_its_tenants_matching_lines_in_order() {
        let q = log_query(
            r#"{__app__="web", level!="debug"} |= "GET" | line_format "{{.level}}: {{__line__}}""#,
        );
        let mut f = TailFilter::new("acme", &q, 100);
        f.offer(&[
            rec("acme", "web", "info", 1, "GET /a"),
            rec("globex", "web", "info", 2, "GET /secret"),
            rec("acme", "api", "info", 3, "GET /b"),
            rec("acme", "web", "debug", 4, "GET /c"),
            rec("acme", "web", "warn", 5, "POST /d"),
            rec("acme", "web", "warn", 6, "GET /e"),
        ]);
        let (lines, dropped) = f.take();
        assert!(dropped.is_empty());
        let got: Vec<(i64, &str)> = lines.iter().map(|l| (l.ts, l.line.as_str())).collect();
        assert_eq!(got, [(1, "info: GET /a"), (6, "warn: GET /e")]);
        assert!(f.is_empty());
    }

    #[test]
    fn a_full_session_drops_and_reports_what_it_cannot_hold() {
        let q = log_query(r#"{__app__="web"}"#);
        let mut f = TailFilter::new("acme", &q, 2);
        let batch: Vec<LiveRecord> = (0..5)
            .map(|i| rec("acme", "web", "info", i, &format!("line {i}")))
            .collect();
        f.offer(&batch);
        let (lines, dropped) = f.take();
        assert_eq!(lines.iter().map(|l| l.ts).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(dropped.iter().map(|d| d.ts).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(dropped[0].labels.as_ref(), batch[2].labels.as_ref());
        // Taken, there is room again.
        f.offer(&batch[..1]);
        assert_eq!(f.take().0.len(), 1);
    }

    #[test]
    fn the_tenant_matcher_sees_the_records_tenant() {
        let q = log_query(r#"{__tenant__="acme", __app__=~".+"}"#);
        let mut f = TailFilter::new("acme", &q, 10);
        f.offer(&[rec("acme", "web", "info", 1, "x")]);
        assert_eq!(f.take().0.len(), 1);
        let q = log_query(r#"{__tenant__="globex", __app__=~".+"}"#);
        let mut f = TailFilter::new("acme", &q, 10);
        f.offer(&[rec("acme", "web", "info", 1, "x")]);
        assert!(f.is_empty());
    }
}
