//! The object-store interface and its backends.
//!
//! Object storage is Skidder's only source of truth, so this interface is
//! deliberately small: what S3 offers and nothing a plain directory cannot
//! also do. Errors carry a [`StorageErrorKind`] that callers branch on to
//! decide whether to retry.

#[cfg(feature = "testing")]
pub mod conformance;
mod local;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

pub use local::LocalStore;
pub use s3::{S3Config, S3Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    NotFound,
    /// A conditional put found the key already there.
    AlreadyExists,
    Unauthorized,
    Timeout,
    /// The request itself was wrong (a bad key, an impossible range).
    InvalidRequest,
    /// Network or disk trouble; worth retrying.
    Io,
    /// The server failed (5xx, throttling); worth retrying.
    Service,
}

#[derive(Debug, Error)]
#[error("{kind:?} on {key:?}: {message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub key: String,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    pub fn new(kind: StorageErrorKind, key: &str, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            key: key.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            StorageErrorKind::Io | StorageErrorKind::Service | StorageErrorKind::Timeout
        )
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// One page of a listing, as S3's ListObjectsV2 returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the distinct key prefixes up to and including it.
    pub common_prefixes: Vec<String>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions<'a> {
    pub delimiter: Option<&'a str>,
    pub page_token: Option<String>,
    /// Page size; the backend's default (1000) when `None`.
    pub max_keys: Option<usize>,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Writes the whole object, atomically: readers see the old or the new body.
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()>;
    /// Writes only if the key does not exist; otherwise `AlreadyExists`.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()>;
    async fn get(&self, key: &str) -> StorageResult<Bytes>;
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes>;
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta>;
    /// Lists keys starting with `prefix`, in lexicographic order.
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage>;
    /// Deletes a key; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// A short description for logs, like `file:///data` or `s3://bucket/prefix`.
    fn url(&self) -> String;
}

/// Lists every key under `prefix`, following pages.
pub async fn list_all(store: &dyn ObjectStore, prefix: &str) -> StorageResult<Vec<ObjectMeta>> {
    Ok(list_pages(store, prefix, None).await?.0)
}

/// The folders directly under `prefix`, in full (`tenant=a/` under
/// `tenant=`): S3's common prefixes for the delimiter `/`, following pages.
pub async fn list_folders(store: &dyn ObjectStore, prefix: &str) -> StorageResult<Vec<String>> {
    Ok(list_pages(store, prefix, Some("/")).await?.1)
}

async fn list_pages(
    store: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
) -> StorageResult<(Vec<ObjectMeta>, Vec<String>)> {
    let (mut objects, mut folders) = (Vec::new(), Vec::new());
    let mut token = None;
    loop {
        let page = store
            .list(
                prefix,
                ListOptions {
                    delimiter,
                    page_token: token,
                    ..Default::default()
                },
            )
            .await?;
        objects.extend(page.objects);
        folders.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok((objects, folders)),
        }
    }
}

/// Where a store lives, parsed from `file:///path` or `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("file://") {
            if path.is_empty() {
                return Err(format!(
                    "{s:?}: a file store needs a path, like file:///var/lib/skidder"
                ));
            }
            return Ok(StoreUrl::Local(path.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "{s:?}: an S3 store needs a bucket, like s3://logs/skidder"
                ));
            }
            let mut prefix = prefix.trim_matches('/').to_owned();
            if !prefix.is_empty() {
                prefix.push('/');
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        Err(format!(
            "{s:?}: a store is file:///path or s3://bucket/prefix"
        ))
    }
}

/// Opens the store a URL names. `s3` supplies endpoint and region for S3 URLs.
pub async fn open_store(url: &StoreUrl, s3: &S3Config) -> StorageResult<Arc<dyn ObjectStore>> {
    Ok(match url {
        StoreUrl::Local(path) => Arc::new(LocalStore::new(path)?),
        StoreUrl::S3 { bucket, prefix } => Arc::new(S3Store::new(bucket, prefix, s3).await),
    })
}

/// Rejects keys that a backend could misread: empty, absolute, with empty,
/// `.` or `..` segments. Object keys are built by `format::layout`, so this
/// only ever fires on a bug or a hostile caller.
pub(crate) fn check_key(key: &str) -> StorageResult<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\0')
        || key
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(StorageError::new(
            StorageErrorKind::InvalidRequest,
            key,
            "invalid object key",
        ));
    }
    Ok(())
}
