//! Counts every request made to the store, by operation and by caller.
//!
//! An S3 bill is a count of requests by kind (LIST, GET, PUT...) plus bytes,
//! and so is the cost model in `docs/BENCHMARKS.md`. Each part of a service
//! that talks to the store gets its own handle ([`RequestCounters::wrap`])
//! naming it as the caller, so `skidder_store_requests_total{op, caller}`
//! says which part of Skidder pays for what. Every attempt counts, failed
//! ones too: a store charges for those as well.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::{ListOptions, ListPage, ObjectMeta, ObjectStore, StorageResult};

/// The operations counted, as their `op` label reads.
pub const OPS: [&str; 7] = [
    "list",
    "get",
    "get_range",
    "head",
    "put",
    "put_if_absent",
    "delete",
];

/// `skidder_store_requests_total` and `skidder_store_request_bytes_total`,
/// both by `op` and `caller`.
#[derive(Clone, Debug)]
pub struct RequestCounters {
    requests: IntCounterVec,
    bytes: IntCounterVec,
}

impl Default for RequestCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestCounters {
    /// New counters, not yet in any registry.
    pub fn new() -> Self {
        let vec = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &["op", "caller"])
                .expect("valid metric definition")
        };
        RequestCounters {
            requests: vec(
                "skidder_store_requests_total",
                "Object-store requests, failed ones included, by operation and caller.",
            ),
            bytes: vec(
                "skidder_store_request_bytes_total",
                "Object bytes moved, read by get and get_range, written by put and put_if_absent, by operation and caller.",
            ),
        }
    }

    /// Adds both counters to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.bytes.clone()))
    }

    /// A handle on `inner` whose requests count under `caller`.
    pub fn wrap(&self, inner: Arc<dyn ObjectStore>, caller: &'static str) -> Arc<dyn ObjectStore> {
        let per_op = |vec: &IntCounterVec| OPS.map(|op| vec.with_label_values(&[op, caller]));
        Arc::new(Metered {
            inner,
            requests: per_op(&self.requests),
            bytes: per_op(&self.bytes),
        })
    }

    /// Requests so far by `op` and `caller`, for reports.
    pub fn requests(&self, op: &str, caller: &str) -> u64 {
        self.requests.with_label_values(&[op, caller]).get()
    }

    /// Requests so far of every operation made for `caller`.
    pub fn of_caller(&self, caller: &str) -> u64 {
        let mut n = 0;
        for family in prometheus::core::Collector::collect(&self.requests) {
            for m in family.get_metric() {
                if m.get_label()
                    .iter()
                    .any(|l| l.name() == "caller" && l.value() == caller)
                {
                    n += m.get_counter().get_value() as u64;
                }
            }
        }
        n
    }

    /// Requests so far of every operation, summed over callers, in [`OPS`] order.
    pub fn totals(&self) -> [(&'static str, u64); 7] {
        let mut totals = OPS.map(|op| (op, 0));
        for family in prometheus::core::Collector::collect(&self.requests) {
            for m in family.get_metric() {
                let op = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "op")
                    .map(|l| l.value());
                if let Some(t) = totals.iter_mut().find(|(o, _)| Some(*o) == op) {
                    t.1 += m.get_counter().get_value() as u64;
                }
            }
        }
        totals
    }
}

/// The store behind one caller's handle.
#[derive(Debug)]
struct Metered {
    inner: Arc<dyn ObjectStore>,
    /// Pre-labelled, in [`OPS`] order: no label lookup per request.
    requests: [IntCounter; 7],
    bytes: [IntCounter; 7],
}

/// Indexes into [`OPS`].
const LIST: usize = 0;
const GET: usize = 1;
const GET_RANGE: usize = 2;
const HEAD: usize = 3;
const PUT: usize = 4;
const PUT_IF_ABSENT: usize = 5;
const DELETE: usize = 6;

impl Metered {
    fn count(&self, op: usize, bytes: usize) {
        self.requests[op].inc();
        self.bytes[op].inc_by(bytes as u64);
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.count(PUT, body.len());
        self.inner.put(key, body).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.count(PUT_IF_ABSENT, body.len());
        self.inner.put_if_absent(key, body).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> StorageResult<u64> {
        let bytes = tokio::fs::metadata(path).await.map_or(0, |m| m.len());
        let r = self.inner.put_file(key, path).await;
        // Each request of a multipart upload is billed as a PUT. A failed
        // one counts once: how far it got is not known here.
        self.requests[PUT].inc_by(*r.as_ref().unwrap_or(&1));
        self.bytes[PUT].inc_by(bytes);
        r
    }

    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        let r = self.inner.get(key).await;
        self.count(GET, r.as_ref().map_or(0, Bytes::len));
        r
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        let r = self.inner.get_range(key, range).await;
        self.count(GET_RANGE, r.as_ref().map_or(0, Bytes::len));
        r
    }

    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.count(HEAD, 0);
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage> {
        self.count(LIST, 0);
        self.inner.list(prefix, opts).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.count(DELETE, 0);
        self.inner.delete(key).await
    }

    fn url(&self) -> String {
        self.inner.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{list_all, LocalStore};

    #[tokio::test]
    async fn each_request_counts_once_under_its_caller_with_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
        let counters = RequestCounters::new();
        let registry = Registry::new();
        counters.register(&registry).unwrap();
        let writer = counters.wrap(local.clone(), "writer");
        let reader = counters.wrap(local, "reader");

        writer
            .put("a/1", Bytes::from_static(b"12345"))
            .await
            .unwrap();
        writer.put("a/2", Bytes::from_static(b"678")).await.unwrap();
        assert!(writer.put_if_absent("a/1", Bytes::new()).await.is_err());
        assert_eq!(reader.get("a/1").await.unwrap().len(), 5);
        assert_eq!(reader.get_range("a/2", 1..3).await.unwrap().len(), 2);
        assert!(reader.get("a/missing").await.is_err());
        assert_eq!(list_all(&*reader, "a/").await.unwrap().len(), 2);
        reader.head("a/2").await.unwrap();
        writer.delete("a/2").await.unwrap();

        let got = |op: &str, caller: &str| counters.requests(op, caller);
        // 2 puts; 1 refused conditional put, counted all the same.
        assert_eq!(
            (got("put", "writer"), got("put_if_absent", "writer")),
            (2, 1)
        );
        // 2 gets, the missing one included; 1 ranged get; 1 page listed.
        assert_eq!((got("get", "reader"), got("get_range", "reader")), (2, 1));
        assert_eq!((got("list", "reader"), got("head", "reader")), (1, 1));
        assert_eq!((got("delete", "writer"), got("get", "writer")), (1, 0));
        let bytes = |op: &str, caller: &str| counters.bytes.with_label_values(&[op, caller]).get();
        // 5 + 3 bytes written; 5 read whole, 2 by range.
        assert_eq!(bytes("put", "writer"), 8);
        assert_eq!(
            (bytes("get", "reader"), bytes("get_range", "reader")),
            (5, 2)
        );
        let totals = counters.totals();
        assert_eq!(totals[0], ("list", 1));
        assert_eq!(totals[1], ("get", 2));
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut text)
            .unwrap();
        assert!(
            text.contains(r#"skidder_store_requests_total{caller="reader",op="get"} 2"#),
            "{text}"
        );
    }
}
