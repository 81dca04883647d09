//! How a request is refused: a status and a plain-text body, as Loki
//! writes its errors, plus the reason a limit or a check refused it, so
//! [`observe`](super::middleware::observe) can count it in
//! `skidder_searcher_queries_rejected_total{reason}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::engine::SearchError;
use crate::logql;

/// Marks a response refused by a limit or by authentication, for
/// `skidder_searcher_queries_rejected_total`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rejected(pub(super) &'static str);

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

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            rejected: None,
        }
    }

    pub(super) fn rejected(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
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
