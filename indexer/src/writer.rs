//! Puts objects with the indexer's upload policy, for every writer in the
//! pipeline: the uploader's blocks and checkpoints, and the parser's dead
//! letters.
//!
//! A put is retried by the kind of its error. A blip (network, timeout, a
//! 5xx, throttling) is retried with exponential backoff and jitter, for
//! ever where the caller must not drop data: a failing store then stops
//! intake through backpressure, and holds memory down. An error that no
//! retry can fix (refused credentials, a bad request) fails at once, so
//! the indexer exits with the cause instead of retrying in silence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use skidder_common::storage::{ObjectStore, StorageError};
use thiserror::Error;

use crate::config::UploadConfig;
use crate::metrics::Metrics;

/// A put that failed for good: `what` names the object's role.
#[derive(Debug, Error)]
#[error("storing the {what}")]
pub struct PutError {
    pub what: &'static str,
    #[source]
    pub source: StorageError,
}

#[derive(Clone)]
pub struct Writer {
    pub store: Arc<dyn ObjectStore>,
    pub metrics: Arc<Metrics>,
    pub cfg: UploadConfig,
}

impl Writer {
    /// Puts until it succeeds, a non-retryable error comes, or
    /// `max_attempts` (unbounded when `None`) run out.
    pub async fn put_retrying(
        &self,
        what: &'static str,
        key: &str,
        body: Bytes,
        max_attempts: Option<u32>,
    ) -> Result<(), PutError> {
        let mut backoff = Duration::from_millis(self.cfg.initial_backoff_ms.max(1));
        let max = Duration::from_millis(self.cfg.max_backoff_ms.max(1));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if attempt > 1 {
                self.metrics.upload_retries.inc();
            }
            let started = Instant::now();
            match self.store.put(key, body.clone()).await {
                Ok(()) => {
                    self.metrics
                        .upload_seconds
                        .with_label_values(&[what])
                        .observe(started.elapsed().as_secs_f64());
                    return Ok(());
                }
                Err(e) => {
                    self.metrics
                        .upload_errors
                        .with_label_values(&[e.kind.as_str()])
                        .inc();
                    let last = !e.is_retryable() || max_attempts.is_some_and(|m| attempt >= m);
                    if last {
                        tracing::error!(key, attempt, error = %e, "upload failed");
                        return Err(PutError { what, source: e });
                    }
                    tracing::warn!(key, attempt, error = %e, "upload failed, retrying");
                    let jitter = rand::rng().random_range(0.5..1.5);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use skidder_common::storage::{
        ListOptions, ListPage, ObjectMeta, StorageErrorKind, StorageResult,
    };
    use std::ops::Range;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails every put with `kind`, counting attempts.
    #[derive(Debug)]
    struct Failing {
        kind: StorageErrorKind,
        puts: AtomicU32,
    }

    #[async_trait]
    impl ObjectStore for Failing {
        async fn put(&self, key: &str, _: Bytes) -> StorageResult<()> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::new(self.kind, key, "injected"))
        }
        async fn put_if_absent(&self, key: &str, b: Bytes) -> StorageResult<()> {
            self.put(key, b).await
        }
        async fn get(&self, key: &str) -> StorageResult<Bytes> {
            Err(StorageError::new(StorageErrorKind::NotFound, key, ""))
        }
        async fn get_range(&self, key: &str, _: Range<u64>) -> StorageResult<Bytes> {
            self.get(key).await
        }
        async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
            Err(StorageError::new(StorageErrorKind::NotFound, key, ""))
        }
        async fn list(&self, _: &str, _: ListOptions<'_>) -> StorageResult<ListPage> {
            Ok(ListPage::default())
        }
        async fn delete(&self, _: &str) -> StorageResult<()> {
            Ok(())
        }
        fn url(&self) -> String {
            "failing://".into()
        }
    }

    fn attempts(kind: StorageErrorKind, max: Option<u32>) -> (u32, Result<(), PutError>) {
        let store = Arc::new(Failing {
            kind,
            puts: AtomicU32::new(0),
        });
        let w = Writer {
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
            cfg: UploadConfig {
                initial_backoff_ms: 1,
                max_backoff_ms: 1,
                ..Default::default()
            },
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let r = rt.block_on(w.put_retrying("data", "k", Bytes::new(), max));
        (store.puts.load(Ordering::SeqCst), r)
    }

    #[test]
    fn a_blip_is_retried_until_the_attempts_run_out() {
        let (n, r) = attempts(StorageErrorKind::Service, Some(4));
        assert_eq!(n, 4);
        assert_eq!(r.unwrap_err().source.kind, StorageErrorKind::Service);
    }

    #[test]
    fn an_error_no_retry_can_fix_fails_at_once_even_when_retries_are_unbounded() {
        for kind in [
            StorageErrorKind::Unauthorized,
            StorageErrorKind::InvalidRequest,
        ] {
            let (n, r) = attempts(kind, None);
            assert_eq!(n, 1, "{kind:?}");
            let e = r.unwrap_err();
            assert_eq!((e.what, e.source.kind), ("data", kind));
        }
    }
}
