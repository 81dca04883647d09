//! Pruning never changes results. Real logs from `../shared/data` and
//! generated Kubernetes-style logs go through the indexer's own parser,
//! block maker and compressor into a local store. Then hundreds of seeded
//! random queries (selectors, present and absent needles, regexes, field
//! filters, limits, both directions, metric queries) must return exactly
//! what a brute-force scan of the parsed input returns: same lines, same
//! order, same limit. Set `SKIDDER_PRUNE_SEED` to replay a run. The same
//! holds through compaction: killed half way, published, with its sources
//! deleted, and packed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use async_trait::async_trait;
use skidder_common::format::layout::{hour_of, now_ns, NS_PER_HOUR};
use skidder_common::storage::{
    list_all, LocalStore, ObjectStore, S3Store, StorageError, StorageErrorKind, StorageResult,
};
use skidder_common::testing::MotoServer;
use skidder_indexer::compactor::{compact_hour, newest_manifest, CompactOptions};
use skidder_indexer::packer::{hours_with_days, pack_hours, PackOptions};
use skidder_searcher::engine::{sort_entries, Direction, Engine, EngineConfig, Entry, TimeRange};
use skidder_searcher::logql::eval::LinePipeline;
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;

use skidder_common::testing::SeededRng as Rng;

use crate::fixture::{index_lines, HookedStore, Hooks, Rec};

const TENANT: &str = "t1";

fn input_lines(rng: &mut Rng) -> Vec<String> {
    let root = skidder_common::testing::shared_data_dir();
    let root = root.display();
    let mut lines = Vec::new();
    for f in [
        "zeek/dns.json",
        "zeek/ssl.json",
        "zeek/weird.json",
        "suricata/wrccdc-2018.ndjson",
        "elastic/nginxplus_status.ndjson",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{f}")).expect("shared data");
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .take(4000)
                .map(str::to_owned),
        );
    }
    for f in [
        "loghub/OpenSSH_2k.log",
        "loghub/Spark_2k.log",
        "loghub/HDFS_2k.log",
        "elastic/apache_access.log",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{f}")).expect("shared data");
        let system = f
            .split('/')
            .nth(1)
            .unwrap()
            .split('_')
            .next()
            .unwrap()
            .to_owned();
        for (i, l) in text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(2000)
            .enumerate()
        {
            // Half plain text, half wrapped as JSON records.
            if i % 2 == 0 {
                lines.push(l.to_owned());
            } else {
                let level = ["info", "warn", "error"][i % 3];
                lines.push(
                    serde_json::json!({"app": system, "level": level, "message": l}).to_string(),
                );
            }
        }
    }
    // Generated Kubernetes-style logs with trace ids.
    for i in 0..6000 {
        let svc = *rng.pick(&["checkout", "cart", "auth"]);
        let status = [200, 201, 404, 500, 503][rng.below(5)];
        lines.push(
            serde_json::json!({
                "app": svc,
                "level": rng.pick(&["info", "warn", "error"]).to_string(),
                "msg": format!("{} /api/v1/{} took {} ms", rng.pick(&["GET", "POST"]), rng.pick(&["cart", "pay", "items"]), rng.below(900)),
                "trace_id": format!("{:016x}{:016x}", rng.next(), rng.next()),
                "http": {"status": status, "path": format!("/p/{}", i % 50)},
            })
            .to_string(),
        );
    }
    lines
}

fn brute_logs(recs: &[Rec], q: &str, range: TimeRange, limit: usize, dir: Direction) -> Vec<Entry> {
    let Query::Log(lq) = parse(q).unwrap() else {
        panic!("{q}")
    };
    let p = LinePipeline::new(&lq);
    let mut out = Vec::new();
    let mut ext = Vec::new();
    for r in recs {
        if r.ts < range.start || r.ts >= range.end {
            continue;
        }
        let ok = lq.matchers.iter().all(|m| {
            let v = if m.name == "__tenant__" {
                TENANT
            } else {
                r.labels
                    .iter()
                    .find(|(k, _)| *k == m.name)
                    .map_or("", |(_, v)| v.as_str())
            };
            m.matches(v)
        });
        if !ok {
            continue;
        }
        if let Some(line) = p.eval(r.ts, &r.line, &r.labels, &mut ext) {
            // The result's labels as the engine builds them (extracted
            // over stream labels, renames, `drop` and `keep`): what is
            // checked here is which lines pruning keeps.
            out.push(Entry {
                ts: r.ts,
                labels: p.result_labels(&Arc::new(r.labels.clone()), &ext),
                line: line.into_owned(),
            });
        }
    }
    sort_entries(&mut out, dir);
    out.truncate(limit);
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A random query: a selector, then maybe line and field filters.
fn random_query(rng: &mut Rng, recs: &[Rec]) -> String {
    let r = &recs[rng.below(recs.len())];
    let label = |name: &str| {
        r.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let app = label("__app__").unwrap_or_default();
    let mut q = match rng.below(5) {
        0 => format!(r#"{{__app__="{}"}}"#, escape(&app)),
        1 => format!(r#"{{__app__=~"{}|cart"}}"#, regex_escape(&app)),
        2 => match label("level").or(label("_path")) {
            Some(v) => format!(r#"{{__app__=~".+", level!="{}"}}"#, escape(&v)),
            None => r#"{__app__!="nothing", __app__=~".+"}"#.to_owned(),
        },
        3 => r#"{_path=~"d.*|s.*"}"#.to_owned(),
        _ => r#"{__tenant__="t1"}"#.to_owned(),
    };
    let words: Vec<&str> = r
        .line
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .collect();
    let level = label("level").unwrap_or_else(|| "info".to_owned());
    for _ in 0..rng.below(3) {
        match rng.below(15) {
            // A template sets a label to a constant no line holds: a
            // filter on it after `label_format` must not prune on its
            // words, and every line passes.
            9 => {
                let k = *rng.pick(&["trace_id", "msg", "level", "w"]);
                let c = format!("c{:x}", rng.next());
                q.push_str(&format!(r#" | label_format {k}="{c}" | {k}="{c}""#));
            }
            // A rename: the filter reads the new name.
            10 => {
                let mut fields = Vec::new();
                skidder_searcher::logql::narrow::read_all(&r.line, &mut fields);
                if let Some((k, v)) = fields.get(rng.below(fields.len().max(1))).cloned() {
                    q.push_str(&format!(
                        r#" | json | label_format renamed={k} | renamed="{}""#,
                        escape(&v)
                    ));
                }
            }
            // Other parsers, whose fields are not the indexed JSON words.
            11 => q.push_str(&format!(r#" | logfmt | level="{}""#, escape(&level))),
            12 if !words.is_empty() => {
                let w = words[rng.below(words.len())];
                if rng.below(2) == 0 {
                    q.push_str(&format!(r#" |> "<_>{w}<_>""#));
                } else {
                    q.push_str(&format!(r#" | pattern "<a> <b> <_>" | b="{w}""#));
                }
            }
            // Numbers, addresses, and labels dropped or kept.
            13 => q.push_str(rng.pick::<&str>(&[
                r#" | json | http_status >= 500 or level="warn""#,
                r#" | json | http_status != 404, http_status > 200"#,
                r#" |= ip("10.0.0.0/8")"#,
                r#" != ip("192.168.0.0/16")"#,
            ])),
            // (A filter ends the list, which would take `!= "x"` after it
            // for a matcher.)
            14 => q.push_str(rng.pick::<&str>(&[
                r#" | json | drop trace_id | __error__="""#,
                r#" | json | keep level, http_status | level="warn""#,
            ])),
            // A Go template rewrites the line: a filter after it is on the
            // new text, which no index holds (upper-cased words).
            8 if !words.is_empty() => q.push_str(&format!(
                r#" | line_format "{{{{ __line__ | ToUpper }}}}" |= "{}""#,
                escape(&words[rng.below(words.len())].to_uppercase())
            )),
            // A present needle: a slice of a real line, word-aligned or not.
            0 | 1 => {
                let chars: Vec<char> = r.line.chars().collect();
                let start = rng.below(chars.len());
                let len = 3 + rng.below(30);
                let needle: String = chars[start..(start + len).min(chars.len())]
                    .iter()
                    .collect();
                q.push_str(&format!(r#" |= "{}""#, escape(&needle)));
                // Sometimes `or` an absent one (Loki 3's chains).
                if rng.below(3) == 0 {
                    q.push_str(&format!(r#" or " {:x} ""#, rng.next()));
                }
            }
            2 => q.push_str(&format!(r#" |= " {:x} ""#, rng.next())),
            3 if !words.is_empty() => q.push_str(&format!(
                r#" != "{}" or "{}""#,
                escape(words[rng.below(words.len())]),
                escape(words[rng.below(words.len())])
            )),
            4 if !words.is_empty() => q.push_str(&format!(
                r#" |~ "(?i){}""#,
                regex_escape(words[rng.below(words.len())])
            )),
            // A regexp parser's field, present or absent.
            5 if !words.is_empty() => {
                let w = words[rng.below(words.len())];
                let w = if rng.below(3) == 0 {
                    format!("{w}-absent")
                } else {
                    w.to_owned()
                };
                q.push_str(&format!(
                    r#" | regexp "(?P<w>{})" | w="{}""#,
                    escape(&regex_syntax_escape(&w)),
                    escape(&w)
                ));
            }
            // A field filter, with or without `| json`, present or absent.
            _ => {
                let mut fields = Vec::new();
                skidder_searcher::logql::narrow::read_all(&r.line, &mut fields);
                if let Some((k, v)) = fields.get(rng.below(fields.len().max(1))).cloned() {
                    let v = if rng.below(4) == 0 {
                        format!("{v}-absent")
                    } else {
                        v
                    };
                    let json = if rng.below(2) == 0 { " | json" } else { "" };
                    q.push_str(&format!(r#"{json} | {k}="{}""#, escape(&v)));
                }
            }
        }
    }
    q
}

fn regex_escape(s: &str) -> String {
    escape(&regex_syntax_escape(s))
}

fn regex_syntax_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Runs `n` random queries against `engine`, each held to the brute force
/// over `recs`; returns (queries checked, queries with results).
async fn check_queries(
    engine: &Engine,
    recs: &[Rec],
    rng: &mut Rng,
    n: usize,
    seed: u64,
    phase: &str,
) -> (usize, usize) {
    let (mut checked, mut nonempty) = (0, 0);
    for _ in 0..n {
        let q = random_query(rng, recs);
        // Around a random record's time, or everything.
        let anchor = recs[rng.below(recs.len())].ts;
        let range = match rng.below(3) {
            0 => TimeRange {
                start: anchor - 600_000_000_000,
                end: anchor + 600_000_000_000,
            },
            1 => TimeRange {
                start: anchor - 7_200_000_000_000,
                end: anchor + 1,
            },
            _ => TimeRange {
                start: recs.iter().map(|r| r.ts).min().unwrap(),
                end: recs.iter().map(|r| r.ts).max().unwrap() + 1,
            },
        };
        if hour_of(range.end) - hour_of(range.start) > 24 * 400 {
            continue;
        }
        let limit = 1 + rng.below(300);
        let dir = if rng.below(2) == 0 {
            Direction::Forward
        } else {
            Direction::Backward
        };
        let Query::Log(lq) = parse(&q).unwrap_or_else(|e| panic!("generated {q}: {e}")) else {
            panic!()
        };
        let (got, stats) = engine
            .logs(TENANT, range, &lq, limit, dir, true)
            .await
            .unwrap();
        assert!(stats.warnings.is_empty(), "{phase}: {:?}", stats.warnings);
        let want = brute_logs(recs, &q, range, limit, dir);
        assert_eq!(got.len(), want.len(), "{phase}, seed {seed}: {q}");
        assert!(got == want, "{phase}, seed {seed}: results differ for {q}");
        checked += 1;
        nonempty += usize::from(!want.is_empty());

        // A metric form of the same pipeline: pruned equals unpruned, in
        // the answer or in the error (a line marked `__error__` fails a
        // range function, as in Loki).
        let inner = match rng.below(3) {
            0 => format!("count_over_time({q} [10m])"),
            // Unwrapped values; `| __error__=""` after unwrap drops lines
            // without a readable status, as Loki's docs advise.
            1 => format!(
                r#"{}_over_time({q} | json | unwrap http_status | __error__="" [10m])"#,
                rng.pick(&["sum", "max", "avg", "first", "last", "stddev"])
            ),
            _ => format!("sum_over_time({q} | json | unwrap http_status | __error__=\"\" [10m])"),
        };
        let mq = if rng.below(4) == 0 {
            // A binary operator between two range aggregations.
            format!(
                r#"sum by (level) ({inner}) / on (level) sum by (level) (count_over_time({{__tenant__="t1"}} | json | drop __error__, __error_details__ [10m]))"#
            )
        } else {
            format!("sum by (level) ({inner})")
        };
        // A sum over counts and sums groups inside the range and reads only
        // the labels it needs; `* 1` stops both, so the answers must agree.
        let whole = format!("sum by (level) ({inner} * 1)");
        if let Ok(Query::Metric(m)) = parse(&mq) {
            let step = 600_000_000_000;
            let mut answers = Vec::new();
            for prune in [true, false] {
                answers.push(
                    engine
                        .metric(TENANT, &m, range.start, range.end, step, prune)
                        .await
                        .map(|(m, _)| m)
                        // Which series an error names depends on what was
                        // read first; the error is the same.
                        .map_err(|e| e.to_string().split(" for series").next().map(str::to_owned)),
                );
            }
            assert_eq!(
                answers[0], answers[1],
                "{phase}, seed {seed}: metric results differ for {mq}"
            );
            if !mq.contains(" / ") {
                let Ok(Query::Metric(w)) = parse(&whole) else {
                    panic!("{whole}")
                };
                let reference = engine
                    .metric(TENANT, &w, range.start, range.end, step, false)
                    .await
                    .map(|(m, _)| m)
                    .map_err(|e| e.to_string().split(" for series").next().map(str::to_owned));
                assert_eq!(
                    answers[0], reference,
                    "{phase}, seed {seed}: {mq} differs from {whole}"
                );
            }
        }
    }
    (checked, nonempty)
}

fn seed() -> u64 {
    let seed = std::env::var("SKIDDER_PRUNE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    eprintln!("prune test seed {seed} (SKIDDER_PRUNE_SEED replays)");
    seed
}

/// An engine that caches no listing, so each phase reads the store as it is.
fn fresh_engine(store: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Engine {
    Engine::new(
        store,
        EngineConfig {
            max_hours: 1 << 40,
            listing_cache_secs: 0,
            ..Default::default()
        },
        metrics,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_never_changes_results() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let recs = index_lines(&*store, TENANT, &input_lines(&mut rng)).await;
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            max_hours: 1 << 40,
            ..Default::default()
        },
        metrics.clone(),
    );
    let (checked, nonempty) =
        check_queries(&engine, &recs, &mut rng, 400, seed, "small blocks").await;
    let pruned: u64 = ["time", "labels", "bloom"]
        .iter()
        .map(|r| metrics.blocks_pruned.with_label_values(&[r]).get())
        .sum();
    let bloom = metrics.blocks_pruned.with_label_values(&["bloom"]).get();
    eprintln!("{checked} queries ({nonempty} with results) identical; {pruned} blocks pruned ({bloom} by bloom)");
    assert!(
        nonempty > checked / 4,
        "too few queries found anything: the test would prove little"
    );
    assert!(
        bloom > 0,
        "no bloom pruning happened: the test would prove little"
    );

    // Packed from the first hour's day on: hours' and days' sliced blooms.
    let first = hour_of(recs.iter().map(|r| r.ts).min().unwrap());
    let last = hour_of(recs.iter().map(|r| r.ts).max().unwrap());
    pack_whole_days(&*store, first, last).await;
    // No cache: every query is cold, and reads sliced blooms (a warm one
    // has its indexes already).
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            max_hours: 1 << 40,
            cache_bytes: 0,
            ..Default::default()
        },
        metrics.clone(),
    );
    let days = metrics.slices_read.with_label_values(&["ok"]).get();
    check_queries(&engine, &recs, &mut rng, 100, seed, "packed, days sliced").await;
    let read = metrics.slices_read.with_label_values(&["ok"]).get() - days;
    assert!(read > 0, "no sliced blooms read");
}

/// Puts fail after `left` of them: a compactor killed half way through,
/// its objects written but not its manifest.
#[derive(Debug)]
struct PutsRunOut {
    left: AtomicUsize,
}

#[async_trait]
impl Hooks for PutsRunOut {
    async fn before_put(&self, _: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        match self.left.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Ok(()),
            Err(_) => Err(StorageError::new(StorageErrorKind::Io, key, "killed")),
        }
    }
}

/// Compacts every hour the records span; returns the blocks written.
async fn compact_all(store: &dyn ObjectStore, recs: &[Rec], opts: &CompactOptions) -> usize {
    let first = hour_of(recs.iter().map(|r| r.ts).min().unwrap());
    let last = hour_of(recs.iter().map(|r| r.ts).max().unwrap());
    let mut written = 0;
    for prefix in hours_with_days(store, TENANT, (first, last)).await.unwrap() {
        match compact_hour(store, &prefix, opts, now_ns()).await {
            Ok(r) => written += r.blocks_written,
            Err(e) => eprintln!("compaction of {prefix} stopped: {e}"),
        }
    }
    written
}

/// The same oracle through compaction: killed half way (compacted objects
/// without a manifest), then published, then with the small blocks
/// deleted, then packed. Each phase must equal the brute force, and
/// compaction must really have replaced blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_never_changes_results_through_compaction() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0xc0);
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    let recs = index_lines(&*local, TENANT, &input_lines(&mut rng)).await;
    let small = count_keys(&*local, ".idx").await;
    let metrics = Arc::new(Metrics::new());
    let opts = CompactOptions {
        target_raw_bytes: 1 << 20,
        grace_ns: 0,
        // The fixture writes blocks without a ledger or checkpoints.
        require_checkpoint: false,
        ..Default::default()
    };

    // Without a checkpoint past them, blocks may still be rebuilt: none is
    // compacted.
    let cautious = CompactOptions {
        require_checkpoint: true,
        ..opts.clone()
    };
    assert_eq!(compact_all(&*local, &recs, &cautious).await, 0);

    let killed = HookedStore::new(
        local.clone(),
        PutsRunOut {
            left: AtomicUsize::new(5),
        },
    );
    compact_all(&killed, &recs, &opts).await;
    assert!(
        count_keys(&*local, "_manifest.").await <= 2,
        "the kill came too late"
    );
    let engine = fresh_engine(local.clone(), metrics.clone());
    check_queries(&engine, &recs, &mut rng, 120, seed, "killed half way").await;

    let written = compact_all(&*local, &recs, &opts).await;
    assert!(written > 0, "nothing was compacted");
    assert!(count_keys(&*local, "_manifest.").await > 0);
    let engine = fresh_engine(local.clone(), metrics.clone());
    check_queries(
        &engine,
        &recs,
        &mut rng,
        120,
        seed,
        "compacted, sources kept",
    )
    .await;

    // The next pass deletes the sources (grace 0) and the orphans.
    compact_all(&*local, &recs, &opts).await;
    let left = count_keys(&*local, ".idx").await;
    eprintln!("{small} small blocks became {left} blocks");
    assert!(
        left * 2 < small,
        "{small} small blocks, {left} after compaction"
    );
    // The deleting pass published manifests that forget the sources.
    let listed = list_all(&*local, "").await.unwrap();
    let first = hour_of(recs.iter().map(|r| r.ts).min().unwrap());
    let last = hour_of(recs.iter().map(|r| r.ts).max().unwrap());
    for prefix in hours_with_days(&*local, TENANT, (first, last))
        .await
        .unwrap()
    {
        let here: Vec<_> = listed
            .iter()
            .filter(|m| m.key.starts_with(&prefix))
            .cloned()
            .collect();
        if let Some(m) = newest_manifest(&*local, &prefix, &here).await.unwrap() {
            assert_eq!(m.sources().count(), 0, "{prefix}: sources not forgotten");
        }
    }
    let engine = fresh_engine(local.clone(), metrics.clone());
    let (checked, nonempty) =
        check_queries(&engine, &recs, &mut rng, 150, seed, "sources deleted").await;
    assert!(nonempty > checked / 4, "too few queries found anything");
    // The manifests' label summaries ruled blocks out without their
    // indexes, and the results above are still the brute force's.
    let by_summary = metrics
        .blocks_pruned
        .with_label_values(&["manifest_labels"])
        .get();
    eprintln!("{by_summary} compacted blocks ruled out by the manifests' label summaries");
    assert!(by_summary > 0, "no label summary ruled anything out");

    pack_whole_days(&*local, first, last).await;
    let engine = fresh_engine(local.clone(), metrics.clone());
    check_queries(&engine, &recs, &mut rng, 100, seed, "packed").await;

    // A needle no line holds: an hour whose sliced blooms rule out every
    // listed block yields nothing whatever its manifest says, so its
    // manifest is not read (the queries above hold the rest to the brute
    // force).
    let needle = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    assert!(recs.iter().all(|r| !r.line.contains(needle)));
    let cold = Arc::new(Metrics::new());
    let engine = fresh_engine(local.clone(), cold.clone());
    // Spaces around it: a word touching a filter's edge may be part of a
    // longer word, so only words wholly inside prune.
    let Query::Log(lq) = parse(&format!(r#"{{__app__=~".+"}} |= " {needle} ""#)).unwrap() else {
        panic!()
    };
    let range = TimeRange {
        start: first * NS_PER_HOUR,
        end: (last + 1) * NS_PER_HOUR,
    };
    let (got, _) = engine
        .logs(TENANT, range, &lq, 10, Direction::Forward, true)
        .await
        .unwrap();
    assert!(got.is_empty());
    let with_manifest = list_all(&*local, "")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| Some(&m.key[..m.key.find("_manifest.")?]))
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let read = cold.manifests_read.with_label_values(&["ok"]).get();
    let pruned = cold.blocks_pruned.with_label_values(&["bloom"]).get();
    eprintln!("an absent needle read {read} of {with_manifest} hours' manifests ({pruned} blocks ruled out by sliced blooms)");
    assert!(pruned > 0, "no sliced blooms ruled a block out");
    assert!(
        read < with_manifest,
        "{read} of {with_manifest} manifests read for a needle the sliced blooms rule out"
    );

    // Settled hours are listed in runs of a day (`runs.rs`): one paged
    // LIST per run, never one per hour, and for one app no more than for
    // all (hour by hour, an app costs its folder and the hour's level).
    // The oracle above held every query through runs to the brute force.
    let hours_listed = (last - first + 1) as u64;
    let app = recs[recs.len() / 2]
        .labels
        .iter()
        .find(|(k, _)| k == "__app__")
        .map(|(_, v)| escape(v))
        .unwrap();
    for q in [
        format!(r#"{{__app__=~".+"}} |= " {needle} ""#),
        format!(r#"{{__app__="{app}"}} |= " {needle} ""#),
    ] {
        let cold = Arc::new(Metrics::new());
        let engine = fresh_engine(local.clone(), cold.clone());
        let Query::Log(lq) = parse(&q).unwrap() else {
            panic!()
        };
        let (got, _) = engine
            .logs(TENANT, range, &lq, 10, Direction::Forward, true)
            .await
            .unwrap();
        assert!(got.is_empty());
        let lists = |caller| cold.store_requests.requests("list", caller);
        let (by_hour, in_runs) = (lists("listing"), lists("listing_runs"));
        eprintln!("{q}: {in_runs} LISTs of runs and {by_hour} of hours, over {hours_listed} hours");
        assert!(in_runs > 0, "{q}: no hour was listed in a run");
        assert!(
            by_hour + in_runs < hours_listed,
            "{q}: {by_hour} + {in_runs} LISTs for {hours_listed} hours"
        );
    }
}

/// Packs hours `first..=last` from the first one's day on, so that days
/// are sliced whole too, and asserts that one was. These stores are
/// small, so any filter length two blocks of a day share is sliced.
async fn pack_whole_days(store: &dyn ObjectStore, first: i64, last: i64) {
    let report = pack_hours(
        store,
        &[TENANT.to_owned()],
        (first - first.rem_euclid(24), last),
        &PackOptions {
            min_day_group: 2,
            ..Default::default()
        },
        &|| false,
    )
    .await
    .unwrap();
    assert!(report.days_sliced > 0, "no day sliced whole: {report:?}");
}

async fn count_keys(store: &dyn ObjectStore, needle: &str) -> usize {
    list_all(store, "")
        .await
        .unwrap()
        .iter()
        .filter(|m| m.key.contains(needle))
        .count()
}

/// The first manifest put of one compactor (A) lets a rival compactor (B)
/// run a whole pass on the same hour first: the race two `skidder compact`
/// processes run when they pass an hour at once.
#[derive(Debug)]
struct Rival {
    armed: AtomicBool,
    opts: CompactOptions,
    published: AtomicUsize,
}

#[async_trait]
impl Hooks for Rival {
    async fn before_put(&self, inner: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        let Some(at) = key.find("_manifest.") else {
            return Ok(());
        };
        if self.armed.swap(false, SeqCst) {
            let rival = compact_hour(inner, &key[..at], &self.opts, now_ns())
                .await
                .expect("the rival's pass");
            if rival.published.is_some() {
                self.published.fetch_add(1, SeqCst);
            }
        }
        Ok(())
    }
}

/// Two compactors on one hour, on a real S3 server (moto honours
/// `If-None-Match`): the rival, cutting blocks of another size, publishes
/// generation 1 first; the other's conditional put loses, its objects
/// stay unnamed and are never read, and the next pass deletes them.
/// Every query equals the brute force throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_compactors_one_publishes_and_the_other_is_ignored() {
    let seed = seed();
    let mut rng = Rng::new(seed ^ 0x2ace);
    let moto = MotoServer::start();
    let s3 = S3Store::new("race", "", &moto.s3_config()).await;
    s3.create_bucket().await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(s3);
    let lines: Vec<String> = input_lines(&mut rng).into_iter().take(6000).collect();
    let recs = index_lines(&*store, TENANT, &lines).await;
    let opts = CompactOptions {
        target_raw_bytes: 1 << 20,
        grace_ns: 0,
        require_checkpoint: false,
        ..Default::default()
    };
    // The busiest hour, so both compactors have several blocks to cut.
    let mut per_hour: std::collections::BTreeMap<i64, usize> = Default::default();
    for r in &recs {
        *per_hour.entry(hour_of(r.ts)).or_default() += 1;
    }
    let hour = per_hour
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(h, _)| *h)
        .unwrap();
    let prefix = skidder_common::format::layout::hour_prefix(TENANT, hour);
    let rival = HookedStore::new(
        store.clone(),
        Rival {
            armed: AtomicBool::new(true),
            opts: CompactOptions {
                target_raw_bytes: 64 << 10,
                ..opts.clone()
            },
            published: AtomicUsize::new(0),
        },
    );
    let a = compact_hour(&rival, &prefix, &opts, now_ns())
        .await
        .unwrap();
    assert_eq!(rival.published.load(SeqCst), 1, "the rival published first");
    assert!(a.lost_race && a.published.is_none(), "{a:?}");
    assert!(a.blocks_written > 0, "{a:?}");
    let keys = |needle: &'static str| {
        let store = store.clone();
        let prefix = prefix.clone();
        async move {
            list_all(&*store, &prefix)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.key.contains(needle))
                .map(|m| m.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys("_manifest.").await.len(), 1);
    let metrics = Arc::new(Metrics::new());
    let engine = fresh_engine(store.clone(), metrics.clone());
    check_queries(&engine, &recs, &mut rng, 60, seed, "after the race").await;

    // The next pass deletes the loser's objects and the sources.
    let before = keys("/compacted.").await.len();
    compact_hour(&*store, &prefix, &opts, now_ns())
        .await
        .unwrap();
    let manifest = {
        let listed = list_all(&*store, &prefix).await.unwrap();
        newest_manifest(&*store, &prefix, &listed)
            .await
            .unwrap()
            .unwrap()
    };
    let left: Vec<String> = keys("/compacted.").await;
    assert!(
        left.len() < before,
        "{before} compacted objects, {} after",
        left.len()
    );
    for k in left.iter().filter(|k| k.ends_with(".idx")) {
        assert!(
            manifest.entries.iter().any(|e| k.ends_with(&e.name)),
            "{k} is not named yet survived"
        );
    }
    let engine = fresh_engine(store.clone(), metrics.clone());
    check_queries(&engine, &recs, &mut rng, 60, seed, "after the cleanup").await;
}
