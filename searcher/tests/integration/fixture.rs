//! Writes test data with the indexer's own code (parser, block maker,
//! compressor), so the searcher reads exactly what production writes.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use skidder_common::storage::{ListOptions, ListPage, ObjectMeta, ObjectStore, StorageResult};
use skidder_indexer::config::{AppSource, BlockConfig, ParseConfig, TenantSource};
use skidder_indexer::metrics::Metrics as IndexerMetrics;
use skidder_indexer::models::{Control, Item, RawBatch};
use skidder_indexer::offsets::OffsetTracker;
use skidder_indexer::queue::byte_queue;
use skidder_indexer::stages::block_maker::BlockMaker;
use skidder_indexer::stages::compressor::encode;
use skidder_indexer::stages::parser::Parser;
use skidder_searcher::logql::eval::Labels;

/// What a [`HookedStore`] does before it passes a read, a write or a
/// listing on: record it, fail it, hold it, or change the store under it.
#[async_trait]
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// Before a `get`, `get_range` or `head` of `key`.
    async fn before_get(&self, _inner: &dyn ObjectStore, _key: &str) -> StorageResult<()> {
        Ok(())
    }
    /// Before a `put` or `put_if_absent` of `key`.
    async fn before_put(&self, _inner: &dyn ObjectStore, _key: &str) -> StorageResult<()> {
        Ok(())
    }
    /// Before a `list` of `prefix`.
    fn before_list(&self, _prefix: &str) -> StorageResult<()> {
        Ok(())
    }
    /// After a page of `prefix` was listed, before it is returned.
    async fn after_list(&self, _prefix: &str) {}
}

/// A store that runs a test's [`Hooks`] in front of a real one. It derefs
/// to the hooks, so a test drives them through the store.
#[derive(Debug)]
pub struct HookedStore<H> {
    pub inner: Arc<dyn ObjectStore>,
    hooks: H,
}

impl<H> HookedStore<H> {
    pub fn new(inner: Arc<dyn ObjectStore>, hooks: H) -> Self {
        HookedStore { inner, hooks }
    }
}

impl<H> std::ops::Deref for HookedStore<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: Hooks> ObjectStore for HookedStore<H> {
    async fn put(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.hooks.before_put(&*self.inner, key).await?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> StorageResult<()> {
        self.hooks.before_put(&*self.inner, key).await?;
        self.inner.put_if_absent(key, body).await
    }
    async fn get(&self, key: &str) -> StorageResult<Bytes> {
        self.hooks.before_get(&*self.inner, key).await?;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StorageResult<Bytes> {
        self.hooks.before_get(&*self.inner, key).await?;
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> StorageResult<ObjectMeta> {
        self.hooks.before_get(&*self.inner, key).await?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> StorageResult<ListPage> {
        self.hooks.before_list(prefix)?;
        let page = self.inner.list(prefix, opts).await;
        self.hooks.after_list(prefix).await;
        page
    }
    async fn delete(&self, key: &str) -> StorageResult<()> {
        self.inner.delete(key).await
    }
    fn url(&self) -> String {
        format!("hooked+{}", self.inner.url())
    }
}

/// Kafka time of the first record: 2023-11-14T22:13:20Z.
pub const BASE_MS: i64 = 1_700_000_000_000;

/// An input record as the brute force sees it.
pub struct Rec {
    pub ts: i64,
    pub labels: Labels,
    pub line: String,
}

/// Indexes `lines` for `tenant` with the indexer's own code into `store`;
/// returns the parsed records. Lines without a timestamp field get Kafka
/// timestamps from `BASE_MS`, 997 ms apart.
pub async fn index_lines(store: &dyn ObjectStore, tenant: &str, lines: &[String]) -> Vec<Rec> {
    index_lines_in_blocks(store, tenant, lines, 256 << 10).await
}

/// [`index_lines`], cutting blocks at about `target_bytes` of raw lines.
pub async fn index_lines_in_blocks(
    store: &dyn ObjectStore,
    tenant: &str,
    lines: &[String],
    target_bytes: usize,
) -> Vec<Rec> {
    let parse_cfg = ParseConfig {
        app: AppSource::Template("{app}".into()),
        tenant: TenantSource::Fixed(tenant.into()),
        label_fields: vec![
            "level".into(),
            "_path".into(),
            "event_type".into(),
            "proto".into(),
        ],
        ..Default::default()
    };
    let mut parser = Parser::new(parse_cfg).unwrap();
    let m = Arc::new(IndexerMetrics::new());
    let (out, blocks) = byte_queue(
        1 << 16,
        1 << 34,
        m.queue_bytes.with_label_values(&["t"]),
        m.queue_blocked_seconds.with_label_values(&["t"]),
    );
    let cfg = BlockConfig {
        target_bytes,
        ..Default::default()
    };
    let mut maker = BlockMaker::new(cfg, usize::MAX, Arc::new(OffsetTracker::default()), m, out);
    let mut recs = Vec::new();
    for (b, chunk) in lines.chunks(500).enumerate() {
        let mut raw = RawBatch::new("logs".into(), (b % 3) as i32);
        for (i, l) in chunk.iter().enumerate() {
            let offset = (b * 500 + i) as i64;
            // Kafka timestamps spread over six hours, for the plain-text lines.
            raw.push(offset, Some(BASE_MS + offset * 997), l.as_bytes());
        }
        let parsed = parser.parse_batch(&raw);
        for r in &parsed.records {
            let s = &parsed.streams[r.stream as usize];
            let mut labels: Labels = s.labels.to_vec();
            labels.push(("__app__".into(), s.app.to_string()));
            labels.sort();
            recs.push(Rec {
                ts: r.time_ns,
                labels,
                line: String::from_utf8(parsed.line(r).to_vec()).unwrap(),
            });
        }
        maker.handle(Item::Data(parsed)).unwrap();
    }
    maker
        .handle(Item::Control(Control::Flush {
            partitions: None,
            forget: false,
        }))
        .unwrap();
    while let Ok(item) = blocks.pop(Duration::ZERO) {
        if let Item::Data(block) = item {
            let enc = encode(block, Vec::new());
            store.put(&enc.data_key, enc.data).await.unwrap();
            store.put(&enc.index_key, enc.index).await.unwrap();
        }
    }
    recs
}
