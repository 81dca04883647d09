//! The object-store interface and its backends.
//!
//! Object storage is Skidder's only source of truth, so this interface is
//! deliberately small: what S3 offers and nothing a plain directory cannot
//! also do. Errors carry a [`StorageErrorKind`] that callers branch on to
//! decide whether to retry.
//!
//! The documentation of [`ObjectStore`] is the contract: what every backend
//! ([`LocalStore`], [`S3Store`]) does and callers may rely on. The
//! conformance suite (`conformance`, behind the `testing` feature) runs
//! against both and tests most of it; not yet the edges of `get_range`
//! (empty ranges, a start past the end, empty objects) or paging with a
//! delimiter. Where one backend does more than the contract (a wider page,
//! an empty range answered without a request), callers must not rely on it.

#![warn(missing_docs)]

#[cfg(feature = "testing")]
pub mod conformance;
mod local;
mod metered;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use thiserror::Error;

pub use local::LocalStore;
pub use metered::{RequestCounters, OPS};
pub use s3::{S3Config, S3Store};

/// What kind of failure a [`StorageError`] is. Callers branch on it, to
/// retry or to treat a missing object as gone, and never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// No object has the key (S3 also answers 404 for a missing bucket, so
    /// then any request fails with it).
    NotFound,
    /// A conditional put found the key already there.
    AlreadyExists,
    /// The credentials were refused or lack the permission (HTTP 401 or
    /// 403, or a local permission error).
    Unauthorized,
    /// The request, or reading its body, took longer than its time limit
    /// ([`S3Config::timeout_secs`]); worth retrying.
    Timeout,
    /// The request itself was wrong (a bad key, an impossible range).
    InvalidRequest,
    /// Network or disk trouble; worth retrying.
    Io,
    /// The server failed (5xx, throttling); worth retrying.
    Service,
}

impl StorageErrorKind {
    /// Every kind, so metrics can start each series at zero.
    pub const ALL: [StorageErrorKind; 7] = [
        StorageErrorKind::NotFound,
        StorageErrorKind::AlreadyExists,
        StorageErrorKind::Unauthorized,
        StorageErrorKind::Timeout,
        StorageErrorKind::InvalidRequest,
        StorageErrorKind::Io,
        StorageErrorKind::Service,
    ];

    /// The kind's name in logs and metric labels (`error_kind="not_found"`),
    /// the same in every crate.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageErrorKind::NotFound => "not_found",
            StorageErrorKind::AlreadyExists => "already_exists",
            StorageErrorKind::Unauthorized => "unauthorized",
            StorageErrorKind::Timeout => "timeout",
            StorageErrorKind::InvalidRequest => "invalid_request",
            StorageErrorKind::Io => "io",
            StorageErrorKind::Service => "service",
        }
    }

    /// Whether a retry may succeed: network trouble, timeouts and server
    /// failures pass; a missing key, a refused credential or a bad request
    /// do not.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            StorageErrorKind::Io | StorageErrorKind::Service | StorageErrorKind::Timeout
        )
    }
}

/// A failed storage request: what kind of failure, on which key, and why.
#[derive(Debug, Error)]
#[error("{kind:?} on {key:?}: {message}")]
pub struct StorageError {
    /// What callers branch on.
    pub kind: StorageErrorKind,
    /// The key, or the listing prefix, the request named (the root
    /// directory for [`LocalStore::new`], the bucket for
    /// [`S3Store::create_bucket`]).
    pub key: String,
    /// What went wrong, for people: logs and error chains.
    pub message: String,
    /// The backend's own error (I/O or SDK), when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// An error with no underlying source.
    pub fn new(kind: StorageErrorKind, key: &str, message: impl Into<String>) -> Self {
        StorageError {
            kind,
            key: key.to_owned(),
            message: message.into(),
            source: None,
        }
    }

    /// See [`StorageErrorKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

/// The result of every storage request.
pub type StorageResult<T> = Result<T, StorageError>;

/// An object's key and size, as [`ObjectStore::head`] and listings give
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the store (without an [`S3Store`]'s prefix).
    pub key: String,
    /// The object's length in bytes.
    pub size: u64,
    /// When it was last written, in nanoseconds since the Unix epoch, where
    /// the store says (S3 listings and HEAD do; retention of dead letters
    /// reads it).
    pub modified_ns: Option<i64>,
}

/// One page of a listing, as S3's ListObjectsV2 returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, in ascending key order. With a delimiter,
    /// only keys that hold no delimiter after the prefix.
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the distinct key prefixes up to and including it,
    /// in ascending order, each once in the whole listing.
    pub common_prefixes: Vec<String>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// How to list (see [`ObjectStore::list`]). The default lists every key
/// under the prefix, flat, 1000 to a page, from the first page.
#[derive(Debug, Clone, Default)]
pub struct ListOptions<'a> {
    /// Rolls the keys that hold it after the prefix up into
    /// [`ListPage::common_prefixes`]; `None` lists every key.
    pub delimiter: Option<&'a str>,
    /// The previous page's [`ListPage::next_token`]; `None` for the first
    /// page.
    pub page_token: Option<String>,
    /// List only keys after this one (S3's `StartAfter`): a listing that
    /// wants the end of a big prefix starts there, not at its first key.
    /// It need not be a key; a token, once given, is past it.
    pub start_after: Option<&'a str>,
    /// The most entries (objects and common prefixes together) a page may
    /// hold: 1000 when `None`, and never more than 1000 on S3. Ask for at
    /// least 1: [`LocalStore`] treats 0 as 1, [`S3Store`] sends it as is.
    pub max_keys: Option<usize>,
}

/// An object store: whole objects under string keys, written whole, read
/// whole or by byte range, listed by prefix.
///
/// **Keys** are relative to the store (an [`S3Store`] adds its prefix) and
/// `/`-separated. A valid key is not empty, does not start with `/`, holds
/// no NUL byte and no empty, `.` or `..` segment (so no trailing `/` and no
/// `//`). Every method that takes a key refuses an invalid one with
/// [`StorageErrorKind::InvalidRequest`] before any I/O. Keys are built by
/// `format::layout`, so this only fires on a bug. Skidder's layout never
/// stores a key that is a folder of another (`a` beside `a/b`), which a
/// directory cannot hold (see [`LocalStore`]).
///
/// **Errors** carry the key (for [`list`](Self::list), the prefix) and a
/// [`StorageErrorKind`]; `Io`, `Timeout` and `Service` may succeed on
/// retry. A failed write does not prove that nothing was written: a timeout
/// can hide a write the server completed. Writes are made safe to repeat
/// instead (deterministic keys, whole-object overwrite).
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Writes `body` (which may be empty) as the whole object at `key`,
    /// replacing any object there. Atomic: a reader sees the old body or
    /// the new one, never a mix or a part, even after a crash. Durable
    /// once it returns `Ok` (the local backend fsyncs the file and its
    /// directory).
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()>;

    /// Writes `body` at `key` only if no object is there; otherwise fails
    /// with [`StorageErrorKind::AlreadyExists`] and leaves the object
    /// there untouched. Atomic: of several concurrent callers at most one
    /// succeeds. Otherwise as [`put`](Self::put).
    ///
    /// A write that failed with a retryable error may still have happened,
    /// so a retry can meet `AlreadyExists` for its own first attempt. On
    /// S3 this is a PUT with `If-None-Match: *` (a 409 for a conflicting
    /// write in flight is a retryable `Service` error); a server that
    /// ignored the header would make it a plain overwrite, which the
    /// conformance suite catches.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()>;

    /// Writes the file at `path` as the whole object at `key`, as
    /// [`put`](Self::put) does (atomic, replaces, durable on `Ok`), without
    /// holding it in memory: for objects too big for one body (S3 takes at
    /// most 5 GB in one PUT). Returns how many requests it took, for the
    /// request counters.
    ///
    /// [`S3Store`] sends a file longer than its part size
    /// ([`S3Config::multipart_part_bytes`]) as a multipart upload: one
    /// request to start it, one per part, one to complete it, which S3
    /// makes visible at once and whole. A part that fails aborts the
    /// upload; a crash cannot, so give the bucket a lifecycle rule that
    /// aborts incomplete multipart uploads (`AbortIncompleteMultipartUpload`,
    /// a day) or their parts are billed as storage. A shorter file is one
    /// PUT.
    /// [`LocalStore`] copies the file into place. The default reads the
    /// file and calls `put`. A file that cannot be read fails with
    /// [`StorageErrorKind::Io`] and writes nothing.
    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        let body = tokio::fs::read(path).await.map_err(|e| {
            StorageError::new(
                StorageErrorKind::Io,
                key,
                format!("reading {}: {e}", path.display()),
            )
        })?;
        self.put(key, Bytes::from(body)).await.map(|()| 1)
    }

    /// The whole object at `key`; [`StorageErrorKind::NotFound`] if there
    /// is none.
    async fn get(&self, key: &str) -> StorageResult<Bytes>;

    /// Bytes `range.start..range.end` of the object at `key`, to read part
    /// of a large object without fetching it all.
    ///
    /// - A range that ends past the end of the object is cut there: the
    ///   bytes come back shorter than asked, with no error, so a caller
    ///   that needs the full length checks it.
    /// - A missing key is [`StorageErrorKind::NotFound`].
    /// - `start > end`, or a non-empty range that starts at or past the end
    ///   of a non-empty object, is [`StorageErrorKind::InvalidRequest`]
    ///   (S3's 416).
    /// - An empty range (`start == end`) gives empty bytes, but proves
    ///   nothing: [`S3Store`] answers it without a request, even for a
    ///   missing key or a start past the end, where [`LocalStore`] reports
    ///   those as for a non-empty range.
    /// - The backends disagree on non-empty ranges of an empty object: read
    ///   it with [`get`](Self::get).
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes>;

    /// The key and size of the object at `key`, without its body;
    /// [`StorageErrorKind::NotFound`] if there is none.
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta>;

    /// One page of the objects whose keys start with `prefix`. Follow the
    /// pages with [`list_all`] or [`list_folders`] unless you need one page.
    ///
    /// - `prefix` is a plain string, not a folder: `hour=0` matches
    ///   `hour=00/x` and `hour=01/x`, and the empty prefix lists the whole
    ///   store. A prefix nothing matches gives an empty last page, never
    ///   `NotFound`. [`LocalStore`] refuses a prefix whose part up to its
    ///   last `/` is not a valid key with `InvalidRequest`; [`S3Store`]
    ///   sends any prefix.
    /// - Objects, and common prefixes, come in ascending byte order of
    ///   their keys (S3's order), and no entry comes twice across pages.
    /// - With `opts.delimiter`, a key that holds the delimiter after
    ///   `prefix` is not listed; its beginning up to and including the
    ///   first such delimiter is, once, in [`ListPage::common_prefixes`]
    ///   (`tenant=a/` for `tenant=a/x` and `tenant=a/y` under the prefix
    ///   `tenant=` and the delimiter `/`).
    /// - A page holds at most `opts.max_keys` entries, objects and common
    ///   prefixes counted together, and may hold fewer even when more
    ///   follow: only `next_token == None` marks the last page. The token
    ///   is opaque; pass it back as `opts.page_token` with the same
    ///   `prefix` and delimiter.
    /// - An object whose `put` returned before the call is listed; one
    ///   written or deleted while the pages are read may or may not be. A
    ///   listing is not a snapshot.
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage>;

    /// Deletes the object at `key`. Deleting a missing key succeeds, so a
    /// repeated or retried delete is harmless.
    async fn delete(&self, key: &str) -> StorageResult<()>;

    /// Where the store is, for logs: `file:///data`, or `s3://<bucket>/`
    /// followed by the store's prefix (`s3://logs/skidder/`).
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

/// The objects directly under `prefix` and the folders beside them (for
/// the delimiter `/`), following pages: one level of the tree.
pub async fn list_level(
    store: &dyn ObjectStore,
    prefix: &str,
) -> StorageResult<(Vec<ObjectMeta>, Vec<String>)> {
    list_pages(store, prefix, Some("/")).await
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
    /// A directory on local disk: `file:///var/lib/skidder`.
    Local(std::path::PathBuf),
    /// A bucket, and the prefix every key is stored under.
    S3 {
        /// The bucket's name.
        bucket: String,
        /// Empty, or ends with `/`: `s3://logs/skidder` gives `skidder/`.
        prefix: String,
    },
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
///
/// A local store's directory is created if missing. Opening an S3 store
/// sends no request, so a missing bucket or a refused credential shows at
/// the first call.
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
