//! Raw command-line flags, and how they override the config file. The
//! environment overrides are the `env = ...` names below, all in one place.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use skidder_common::service::Shutdown;
use skidder_common::storage::{open_store, ObjectStore, S3Config};
use skidder_indexer::config::IndexerConfig;
use skidder_indexer::metrics::Metrics;

#[derive(Parser)]
#[command(
    name = "skidder",
    version,
    about = "Log management on object storage: Kafka in, LogQL out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Index JSON logs from Kafka into object storage.
    Indexer(IndexerFlags),
    /// Print and verify an index or data block; optionally dump its records.
    Inspect(crate::inspect::InspectFlags),
    /// Serve LogQL over Loki's HTTP API, from object storage.
    Searcher(crate::search::SearcherFlags),
    /// Run a LogQL query against a searcher or straight against a store.
    Search(crate::search::SearchFlags),
    /// Pack each settled hour's indexes into one object, and slice its bloom
    /// filters, for cold searches.
    Pack(crate::pack::PackFlags),
    /// Run the whole system on an embedded Kafka with generated logs.
    Demo(crate::demo::DemoFlags),
}

/// Store flags shared by every command that reads or writes the store.
#[derive(Args, Clone, Debug, Default)]
pub struct StoreFlags {
    /// `file:///path` or `s3://bucket/prefix`.
    #[arg(long, env = "SKIDDER_STORE")]
    pub store: Option<String>,
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "SKIDDER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl StoreFlags {
    /// The store `--store` names, or `None` without one.
    pub fn open(
        &self,
        rt: &tokio::runtime::Runtime,
    ) -> anyhow::Result<Option<std::sync::Arc<dyn ObjectStore>>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        let s3 = S3Config {
            endpoint: self.s3_endpoint.clone(),
            ..Default::default()
        };
        let url = url.parse().map_err(anyhow::Error::msg)?;
        Ok(Some(
            rt.block_on(open_store(&url, &s3))
                .context("opening the store")?,
        ))
    }
}

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

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run_indexer(flags: IndexerFlags) -> anyhow::Result<ExitCode> {
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
            metrics.clone(),
        ))?;
    }
    tracing::info!(store = %store.url(), brokers = %cfg.kafka.brokers, topics = ?cfg.kafka.topics, "indexer starting");
    skidder_indexer::pipeline::run(&cfg, store, rt.handle(), metrics, shutdown)?;
    tracing::info!("indexer stopped cleanly");
    Ok(ExitCode::SUCCESS)
}
