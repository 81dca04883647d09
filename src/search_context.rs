//! `skidder search --context N`: the N lines before and after each hit,
//! from the hit's own stream, as Episilia shows them. A hit's labels also
//! hold what the query's parsers extracted, so its stream is the matching
//! series (from `/series`) whose labels it has; then one query backward,
//! ending just before the hit, and one forward, starting just after it,
//! each over at most two hours, the requests Grafana's "show context"
//! sends. Lines at the hit's very nanosecond are left out of both.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{json, Value};
use skidder_searcher::engine::Direction;

use crate::search::{print_raw, Output, Source};

/// How far before and after a hit its context is looked for.
const WINDOW_NS: i64 = 2 * 3_600_000_000_000;

type Labels = BTreeMap<String, String>;

/// One line of a streams response.
struct Entry {
    ts: i64,
    labels: Labels,
    line: String,
}

/// The entries of a `query_range` streams body, in the order given.
fn entries(body: &Value) -> Vec<Entry> {
    let mut out = Vec::new();
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let labels: Labels = serde_json::from_value(s["stream"].clone()).unwrap_or_default();
        for v in s["values"].as_array().into_iter().flatten() {
            out.push(Entry {
                ts: v[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0),
                labels: labels.clone(),
                line: v[1].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out
}

/// `{a="x", b="y"}`: a selector for exactly these labels.
fn selector(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", Value::String(v.clone())))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Prints each hit of `body` between its context lines: raw, with the hit
/// marked `>` and groups apart by `--`; or one JSON object per hit with
/// its `stream`, `hit`, `before` (oldest first) and `after`.
pub fn print(
    source: &Source,
    query: &str,
    (start, end): (i64, i64),
    body: &Value,
    n: usize,
    output: Output,
) -> anyhow::Result<()> {
    if body["data"]["resultType"] != "streams" {
        bail!("--context takes a log query, not a metric query");
    }
    let series = source.series(query, start, end)?;
    let mut hits = entries(body);
    hits.sort_by_key(|e| std::cmp::Reverse(e.ts));
    for (i, hit) in hits.iter().enumerate() {
        // The stream: the series whose labels the hit has, the most of them.
        let stream = series
            .iter()
            .filter(|s| s.iter().all(|(k, v)| hit.labels.get(k) == Some(v)))
            .max_by_key(|s| s.len());
        let (before, after) = match stream {
            Some(stream) => {
                let sel = selector(stream);
                let ask = |from: i64, to: i64, direction| {
                    source.range(&sel, from, to, n, direction, None)
                };
                let mut before = entries(&ask(hit.ts - WINDOW_NS, hit.ts, Direction::Backward)?);
                before.reverse();
                let after = entries(&ask(hit.ts + 1, hit.ts + WINDOW_NS, Direction::Forward)?);
                (before, after)
            }
            None => (Vec::new(), Vec::new()),
        };
        match output {
            Output::Json => {
                let pair = |e: &Entry| json!([e.ts.to_string(), e.line]);
                println!(
                    "{}",
                    json!({
                        "stream": stream.unwrap_or(&hit.labels),
                        "hit": pair(hit),
                        "before": before.iter().map(pair).collect::<Vec<_>>(),
                        "after": after.iter().map(pair).collect::<Vec<_>>(),
                    })
                );
            }
            Output::Raw => {
                if i > 0 {
                    println!("--");
                }
                let line = |e: &Entry, mark: &str| {
                    let one = json!({"data": {"resultType": "streams", "result": [
                        {"stream": e.labels, "values": [[e.ts.to_string(), e.line]]}
                    ]}});
                    print!("{mark}");
                    print_raw(&one);
                };
                before.iter().for_each(|e| line(e, "  "));
                line(hit, "> ");
                after.iter().for_each(|e| line(e, "  "));
            }
        }
    }
    for w in body["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    Ok(())
}
