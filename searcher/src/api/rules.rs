//! The rules and alerts APIs that Grafana's alerting UI reads for a Loki
//! data source: `/loki/api/v1/rules` (the tenant's rule files as YAML, by
//! namespace) and Prometheus's `/prometheus/api/v1/rules` and
//! `/prometheus/api/v1/alerts` (JSON, with each rule's health, state and
//! active alerts). Read only: rules come from the ruler's files.

use axum::extract::{Extension, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::middleware::Tenant;
use super::params::Params;
use super::responses::json_ok;
use super::Shared;
use crate::ruler::Ruler;

/// The ruler, or the 404 that says it is off.
fn ruler(s: &Shared) -> Result<&Ruler, ApiError> {
    s.cfg.ruler.as_deref().ok_or_else(|| {
        ApiError::not_found("the ruler is off: set [ruler] rules_dir in the searcher's config")
    })
}

pub(super) async fn loki_rules(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Response, ApiError> {
    let ruler = ruler(&s)?;
    Ok(match ruler.rules_yaml(&tenant) {
        Some(yaml) => {
            (StatusCode::OK, [("content-type", "application/yaml")], yaml).into_response()
        }
        // Loki's answer for a tenant without rules.
        None => (StatusCode::NOT_FOUND, "no rule groups found\n").into_response(),
    })
}

pub(super) async fn prometheus_rules(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let ruler = ruler(&s)?;
    let p = Params::new(&uri, &[]);
    Ok(json_ok(&ruler.rules_json(&tenant, p.get("type"))))
}

pub(super) async fn prometheus_alerts(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Result<Response, ApiError> {
    let ruler = ruler(&s)?;
    Ok(json_ok(&ruler.alerts_json(&tenant)))
}
