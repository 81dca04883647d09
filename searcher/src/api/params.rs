//! Loki's HTTP query parameters, read the way Loki reads them: from the
//! query string and, for POST, the form body; with Loki's defaults (end
//! now, limit 100, direction backward) and its error messages, so Grafana
//! and logcli need no special case for Skidder.

use axum::http::Uri;
use skidder_common::format::layout::{now_ns, searchable_time};

use super::error::ApiError;
use crate::engine::Direction;
use crate::logql::{self, LogQuery, Query};
use crate::time::{parse_step, parse_time};

/// Parameters from the query string and, for POST, the form body.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn new(uri: &Uri, body: &[u8]) -> Self {
        let mut v: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        v.extend(form_urlencoded::parse(body).into_owned());
        Params(v)
    }

    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time between 1970 and 2116: room for every log, and far enough
    /// from `i64`'s ends that range arithmetic cannot overflow.
    pub(super) fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                parse_time(v)
                    .filter(|&t| searchable_time(t))
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "invalid {k} {v:?}: use RFC 3339 or a Unix epoch, 1970 to 2116"
                        ))
                    })
            })
            .transpose()
    }

    /// `[start, end)` with Loki's defaults: end now, start `default_span` earlier.
    pub(super) fn range(&self, default_span: i64) -> Result<(i64, i64), ApiError> {
        let end = self.time("end")?.unwrap_or_else(now_ns);
        let start = match (self.time("start")?, self.get("since")) {
            (Some(s), _) => s,
            (None, Some(since)) => {
                end - parse_step(since)
                    .ok_or_else(|| ApiError::bad(format!("invalid since {since:?}")))?
            }
            (None, None) => end - default_span,
        };
        if end < start {
            return Err(ApiError::bad("end timestamp must not be before start time"));
        }
        Ok((start, end))
    }

    /// A count parameter (`limit`, `line_limit`), or `default`.
    pub(super) fn count(&self, key: &str, default: usize) -> Result<usize, ApiError> {
        match self.get(key) {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ApiError::bad(format!("invalid {key} {v:?}"))),
            None => Ok(default),
        }
    }

    pub(super) fn limit(&self, max: usize) -> Result<usize, ApiError> {
        let limit = self.count("limit", 100)?;
        if limit == 0 || limit > max {
            return Err(ApiError::bad(format!(
                "limit must be between 1 and {max}, got {limit}"
            )));
        }
        Ok(limit)
    }

    pub(super) fn direction(&self) -> Result<Direction, ApiError> {
        match self
            .get("direction")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("backward") => Ok(Direction::Backward),
            Some("forward") => Ok(Direction::Forward),
            Some(d) => Err(ApiError::bad(format!(
                "invalid direction {d:?}: forward or backward"
            ))),
        }
    }

    /// `step`, or its older name `interval`, if given.
    pub(super) fn step(&self) -> Result<Option<i64>, ApiError> {
        match self.get("step").or(self.get("interval")) {
            Some(v) => {
                Ok(Some(parse_step(v).ok_or_else(|| {
                    ApiError::bad(format!("invalid step {v:?}"))
                })?))
            }
            None => Ok(None),
        }
    }

    pub(super) fn query(&self) -> Result<&str, ApiError> {
        self.get("query")
            .ok_or_else(|| ApiError::bad("missing query parameter"))
    }

    /// The `match[]` selectors of a series request, or `query`'s.
    pub(super) fn selectors(&self) -> Result<Vec<LogQuery>, ApiError> {
        let mut out = Vec::new();
        for m in self
            .all("match[]")
            .into_iter()
            .chain(self.all("match"))
            .chain(self.get("query"))
        {
            match logql::parse(m)? {
                Query::Log(q) => out.push(q),
                Query::Metric(_) => {
                    return Err(ApiError::bad(format!("{m:?} is not a stream selector")))
                }
            }
        }
        Ok(out)
    }
}

/// Loki's default step when a range query names none: about 250 points
/// over the range, in whole seconds, at least one.
pub(super) fn default_step(start: i64, end: i64) -> i64 {
    (((end - start) / 250) / 1_000_000_000).max(1) * 1_000_000_000
}
