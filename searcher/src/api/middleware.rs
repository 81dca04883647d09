//! What wraps every handler, outermost first: [`observe`] counts and times
//! each request; [`authenticate`] decides its tenant once (bearer token,
//! `X-Scope-OrgID` or the default); [`limit`] gives a query one of
//! `max_concurrent_queries` slots and cancels it after `query_timeout`.
//! Doing this once here keeps tenancy and limits out of every handler, so
//! no endpoint can forget them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Rejected};
use super::Shared;

/// The tenant [`authenticate`] decided for a request.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// Decides the request's tenant once, for every handler behind it.
pub(super) async fn authenticate(
    State(s): State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
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
pub(super) async fn limit(State(s): State<Shared>, req: Request, next: Next) -> Response {
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
pub(super) async fn observe(
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
