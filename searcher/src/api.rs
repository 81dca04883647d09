//! Loki's HTTP API over the engine: the endpoints, parameters and JSON
//! shapes that Grafana's Loki data source and logcli use. Errors are plain
//! text with a 4xx/5xx status, as Loki writes them.
//!
//! Every `/loki/api/v1/*` request is authenticated first (the tenant is
//! decided once, in [`authenticate`]); queries then take one of
//! `max_concurrent_queries` slots, waiting at most `queue_wait` (else 429),
//! and are cancelled after `query_timeout` (504).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use skidder_common::format::layout::searchable_time;
use skidder_common::service::render_metrics;
use tokio::sync::Semaphore;

use crate::auth::{AuthError, TenantPolicy, Tokens};
use crate::engine::{Direction, Engine, Entry, Matrix, SearchError, Stats, TimeRange};
use crate::logql::{self, parse_duration, LogQuery, Query};
use crate::pipeline::Labels;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where a request's tenant comes from: token, header or default.
    pub tenancy: TenantPolicy,
    pub max_limit: usize,
    /// Series a `/series` response may hold (metric queries: the engine's).
    pub max_series: usize,
    /// A query running longer is cancelled with a 504.
    pub query_timeout: Duration,
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before a 429.
    pub queue_wait: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tenancy: TenantPolicy {
                tokens: Tokens::default(),
                multi_tenant: false,
                default_tenant: "default".into(),
            },
            max_limit: 5000,
            max_series: 5000,
            query_timeout: Duration::from_secs(60),
            max_concurrent_queries: 16,
            queue_wait: Duration::from_secs(5),
        }
    }
}

pub struct AppState {
    pub engine: Arc<Engine>,
    pub cfg: ApiConfig,
    /// One permit per query allowed to run.
    slots: Semaphore,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, cfg: ApiConfig) -> Self {
        AppState {
            slots: Semaphore::new(cfg.max_concurrent_queries.max(1)),
            engine,
            cfg,
        }
    }
}

type Shared = Arc<AppState>;

/// The tenant [`authenticate`] decided for a request.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// Marks a response refused by a limit or by authentication, for
/// `skidder_searcher_queries_rejected_total`.
#[derive(Debug, Clone, Copy)]
struct Rejected(&'static str);

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Which limit or check refused the request, if one did.
    pub rejected: Option<&'static str>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            rejected: None,
        }
    }

    fn rejected(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            rejected: Some(reason),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [("content-type", "text/plain; charset=utf-8")],
            self.message + "\n",
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(reason) = self.rejected {
            r.extensions_mut().insert(Rejected(reason));
        }
        r
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        let message = e.to_string();
        match e.limit_name() {
            Some(reason) => ApiError::rejected(StatusCode::BAD_REQUEST, reason, message),
            // The searcher is the store's gateway: a store fault is a 502,
            // never a result that looks complete.
            None => ApiError {
                status: StatusCode::BAD_GATEWAY,
                message,
                rejected: None,
            },
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let reason = match e {
            AuthError::NoOrgId | AuthError::InvalidTenant(_) | AuthError::Repeated(_) => "tenant",
            AuthError::MissingToken
            | AuthError::InvalidToken
            | AuthError::TenantMismatch { .. } => "auth",
        };
        ApiError::rejected(e.status(), reason, e.to_string())
    }
}

impl From<logql::ParseError> for ApiError {
    fn from(e: logql::ParseError) -> Self {
        ApiError::bad(e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// Parameters from the query string and, for POST, the form body.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(uri: &Uri, body: &[u8]) -> Self {
        let mut v: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        v.extend(form_urlencoded::parse(body).into_owned());
        Params(v)
    }

    fn get(&self, k: &str) -> Option<&str> {
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
    fn time(&self, k: &str) -> Result<Option<i64>, ApiError> {
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
    fn range(&self, default_span: i64) -> Result<(i64, i64), ApiError> {
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

    fn limit(&self, max: usize) -> Result<usize, ApiError> {
        let limit = match self.get("limit") {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| ApiError::bad(format!("invalid limit {l:?}")))?,
            None => 100,
        };
        if limit == 0 || limit > max {
            return Err(ApiError::bad(format!(
                "limit must be between 1 and {max}, got {limit}"
            )));
        }
        Ok(limit)
    }

    fn direction(&self) -> Result<Direction, ApiError> {
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

    fn query(&self) -> Result<&str, ApiError> {
        self.get("query")
            .ok_or_else(|| ApiError::bad("missing query parameter"))
    }
}

pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// RFC 3339, or a Unix epoch: seconds (up to 10 digits or with a fraction),
/// milliseconds (13 digits) or nanoseconds.
pub fn parse_time(v: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return t.timestamp_nanos_opt();
    }
    if let Ok(i) = v.parse::<i64>() {
        return Some(match v.trim_start_matches('-').len() {
            0..=10 => i.checked_mul(1_000_000_000)?,
            11..=13 => i.checked_mul(1_000_000)?,
            _ => i,
        });
    }
    let f = v
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && f.abs() < 9.2e9)?;
    Some((f * 1e9).round() as i64)
}

/// `5m`, `1h30m`, or (float) seconds.
pub fn parse_step(v: &str) -> Option<i64> {
    parse_duration(v).or_else(|| {
        v.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0 && *f < 9.2e9)
            .map(|f| (f * 1e9) as i64)
    })
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Seconds as a JSON number with millisecond precision, as Prometheus and
/// Loki write sample timestamps: an integer when whole.
fn ts_json(ns: i64) -> Value {
    let ms = ns.div_euclid(1_000_000);
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn value_str(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn stats_json(s: &Stats, started: Instant) -> Value {
    let secs = started.elapsed().as_secs_f64();
    json!({"summary": {
        "bytesProcessedPerSecond": (s.bytes_scanned as f64 / secs.max(1e-9)) as u64,
        "linesProcessedPerSecond": (s.lines_scanned as f64 / secs.max(1e-9)) as u64,
        "totalBytesProcessed": s.bytes_scanned,
        "totalLinesProcessed": s.lines_scanned,
        "execTime": secs,
        "queueTime": 0,
        "totalEntriesReturned": 0,
    }})
}

fn success(data: Value, stats: &Stats) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !stats.warnings.is_empty() {
        body["warnings"] = json!(stats.warnings);
    }
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Streams in the order of their first entry; entries keep their order.
fn streams_json(entries: Vec<Entry>) -> Value {
    let mut order: Vec<Arc<Labels>> = Vec::new();
    let mut by: std::collections::HashMap<Arc<Labels>, Vec<Value>> =
        std::collections::HashMap::new();
    for e in entries {
        let v = by.entry(e.labels.clone()).or_insert_with(|| {
            order.push(e.labels.clone());
            Vec::new()
        });
        v.push(json!([e.ts.to_string(), e.line]));
    }
    Value::Array(
        order
            .into_iter()
            .map(|l| {
                let values = by.remove(&l).unwrap_or_default();
                json!({"stream": labels_json(&l), "values": values})
            })
            .collect(),
    )
}

fn matrix_json(m: &Matrix, start: i64, step: i64) -> Value {
    Value::Array(
        m.iter()
            .filter(|(_, pts)| !pts.is_empty())
            .map(|(l, pts)| {
                let values: Vec<Value> = pts
                    .iter()
                    .map(|(k, v)| json!([ts_json(start + *k as i64 * step), value_str(*v)]))
                    .collect();
                json!({"metric": labels_json(l), "values": values})
            })
            .collect(),
    )
}

fn default_step(start: i64, end: i64) -> i64 {
    (((end - start) / 250) / 1_000_000_000).max(1) * 1_000_000_000
}

/// What a `query_range` request asks for.
pub struct RangeRequest<'a> {
    pub query: &'a str,
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub direction: Direction,
    pub step: Option<i64>,
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
            let (entries, stats) = engine
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
            let mut st = stats_json(&stats, started);
            st["summary"]["totalEntriesReturned"] = json!(entries.len());
            Ok((
                json!({"resultType": "streams", "result": streams_json(entries), "stats": st}),
                stats,
            ))
        }
        Query::Metric(m) => {
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
            let (matrix, stats) = engine
                .metric(tenant, &m, r.start, r.end, step, true)
                .await?;
            Ok((
                json!({"resultType": "matrix", "result": matrix_json(&matrix, r.start, step), "stats": stats_json(&stats, started)}),
                stats,
            ))
        }
    }
}

async fn query_range(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(3_600_000_000_000)?;
    let step = match p.get("step").or(p.get("interval")) {
        Some(v) => Some(parse_step(v).ok_or_else(|| ApiError::bad(format!("invalid step {v:?}")))?),
        None => None,
    };
    let req = RangeRequest {
        query: p.query()?,
        start,
        end,
        limit: p.limit(s.cfg.max_limit)?,
        direction: p.direction()?,
        step,
    };
    let (data, stats) = run_range(&s.engine, &tenant, req).await?;
    Ok(success(data, &stats))
}

async fn query(
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
                start: t - 3_600_000_000_000,
                end: t + 1,
            };
            let (entries, stats) = s
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
            Ok(success(
                json!({"resultType": "streams", "result": streams_json(entries), "stats": stats_json(&stats, started)}),
                &stats,
            ))
        }
        Query::Metric(m) => {
            let (matrix, stats) = s.engine.metric(&tenant, &m, t, t, 1, true).await?;
            let result: Vec<Value> = matrix
                .iter()
                .filter_map(|(l, pts)| {
                    pts.get(&0).map(
                        |v| json!({"metric": labels_json(l), "value": [ts_json(t), value_str(*v)]}),
                    )
                })
                .collect();
            Ok(success(
                json!({"resultType": "vector", "result": result, "stats": stats_json(&stats, started)}),
                &stats,
            ))
        }
    }
}

/// The `match[]` selectors of a series request, or `query`'s.
fn selectors(p: &Params) -> Result<Vec<LogQuery>, ApiError> {
    let mut out = Vec::new();
    for m in p
        .all("match[]")
        .into_iter()
        .chain(p.all("match"))
        .chain(p.get("query"))
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

async fn series_of(
    s: &AppState,
    tenant: &str,
    p: &Params,
) -> Result<(Vec<Labels>, Stats), ApiError> {
    let (start, end) = p.range(6 * 3_600_000_000_000)?;
    let matchers: Vec<_> = selectors(p)?.into_iter().map(|q| q.matchers).collect();
    Ok(s.engine
        .series(tenant, TimeRange { start, end }, &matchers)
        .await?)
}

async fn series(
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

async fn labels(
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

async fn label_values(
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

async fn index_stats(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(3_600_000_000_000)?;
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
    Ok((
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response())
}

async fn index_volume(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let p = Params::new(&uri, &body);
    let (start, end) = p.range(3_600_000_000_000)?;
    let Query::Log(q) = logql::parse(p.query()?)? else {
        return Err(ApiError::bad("index/volume takes a stream selector"));
    };
    let targets: Vec<String> = match p.get("targetLabels") {
        Some(t) => t.split(',').map(str::to_owned).collect(),
        None => q.matchers.iter().map(|m| m.name.clone()).collect(),
    };
    let expr = crate::logql::MetricExpr::Agg {
        op: crate::logql::AggOp::Sum,
        grouping: Some(crate::logql::Grouping {
            without: false,
            labels: targets,
        }),
        inner: Box::new(crate::logql::MetricExpr::Range {
            func: crate::logql::RangeFn::BytesOverTime,
            query: q,
            range_ns: (end - start).max(1),
        }),
    };
    let (matrix, stats) = s.engine.metric(&tenant, &expr, end, end, 1, true).await?;
    let limit = p.limit(s.cfg.max_limit)?;
    let mut result: Vec<(f64, Value)> = matrix
        .iter()
        .filter_map(|(l, pts)| {
            pts.get(&0).map(|v| {
                (
                    *v,
                    json!({"metric": labels_json(l), "value": [ts_json(end), value_str(*v)]}),
                )
            })
        })
        .collect();
    result.sort_by(|a, b| b.0.total_cmp(&a.0));
    result.truncate(limit);
    Ok(success(
        json!({"resultType": "vector", "result": result.into_iter().map(|r| r.1).collect::<Vec<_>>()}),
        &stats,
    ))
}

async fn buildinfo() -> Response {
    let body = json!({"version": "2.9.0", "revision": "skidder", "branch": "main", "buildUser": "skidder",
                      "buildDate": "", "goVersion": ""});
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> String {
    render_metrics(&s.engine.metrics().registry)
}

/// Decides the request's tenant once, for every handler behind it.
async fn authenticate(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    match s.cfg.tenancy.tenant(req.headers()) {
        Ok(t) => {
            req.extensions_mut().insert(Tenant(t));
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Counts a query in flight until dropped, even when a client hangs up
/// and its request future is dropped mid-way.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Runs a query in one of the concurrency slots, within the timeout.
async fn limit(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let permit = match s.slots.try_acquire() {
        Ok(p) => Ok(p),
        Err(_) if s.cfg.queue_wait.is_zero() => Err(()),
        Err(_) => match tokio::time::timeout(s.cfg.queue_wait, s.slots.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(()),
        },
    };
    let Ok(_permit) = permit else {
        return ApiError::rejected(
            StatusCode::TOO_MANY_REQUESTS,
            "concurrency",
            format!(
                "too many outstanding requests: {} queries are running; retry later",
                s.cfg.max_concurrent_queries
            ),
        )
        .into_response();
    };
    let _in_flight = InFlight::new(&s.engine.metrics().queries_in_flight);
    // Dropping the handler's future cancels its fetches: nothing runs on.
    tokio::time::timeout(s.cfg.query_timeout, next.run(req))
        .await
        .unwrap_or_else(|_| {
        ApiError::rejected(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "request timed out after {:?}, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed",
                s.cfg.query_timeout
            ),
        )
        .into_response()
    })
}

/// Counts every request by endpoint and status, and times it.
async fn observe(
    State(s): State<Shared>,
    path: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let endpoint = path
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    let m = s.engine.metrics();
    if let Some(Rejected(reason)) = resp.extensions().get::<Rejected>() {
        m.queries_rejected.with_label_values(&[reason]).inc();
    }
    m.requests
        .with_label_values(&[&endpoint, resp.status().as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[&endpoint])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// `/ready` and `/metrics` are open; everything under `/loki/api/v1` is
/// authenticated, and every query endpoint limited.
pub fn router(state: Shared) -> Router {
    let queries = Router::new()
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(label_values).post(label_values),
        )
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/index/stats",
            get(index_stats).post(index_stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(index_volume).post(index_volume),
        )
        .route_layer(from_fn_with_state(state.clone(), limit));
    let api = queries
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route_layer(from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/ready", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .merge(api)
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}
