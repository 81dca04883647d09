//! Export jobs over HTTP, Skidder's own endpoints beside Loki's (Loki has
//! no export): `POST /skidder/api/v1/exports` starts one with `query`,
//! `start`/`end` or `since` (Loki's parameters, in the query string or a
//! form body) and answers 202 with the job; `GET …/exports/{id}` reports
//! its progress and, once done, its line count; `GET …/exports` lists the
//! tenant's jobs. The job itself is `crate::export::jobs`.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skidder_common::format::layout::{hour_of, NS_PER_HOUR};

use super::error::ApiError;
use super::middleware::Tenant;
use super::params::Params;
use super::responses::json_ok;
use super::Shared;
use crate::engine::TimeRange;
use crate::export::jobs::JobError;
use crate::logql::{self, Query};

fn job_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let status = match e {
            JobError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            JobError::Off => StatusCode::NOT_FOUND,
            JobError::Url(..) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError {
            status,
            message: e.to_string(),
            rejected: None,
        }
    }
}

pub(super) async fn start_export(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &body);
    let query = p.query()?;
    if let Query::Metric(_) = logql::parse(query)? {
        return Err(ApiError::bad(format!(
            "an export takes a log query; {query:?} is a metric query"
        )));
    }
    let (start, end) = p.range(NS_PER_HOUR)?;
    // Counted as the engine counts them: the hour prefixes it would list.
    let hours = if end > start {
        hour_of(end - 1) - hour_of(start) + 1
    } else {
        0
    };
    let max = s.engine.config().max_hours;
    if hours > max {
        return Err(ApiError::bad(format!(
            "the export's range spans {hours} hours; at most {max} are allowed"
        )));
    }
    let job = s
        .exports
        .start(s.engine.clone(), &tenant, query, TimeRange { start, end })?;
    Ok(job_json(StatusCode::ACCEPTED, &job.to_json()))
}

pub(super) async fn export_status(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.exports.get(&tenant, &id) {
        Some(job) => Ok(json_ok(&job.to_json())),
        None => Err(ApiError::not_found(format!("no export {id:?}"))),
    }
}

pub(super) async fn list_exports(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Response {
    let jobs: Vec<Value> = s
        .exports
        .list(&tenant)
        .iter()
        .map(|j| j.to_json())
        .collect();
    json_ok(&json!({ "exports": jobs }))
}
