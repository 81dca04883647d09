//! Step 5 of the read path: from a query's time range to its candidates,
//! the blocks whose index admits the query. [`Engine::candidates`] drives
//! steps 1 to 4 a round of hours at a time; [`Engine::prune`] checks each
//! block's index by time, then bloom filter, then labels.
//!
//! Pruning may only drop blocks that hold no match: the tokens a query
//! requires ([`required_tokens`]) follow the indexer's token rule exactly,
//! and `searcher/tests/integration/pruning.rs` holds every pruned result
//! to a brute-force scan.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use skidder_common::format::index::{self, BlockIndex};
use skidder_common::format::label_summary::LabelSummary;
use skidder_common::format::layout::{data_key_of, hour_of};
use skidder_common::format::tokens::{
    field_hash, for_each_word_hash, inner_words, token_hash, token_hash_v1,
};

use super::indexes::{IndexRead, Indexed};
use super::listing::HourListing;
use super::packs::{pack_rounds, MIN_PACK_BYTES_PER_ROUND};
use super::retention::without_expired;
use super::{Engine, SearchError, Stats, TimeRange};
use crate::logql::eval::Labels;
use crate::logql::{CmpOp, LabelExpr, LineOp, LogQuery, MatchOp, Matcher, Stage};

/// A block that survived pruning, and which of its streams may match.
pub struct Candidate {
    pub idx: Arc<Indexed>,
    /// The block to read: the sibling of the listed index key, never the
    /// index's own `data_key`, so a query reads only under the prefixes it
    /// listed (its tenant's), whatever an index says.
    pub data_key: String,
    pub streams: Vec<usize>,
}

/// The uncompressed bytes the candidates' indexes declare, saturating: an
/// index's numbers are only as good as its writer, so they must not
/// overflow (a panic in debug builds; in release, a wrapped sum that slips
/// under `max_bytes_scanned`).
pub(super) fn raw_bytes(cands: &[Candidate]) -> u64 {
    cands
        .iter()
        .fold(0u64, |sum, c| sum.saturating_add(c.idx.raw_bytes))
}

/// What pruning checks a block against; `tokens` (per index version) is
/// `None` when the query is not pruned.
struct Scope<'a> {
    tenant: &'a str,
    range: TimeRange,
    query: &'a LogQuery,
    tokens: Option<&'a [Vec<u64>]>,
}

/// The labels a query sees for a stream: its own plus `__app__`.
pub fn stream_labels(idx: &BlockIndex, stream: usize) -> Labels {
    let mut l: Labels = idx
        .streams
        .get(stream)
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    l.push(("__app__".into(), idx.app.clone()));
    l.sort();
    l
}

/// Whether a stream's labels as a query sees them ([`stream_labels`])
/// satisfy every matcher, without building them: pruning asks this of
/// every stream of every block a query lists.
pub(super) fn stream_matches(
    matchers: &[Matcher],
    tenant: &str,
    idx: &BlockIndex,
    stream: usize,
) -> bool {
    let own: &[(String, String)] = idx.streams.get(stream).map_or(&[], |s| &s.labels);
    matchers.iter().all(|m| {
        let v = if m.name == "__tenant__" {
            tenant
        } else {
            // The first of the sorted labels with this name: the least value.
            let app = (m.name == "__app__").then_some(idx.app.as_str());
            own.iter()
                .filter(|(k, _)| *k == m.name)
                .map(|(_, v)| v.as_str())
                .chain(app)
                .min()
                .unwrap_or("")
        };
        m.matches(v)
    })
}

/// Whether a block with this label summary may hold a stream that every
/// matcher admits; see [`LabelSummary`]. `__app__` is the listing's to
/// scope and `__tenant__` the request's, so they are left to
/// [`stream_matches`].
pub(super) fn summary_admits(matchers: &[Matcher], summary: &LabelSummary) -> bool {
    matchers.iter().all(|m| {
        m.name == "__app__"
            || m.name == "__tenant__"
            || summary.may_match(&m.name, |v| m.matches(v))
    })
}

/// Whether `| json` may give `v` for a number that an indexer of index
/// version 1 printed otherwise (`1.50` as `1.5`, `1e3` as `1000`), so that
/// its `key=value` token is not `v`'s. From version 2 a number's words are
/// words of the raw line, which is how `| json` writes it.
fn printed_otherwise_v1(v: &str) -> bool {
    let canonical = v.parse::<i64>().is_ok_and(|i| i.to_string() == v)
        || v.parse::<u64>().is_ok_and(|u| u.to_string() == v);
    v.parse::<f64>().is_ok() && !canonical
}

/// Token hashes every matching line's block must contain, for index
/// format `version` (see `common/src/format/tokens.rs`): line filters need
/// the needle's inner words; a field equality needs `key=value` (v1) or
/// every word of the value (v2).
pub fn required_tokens(q: &LogQuery, max_value_len: usize, version: u16) -> Vec<u64> {
    fn fields(e: &LabelExpr, max: usize, version: u16, out: &mut Vec<u64>, scratch: &mut Vec<u8>) {
        match e {
            LabelExpr::And(a, b) => {
                fields(a, max, version, out, scratch);
                fields(b, max, version, out, scratch);
            }
            LabelExpr::Str {
                name,
                op: CmpOp::Eq,
                value,
                ..
            } if !value.is_empty()
                && value.len() <= max
                && !name.starts_with("__")
                && !name.ends_with("_extracted")
                && (version != 1 || !printed_otherwise_v1(value)) =>
            {
                if version == 1 {
                    out.push(field_hash(name, value.as_bytes(), scratch));
                } else {
                    for_each_word_hash(value.as_bytes(), |h| out.push(h));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut fields_ok = true;
    for stage in &q.stages {
        match stage {
            Stage::Line {
                op: LineOp::Contains,
                needle,
                ..
            } => out.extend(inner_words(needle.as_bytes()).iter().map(|w| {
                if version == 1 {
                    token_hash_v1(w)
                } else {
                    token_hash(w)
                }
            })),
            // Their fields are not the indexed JSON words.
            Stage::Logfmt(_)
            | Stage::Regexp(_)
            | Stage::JsonFields(_)
            | Stage::Pattern(_)
            | Stage::LabelFormat(_) => fields_ok = false,
            Stage::Labels(e) if fields_ok => {
                fields(e, max_value_len, version, &mut out, &mut scratch)
            }
            // The line is rewritten: nothing after this is about stored bytes.
            Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack => break,
            _ => {}
        }
    }
    out
}

/// The apps a selector allows, where it names them: `__app__="a"`, or a
/// regex that is a plain list `a|b|c`; `None` when any app may match. Only
/// those apps' folders need listing.
pub(super) fn selected_apps(matchers: &[Matcher]) -> Option<Vec<String>> {
    let mut out: Option<Vec<String>> = None;
    for m in matchers.iter().filter(|m| m.name == "__app__") {
        let named: Vec<String> = match m.op {
            MatchOp::Eq => vec![m.value.clone()],
            MatchOp::Re if !m.value.contains(|c: char| "\\.^$*+?()[]{}".contains(c)) => {
                m.value.split('|').map(str::to_owned).collect()
            }
            _ => continue,
        };
        out = Some(match out {
            None => named,
            Some(prev) => prev.into_iter().filter(|a| named.contains(a)).collect(),
        });
    }
    out.map(|mut v| {
        v.sort();
        v.dedup();
        v
    })
}

impl Engine {
    /// Lists, reads and prunes the indexes for a query.
    pub async fn candidates(
        &self,
        tenant: &str,
        range: TimeRange,
        q: &LogQuery,
        prune: bool,
        stats: &mut Stats,
    ) -> Result<Vec<Candidate>, SearchError> {
        if range.end <= range.start {
            return Ok(Vec::new());
        }
        let (first, last) = (hour_of(range.start), hour_of(range.end - 1));
        if last - first + 1 > self.cfg.max_hours {
            return Err(SearchError::TimeRange {
                hours: last - first + 1,
                limit: self.cfg.max_hours,
            });
        }
        let apps = selected_apps(&q.matchers);
        // Hours retention has expired are skipped whole (`retention.rs`).
        let cutoffs = self.cutoffs(tenant).await?;
        let hours: Vec<i64> = (first..=last)
            .filter(|h| !cutoffs.as_ref().is_some_and(|c| c.hides_hour(*h)))
            .collect();
        // The manifests wait for the sliced blooms, below.
        let listings: Vec<Arc<HourListing>> = self
            .hour_listings(tenant, &hours, apps.as_deref())
            .await?
            .into_iter()
            .map(|(h, listing)| match &cutoffs {
                Some(c) => without_expired(listing, h, c),
                None => listing,
            })
            .collect();
        // One token list per index version the store may hold.
        let tokens: Vec<Vec<u64>> = if prune {
            (0..=index::MAX_VERSION)
                .map(|v| required_tokens(q, self.cfg.max_token_value_len, v))
                .collect()
        } else {
            Vec::new()
        };
        let scope = Scope {
            tenant,
            range,
            query: q,
            tokens: prune.then_some(tokens.as_slice()),
        };
        let mut out = Vec::new();
        let round_bytes = (self.cfg.cache_bytes as u64).max(MIN_PACK_BYTES_PER_ROUND);
        let probe_tokens = Arc::new(tokens.clone());
        for round in pack_rounds(&listings, round_bytes) {
            let mut ruled_out = match scope.tokens {
                Some(_) => self.read_slices(round, &probe_tokens).await?,
                None => HashSet::new(),
            };
            // Manifests, for the hours sliced blooms left a block in: an
            // hour with none left yields nothing, whatever its manifest.
            let applied: Vec<Arc<HourListing>> = stream::iter(round.iter().cloned())
                .map(|l| {
                    let left = l.indexes.iter().any(|(k, _)| !ruled_out.contains(k));
                    async move {
                        if left {
                            self.with_manifest(l).await
                        } else {
                            Ok(l)
                        }
                    }
                })
                .buffered(self.cfg.index_fetch_concurrency.max(1))
                .try_collect()
                .await?;
            let round = applied.as_slice();
            let listed: usize = round.iter().map(|l| l.indexes.len()).sum();
            stats.blocks_listed += listed as u64;
            self.metrics.blocks_listed.inc_by(listed as u64);
            self.metrics
                .blocks_pruned
                .with_label_values(&["bloom"])
                .inc_by(ruled_out.len() as u64);
            if scope.tokens.is_some() {
                // Compacted blocks whose manifest summary no stream of
                // which the selector can match: no index read for them.
                let by_labels: Vec<String> = round
                    .iter()
                    .flat_map(|l| {
                        l.indexes.iter().filter(|(k, _)| {
                            !ruled_out.contains(k)
                                && l.labels
                                    .get(k)
                                    .is_some_and(|s| !summary_admits(&q.matchers, s))
                        })
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                self.metrics
                    .blocks_pruned
                    .with_label_values(&["manifest_labels"])
                    .inc_by(by_labels.len() as u64);
                ruled_out.extend(by_labels);
            }
            let packed = self.read_packs(round, &ruled_out).await?;
            let keys: Vec<String> = round
                .iter()
                .flat_map(|l| l.indexes.iter().map(|(k, _)| k.clone()))
                .filter(|k| !ruled_out.contains(k))
                .collect();
            let packed = &packed;
            // Stops at the first store fault; dropping the stream cancels the rest.
            let mut fetched = stream::iter(keys)
                .map(|k| async move {
                    let mut w = Vec::new();
                    let r = self.index(&k, packed, &mut w).await;
                    (k, r, w)
                })
                .buffered(self.cfg.index_fetch_concurrency.max(1));
            while let Some((key, r, w)) = fetched.next().await {
                stats.warnings.extend(w);
                let IndexRead::Decoded(idx) = r? else {
                    continue;
                };
                out.extend(self.prune(idx, &key, &scope));
            }
        }
        Ok(out)
    }

    /// The candidate a listed block makes, or `None` if its index rules it
    /// out: by time, then by bloom filter, then by labels.
    fn prune(&self, idx: Arc<Indexed>, key: &str, scope: &Scope<'_>) -> Option<Candidate> {
        let data_key = data_key_of(key);
        let Some(tokens) = scope.tokens else {
            let all = (0..idx.streams.len()).collect();
            return Some(Candidate {
                idx,
                data_key,
                streams: all,
            });
        };
        let range = scope.range;
        if idx.max_time_ns < range.start || idx.min_time_ns >= range.end {
            self.metrics
                .blocks_pruned
                .with_label_values(&["time"])
                .inc();
            return None;
        }
        // The bloom before the labels: a needle's few probes rule out
        // nearly every block, before any stream's labels are looked at.
        let needed = tokens
            .get(idx.version as usize)
            .map_or(&[][..], Vec::as_slice);
        if !needed.iter().all(|&t| idx.bloom.may_contain(t)) {
            self.metrics
                .blocks_pruned
                .with_label_values(&["bloom"])
                .inc();
            return None;
        }
        let streams: Vec<usize> = (0..idx.streams.len())
            .filter(|&s| {
                let st = &idx.streams[s];
                st.max_time_ns >= range.start
                    && st.min_time_ns < range.end
                    && stream_matches(&scope.query.matchers, scope.tenant, &idx, s)
            })
            .collect();
        if streams.is_empty() {
            self.metrics
                .blocks_pruned
                .with_label_values(&["labels"])
                .inc();
            return None;
        }
        Some(Candidate {
            idx,
            data_key,
            streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{parse, Query};
    use skidder_common::format::index::StreamEntry;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// The plain definition, which live tails use too: look each matcher's
    /// name up in the built, sorted label set.
    fn matches_all(matchers: &[Matcher], tenant: &str, labels: &Labels) -> bool {
        crate::live::selector_matches(matchers, tenant, labels)
    }

    #[test]
    fn only_selectors_that_name_their_apps_scope_the_listing() {
        let apps = |q: &str| {
            let Query::Log(l) = parse(q).unwrap() else {
                panic!("{q}")
            };
            selected_apps(&l.matchers)
        };
        let v = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(apps(r#"{__app__="checkout"}"#), v(&["checkout"]));
        assert_eq!(apps(r#"{__app__=~"web|api|web"}"#), v(&["api", "web"]));
        assert_eq!(
            apps(r#"{__app__=~"web|api", __app__="web", level="x"}"#),
            v(&["web"])
        );
        assert_eq!(apps(r#"{__app__="a", __app__="b"}"#), v(&[]));
        for any in [
            r#"{__app__=~".+"}"#,
            r#"{__app__=~"web.*"}"#,
            r#"{__app__!="web", level="x"}"#,
            r#"{__app__!~"web", level="x"}"#,
            r#"{level="info"}"#,
        ] {
            assert_eq!(apps(any), None, "{any}");
        }
    }

    #[test]
    fn stream_matches_agrees_with_matching_built_labels() {
        let stream = |l: &[(&str, &str)]| StreamEntry {
            labels: labels(l),
            first_record: 0,
            record_count: 0,
            min_time_ns: 0,
            max_time_ns: 0,
        };
        let idx = BlockIndex {
            version: index::MAX_VERSION,
            min_time_ns: 0,
            max_time_ns: 0,
            record_count: 0,
            raw_bytes: 0,
            tenant: "acme".into(),
            app: "checkout".into(),
            hour: 0,
            topic: "logs".into(),
            partition: 0,
            first_offset: 0,
            last_offset: 0,
            data_key: String::new(),
            data_size: 0,
            data_crc32c: 0,
            streams: vec![
                stream(&[("level", "error"), ("pod", "a")]),
                stream(&[("level", "info")]),
                // A stream's own `__app__` and a repeated name: the least
                // value is the one a built, sorted label set finds first.
                stream(&[("__app__", "aaa"), ("pod", "z"), ("pod", "b")]),
                stream(&[]),
            ],
            bloom: Vec::new(),
            offsets: None,
        };
        let queries = [
            r#"{level="error"}"#,
            r#"{level!="error", __app__=~".+"}"#,
            r#"{pod=~"a|b"}"#,
            r#"{pod="", __app__=~".+"}"#,
            r#"{pod!~".+", __app__=~".+"}"#,
            r#"{__app__="checkout"}"#,
            r#"{__app__="aaa"}"#,
            r#"{__app__=~"check.*", level="info"}"#,
            r#"{__tenant__="acme"}"#,
            r#"{__tenant__!="acme", level=~".+"}"#,
            r#"{missing="", level=~"e.*"}"#,
            r#"{level="debug"}"#,
            r#"{pod="q", __app__=~".+"}"#,
        ];
        let summary = LabelSummary::of_streams(&idx.streams).unwrap();
        let (mut agreed, mut ruled_out) = (0, 0);
        for q in queries {
            let Ok(Query::Log(lq)) = parse(q) else {
                panic!("{q} must parse as a log query");
            };
            for s in 0..idx.streams.len() {
                let built = matches_all(&lq.matchers, "acme", &stream_labels(&idx, s));
                let direct = stream_matches(&lq.matchers, "acme", &idx, s);
                assert_eq!(direct, built, "{q} on stream {s}");
                agreed += usize::from(built);
            }
            // The manifest's summary never rules out a block a stream of
            // which matches.
            let any = (0..idx.streams.len()).any(|s| stream_matches(&lq.matchers, "acme", &idx, s));
            let admitted = summary_admits(&lq.matchers, &summary);
            assert!(admitted || !any, "{q}: the summary ruled out a match");
            ruled_out += usize::from(!admitted);
        }
        // Both outcomes occur, so the comparison means something.
        assert!(agreed > 5 && agreed < queries.len() * idx.streams.len() - 5);
        assert_eq!(ruled_out, 2, "the two queries no stream matches");
    }
}
