//! Cached hour listings only move forward. Under load, listings of one
//! hour run concurrently and finish in any order; a slow one that began
//! earlier must not replace a newer one in the cache, or a later query
//! loses blocks an earlier one counted (found by the load test: counts
//! that fell while the indexer ingested).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use skidder_common::storage::{list_all, LocalStore, ObjectStore, StorageResult};
use skidder_searcher::engine::{Direction, Engine, EngineConfig, TimeRange};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;
use tokio::sync::Notify;

use crate::fixture::{index_lines, HookedStore, Hooks};

const TENANT: &str = "listing";
/// 997 ms apart from 22:13:20: all in one hour.
const LINES: usize = 2000;

/// Holds the first listing of an hour after it was read, once armed.
#[derive(Debug, Default)]
struct Gate {
    armed: AtomicBool,
    held: Notify,
    release: Notify,
}

#[async_trait]
impl Hooks for Gate {
    async fn before_get(&self, _: &dyn ObjectStore, _: &str) -> StorageResult<()> {
        Ok(())
    }

    async fn after_list(&self, prefix: &str) {
        if prefix.contains("/hour=") && self.armed.swap(false, Ordering::SeqCst) {
            self.held.notify_one();
            self.release.notified().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_old_listing_does_not_replace_a_newer_one() {
    // Blocks are indexed aside, then all but one block reach the store.
    let staging_dir = tempfile::tempdir().unwrap();
    let staging = LocalStore::new(staging_dir.path()).unwrap();
    let lines: Vec<String> = (0..LINES)
        .map(|i| {
            let app = ["checkout", "cart"][i % 2];
            format!(r#"{{"app":"{app}","level":"info","msg":"event {i} served"}}"#)
        })
        .collect();
    let recs = index_lines(&staging, TENANT, &lines).await;
    let keys: Vec<String> = list_all(&staging, "")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    let last_index = keys
        .iter()
        .filter(|k| k.ends_with(".idx"))
        .max()
        .unwrap()
        .clone();
    let late_block = [last_index.clone(), last_index.replace(".idx", ".seq")];
    assert!(keys.contains(&late_block[1]), "{keys:?}");
    assert!(keys.len() > 2, "more than one block: {keys:?}");

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HookedStore::new(
        Arc::new(LocalStore::new(dir.path()).unwrap()),
        Gate::default(),
    ));
    let copy = |key: String| {
        let (store, staging) = (store.clone(), &staging);
        async move {
            let body = staging.get(&key).await.unwrap();
            store.inner.put(&key, body).await.unwrap();
        }
    };
    for key in keys.iter().filter(|k| !late_block.contains(k)) {
        copy(key.clone()).await;
    }

    let cfg = EngineConfig {
        listing_cache_secs: 3600,
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(store.clone(), cfg, Arc::new(Metrics::new())));
    let range = TimeRange {
        start: recs.iter().map(|r| r.ts).min().unwrap(),
        end: recs.iter().map(|r| r.ts).max().unwrap() + 1,
    };
    let count = |engine: Arc<Engine>| async move {
        let Query::Log(q) = parse(r#"{__app__=~".+"}"#).unwrap() else {
            unreachable!("a log query")
        };
        let (entries, _) = engine
            .logs(TENANT, range, &q, LINES + 1, Direction::Forward, true)
            .await
            .unwrap();
        entries.len()
    };

    // Query A lists the hour without the late block, and is held there.
    store.armed.store(true, Ordering::SeqCst);
    let slow = tokio::spawn(count(engine.clone()));
    store.held.notified().await;
    // The late block lands; query B lists it and caches its listing.
    for key in late_block {
        copy(key).await;
    }
    assert_eq!(
        count(engine.clone()).await,
        LINES,
        "query B sees every line"
    );
    // A finishes with its older listing.
    store.release.notify_one();
    let slow = slow.await.unwrap();
    assert!(slow < LINES, "query A listed before the late block landed");
    // Query C, from the cache, must still see what B saw.
    assert_eq!(
        count(engine.clone()).await,
        LINES,
        "a later query lost lines an earlier one returned"
    );
}
