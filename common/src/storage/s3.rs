//! S3 and S3-compatible servers, through `aws-sdk-s3`.
//!
//! Credentials come from the standard AWS chain (environment, profile, web
//! identity, instance metadata) unless the config names static keys. A
//! custom endpoint (MinIO, Ceph, moto, R2) implies path-style addressing
//! unless told otherwise.
//!
//! Every request has a time limit ([`S3Config::timeout_secs`]): a server
//! that stalls, or a connection that silently died, must fail the request
//! so it is retried, never hang it, because the indexer cannot commit past
//! an upload that never ends.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;
use serde::Deserialize;

use super::{
    check_key, ListOptions, ListPage, ObjectMeta, ObjectStore, StorageError, StorageErrorKind,
    StorageResult,
};

/// How to reach S3 or an S3-compatible server: the config's `[store.s3]`
/// section. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `http://127.0.0.1:9000`; AWS itself when unset.
    pub endpoint: Option<String>,
    /// Defaults to `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Defaults to true when an endpoint is set.
    pub path_style: Option<bool>,
    /// A static access key, used only together with `secret_access_key`;
    /// without both, the standard AWS credential chain.
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Seconds one attempt of a request may take, from sending it to the
    /// first byte of the answer; reading a body gets as long again. A
    /// stalled attempt fails and is retried. Defaults to 30.
    pub timeout_secs: Option<u64>,
    /// Bytes of one part when a file goes up in parts
    /// ([`ObjectStore::put_file`]); a file up to this size is one PUT.
    /// At least 5 MiB, S3's smallest part. Defaults to 16 MiB, which takes
    /// objects up to 156 GiB in S3's 10,000 parts.
    pub multipart_part_bytes: Option<u64>,
}

const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// S3's smallest part (but the last).
const MIN_PART_BYTES: u64 = 5 << 20;
const DEFAULT_PART_BYTES: u64 = 16 << 20;
/// Completing a multipart upload gets this many times the request timeout.
const COMPLETE_TIMEOUT_FACTOR: u32 = 10;
/// The SDK's own default for connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// A bucket, or a prefix in one, as an object store: key `k` is stored as
/// `<prefix>k`, and listings give keys back without the prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
    /// The limit on reading a body.
    timeout: Duration,
    /// See [`S3Config::multipart_part_bytes`].
    part_bytes: u64,
}

fn sdk_err<E>(key: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::TimeoutError(_) => (StorageErrorKind::Timeout, "request timed out".to_owned()),
        SdkError::DispatchFailure(e) => {
            let kind = if e.is_timeout() {
                StorageErrorKind::Timeout
            } else {
                StorageErrorKind::Io
            };
            (kind, format!("connection failed: {e:?}"))
        }
        SdkError::ResponseError(_) => (StorageErrorKind::Io, "unreadable response".to_owned()),
        SdkError::ConstructionFailure(_) => (
            StorageErrorKind::InvalidRequest,
            "could not build the request".to_owned(),
        ),
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let kind = match status {
                404 => StorageErrorKind::NotFound,
                412 => StorageErrorKind::AlreadyExists,
                401 | 403 => StorageErrorKind::Unauthorized,
                408 => StorageErrorKind::Timeout,
                400 | 405 | 411 | 416 => StorageErrorKind::InvalidRequest,
                _ => StorageErrorKind::Service,
            };
            (kind, format!("HTTP {status}: {}", se.err()))
        }
        _ => (StorageErrorKind::Io, err.to_string()),
    };
    StorageError {
        kind,
        key: key.to_owned(),
        message,
        source: Some(Box::new(err)),
    }
}

/// [`sdk_err`], for a request within a multipart upload: a 404 there is
/// the upload gone (`NoSuchUpload`: aborted, or completed by an attempt
/// whose answer was lost), not a missing key, so the write is to be
/// tried again.
fn multipart_err<E>(key: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut e = sdk_err(key, err);
    if e.kind == StorageErrorKind::NotFound {
        e.kind = StorageErrorKind::Service;
    }
    e
}

async fn read_body(key: &str, body: ByteStream, timeout: Duration) -> StorageResult<Bytes> {
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(b)) => Ok(b.into_bytes()),
        Ok(Err(e)) => Err(StorageError {
            kind: StorageErrorKind::Io,
            key: key.to_owned(),
            message: "body read failed".into(),
            source: Some(Box::new(e)),
        }),
        Err(_) => Err(StorageError::new(
            StorageErrorKind::Timeout,
            key,
            format!("body not read within {timeout:?}"),
        )),
    }
}

impl S3Store {
    /// A client for the keys under `prefix` in `bucket`. `prefix` must be
    /// empty or end with `/`, as [`StoreUrl`](super::StoreUrl) gives it.
    /// Sends no request: a missing bucket or a refused credential shows at
    /// the first call.
    pub async fn new(bucket: &str, prefix: &str, cfg: &S3Config) -> Self {
        let region = cfg
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region));
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "skidder-config",
            ));
        }
        if let Some(ep) = &cfg.endpoint {
            loader = loader.endpoint_url(ep);
        }
        let sdk = loader.load().await;
        let path_style = cfg.path_style.unwrap_or(cfg.endpoint.is_some());
        let timeout = Duration::from_secs(cfg.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1));
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                    .operation_attempt_timeout(timeout)
                    .build(),
            )
            .build();
        S3Store {
            client: Client::from_conf(conf),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
            part_bytes: cfg
                .multipart_part_bytes
                .unwrap_or(DEFAULT_PART_BYTES)
                .max(MIN_PART_BYTES),
        }
    }

    fn full(&self, key: &str) -> StorageResult<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    /// Creates the bucket; for tests and first-time setup.
    pub async fn create_bucket(&self) -> StorageResult<()> {
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_err(&self.bucket, e))
    }

    async fn put_inner(&self, key: &str, body: Bytes, if_absent: bool) -> StorageResult<()> {
        let full = self.full(key)?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .body(ByteStream::from(body));
        if if_absent {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| sdk_err(key, e))
    }

    /// Sends `file` (of `len` bytes) in parts to the upload `id`, and
    /// completes it; returns the parts sent.
    async fn upload_parts(
        &self,
        key: &str,
        full: &str,
        id: &str,
        mut file: tokio::fs::File,
        len: u64,
    ) -> StorageResult<u64> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use tokio::io::AsyncReadExt;
        let io = |e: std::io::Error| StorageError {
            kind: StorageErrorKind::Io,
            key: key.to_owned(),
            message: "reading the file to upload".into(),
            source: Some(Box::new(e)),
        };
        let mut parts = Vec::new();
        let mut sent = 0;
        while sent < len {
            let size = self.part_bytes.min(len - sent) as usize;
            let mut body = vec![0; size];
            file.read_exact(&mut body).await.map_err(io)?;
            let number = parts.len() as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(full)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| multipart_err(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
            sent += size as u64;
        }
        let count = parts.len() as u64;
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .customize()
            // S3 may take minutes to assemble a big object.
            .config_override(
                aws_sdk_s3::config::Builder::default().timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(self.timeout * COMPLETE_TIMEOUT_FACTOR)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| multipart_err(key, e))?;
        Ok(count)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.put_inner(key, body, false).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.put_inner(key, body, true).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        let full = self.full(key)?;
        let io = |e: std::io::Error| StorageError {
            kind: StorageErrorKind::Io,
            key: key.to_owned(),
            message: format!("reading {}", path.display()),
            source: Some(Box::new(e)),
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        if len <= self.part_bytes {
            let body = tokio::fs::read(path).await.map_err(io)?;
            return self.put(key, Bytes::from(body)).await.map(|()| 1);
        }
        let started = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        let Some(id) = started.upload_id else {
            return Err(StorageError::new(
                StorageErrorKind::Service,
                key,
                "the server started a multipart upload without an id",
            ));
        };
        match self.upload_parts(key, &full, &id, file, len).await {
            Ok(parts) => Ok(parts + 2),
            Err(e) => {
                // Best effort: parts left behind cost storage until a
                // lifecycle rule aborts the upload.
                let aborted = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&id)
                    .send()
                    .await;
                if let Err(a) = aborted {
                    tracing::warn!(key, error = %sdk_err(key, a), "could not abort a multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let full = self.full(key)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        read_body(key, out.body, self.timeout).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let full = self.full(key)?;
        if range.start > range.end {
            return Err(StorageError::new(
                StorageErrorKind::InvalidRequest,
                key,
                format!("bad range {range:?}"),
            ));
        }
        if range.start == range.end {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        read_body(key, out.body, self.timeout).await
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        let full = self.full(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: out.content_length.unwrap_or(0).max(0) as u64,
            modified_ns: out.last_modified.as_ref().and_then(smithy_ns),
        })
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}{prefix}", self.prefix));
        if let Some(d) = opts.delimiter {
            req = req.delimiter(d);
        }
        if let Some(t) = opts.page_token {
            req = req.continuation_token(t);
        }
        if let Some(k) = opts.start_after {
            req = req.start_after(format!("{}{k}", self.prefix));
        }
        if let Some(n) = opts.max_keys {
            req = req.max_keys(n.min(1000) as i32);
        }
        let out = req.send().await.map_err(|e| sdk_err(prefix, e))?;
        let strip = |k: &str| k.strip_prefix(self.prefix.as_str()).unwrap_or(k).to_owned();
        Ok(ListPage {
            objects: out
                .contents()
                .iter()
                .filter_map(|o| {
                    Some(ObjectMeta {
                        key: strip(o.key()?),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified_ns: o.last_modified().and_then(smithy_ns),
                    })
                })
                .collect(),
            common_prefixes: out
                .common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(strip))
                .collect(),
            next_token: if out.is_truncated().unwrap_or(false) {
                out.next_continuation_token().map(str::to_owned)
            } else {
                None
            },
        })
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let full = self.full(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(full)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_err(key, e))
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// An S3 timestamp in nanoseconds since the Unix epoch.
fn smithy_ns(t: &aws_sdk_s3::primitives::DateTime) -> Option<i64> {
    t.secs()
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(t.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A store on a local server that runs `serve` on each connection.
    async fn store_on<F, Fut>(serve: F) -> S3Store
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("port").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s));
            }
        });
        let cfg = S3Config {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            timeout_secs: Some(1),
            ..Default::default()
        };
        S3Store::new("logs", "", &cfg).await
    }

    /// Fails the test if `f` hangs, instead of hanging the test.
    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .expect("the request hung")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_that_never_answers_is_a_timeout_not_a_hang() {
        let store = store_on(|mut s| async move {
            let mut buf = vec![0u8; 1 << 16];
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        let put = bounded(store.put("a", Bytes::from_static(b"x"))).await;
        assert_eq!(put.expect_err("no answer").kind, StorageErrorKind::Timeout);
        let get = bounded(store.get("a")).await;
        assert_eq!(get.expect_err("no answer").kind, StorageErrorKind::Timeout);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_stops_midway_is_a_timeout_not_a_hang() {
        let store = store_on(|mut s| async move {
            let mut buf = vec![0u8; 1 << 16];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!";
            let _ = s.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        })
        .await;
        let get = bounded(store.get("a")).await;
        assert_eq!(
            get.expect_err("half a body").kind,
            StorageErrorKind::Timeout
        );
    }
}
