//! Loki's HTTP API over the engine: the endpoints, parameters and JSON
//! shapes that Grafana's Loki data source and logcli use. Errors are plain
//! text with a 4xx/5xx status, as Loki writes them.
//!
//! Every `/loki/api/v1/*` and `/skidder/api/v1/*` request is authenticated first (the tenant is
//! decided once, in `middleware::authenticate`); queries then take one of
//! `max_concurrent_queries` slots, waiting at most `queue_wait` (else 429),
//! and are cancelled after `query_timeout` (504).
//!
//! A request passes through the files in this order:
//! `middleware` (metrics, tenant, limits), `params` (Loki's query
//! string and form parameters), `handlers` (one per endpoint, calling
//! the engine), `responses` (Loki's JSON shapes) or `error` (the
//! plain-text refusals). This file holds the settings and builds the
//! router.

mod error;
mod exports;
mod handlers;
mod middleware;
mod offsets;
mod params;
pub(crate) mod responses;
mod rules;
mod tail;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

use crate::auth::{TenantPolicy, Tokens};
use crate::engine::Engine;
use crate::export::jobs::{ExportTarget, Jobs};
use crate::live::{LiveFeed, TailLimits};
use crate::ruler::Ruler;

pub use error::ApiError;
pub use handlers::{run_range, RangeRequest};
pub use middleware::Tenant;
pub use offsets::{offset_json, DEFAULT_SPAN_NS as OFFSET_DEFAULT_SPAN_NS};

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
    /// Where export jobs write; `None` turns the export endpoints off.
    pub export: Option<ExportTarget>,
    /// The newest records, for `/loki/api/v1/tail`; `None` turns it off.
    pub live: Option<Arc<dyn LiveFeed>>,
    pub tail: TailLimits,
    /// The ruler whose rules and alerts the rules APIs show.
    pub ruler: Option<Arc<Ruler>>,
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
            export: None,
            live: None,
            tail: TailLimits::default(),
            ruler: None,
        }
    }
}

pub struct AppState {
    pub engine: Arc<Engine>,
    pub cfg: ApiConfig,
    /// One permit per query allowed to run.
    slots: Semaphore,
    exports: Jobs,
    tails: tail::TailCounts,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, cfg: ApiConfig) -> Self {
        AppState {
            slots: Semaphore::new(cfg.max_concurrent_queries.max(1)),
            exports: Jobs::new(cfg.export.clone()),
            tails: tail::TailCounts::default(),
            engine,
            cfg,
        }
    }
}

type Shared = Arc<AppState>;

/// `/ready` and `/metrics` are open; everything under `/loki/api/v1` and
/// `/skidder/api/v1` is authenticated, and every query endpoint limited
/// (export jobs and tails have their own limits).
pub fn router(state: Shared) -> Router {
    use handlers::*;
    use middleware::{authenticate, limit, observe};
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
        .route(
            "/loki/api/v1/detected_labels",
            get(detected_labels).post(detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(detected_fields).post(detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(detected_field_values).post(detected_field_values),
        )
        .route("/skidder/api/v1/offset", get(offsets::offset))
        .route_layer(from_fn_with_state(state.clone(), limit));
    let api = queries
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/skidder/api/v1/exports",
            post(exports::start_export).get(exports::list_exports),
        )
        .route("/skidder/api/v1/exports/{id}", get(exports::export_status))
        .route("/loki/api/v1/tail", get(tail::tail))
        .route("/loki/api/v1/rules", get(rules::loki_rules))
        .route("/prometheus/api/v1/rules", get(rules::prometheus_rules))
        .route("/prometheus/api/v1/alerts", get(rules::prometheus_alerts))
        .route(
            "/loki/api/v1/format_query",
            get(format_query).post(format_query),
        )
        .route_layer(from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/ready", get(|| async { "ready\n" }))
        .route("/metrics", get(metrics))
        .merge(api)
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}
