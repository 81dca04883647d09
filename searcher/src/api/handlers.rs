//! One handler per Loki endpoint: read the parameters, ask the engine,
//! shape the answer. The tenant was decided by the middleware before any
//! handler runs, so a handler never looks at headers.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::Uri;
use axum::response::Response;
use serde_json::{json, Value};
use skidder_common::format::layout::{now_ns, NS_PER_HOUR};
use skidder_common::service::render_metrics;

use super::error::ApiError;
use super::middleware::Tenant;
use super::params::{default_step, Params};
use super::responses::{
    json_ok, labels_json, matrix_json, sample_json, stats_json, streams_json, success,
};
use super::{AppState, Shared};
use crate::engine::detected::{detect_fields, detect_labels, field_values};
use crate::engine::{Direction, Engine, Entry, SearchError, Stats, TimeRange};
use crate::logql::eval::Labels;
use crate::logql::{self, AggOp, Grouping, MetricExpr, Query, RangeFn};

type ApiResult = Result<Response, ApiError>;

/// What a `query_range` request asks for.
pub struct RangeRequest<'a> {
    pub query: &'a str,
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub direction: Direction,
    pub step: Option<i64>,
    /// Tell the client when an empty answer comes from a tenant with no
    /// data at all. Only when tenancy is off: with it on, the hint would
    /// name other tenants.
    pub tenant_hint: bool,
}

/// After an empty answer, asks the engine whether the tenant has any data
/// at all (it logs and counts if not), and passes its warning on to the
/// client if `show`.
async fn explain_empty(engine: &Engine, tenant: &str, empty: bool, show: bool, stats: &mut Stats) {
    if !empty {
        return;
    }
    if let Some(w) = engine.no_data_warning(tenant).await {
        if show {
            stats.warnings.push(w);
        }
    }
}

/// Runs a range query and builds Loki's response body. Used by the HTTP
/// handler and by `skidder search --store`.
pub async fn run_range(
    engine: &Engine,
    tenant: &str,
    r: RangeRequest<'_>,
) -> Result<(Value, Stats), ApiError> {
    let started = Instant::now();
    match logql::parse(r.query)? {
        Query::Log(q) => {
            let (entries, mut stats) = engine
                .logs(
                    tenant,
                    TimeRange {
                        start: r.start,
                        end: r.end,
                    },
                    &q,
                    r.limit,
                    r.direction,
                    true,
                )
                .await?;
            explain_empty(
                engine,
                tenant,
                entries.is_empty(),
                r.tenant_hint,
                &mut stats,
            )
            .await;
            let mut st = stats_json(&stats, started);
            st["summary"]["totalEntriesReturned"] = json!(entries.len());
            Ok((
                json!({"resultType": "streams", "result": streams_json(entries), "stats": st}),
                stats,
            ))
        }
        Query::Metric(m) => {
            if m.has_approx_topk() {
                return Err(ApiError::bad(
                    "approx_topk is only supported for instant queries (/loki/api/v1/query)",
                ));
            }
            // Metric queries are evaluated at millisecond precision, as in Loki.
            let start = r.start - r.start.rem_euclid(1_000_000);
            let step = r.step.unwrap_or_else(|| default_step(start, r.end));
            if step <= 0 {
                return Err(ApiError::bad(
                    "zero or negative query resolution step widths are not accepted",
                ));
            }
            if (r.end - start) / step > 11_000 {
                return Err(ApiError::bad(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
                ));
            }
            let (matrix, mut stats) = engine
                .metric(tenant, &m, r.start, r.end, step, true)
                .await?;
            explain_empty(engine, tenant, matrix.is_empty(), r.tenant_hint, &mut stats).await;
            Ok((
                json!({"resultType": "matrix", "result": matrix_json(&matrix, r.start, step), "stats": stats_json(&stats, started)}),
                stats,
            ))
        }
    }
}

pub(super) async fn query_range(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(NS_PER_HOUR)?;
    let step = p.step()?;
    let req = RangeRequest {
        query: p.query()?,
        start,
        end,
        limit: p.limit(s.cfg.max_limit)?,
        direction: p.direction()?,
        step,
        tenant_hint: !s.cfg.tenancy.multi_tenant,
    };
    let (data, stats) = run_range(&s.engine, &tenant, req).await?;
    Ok(success(data, &stats))
}

pub(super) async fn query(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let started = Instant::now();
    let p = Params::new(&uri, &body);
    let t = p.time("time")?.unwrap_or_else(now_ns);
    match logql::parse(p.query()?)? {
        Query::Log(q) => {
            let range = TimeRange {
                start: t - NS_PER_HOUR,
                end: t + 1,
            };
            let (entries, mut stats) = s
                .engine
                .logs(
                    &tenant,
                    range,
                    &q,
                    p.limit(s.cfg.max_limit)?,
                    p.direction()?,
                    true,
                )
                .await?;
            let show = !s.cfg.tenancy.multi_tenant;
            explain_empty(&s.engine, &tenant, entries.is_empty(), show, &mut stats).await;
            Ok(success(
                json!({"resultType": "streams", "result": streams_json(entries), "stats": stats_json(&stats, started)}),
                &stats,
            ))
        }
        Query::Metric(m) => {
            let (matrix, mut stats) = s.engine.metric(&tenant, &m, t, t, 1, true).await?;
            let show = !s.cfg.tenancy.multi_tenant;
            explain_empty(&s.engine, &tenant, matrix.is_empty(), show, &mut stats).await;
            let mut points: Vec<(&Labels, f64)> = matrix
                .iter()
                .filter_map(|(l, pts)| Some((l, *pts.get(&0)?)))
                .collect();
            // `sort` and `sort_desc` order an instant vector by value (ties
            // by labels); a range query's series are unordered, as in PromQL.
            if let MetricExpr::Agg { op, .. } = &m {
                match op {
                    AggOp::Sort => points.sort_by(|a, b| a.1.total_cmp(&b.1)),
                    AggOp::SortDesc => points.sort_by(|a, b| b.1.total_cmp(&a.1)),
                    _ => {}
                }
            }
            let result: Vec<Value> = points
                .into_iter()
                .map(|(l, v)| sample_json(l, t, v))
                .collect();
            Ok(success(
                json!({"resultType": "vector", "result": result, "stats": stats_json(&stats, started)}),
                &stats,
            ))
        }
    }
}

/// The stream label sets a series, labels or label-values request covers.
async fn series_of(
    s: &AppState,
    tenant: &str,
    p: &Params,
) -> Result<(Vec<Labels>, Stats), ApiError> {
    let (start, end) = p.range(6 * NS_PER_HOUR)?;
    let matchers: Vec<_> = p.selectors()?.into_iter().map(|q| q.matchers).collect();
    Ok(s.engine
        .series(tenant, TimeRange { start, end }, &matchers)
        .await?)
}

pub(super) async fn series(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (series, stats) = series_of(&s, &tenant, &p).await?;
    if series.len() > s.cfg.max_series {
        return Err(SearchError::Series {
            limit: s.cfg.max_series,
        }
        .into());
    }
    Ok(success(
        Value::Array(series.iter().map(labels_json).collect()),
        &stats,
    ))
}

pub(super) async fn labels(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (series, stats) = series_of(&s, &tenant, &p).await?;
    let mut names: Vec<&str> = series
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.as_str()))
        .collect();
    names.sort();
    names.dedup();
    Ok(success(json!(names), &stats))
}

pub(super) async fn label_values(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (series, stats) = series_of(&s, &tenant, &p).await?;
    let mut values: Vec<&str> = series
        .iter()
        .filter_map(|l| l.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()))
        .collect();
    values.sort();
    values.dedup();
    Ok(success(json!(values), &stats))
}

pub(super) async fn index_stats(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(NS_PER_HOUR)?;
    let Query::Log(q) = logql::parse(p.query()?)? else {
        return Err(ApiError::bad("index/stats takes a stream selector"));
    };
    let (st, stats) = s
        .engine
        .index_stats(&tenant, TimeRange { start, end }, &q)
        .await?;
    let mut body = json!({"streams": st.streams, "chunks": st.chunks, "entries": st.entries, "bytes": st.bytes});
    if !stats.warnings.is_empty() {
        body["warnings"] = json!(stats.warnings);
    }
    Ok(json_ok(&body))
}

pub(super) async fn index_volume(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(NS_PER_HOUR)?;
    let Query::Log(q) = logql::parse(p.query()?)? else {
        return Err(ApiError::bad("index/volume takes a stream selector"));
    };
    let targets: Vec<String> = match p.get("targetLabels") {
        Some(t) => t.split(',').map(str::to_owned).collect(),
        None => q.matchers.iter().map(|m| m.name.clone()).collect(),
    };
    let expr = MetricExpr::Agg {
        op: AggOp::Sum,
        grouping: Some(Grouping {
            without: false,
            labels: targets,
        }),
        inner: Box::new(MetricExpr::Range {
            func: RangeFn::BytesOverTime,
            query: q,
            range_ns: (end - start).max(1),
            offset_ns: 0,
        }),
    };
    let (matrix, stats) = s.engine.metric(&tenant, &expr, end, end, 1, true).await?;
    let limit = p.limit(s.cfg.max_limit)?;
    let mut result: Vec<(f64, Value)> = matrix
        .iter()
        .filter_map(|(l, pts)| pts.get(&0).map(|v| (*v, sample_json(l, end, *v))))
        .collect();
    result.sort_by(|a, b| b.0.total_cmp(&a.0));
    result.truncate(limit);
    Ok(success(
        json!({"resultType": "vector", "result": result.into_iter().map(|r| r.1).collect::<Vec<_>>()}),
        &stats,
    ))
}

/// `/format_query`: the query spaced as Loki prints it, for Grafana's
/// "Format query"; a query that does not parse gets its parse error.
pub(super) async fn format_query(uri: Uri, body: Bytes) -> ApiResult {
    let p = Params::new(&uri, &body);
    let formatted = logql::format_query(p.query()?)?;
    Ok(json_ok(&json!({"status": "success", "data": formatted})))
}

/// `/detected_labels`: the stream labels of the matching streams worth
/// offering as filters, with their number of values (Grafana's label
/// panels; see `detected::detect_labels` for which are left out).
pub(super) async fn detected_labels(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (series, _) = series_of(&s, &tenant, &p).await?;
    let labels: Vec<Value> = detect_labels(&series)
        .into_iter()
        .map(|l| json!({"label": l.label, "cardinality": l.cardinality}))
        .collect();
    Ok(json_ok(&json!({ "detectedLabels": labels })))
}

/// The newest `line_limit` lines (default 1,000) of a detected-fields
/// request's log query.
async fn detection_lines(s: &AppState, tenant: &str, p: &Params) -> Result<Vec<Entry>, ApiError> {
    let (start, end) = p.range(NS_PER_HOUR)?;
    let Query::Log(q) = logql::parse(p.query()?)? else {
        return Err(ApiError::bad(
            "detected fields take a log query, not a metric query",
        ));
    };
    let line_limit = p.count("line_limit", 1000)?;
    let (entries, _) = s
        .engine
        .logs(
            tenant,
            TimeRange { start, end },
            &q,
            line_limit.min(s.cfg.max_limit),
            Direction::Backward,
            true,
        )
        .await?;
    Ok(entries)
}

/// `/detected_fields`: the fields in the query's newest lines, each with
/// its type, number of values and parser (Grafana's field panels).
pub(super) async fn detected_fields(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let limit = p.count("limit", 1000)?;
    let entries = detection_lines(&s, &tenant, &p).await?;
    let fields: Vec<Value> = detect_fields(entries.iter().map(|e| e.line.as_str()), limit)
        .into_iter()
        .map(|f| {
            json!({"label": f.label, "type": f.kind, "cardinality": f.cardinality, "parsers": f.parsers})
        })
        .collect();
    Ok(json_ok(&json!({"fields": fields, "limit": limit})))
}

/// `/detected_field/{name}/values`: the values of one detected field.
pub(super) async fn detected_field_values(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let limit = p.count("limit", 1000)?;
    let entries = detection_lines(&s, &tenant, &p).await?;
    let values = field_values(entries.iter().map(|e| e.line.as_str()), &name, limit);
    Ok(json_ok(&json!({ "values": values })))
}

pub(super) async fn buildinfo() -> Response {
    let body = json!({"version": "2.9.0", "revision": "skidder", "branch": "main", "buildUser": "skidder",
                      "buildDate": "", "goVersion": ""});
    json_ok(&body)
}

pub(super) async fn metrics(State(s): State<Shared>) -> String {
    render_metrics(&s.engine.metrics().registry)
}
