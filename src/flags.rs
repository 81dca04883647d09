//! Flags and helpers that every command shares: the store flags, the
//! async runtime and the signal wait. Each command's own flags live in its
//! file; this one imports none of them.

use anyhow::Context;
use clap::Args;
use skidder_common::service::Shutdown;
use skidder_common::storage::{open_store, ObjectStore, S3Config};

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

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// For a command that runs passes on a timer: whether to stop now. Once
/// (`every` is `None`) it stops after the first pass; on a timer it waits
/// `every`, or stops early on SIGTERM or SIGINT.
pub fn stop_after_pass(
    rt: &tokio::runtime::Runtime,
    every: Option<std::time::Duration>,
    shutdown: &Shutdown,
) -> bool {
    let Some(every) = every else {
        return true;
    };
    // The timer needs the runtime: build it inside `block_on`.
    rt.block_on(async {
        tokio::time::timeout(every, signalled(shutdown.clone()))
            .await
            .is_ok()
    })
}

/// Resolves when SIGTERM or SIGINT has arrived.
pub async fn signalled(shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
