//! The searcher's settings: a TOML file, overridden by environment
//! variables and flags (see `src/main.rs`). Unknown keys are errors.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use skidder_common::service::load_toml;
pub use skidder_common::service::ConfigError;
use skidder_common::storage::{S3Config, StoreUrl};

use crate::api::ApiConfig;
use crate::auth::{valid_tenant, TenantPolicy, Tokens};
use crate::engine::EngineConfig;
use crate::export::jobs::ExportTarget;
use crate::live::TailLimits;
use crate::ruler::RulerConfig;

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
    /// Longest time range a query may span, in hours (a metric query's
    /// range-vector lookback counts).
    pub max_query_hours: i64,
    /// Uncompressed log bytes one query may scan; more is a 400.
    pub max_query_bytes_scanned: u64,
    /// Series one metric query or `/series` request may return; more is a 400.
    pub max_query_series: usize,
    /// Values a range function over unwrapped values may keep (16 bytes
    /// each); more is a 400.
    pub max_query_samples: usize,
    /// A query still running after this is cancelled with a 504.
    pub query_timeout_secs: u64,
    /// Queries (every `/loki/api/v1/*` endpoint but buildinfo) run at once.
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot before it gets a 429; 0 rejects at once.
    pub query_queue_wait_ms: u64,
    /// Blocks fetched at once per query.
    pub fetch_concurrency: usize,
    /// Index objects (small) fetched at once per query.
    pub index_fetch_concurrency: usize,
    /// Memory for cached listings and indexes.
    pub cache_bytes: usize,
    /// How long a cached listing of a closed hour is used before it is
    /// read again (blocks still arrive late, when the indexer lags); 0
    /// never caches listings.
    pub listing_cache_secs: u64,
    /// Must equal the indexer's `parse.max_token_value_len`.
    pub max_token_value_len: usize,
    /// Read index packs (written by `skidder pack`) where present.
    pub read_index_packs: bool,
    /// Prune with an hour's sliced blooms (written by `skidder pack`)
    /// before reading its indexes, where present.
    pub read_sliced_blooms: bool,
    pub auth: AuthConfig,
    pub export: ExportConfig,
    pub tail: TailConfig,
    pub ruler: RulerSettings,
}

/// The ruler (`docs/DESIGN.md`, "Ruler"). Off unless `rules_dir` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulerSettings {
    /// Rule files: `<dir>/<namespace>.yaml` for the default tenant,
    /// `<dir>/<tenant>/<namespace>.yaml` per tenant.
    pub rules_dir: String,
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`.
    pub alertmanager_url: String,
    /// Remote-write URL for recorded series, e.g.
    /// `http://prometheus:9090/api/v1/write`.
    pub remote_write_url: String,
    /// For groups that name no `interval`.
    pub evaluation_interval_secs: u64,
    /// Base of alerts' `generatorURL` (Grafana, say).
    pub external_url: String,
}

impl Default for RulerSettings {
    fn default() -> Self {
        RulerSettings {
            rules_dir: String::new(),
            alertmanager_url: String::new(),
            remote_write_url: String::new(),
            evaluation_interval_secs: 60,
            external_url: "http://localhost:3000".into(),
        }
    }
}

impl RulerSettings {
    /// The ruler's settings, if it is on.
    pub fn ruler(&self, default_tenant: &str) -> Option<RulerConfig> {
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        (!self.rules_dir.is_empty()).then(|| RulerConfig {
            rules_dir: self.rules_dir.clone().into(),
            default_tenant: default_tenant.to_owned(),
            alertmanager_url: some(&self.alertmanager_url),
            remote_write_url: some(&self.remote_write_url),
            evaluation_interval: Duration::from_secs(self.evaluation_interval_secs.max(1)),
            external_url: self.external_url.clone(),
        })
    }
}

/// Live tail (`/loki/api/v1/tail`). Off unless `indexer_config` names the
/// indexer's config file: the searcher then reads the same Kafka topics
/// (no consumer group, nothing committed) and maps records to tenants,
/// apps and labels with the same `[parse]` rules.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    pub indexer_config: String,
    /// Tails one tenant may hold open at once (429 past it).
    pub max_per_tenant: usize,
    /// A tail is closed after this long.
    pub max_duration_secs: u64,
    /// Lines held for a client that is behind; past it they are dropped
    /// and reported in `dropped_entries`.
    pub max_pending_lines: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        let l = TailLimits::default();
        TailConfig {
            indexer_config: String::new(),
            max_per_tenant: l.max_per_tenant,
            max_duration_secs: l.max_duration.as_secs(),
            max_pending_lines: l.max_pending,
        }
    }
}

/// Background exports (`POST /skidder/api/v1/exports`). Off unless `url`
/// is set; jobs write under `<url>/<tenant>/<job id>/`, with the store's
/// S3 settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// `s3://bucket/prefix` or `file:///path`; empty turns exports off.
    pub url: String,
    /// NDJSON per part object, in MiB.
    pub part_mib: usize,
    /// Exports run at once; more wait their turn.
    pub max_jobs: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            url: String::new(),
            part_mib: crate::export::DEFAULT_PART_BYTES >> 20,
            max_jobs: 2,
        }
    }
}

/// Optional bearer-token authentication. Empty means none.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `token -> tenant`. With any token set, every API request but
    /// `/ready` and `/metrics` needs `Authorization: Bearer <token>`, and
    /// the token decides the tenant.
    pub tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &self.tokens.len())
            .finish()
    }
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
            multi_tenant: a.tenancy.multi_tenant,
            default_tenant: a.tenancy.default_tenant,
            max_limit: a.max_limit,
            max_query_hours: e.max_hours,
            max_query_bytes_scanned: e.max_bytes_scanned,
            max_query_series: e.max_series,
            max_query_samples: e.max_samples,
            query_timeout_secs: a.query_timeout.as_secs(),
            max_concurrent_queries: a.max_concurrent_queries,
            query_queue_wait_ms: a.queue_wait.as_millis() as u64,
            fetch_concurrency: e.fetch_concurrency,
            index_fetch_concurrency: e.index_fetch_concurrency,
            cache_bytes: e.cache_bytes,
            listing_cache_secs: e.listing_cache_secs,
            max_token_value_len: e.max_token_value_len,
            read_index_packs: e.read_packs,
            read_sliced_blooms: e.read_slices,
            auth: AuthConfig::default(),
            export: ExportConfig::default(),
            tail: TailConfig::default(),
            ruler: RulerSettings::default(),
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
        if self.fetch_concurrency == 0 || self.index_fetch_concurrency == 0 {
            return bad(
                "fetch_concurrency/index_fetch_concurrency",
                "must be positive",
            );
        }
        if self.max_limit == 0 || self.max_query_hours <= 0 {
            return bad("max_limit/max_query_hours", "must be positive");
        }
        if self.max_query_bytes_scanned == 0 {
            return bad("max_query_bytes_scanned", "must be positive");
        }
        if self.max_query_series == 0 {
            return bad("max_query_series", "must be positive");
        }
        if self.max_query_samples == 0 {
            return bad("max_query_samples", "must be positive");
        }
        if self.query_timeout_secs == 0 {
            return bad("query_timeout_secs", "must be positive");
        }
        if self.max_concurrent_queries == 0 {
            return bad("max_concurrent_queries", "must be positive");
        }
        if self.tail.max_per_tenant == 0
            || self.tail.max_duration_secs == 0
            || self.tail.max_pending_lines == 0
        {
            return bad(
                "tail.max_per_tenant/max_duration_secs/max_pending_lines",
                "must be positive",
            );
        }
        if self.export.part_mib == 0 || self.export.max_jobs == 0 {
            return bad("export.part_mib/export.max_jobs", "must be positive");
        }
        if !self.export.url.is_empty() {
            self.export
                .url
                .parse::<StoreUrl>()
                .map_err(|reason| ConfigError::invalid("export.url", reason))?;
        }
        if !valid_tenant(&self.default_tenant) {
            return bad(
                "default_tenant",
                "must be 1 to 150 of A-Z a-z 0-9 ! - _ . * ' ( ), and not . or ..",
            );
        }
        for (token, tenant) in &self.auth.tokens {
            // Never echo the token: the error ends up in logs.
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return bad(
                    "auth.tokens",
                    "a token is empty or has characters other than visible ASCII",
                );
            }
            if !valid_tenant(tenant) {
                return Err(ConfigError::invalid(
                    "auth.tokens",
                    format!("tenant {tenant:?} is not a valid tenant id"),
                ));
            }
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
            index_fetch_concurrency: self.index_fetch_concurrency,
            cache_bytes: self.cache_bytes,
            listing_cache_secs: self.listing_cache_secs,
            max_token_value_len: self.max_token_value_len,
            max_hours: self.max_query_hours,
            max_bytes_scanned: self.max_query_bytes_scanned,
            max_series: self.max_query_series,
            max_samples: self.max_query_samples,
            read_packs: self.read_index_packs,
            read_slices: self.read_sliced_blooms,
            ..EngineConfig::default()
        }
    }

    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            tenancy: TenantPolicy {
                tokens: Tokens::new(&self.auth.tokens),
                multi_tenant: self.multi_tenant,
                default_tenant: self.default_tenant.clone(),
            },
            max_limit: self.max_limit,
            max_series: self.max_query_series,
            query_timeout: Duration::from_secs(self.query_timeout_secs),
            max_concurrent_queries: self.max_concurrent_queries,
            queue_wait: Duration::from_millis(self.query_queue_wait_ms),
            export: (!self.export.url.is_empty()).then(|| ExportTarget {
                url: self.export.url.clone(),
                s3: self.store.s3.clone(),
                part_bytes: self.export.part_mib << 20,
                max_jobs: self.export.max_jobs,
            }),
            live: None,
            tail: TailLimits {
                max_per_tenant: self.tail.max_per_tenant,
                max_duration: Duration::from_secs(self.tail.max_duration_secs),
                max_pending: self.tail.max_pending_lines,
            },
            ruler: None,
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
        assert!(cfg.auth.tokens.is_empty(), "the sample keeps auth off");
        // The sample documents every setting, at its default.
        let text = std::fs::read_to_string(path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        for key in [
            "max_query_hours",
            "max_query_bytes_scanned",
            "max_query_series",
            "max_query_samples",
            "query_timeout_secs",
            "max_concurrent_queries",
            "query_queue_wait_ms",
            "multi_tenant",
            "auth",
        ] {
            assert!(table.contains_key(key), "deploy/searcher.toml lacks {key}");
        }
        let d = SearcherConfig::default();
        assert_eq!(
            (
                cfg.max_query_hours,
                cfg.max_query_bytes_scanned,
                cfg.max_query_series,
                cfg.max_query_samples,
                cfg.query_timeout_secs,
                cfg.max_concurrent_queries,
                cfg.query_queue_wait_ms,
                cfg.multi_tenant,
            ),
            (
                d.max_query_hours,
                d.max_query_bytes_scanned,
                d.max_query_series,
                d.max_query_samples,
                d.query_timeout_secs,
                d.max_concurrent_queries,
                d.query_queue_wait_ms,
                d.multi_tenant,
            )
        );
    }

    fn parse(text: &str) -> Result<SearcherConfig, ConfigError> {
        let cfg: SearcherConfig = skidder_common::service::parse_toml(text, "test")?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn limits_and_tokens_reach_the_engine_and_the_api() {
        let cfg = parse(
            r#"
            max_query_hours = 48
            max_query_bytes_scanned = 1000
            max_query_series = 7
            query_timeout_secs = 9
            max_concurrent_queries = 3
            query_queue_wait_ms = 0
            listing_cache_secs = 5
            read_index_packs = false
            read_sliced_blooms = false
            [auth]
            tokens = { "s3cr3t" = "team-a" }
            "#,
        )
        .unwrap();
        let (e, a) = (cfg.engine(), cfg.api());
        assert_eq!(
            (e.max_hours, e.max_bytes_scanned, e.max_series),
            (48, 1000, 7)
        );
        assert_eq!(a.max_series, 7);
        assert_eq!(e.listing_cache_secs, 5);
        assert!(!e.read_packs && EngineConfig::default().read_packs);
        assert!(!e.read_slices && EngineConfig::default().read_slices);
        assert_eq!(a.query_timeout, Duration::from_secs(9));
        assert_eq!(a.max_concurrent_queries, 3);
        assert_eq!(a.queue_wait, Duration::ZERO);
        assert_eq!(a.tenancy.tokens.tenant_of(b"s3cr3t"), Some("team-a"));
        assert!(!format!("{cfg:?}").contains("s3cr3t"), "Debug hides tokens");
    }

    #[test]
    fn bad_limits_and_tokens_are_rejected() {
        for bad in [
            "max_query_bytes_scanned = 0",
            "max_query_series = 0",
            "query_timeout_secs = 0",
            "max_concurrent_queries = 0",
            "default_tenant = \"a|b\"",
            "[auth]\ntokens = { \"\" = \"team-a\" }",
            "[auth]\ntokens = { \"has space\" = \"team-a\" }",
            "[auth]\ntokens = { \"s3cr3t\" = \"../b\" }",
            "[auth]\nusers = {}",
            "max_query_bytes = 5",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }
}
