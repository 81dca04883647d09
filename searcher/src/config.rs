//! The searcher's settings: a TOML file, overridden by environment
//! variables and flags (see `src/main.rs`). Unknown keys are errors.

use serde::Deserialize;
use skidder_common::service::load_toml;
pub use skidder_common::service::ConfigError;
use skidder_common::storage::{S3Config, StoreUrl};

use crate::api::ApiConfig;
use crate::engine::EngineConfig;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SearcherConfig {
    pub listen: String,
    pub store: StoreConfig,
    /// Tenancy as Loki does it: from `X-Scope-OrgID`, or one fixed tenant.
    pub multi_tenant: bool,
    pub default_tenant: String,
    /// Largest `limit` a query may ask for.
    pub max_limit: usize,
    /// Longest time range a query may span, in hours.
    pub max_query_hours: i64,
    /// Blocks fetched at once per query.
    pub fetch_concurrency: usize,
    /// Memory for cached listings and indexes.
    pub cache_bytes: usize,
    /// Must equal the indexer's `parse.max_token_value_len`.
    pub max_token_value_len: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub url: String,
    pub s3: S3Config,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "file://./skidder-data".into(),
            s3: S3Config::default(),
        }
    }
}

impl Default for SearcherConfig {
    fn default() -> Self {
        let e = EngineConfig::default();
        let a = ApiConfig::default();
        SearcherConfig {
            listen: "127.0.0.1:7280".into(),
            store: StoreConfig::default(),
            multi_tenant: a.multi_tenant,
            default_tenant: a.default_tenant,
            max_limit: a.max_limit,
            max_query_hours: e.max_hours,
            fetch_concurrency: e.fetch_concurrency,
            cache_bytes: e.cache_bytes,
            max_token_value_len: e.max_token_value_len,
        }
    }
}

impl SearcherConfig {
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        load_toml(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| Err(ConfigError::invalid(field, reason));
        self.store_url()?;
        if self.fetch_concurrency == 0 {
            return bad("fetch_concurrency", "must be positive");
        }
        if self.max_limit == 0 || self.max_query_hours <= 0 {
            return bad("max_limit/max_query_hours", "must be positive");
        }
        if self.default_tenant.is_empty() {
            return bad("default_tenant", "is empty");
        }
        Ok(())
    }

    pub fn store_url(&self) -> Result<StoreUrl, ConfigError> {
        self.store
            .url
            .parse()
            .map_err(|reason: String| ConfigError::invalid("store.url", reason))
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            fetch_concurrency: self.fetch_concurrency,
            cache_bytes: self.cache_bytes,
            max_token_value_len: self.max_token_value_len,
            max_hours: self.max_query_hours,
            ..EngineConfig::default()
        }
    }

    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            multi_tenant: self.multi_tenant,
            default_tenant: self.default_tenant.clone(),
            max_limit: self.max_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_in_deploy_parses_and_validates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/searcher.toml");
        let cfg = SearcherConfig::from_file(path).unwrap();
        cfg.validate().unwrap();
        assert!(cfg.multi_tenant);
    }
}
