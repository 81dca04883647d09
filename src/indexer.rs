//! `skidder indexer`: the write path, Kafka in and blocks out. Flags
//! override the config file, and the environment names are the `env = ...`
//! names below.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use skidder_common::service::Shutdown;
use skidder_common::storage::open_store;
use skidder_indexer::config::IndexerConfig;
use skidder_indexer::metrics::Metrics;

use crate::flags::{runtime, StoreFlags};

#[derive(Args)]
pub struct IndexerFlags {
    /// TOML config file; flags and environment override it.
    #[arg(long, env = "SKIDDER_CONFIG")]
    pub config: Option<String>,
    #[arg(long, env = "SKIDDER_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Comma-separated.
    #[arg(long, env = "SKIDDER_TOPICS", value_delimiter = ',')]
    pub topics: Option<Vec<String>>,
    #[arg(long, env = "SKIDDER_GROUP_ID")]
    pub group_id: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
    /// Serve Prometheus metrics here, e.g. 127.0.0.1:9464.
    #[arg(long, env = "SKIDDER_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

impl IndexerFlags {
    /// The config file with every given flag applied over it.
    pub fn settings(&self) -> anyhow::Result<IndexerConfig> {
        let mut cfg = match &self.config {
            Some(path) => IndexerConfig::from_file(path)?,
            None => IndexerConfig::default(),
        };
        if let Some(v) = &self.kafka_brokers {
            cfg.kafka.brokers = v.clone();
        }
        if let Some(v) = &self.topics {
            cfg.kafka.topics = v.clone();
        }
        if let Some(v) = &self.group_id {
            cfg.kafka.group_id = v.clone();
        }
        if let Some(v) = &self.store.store {
            cfg.store.url = v.clone();
        }
        if let Some(v) = &self.store.s3_endpoint {
            cfg.store.s3.endpoint = Some(v.clone());
        }
        if let Some(v) = &self.metrics_listen {
            cfg.metrics_listen = Some(v.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(flags: IndexerFlags) -> anyhow::Result<ExitCode> {
    // First, so a SIGTERM during start-up is a clean stop too.
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let cfg = flags.settings()?;
    skidder_indexer::failpoints::setup();
    let rt = runtime()?;
    let store = rt
        .block_on(open_store(&cfg.store_url()?, &cfg.store.s3))
        .context("opening the store")?;
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = &cfg.metrics_listen {
        rt.block_on(skidder_indexer::pipeline::serve_metrics(
            addr,
            metrics.registry.clone(),
        ))?;
    }
    tracing::info!(store = %store.url(), brokers = %cfg.kafka.brokers, topics = ?cfg.kafka.topics, "indexer starting");
    skidder_indexer::pipeline::run(&cfg, store, rt.handle(), metrics, shutdown)?;
    tracing::info!("indexer stopped cleanly");
    Ok(ExitCode::SUCCESS)
}
