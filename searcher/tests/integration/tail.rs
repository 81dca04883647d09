//! The unsettled tail. The indexer writes tail packs of the hours it is
//! writing (`skidder_indexer::tail_packs`), so a cold query over an hour
//! that `skidder pack` has not packed yet GETs a few packs and only the
//! indexes stored since the last one. An hour of many listing pages is
//! listed by app folder, concurrently, past its first pages. Neither may change a
//! result: every query here must return exactly the input's lines.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use skidder_common::format::layout::{hour_of, parse_tail_pack_key, split_block_key};
use skidder_common::storage::{list_all, LocalStore, ObjectStore, StorageResult};
use skidder_indexer::packer::{pack_hours, PackOptions};
use skidder_indexer::tail_packs::TailPacks;
use skidder_searcher::engine::{Direction, Engine, EngineConfig, TimeRange};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines_in_blocks, HookedStore, Hooks, Rec};

const TENANT: &str = "tail";
/// 997 ms apart: about 83 minutes, so one hour is full and one partly.
const LINES: usize = 5_000;
/// Indexes per tail pack, as `upload.tail_pack_max_blocks`.
const PER_PACK: usize = 150;

/// Records every GET and every listed prefix.
#[derive(Debug, Default)]
struct Seen {
    gets: Mutex<Vec<String>>,
    lists: Mutex<Vec<String>>,
}

#[async_trait]
impl Hooks for Seen {
    async fn before_get(&self, _: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        self.gets.lock().unwrap().push(key.to_owned());
        Ok(())
    }
    async fn after_list(&self, prefix: &str) {
        self.lists.lock().unwrap().push(prefix.to_owned());
    }
}

fn input() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let (app, level) = (
                ["checkout", "cart", "search", "auth"][i % 4],
                ["info", "warn", "error"][i % 7 % 3],
            );
            serde_json::json!({
                "app": app,
                "level": level,
                "msg": format!("GET /item/{} served", i % 89),
                "trace_id": format!("{:032x}", (i as u128 + 7) * 0x9E37_79B9_7F4A_7C15),
            })
            .to_string()
        })
        .collect()
}

struct Run {
    lines: Vec<String>,
    gets: Vec<String>,
    lists: Vec<String>,
}

impl Run {
    fn gets_where(&self, f: impl Fn(&str) -> bool) -> usize {
        self.gets.iter().filter(|k| f(k)).count()
    }
}

async fn query(store: &Arc<HookedStore<Seen>>, range: TimeRange, q: &str) -> Run {
    query_in_runs(store, range, q, 1).await
}

/// `query`, listing closed hours in runs of up to `hours_per_listing`.
async fn query_in_runs(
    store: &Arc<HookedStore<Seen>>,
    range: TimeRange,
    q: &str,
    hours_per_listing: usize,
) -> Run {
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            read_slices: false,
            // One page in sequence, then the rest by app folder.
            sequential_list_pages: 1,
            // Hour by hour, unless asked: the tail's hour is the newest,
            // which is not closed and never listed in a run, and these
            // hours are long closed.
            hours_per_listing,
            ..EngineConfig::default()
        },
        Arc::new(Metrics::new()),
    );
    store.gets.lock().unwrap().clear();
    store.lists.lock().unwrap().clear();
    let Query::Log(lq) = parse(q).unwrap() else {
        panic!("{q} is a log query")
    };
    let (entries, stats) = engine
        .logs(TENANT, range, &lq, LINES + 1, Direction::Forward, true)
        .await
        .unwrap();
    assert!(stats.warnings.is_empty(), "{q}: {:?}", stats.warnings);
    Run {
        lines: entries.into_iter().map(|e| e.line).collect(),
        gets: std::mem::take(&mut *store.gets.lock().unwrap()),
        lists: std::mem::take(&mut *store.lists.lock().unwrap()),
    }
}

/// The input's lines that `keep` admits, in time order.
fn want(recs: &[Rec], keep: impl Fn(&Rec) -> bool) -> Vec<String> {
    let mut v: Vec<&Rec> = recs.iter().filter(|r| keep(r)).collect();
    v.sort_by_key(|r| r.ts);
    v.into_iter().map(|r| r.line.clone()).collect()
}

fn app(r: &Rec) -> &str {
    &r.labels.iter().find(|(k, _)| k == "__app__").unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_packs_serve_an_unpacked_hour_and_never_change_results() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HookedStore::new(
        Arc::new(LocalStore::new(dir.path()).unwrap()),
        Seen::default(),
    ));
    // Blocks of about 2 lines: over a thousand objects in the full hour.
    let recs = index_lines_in_blocks(&*store, TENANT, &input(), 300).await;
    assert_eq!(recs.len(), LINES);
    let range = TimeRange {
        start: recs.iter().map(|r| r.ts).min().unwrap(),
        end: recs.iter().map(|r| r.ts).max().unwrap() + 1,
    };
    let mut indexes: Vec<(String, u64)> = list_all(&*store, &format!("tenant={TENANT}/"))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.key.ends_with(".idx"))
        .map(|m| (m.key, m.size))
        .collect();
    indexes.sort();
    let hours: BTreeSet<&str> = indexes
        .iter()
        .map(|(k, _)| split_block_key(k).unwrap().0)
        .collect();
    let big = hours
        .iter()
        .find(|h| indexes.iter().filter(|(k, _)| k.starts_with(**h)).count() > 500)
        .unwrap_or_else(|| {
            panic!(
                "an hour of over 1,000 objects: {} indexes in {hours:?}",
                indexes.len()
            )
        })
        .to_string();

    // The folder the hour's first listing page (1,000 keys) stops in.
    let big_keys = list_all(&*store, &big).await.unwrap();
    let stop = big_keys[999].key.clone();
    let stop = stop[..big.len() + stop[big.len()..].find('/').unwrap() + 1].to_owned();
    assert!(
        stop.as_str() > format!("{big}app=auth/").as_str()
            && stop.as_str() < format!("{big}app=search/").as_str(),
        "the first page covers a folder and stops before the last: {stop}"
    );

    let trace = |r: &Rec| {
        let v: serde_json::Value = serde_json::from_str(&r.line).unwrap();
        v["trace_id"].as_str().unwrap().to_owned()
    };
    let needle = &recs[LINES / 3];
    let queries: Vec<(String, Vec<String>)> = vec![
        (r#"{__app__=~".+"}"#.into(), want(&recs, |_| true)),
        (
            format!(r#"{{__app__=~".+"}} | trace_id="{}""#, trace(needle)),
            vec![needle.line.clone()],
        ),
        (
            r#"{__app__="cart"} |= "/item/42 ""#.into(),
            want(&recs, |r| app(r) == "cart" && r.line.contains("/item/42 ")),
        ),
    ];
    assert!(queries[2].1.len() > 5);

    // Listed in a run of the day, the hours give the same answers. The
    // run lists the day's pages from the first hour on, and gives up on
    // an hour it cannot finish within two pages an hour.
    for (q, want) in &queries {
        let run = query_in_runs(&store, range, q, 6).await;
        assert!(run.lines == *want, "{q}: results differ in a run");
        let day = &big[..big.find("hour=").unwrap()];
        assert!(run.lists.iter().any(|l| l == day), "{q}: {:?}", run.lists);
    }

    // No tail pack: every index is read on its own, and the big hour is
    // listed by app folder.
    for (q, want) in &queries {
        let run = query(&store, range, q).await;
        assert!(run.lines == *want, "{q}: results differ from the input");
        if !q.contains("cart") {
            assert_eq!(
                run.gets_where(|k| k.ends_with(".idx")),
                indexes.len(),
                "{q}"
            );
            // Folders wholly in the first page are kept from it; the one
            // it stopped in and those after are listed on their own.
            for a in ["auth", "cart", "checkout", "search"] {
                let folder = format!("{big}app={a}/");
                assert_eq!(
                    run.lists.contains(&folder),
                    folder.as_str() >= stop.as_str(),
                    "{q}: {folder}, first page stopped in {stop}: {:?}",
                    run.lists
                );
            }
        }
    }

    // The indexer's tail packs, as its uploader writes them: every index
    // but the last few of the big hour, which came after its last pack.
    let uncovered: Vec<&String> = indexes
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&big))
        .rev()
        .take(5)
        .collect();
    let tail = TailPacks::new(PER_PACK);
    let mut packs = Vec::new();
    for (key, _) in &indexes {
        if uncovered.contains(&key) {
            continue;
        }
        let index = store.inner.get(key).await.unwrap();
        packs.extend(tail.add(key, index));
    }
    packs.extend(tail.take_all());
    for p in &packs {
        store.put(&p.key, p.body.clone()).await.unwrap();
    }
    let is_tail = |k: &str| {
        split_block_key(k).is_none() && hours.iter().any(|h| parse_tail_pack_key(h, k).is_some())
    };
    assert!(packs.iter().all(|p| is_tail(&p.key)));
    assert!(packs.len() > hours.len(), "several tail packs an hour");

    for (q, want) in &queries {
        let run = query(&store, range, q).await;
        assert!(run.lines == *want, "{q}: results changed with tail packs");
        assert_eq!(
            run.gets_where(is_tail),
            packs.len(),
            "{q}: every tail pack read"
        );
        let singles: BTreeSet<&String> = run.gets.iter().filter(|k| k.ends_with(".idx")).collect();
        let expected: BTreeSet<&String> = uncovered
            .iter()
            .copied()
            .filter(|k| !q.contains("cart") || k.contains("/app=cart/"))
            .collect();
        assert_eq!(
            singles, expected,
            "{q}: only uncovered indexes on their own"
        );
    }

    // Once `skidder pack` packed the hours, their tail packs are gone and
    // the full packs serve them.
    let report = pack_hours(
        &*store,
        &[TENANT.to_owned()],
        (hour_of(range.start), hour_of(range.end - 1)),
        &PackOptions::default(),
        &|| false,
    )
    .await
    .unwrap();
    assert_eq!(report.hours_packed, hours.len(), "{report:?}");
    let left = list_all(&*store, &format!("tenant={TENANT}/"))
        .await
        .unwrap();
    assert!(!left.iter().any(|m| is_tail(&m.key)), "tail packs left");
    for (q, want) in &queries[..2] {
        let run = query(&store, range, q).await;
        assert!(run.lines == *want, "{q}: results changed once packed");
        assert_eq!(run.gets_where(|k| k.ends_with(".idx")), 0, "{q}");
        assert_eq!(
            run.gets_where(|k| k.contains("/_index.")),
            hours.len(),
            "{q}"
        );
    }
}
