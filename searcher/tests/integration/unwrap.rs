//! Range functions over unwrapped values, `offset` and binary operators
//! between vectors, end to end: lines indexed by
//! the indexer's own code into a local store, queried through the engine
//! with and without pruning. Every expected value is worked out by hand
//! in the comment beside it.

use std::sync::Arc;

use skidder_common::storage::LocalStore;
use skidder_searcher::engine::{Engine, EngineConfig, Matrix};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines, BASE_MS};

const TENANT: &str = "unwrap";
const S: i64 = 1_000_000_000;

/// Five lines of app `api`, 10 s to 70 s after `BASE_MS`; the fourth's
/// latency does not read as a number.
fn lines() -> Vec<String> {
    [
        (10, "info", "100", "1.5s", "1KiB"),
        (20, "info", "300", "250ms", "2KB"),
        (30, "error", "500", "2s", "3000"),
        (40, "info", "\"fast\"", "1s", "1"),
        (70, "info", "700", "3s", "1"),
    ]
    .iter()
    .map(|(s, level, latency, took, size)| {
        format!(
            r#"{{"ts":{},"app":"api","level":"{level}","latency_ms":{latency},"took":"{took}","size":"{size}"}}"#,
            BASE_MS + s * 1000
        )
    })
    .collect()
}

/// `(level, step) -> value` of a metric query at `start + k * step`.
async fn run(
    engine: &Engine,
    q: &str,
    start_s: i64,
    end_s: i64,
    step_s: i64,
) -> (Vec<(String, usize, f64)>, Vec<String>) {
    let Query::Metric(m) = parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) else {
        panic!("{q}")
    };
    let base = BASE_MS * 1_000_000;
    let mut answers: Vec<(Matrix, Vec<String>)> = Vec::new();
    for prune in [true, false] {
        let (m, stats) = engine
            .metric(
                TENANT,
                &m,
                base + start_s * S,
                base + end_s * S,
                step_s * S,
                prune,
            )
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        answers.push((m, stats.warnings));
    }
    assert_eq!(
        answers[0].0, answers[1].0,
        "{q}: pruning changed the answer"
    );
    let (m, warnings) = answers.swap_remove(0);
    let mut out = Vec::new();
    for (labels, points) in m {
        let level = labels
            .iter()
            .find(|(k, _)| k == "level")
            .map_or(String::new(), |(_, v)| v.clone());
        for (k, v) in points {
            out.push((level.clone(), k, v));
        }
    }
    (out, warnings)
}

/// The error a metric query at `at_s` fails with, pruned or not.
async fn failure(engine: &Engine, q: &str, at_s: i64) -> String {
    let Query::Metric(m) = parse(q).unwrap_or_else(|e| panic!("{q}: {e}")) else {
        panic!("{q}")
    };
    let t = BASE_MS * 1_000_000 + at_s * S;
    let mut errors = Vec::new();
    for prune in [true, false] {
        match engine.metric(TENANT, &m, t, t, S, prune).await {
            Ok(_) => panic!("{q} answered"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert_eq!(errors[0], errors[1], "{q}");
    errors.swap_remove(0)
}

fn close(got: &[(String, usize, f64)], want: &[(&str, usize, f64)], q: &str) {
    assert_eq!(got.len(), want.len(), "{q}: {got:?}");
    for ((gl, gk, gv), (wl, wk, wv)) in got.iter().zip(want) {
        assert_eq!((gl.as_str(), *gk), (*wl, *wk), "{q}: {got:?}");
        assert!((gv - wv).abs() < 1e-9, "{q}: {got:?}, want {want:?}");
    }
}

#[tokio::test]
async fn range_functions_over_unwrapped_values_answer_as_loki_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    index_lines(&*store, TENANT, &lines()).await;
    let engine = Engine::new(store, EngineConfig::default(), Arc::new(Metrics::new()));
    let sel = r#"{__app__="api"} | json"#;

    // At 60 s, over (0 s, 60 s]: info has 100 and 300 (the 40 s line's
    // latency is not a number: `| __error__=""` after unwrap drops it);
    // error has 500.
    for (func, info, error) in [
        ("sum_over_time", 400.0, 500.0),      // 100 + 300
        ("avg_over_time", 200.0, 500.0),      // 400 / 2
        ("min_over_time", 100.0, 500.0),      //
        ("max_over_time", 300.0, 500.0),      //
        ("stdvar_over_time", 10_000.0, 0.0),  // mean 200: (100² + 100²) / 2
        ("stddev_over_time", 100.0, 0.0),     // √10000
        ("first_over_time", 100.0, 500.0),    // the 10 s line
        ("last_over_time", 300.0, 500.0),     // the 20 s line
        ("rate", 400.0 / 60.0, 500.0 / 60.0), // the sum per second of 1m
    ] {
        // Loki groups inside the statistics only; a sum or a rate is
        // grouped outside, which adds up the lines' series alike.
        let inner = format!("{func}({sel} | unwrap latency_ms | __error__=\"\" [1m])");
        let q = match func {
            "sum_over_time" | "rate" => format!("sum by (level) ({inner})"),
            _ => format!("{inner} by (level)"),
        };
        let (got, warnings) = run(&engine, &q, 60, 60, 1).await;
        close(&got, &[("error", 0, error), ("info", 0, info)], &q);
        assert!(warnings.is_empty(), "{q}: {warnings:?}");
    }
    // Without the filter the unreadable value is a sample marked
    // `__error__="SampleExtractionErr"`, and Loki fails the query, naming
    // the series and the way out.
    let q = format!("sum by (level) (sum_over_time({sel} | unwrap latency_ms [1m]))");
    let err = failure(&engine, &q, 60).await;
    assert!(
        err.starts_with("pipeline error: 'SampleExtractionErr' for series: '{")
            && err.contains(
                r#"__error_details__="strconv.ParseFloat: parsing \"fast\": invalid syntax""#
            )
            && err.contains(r#"(e.g | __error__!="SampleExtractionErr")"#),
        "{err}"
    );
    // Only samples in the steps' windows count: at 30 s the 40 s line is
    // not in (−30 s, 30 s], so the same query answers.
    close(
        &run(&engine, &q, 30, 30, 1).await.0,
        &[("error", 0, 500.0), ("info", 0, 400.0)],
        &q,
    );
    // The same for counting: a numeric filter on "fast" marks the line
    // `LabelFilterErr`, which fails a count, unless `| drop __error__`
    // removes the mark (then it counts: 3 info lines ≥ 100 or unreadable).
    let q = format!("sum by (level) (count_over_time({sel} | latency_ms >= 100 [1m]))");
    assert!(
        failure(&engine, &q, 60)
            .await
            .starts_with("pipeline error: 'LabelFilterErr'"),
        "{q}"
    );
    let q = format!(
        "sum by (level) (count_over_time({sel} | latency_ms >= 100 | drop __error__ [1m]))"
    );
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 1.0), ("info", 0, 3.0)],
        &q,
    );
    // rate_counter reads the values as a counter: info's 100, 300 over
    // (0 s, 60 s] at 10 s and 20 s: increase 200, one 10 s gap; to the
    // start min(60 s, 10·100/200 = 5 s) < 11 s, so 5 s is added; to the
    // end 0 s: interval 15 s. 200 · 15/10 / 60 = 5. Error's one sample: 0.
    // Loki does not group inside rate_counter: `| json` with only these
    // two fields makes one series per level.
    let q = r#"rate_counter({__app__="api"} | json level="level", latency_ms="latency_ms" | unwrap latency_ms | __error__="" [1m])"#;
    close(
        &run(&engine, q, 60, 60, 1).await.0,
        &[("error", 0, 0.0), ("info", 0, 5.0)],
        q,
    );
    // Quantiles interpolate between ranks, as Prometheus does: for info's
    // [100, 300], φ = 0.5 is rank 0.5 → 200, φ = 0.9 is 100·0.1 + 300·0.9.
    for (phi, info) in [(0.5, 200.0), (0.9, 280.0), (0.0, 100.0), (1.0, 300.0)] {
        let q = format!(
            "quantile_over_time({phi}, {sel} | unwrap latency_ms | __error__=\"\" [1m]) by (level)"
        );
        let (got, _) = run(&engine, &q, 60, 60, 1).await;
        close(&got, &[("error", 0, 500.0), ("info", 0, info)], &q);
    }
    // Durations in seconds (info: 1.5 s + 250 ms + 1 s, the 40 s line's
    // duration reading fine), byte sizes in bytes (1 KiB + 2 KB + 1); a
    // filter after unwrap changes nothing here.
    let q = format!(
        "sum by (level) (sum_over_time({sel} | unwrap duration(took) | __error__=\"\" [1m]))"
    );
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 2.0), ("info", 0, 2.75)],
        &q,
    );
    let q = format!("sum by (level) (sum_over_time({sel} | unwrap bytes(size) [1m]))");
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 3000.0), ("info", 0, 3025.0)],
        &q,
    );

    // Steps at 30, 60 and 90 s: windows (-30, 30], (0, 60], (30, 90].
    // At 90 s only the 40 s (unreadable) and 70 s lines are in range:
    // info is 700 and error has no point.
    let q =
        format!("sum by (level) (sum_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m]))");
    let (got, _) = run(&engine, &q, 30, 90, 30).await;
    close(
        &got,
        &[
            ("error", 0, 500.0),
            ("error", 1, 500.0),
            ("info", 0, 400.0),
            ("info", 1, 400.0),
            ("info", 2, 700.0),
        ],
        &q,
    );
    // `offset 30s` at 90 s reads the window (0, 60]: as at 60 s above;
    // counting lines there, info has the 10, 20 and 40 s lines, error one.
    let q = format!(
        "sum by (level) (sum_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m] offset 30s))"
    );
    close(
        &run(&engine, &q, 90, 90, 1).await.0,
        &[("error", 0, 500.0), ("info", 0, 400.0)],
        &q,
    );
    let q = r#"sum by (level) (count_over_time({__app__="api"}[1m] offset 30s))"#;
    close(
        &run(&engine, q, 90, 90, 1).await.0,
        &[("error", 0, 1.0), ("info", 0, 3.0)],
        q,
    );

    // Binary operators between vectors: at 60 s info has 3 lines and
    // error 1; `> 1` keeps info's 3; latency over lines, by level, pairs
    // info's 400 with 3 and error's 500 with 1.
    let lines = r#"sum by (level) (count_over_time({__app__="api"}[1m]))"#;
    let q = format!("{lines} > 1");
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("info", 0, 3.0)],
        &q,
    );
    let q = format!(
        "sum by (level) (sum_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m])) / {lines}"
    );
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 500.0), ("info", 0, 400.0 / 3.0)],
        &q,
    );

    // absent_over_time: nothing says "disk full", so 1, labelled by the
    // selector's equality matchers; the app's lines are present, so none.
    let q = r#"absent_over_time({__app__="api"} |= "disk full" [1m])"#;
    let (got, _) = run(&engine, q, 60, 60, 1).await;
    assert_eq!(got, [(String::new(), 0, 1.0)], "{q}");
    let q = r#"absent_over_time({__app__="api"}[1m])"#;
    assert!(run(&engine, q, 60, 60, 1).await.0.is_empty(), "{q}");
    // label_replace on a result: level "info" becomes sev "i".
    let q = r#"label_replace(sum by (level) (count_over_time({__app__="api"}[1m])), "sev", "$1", "level", "(.).*")"#;
    let Query::Metric(m) = parse(q).unwrap() else {
        panic!()
    };
    let base = BASE_MS * 1_000_000;
    let (m, _) = engine
        .metric(TENANT, &m, base + 60 * S, base + 60 * S, S, true)
        .await
        .unwrap();
    let sevs: Vec<&str> = m
        .keys()
        .flat_map(|l| {
            l.iter()
                .filter(|(k, _)| k == "sev")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(sevs, ["e", "i"], "{q}");

    // Inside an aggregation, with the default series (each line's labels
    // but the unwrapped one: json adds ts, so one series per line).
    let q =
        format!("sum by (level) (max_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m]))");
    let (got, _) = run(&engine, &q, 60, 60, 1).await;
    close(&got, &[("error", 0, 500.0), ("info", 0, 400.0)], &q);

    // A `sum` groups inside the range functions whose sums add up (Loki's
    // pushdown): the same answer as summing every series, which `* 1`
    // forces, since a binary operator is not pushed through.
    for inner in [
        format!("count_over_time({sel} [1m])"),
        format!("bytes_rate({sel} [1m])"),
        format!("sum_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m])"),
        format!("rate({sel} | unwrap bytes(size) [1m])"),
    ] {
        for outer in ["sum by (level)", "sum without (ts, took)", "sum"] {
            let pushed = format!("{outer} ({inner})");
            let each = format!("{outer} ({inner} * 1)");
            let (a, b) = (
                run(&engine, &pushed, 30, 90, 30).await.0,
                run(&engine, &each, 30, 90, 30).await.0,
            );
            assert!(!a.is_empty(), "{pushed}");
            assert_eq!(a.len(), b.len(), "{pushed}: {a:?} vs {b:?}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!((&x.0, x.1), (&y.0, y.1), "{pushed}");
                assert!((x.2 - y.2).abs() < 1e-9, "{pushed}: {a:?} vs {b:?}");
            }
        }
    }

    // `vector(0)` is a vector, so `or vector(0)` fills in when nothing
    // matched (Grafana's common "no data means 0"); with data, the left
    // side wins (`or` adds only series whose labels the left lacks: the
    // left's is `{}` too).
    let q = r#"sum(count_over_time({__app__="none"}[1m])) or vector(0)"#;
    assert_eq!(
        run(&engine, q, 60, 60, 1).await.0,
        [(String::new(), 0, 0.0)],
        "{q}"
    );
    let q = r#"sum(count_over_time({__app__="api"}[1m])) or vector(0)"#;
    assert_eq!(
        run(&engine, q, 60, 60, 1).await.0,
        [(String::new(), 0, 4.0)],
        "{q}"
    );
    // Two numbers compared fold to 1 or 0, as with `bool`.
    assert_eq!(
        run(&engine, "1 < 2", 60, 60, 1).await.0,
        [(String::new(), 0, 1.0)]
    );
    assert_eq!(
        run(&engine, "1 > 2", 60, 60, 1).await.0,
        [(String::new(), 0, 0.0)]
    );
}

/// Loki's parser hints, end to end: a metric query that needs no field
/// does not parse the line, and one that needs some stops reading once it
/// has them, so a line cut short after them is counted, not an error.
#[tokio::test]
async fn a_narrowed_json_reads_a_line_only_as_far_as_the_query_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let mut l = lines();
    // Not JSON to the indexer, so it is app `unknown` with no `level`
    // stream label, at its Kafka time: offset 5, 4.985 s after BASE_MS.
    l.push(format!(
        r#"{{"ts":{},"app":"api","level":"info","latency_ms":9,"cut sh"#,
        BASE_MS + 50 * 1000
    ));
    index_lines(&*store, TENANT, &l).await;
    let engine = Engine::new(store, EngineConfig::default(), Arc::new(Metrics::new()));
    let sel = r#"{__app__=~".+"} | json"#;
    // (0 s, 60 s]: the api lines at 10, 20, 30 and 40 s, and the cut line.
    let q = format!("sum(count_over_time({sel} [1m]))");
    close(&run(&engine, &q, 60, 60, 1).await.0, &[("", 0, 5.0)], &q);
    // Absence reads no field either: lines are there, so no series.
    let q = format!("absent_over_time({sel} [1m])");
    close(&run(&engine, &q, 60, 60, 1).await.0, &[], &q);
    // `level` is read from the cut line before it breaks: info has the
    // api lines at 10, 20 and 40 s and the cut one.
    let q = format!("sum by (level) (count_over_time({sel} [1m]))");
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 1.0), ("info", 0, 4.0)],
        &q,
    );
    // Through a template that reads only `level`, the same: Loki's hints
    // hold the names a template reads.
    let q =
        format!(r#"sum by (level) (count_over_time({sel} | line_format "{{{{.level}}}}" [1m]))"#);
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 1.0), ("info", 0, 4.0)],
        &q,
    );
    // Grouped by a rename's new name, which no field gives: the line is
    // read whole, as Loki reads it, and the cut line is an error.
    let q = format!("sum by (sev) (count_over_time({sel} | label_format sev=level [1m]))");
    assert!(
        failure(&engine, &q, 60)
            .await
            .starts_with("pipeline error: 'JSONParserErr'"),
        "{q}"
    );
    // A field the cut line lacks: it is read to the break, an error.
    let q = format!("sum by (level, msg) (count_over_time({sel} [1m]))");
    assert!(
        failure(&engine, &q, 60)
            .await
            .starts_with("pipeline error: 'JSONParserErr'"),
        "{q}"
    );
    // `__error__` is never a field, so a filter on it reads every line
    // whole; the cut line's error then drops it.
    let q =
        format!("sum by (level) (sum_over_time({sel} | unwrap latency_ms | __error__=\"\" [1m]))");
    close(
        &run(&engine, &q, 60, 60, 1).await.0,
        &[("error", 0, 500.0), ("info", 0, 400.0)],
        &q,
    );
}

/// `| json` writes a number as the line spells it, as Loki's `readValue`
/// returns a number's bytes: `0.250` stays `0.250` and `1e3` stays `1e3`,
/// whether the reader is narrowed (a grouping) or reads every field (a
/// template after it). To a numeric filter and to unwrap it is still the
/// number.
#[tokio::test]
async fn json_writes_a_number_as_the_line_spells_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    let l: Vec<String> = [(10, "0.250"), (20, "1.50"), (30, "1e3")]
        .iter()
        .map(|(s, took)| {
            format!(
                r#"{{"ts":{},"app":"num","took_s":{took}}}"#,
                BASE_MS + s * 1000
            )
        })
        .collect();
    index_lines(&*store, "numbers", &l).await;
    let engine = Engine::new(store, EngineConfig::default(), Arc::new(Metrics::new()));
    // Each series at t = 60 s over (0 s, 60 s], by its `took_s`.
    let series = |q: String| {
        let engine = &engine;
        async move {
            let Query::Metric(m) = parse(&q).unwrap_or_else(|e| panic!("{q}: {e}")) else {
                panic!("{q}")
            };
            let t = BASE_MS * 1_000_000 + 60 * S;
            let mut answers = Vec::new();
            for prune in [true, false] {
                let (m, _) = engine
                    .metric("numbers", &m, t, t, S, prune)
                    .await
                    .unwrap_or_else(|e| panic!("{q}: {e}"));
                let mut got: Vec<(String, f64)> = m
                    .into_iter()
                    .map(|(labels, points)| {
                        let took = labels
                            .iter()
                            .find(|(k, _)| k == "took_s")
                            .map_or(String::new(), |(_, v)| v.clone());
                        (took, points.values().sum())
                    })
                    .collect();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                answers.push(got);
            }
            assert_eq!(answers[0], answers[1], "{q}: pruning changed the answer");
            answers.swap_remove(0)
        }
    };
    let sel = r#"{__app__="num"} | json"#;
    let each = vec![
        ("0.250".to_owned(), 1.0),
        ("1.50".to_owned(), 1.0),
        ("1e3".to_owned(), 1.0),
    ];
    let q = format!("sum by (took_s) (count_over_time({sel} [1m]))");
    assert_eq!(series(q.clone()).await, each, "{q}");
    let q =
        format!(r#"sum by (took_s) (count_over_time({sel} | line_format "{{{{.took_s}}}}" [1m]))"#);
    assert_eq!(series(q.clone()).await, each, "{q}");
    // A string filter compares the text, a numeric one the number.
    let q = format!(r#"sum by (took_s) (count_over_time({sel} | took_s="1.50" [1m]))"#);
    assert_eq!(series(q.clone()).await, [("1.50".to_owned(), 1.0)], "{q}");
    let q = format!(r#"sum(count_over_time({sel} | took_s="1.5" [1m]))"#);
    assert_eq!(series(q.clone()).await, [], "{q}");
    let q = format!(r#"sum(count_over_time({sel} | took_s == 1.5 [1m]))"#);
    assert_eq!(series(q.clone()).await, [(String::new(), 1.0)], "{q}");
    // 0.25 + 1.5 + 1000.
    let q = format!(r#"sum(sum_over_time({sel} | unwrap took_s [1m]))"#);
    assert_eq!(series(q.clone()).await, [(String::new(), 1001.75)], "{q}");
}
