//! The indexer's settings: a TOML file, overridden by environment variables
//! and flags (see `src/main.rs` for the overrides, listed in one place).
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;

use serde::Deserialize;
use skidder_common::format::layout::{valid_tenant, MAX_APP_LEN};
pub use skidder_common::service::ConfigError;
use skidder_common::service::{load_toml, parse_toml};
use skidder_common::storage::{S3Config, StoreUrl};

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::invalid(field, reason)
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexerConfig {
    pub kafka: KafkaConfig,
    pub store: StoreConfig,
    pub parse: ParseConfig,
    pub blocks: BlockConfig,
    pub memory: MemoryConfig,
    pub upload: UploadConfig,
    /// Where `/metrics` is served, e.g. `127.0.0.1:9464`. Off when unset.
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    /// Passed to librdkafka as they are: SASL, TLS, fetch sizes, ...
    pub properties: BTreeMap<String, String>,
    /// Messages per batch handed to the parser.
    pub batch_messages: usize,
    /// Payload bytes per batch handed to the parser.
    pub batch_bytes: usize,
    /// How long a partial batch waits for more messages.
    pub batch_linger_ms: u64,
    pub commit_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Strings as RFC 3339, numbers as epoch seconds/ms/µs/ns by magnitude.
    Auto,
    Rfc3339,
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppSource {
    Fixed(String),
    /// e.g. `{kubernetes.namespace}-{service}`: dotted paths into the record.
    Template(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    Fixed(String),
    Field(String),
    Topic,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParseConfig {
    /// Tried in order; dotted paths reach nested fields.
    pub timestamp_fields: Vec<String>,
    pub timestamp_format: TimestampFormat,
    pub app: AppSource,
    /// The app when the template cannot be filled (plain text, missing field).
    pub default_app: String,
    pub tenant: TenantSource,
    /// The tenant when the tenant field is missing.
    pub default_tenant: String,
    /// Dotted paths; the label name is the path flattened Loki's way.
    pub label_fields: Vec<String>,
    /// Field values longer than this get no `key=value` token.
    pub max_token_value_len: usize,
    /// A line (a record) longer than this is refused: written whole to
    /// `_deadletter/` and counted, not indexed.
    pub max_line_bytes: usize,
    /// A label value longer than this refuses its record, as Loki's
    /// `max_label_value_length` does.
    pub max_label_value_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// A block is cut when its raw lines reach this many bytes.
    pub target_bytes: usize,
    /// ... or when it has been open this long.
    pub flush_interval_secs: u64,
    /// The bloom filter's false-positive rate: the share of blocks a
    /// needle query fetches in vain.
    pub bloom_fp_rate: f64,
    /// The worst rate accepted when `bloom_fp_rate` would make the filter
    /// larger than `bloom_max_share` of the block's raw bytes.
    pub bloom_max_fp_rate: f64,
    /// The filter's size budget, as a share of the block's raw bytes.
    pub bloom_max_share: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Resident memory the indexer must stay under.
    pub limit_bytes: u64,
    /// Byte budget of each inter-stage queue.
    pub queue_bytes: usize,
    /// Kafka fetching pauses above this fraction of the limit ...
    pub high_water: f64,
    /// ... and resumes below this one.
    pub low_water: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    pub concurrency: usize,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// How often the partition checkpoints are written and the ledger
    /// pruned. A checkpoint matters only when Kafka lost a commit, and
    /// each costs a PUT per partition: at 5 s, 32 partitions wrote 553k a
    /// day, more than all blocks should. At 60 s the ledger keeps about a
    /// minute more of entries, which a restart lists once.
    pub checkpoint_interval_secs: u64,
    /// How long SIGTERM or a rebalance waits for in-flight blocks.
    pub drain_timeout_secs: u64,
    /// How often the indexes stored since the last tail pack are written
    /// as one pack per hour, so that a query over the newest, unpacked
    /// hour GETs a few packs instead of every index (`tail_packs`); 0
    /// writes none.
    pub tail_pack_secs: u64,
    /// An hour's tail pack is written early once it holds this many
    /// indexes.
    pub tail_pack_max_blocks: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topics: vec!["logs".into()],
            group_id: "skidder-indexer".into(),
            properties: BTreeMap::new(),
            batch_messages: 10_000,
            batch_bytes: 1 << 20,
            batch_linger_ms: 50,
            commit_interval_ms: 1000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "file://./skidder-data".into(),
            s3: S3Config::default(),
        }
    }
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            timestamp_fields: ["ts", "timestamp", "time", "@timestamp"]
                .map(String::from)
                .to_vec(),
            timestamp_format: TimestampFormat::Auto,
            app: AppSource::Template("{app}".into()),
            default_app: "unknown".into(),
            tenant: TenantSource::Fixed("default".into()),
            default_tenant: "default".into(),
            label_fields: ["service", "level", "pod"].map(String::from).to_vec(),
            max_token_value_len: skidder_common::format::tokens::DEFAULT_MAX_TOKEN_VALUE_LEN,
            max_line_bytes: 1 << 20,
            max_label_value_bytes: 2048,
        }
    }
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            target_bytes: 4 << 20,
            flush_interval_secs: 120,
            bloom_fp_rate: 0.001,
            bloom_max_fp_rate: 0.01,
            bloom_max_share: 0.008,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit_bytes: 1 << 30,
            queue_bytes: 32 << 20,
            high_water: 0.7,
            low_water: 0.5,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            concurrency: 8,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            checkpoint_interval_secs: 60,
            drain_timeout_secs: 60,
            tail_pack_secs: 10,
            tail_pack_max_blocks: 1000,
        }
    }
}

impl IndexerConfig {
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        load_toml(path)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        parse_toml(text, "<config>")
    }

    /// Checks everything that can be checked without connecting anywhere.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "is empty"));
        }
        if self.kafka.topics.is_empty() || self.kafka.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                "needs at least one non-empty topic",
            ));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "is empty"));
        }
        self.store_url()?;
        for (key, rate) in [
            ("blocks.bloom_fp_rate", self.blocks.bloom_fp_rate),
            ("blocks.bloom_max_fp_rate", self.blocks.bloom_max_fp_rate),
            ("blocks.bloom_max_share", self.blocks.bloom_max_share),
        ] {
            if !(rate > 0.0 && rate < 1.0) {
                return Err(invalid(key, "must be between 0 and 1, exclusive"));
            }
        }
        if self.blocks.bloom_max_fp_rate < self.blocks.bloom_fp_rate {
            return Err(invalid(
                "blocks.bloom_max_fp_rate",
                "must not be below blocks.bloom_fp_rate",
            ));
        }
        if self.blocks.target_bytes == 0 {
            return Err(invalid("blocks.target_bytes", "must be positive"));
        }
        let m = &self.memory;
        if !(0.0 < m.low_water && m.low_water < m.high_water && m.high_water <= 1.0) {
            return Err(invalid("memory", "need 0 < low_water < high_water <= 1"));
        }
        if m.queue_bytes == 0 || m.limit_bytes < 64 << 20 {
            return Err(invalid(
                "memory",
                "queue_bytes must be positive and limit_bytes at least 64 MiB",
            ));
        }
        if self.upload.concurrency == 0 {
            return Err(invalid("upload.concurrency", "must be positive"));
        }
        let p = &self.parse;
        if p.max_line_bytes == 0 || p.max_label_value_bytes == 0 {
            return Err(invalid(
                "parse.max_line_bytes/max_label_value_bytes",
                "must be positive",
            ));
        }
        let tenants = [
            Some(&p.default_tenant),
            match &p.tenant {
                TenantSource::Fixed(t) => Some(t),
                _ => None,
            },
        ];
        if tenants.into_iter().flatten().any(|t| !valid_tenant(t)) {
            return Err(invalid(
                "parse.tenant/default_tenant",
                "a tenant is 1-150 bytes of [A-Za-z0-9!-_.*'()], not . or ..",
            ));
        }
        let apps = [
            Some(&p.default_app),
            match &p.app {
                AppSource::Fixed(a) => Some(a),
                _ => None,
            },
        ];
        if apps
            .into_iter()
            .flatten()
            .any(|a| a.is_empty() || a.len() > MAX_APP_LEN)
        {
            return Err(invalid("parse.app/default_app", "an app is 1-128 bytes"));
        }
        if let AppSource::Template(t) = &self.parse.app {
            crate::models::template::AppTemplate::parse(t)
                .map_err(|e| invalid("parse.app", e.to_string()))?;
        }
        Ok(())
    }

    pub fn store_url(&self) -> Result<StoreUrl, ConfigError> {
        self.store.url.parse().map_err(|e| invalid("store.url", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_configs_in_deploy_parse_and_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("indexer") && name.ends_with(".toml") {
                let cfg = IndexerConfig::from_file(path.to_str().unwrap()).unwrap();
                cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                seen += 1;
            }
        }
        assert!(seen > 0, "no indexer*.toml in deploy/");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(IndexerConfig::from_toml("[kafka]\nbrokerz = \"x\"").is_err());
    }

    #[test]
    fn tenant_and_app_sources_parse() {
        let cfg =
            IndexerConfig::from_toml("[parse]\ntenant = \"topic\"\napp = { fixed = \"web\" }\n")
                .unwrap();
        assert_eq!(cfg.parse.tenant, TenantSource::Topic);
        assert_eq!(cfg.parse.app, AppSource::Fixed("web".into()));
        let cfg = IndexerConfig::from_toml("[parse]\ntenant = { field = \"org\" }\n").unwrap();
        assert_eq!(cfg.parse.tenant, TenantSource::Field("org".into()));
    }

    #[test]
    fn tenants_apps_and_limits_are_validated() {
        let base = "[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\ngroup_id = \"g\"\n[store]\nurl = \"file:///tmp/x\"\n[parse]\n";
        let check = |extra: &str| {
            IndexerConfig::from_toml(&format!("{base}{extra}"))
                .unwrap()
                .validate()
        };
        check("").unwrap();
        for (extra, field) in [
            ("tenant = { fixed = \"../b\" }", "tenant"),
            ("default_tenant = \"a|b\"", "tenant"),
            ("default_app = \"\"", "app"),
            ("max_line_bytes = 0", "max_line_bytes"),
        ] {
            let e = check(extra).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
    }
}
