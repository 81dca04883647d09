//! Who is asking: the tenant of a request, from a bearer token when tokens
//! are configured, else from `X-Scope-OrgID` (Loki's multi-tenancy), else
//! the one default tenant.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

pub use skidder_common::format::layout::valid_tenant;

/// Bearer tokens and the tenant each one grants. `Debug` never prints a
/// token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    tokens: Vec<(Vec<u8>, String)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// `token -> tenant`, as `[auth] tokens` holds them.
    pub fn new(map: &BTreeMap<String, String>) -> Self {
        Tokens {
            tokens: map
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tenant of `presented`. Every configured token is compared, each
    /// in constant time, so the time taken does not say which one (or how
    /// much of one) matched.
    pub fn tenant_of(&self, presented: &[u8]) -> Option<&str> {
        let mut found = None;
        for (token, tenant) in &self.tokens {
            if bool::from(token.as_slice().ct_eq(presented)) {
                found = Some(tenant.as_str());
            }
        }
        found
    }
}

/// How a request's tenant is decided.
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    /// With tokens, the token decides and `multi_tenant` is not consulted.
    pub tokens: Tokens,
    /// Require `X-Scope-OrgID`; otherwise every request is `default_tenant`.
    pub multi_tenant: bool,
    pub default_tenant: String,
}

/// Why a request has no tenant; becomes a 400, 401 or 403.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no org id")]
    NoOrgId,
    #[error("invalid tenant id {0:?}")]
    InvalidTenant(String),
    #[error("more than one {0} header")]
    Repeated(&'static str),
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("X-Scope-OrgID {header:?} is not the tenant of the bearer token")]
    TenantMismatch { header: String },
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::NoOrgId | AuthError::MissingToken | AuthError::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::TenantMismatch { .. } => StatusCode::FORBIDDEN,
            AuthError::InvalidTenant(_) | AuthError::Repeated(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The one value of header `name`, if any; two or more are an error, so
/// that no two layers can read different tenants from one request.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h [u8]>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::Repeated(name));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// `X-Scope-OrgID`, validated; `None` when absent.
fn org_id(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let Some(raw) = single(headers, "x-scope-orgid")? else {
        return Ok(None);
    };
    let t = String::from_utf8_lossy(raw);
    if !valid_tenant(&t) {
        return Err(AuthError::InvalidTenant(t.into_owned()));
    }
    Ok(Some(t.into_owned()))
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    let raw = single(headers, header::AUTHORIZATION.as_str())?.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = match raw.iter().position(|&b| b == b' ') {
        Some(i) => (&raw[..i], raw[i + 1..].trim_ascii()),
        None => return Err(AuthError::MissingToken),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

impl TenantPolicy {
    /// The tenant a request reads. With tokens: a missing or unknown token
    /// is 401; an `X-Scope-OrgID` naming another tenant is 403 (a client
    /// configured for one tenant must not silently get another's data).
    pub fn tenant(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        if !self.tokens.is_empty() {
            let token = bearer(headers)?;
            let tenant = self
                .tokens
                .tenant_of(token)
                .ok_or(AuthError::InvalidToken)?;
            return match org_id(headers)? {
                Some(h) if h != tenant => Err(AuthError::TenantMismatch { header: h }),
                _ => Ok(tenant.to_owned()),
            };
        }
        if !self.multi_tenant {
            return Ok(self.default_tenant.clone());
        }
        org_id(headers)?.ok_or(AuthError::NoOrgId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn multi() -> TenantPolicy {
        TenantPolicy {
            tokens: Tokens::default(),
            multi_tenant: true,
            default_tenant: "default".into(),
        }
    }

    fn with_tokens() -> TenantPolicy {
        let map = BTreeMap::from([
            ("s3cr3t".to_owned(), "team-a".to_owned()),
            ("other-token".to_owned(), "team-b".to_owned()),
        ]);
        TenantPolicy {
            tokens: Tokens::new(&map),
            ..multi()
        }
    }

    #[test]
    fn tenant_header_is_validated_like_loki_without_federation() {
        let p = multi();
        assert_eq!(p.tenant(&headers(&[])), Err(AuthError::NoOrgId));
        assert_eq!(
            p.tenant(&headers(&[("x-scope-orgid", b"team-a")])),
            Ok("team-a".into())
        );
        for bad in [
            &b""[..],
            b"../b",
            b"a|b",
            b"a/b",
            b"/",
            b".",
            b"..",
            b"a b",
            b"caf\xc3\xa9",
            &[b'x'; 151],
        ] {
            let e = p.tenant(&headers(&[("x-scope-orgid", bad)])).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let two = headers(&[("x-scope-orgid", b"a"), ("x-scope-orgid", b"b")]);
        assert_eq!(p.tenant(&two), Err(AuthError::Repeated("x-scope-orgid")));
    }

    #[test]
    fn single_tenant_mode_ignores_the_header() {
        let p = TenantPolicy {
            multi_tenant: false,
            ..multi()
        };
        assert_eq!(
            p.tenant(&headers(&[("x-scope-orgid", b"x")])),
            Ok("default".into())
        );
    }

    #[test]
    fn the_token_decides_the_tenant() {
        let p = with_tokens();
        let auth = |v: &'static [u8]| ("authorization", v);
        assert_eq!(
            p.tenant(&headers(&[auth(b"Bearer s3cr3t")])),
            Ok("team-a".into())
        );
        assert_eq!(
            p.tenant(&headers(&[auth(b"bearer other-token")])),
            Ok("team-b".into())
        );
        assert_eq!(p.tenant(&headers(&[])), Err(AuthError::MissingToken));
        for bad in [&b"Basic s3cr3t"[..], b"Bearer", b"Bearer ", b"s3cr3t"] {
            assert_eq!(
                p.tenant(&headers(&[auth(bad)])),
                Err(AuthError::MissingToken),
                "{bad:?}"
            );
        }
        for wrong in [&b"Bearer s3cr3"[..], b"Bearer s3cr3tt", b"Bearer S3CR3T"] {
            assert_eq!(
                p.tenant(&headers(&[auth(wrong)])),
                Err(AuthError::InvalidToken)
            );
        }
        // The header may repeat the token's tenant, never name another.
        assert_eq!(
            p.tenant(&headers(&[
                auth(b"Bearer s3cr3t"),
                ("x-scope-orgid", b"team-a")
            ])),
            Ok("team-a".into())
        );
        let e = p
            .tenant(&headers(&[
                auth(b"Bearer s3cr3t"),
                ("x-scope-orgid", b"team-b"),
            ]))
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let two = headers(&[auth(b"Bearer s3cr3t"), auth(b"Bearer other-token")]);
        assert_eq!(p.tenant(&two), Err(AuthError::Repeated("authorization")));
    }

    #[test]
    fn debug_never_prints_a_token() {
        let p = with_tokens();
        let s = format!("{p:?}");
        assert!(!s.contains("s3cr3t") && !s.contains("other-token"), "{s}");
    }
}
