//! Skidder's read path: stateless LogQL search over object storage, served
//! over Loki's HTTP API so Grafana and logcli work unchanged.
//!
//! In the order a request meets them:
//! - [`api`]: Loki's HTTP endpoints (its `middleware` decides the tenant
//!   and applies the query limits; its `params` reads Loki's parameters,
//!   with times from [`time`]);
//! - [`auth`]: the tenant of a request: bearer token, `X-Scope-OrgID` or default;
//! - [`logql`]: the query language, parsed with positioned errors;
//!   [`logql::eval`] runs a log query's pipeline on one line (filters,
//!   parsers, label filters);
//! - [`engine`]: listing, pruning (time, labels, bloom), scanning, metrics;
//!   its files are named in read-path order (see its module doc);
//! - [`export`]: a log query's whole result written to an object-store
//!   prefix, from `skidder search --export` or a background job;
//! - [`live`]: the newest records for live tails, from a feed the binary
//!   plugs in (Kafka);
//! - [`ruler`]: alerting and recording rules evaluated on a timer, sent to
//!   Alertmanager and by remote write.

pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod engine;
pub mod export;
pub mod live;
pub mod logql;
pub mod metrics;
pub mod ruler;
pub mod time;

use std::future::Future;
use std::sync::Arc;

/// Serves the Loki API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<engine::Engine>,
    cfg: api::ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(Arc::new(api::AppState::new(engine, cfg)));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
