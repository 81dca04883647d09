//! Loki's JSON response shapes: `streams` for log queries, `matrix` and
//! `vector` for metric queries, the `stats` summary, and the `warnings`
//! array Grafana shows when objects were skipped. Times and values are
//! written as Prometheus and Loki write them, which is what clients parse.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::engine::{Entry, Matrix, Stats};
use crate::logql::eval::Labels;

pub(crate) fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Seconds as a JSON number with millisecond precision, as Prometheus and
/// Loki write sample timestamps: an integer when whole.
pub(super) fn ts_json(ns: i64) -> Value {
    let ms = ns.div_euclid(1_000_000);
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

/// A sample value as a string, with Prometheus's spellings of NaN and
/// the infinities.
pub(crate) fn value_str(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

pub(super) fn stats_json(s: &Stats, started: Instant) -> Value {
    let secs = started.elapsed().as_secs_f64();
    json!({"summary": {
        "bytesProcessedPerSecond": (s.bytes_scanned as f64 / secs.max(1e-9)) as u64,
        "linesProcessedPerSecond": (s.lines_scanned as f64 / secs.max(1e-9)) as u64,
        "totalBytesProcessed": s.bytes_scanned,
        "totalLinesProcessed": s.lines_scanned,
        "execTime": secs,
        "queueTime": 0,
        "totalEntriesReturned": 0,
    }})
}

/// A JSON body with status 200.
pub(super) fn json_ok(body: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `{"status": "success", "data": ...}`, with the query's warnings.
pub(super) fn success(data: Value, stats: &Stats) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !stats.warnings.is_empty() {
        body["warnings"] = json!(stats.warnings);
    }
    json_ok(&body)
}

/// Streams in the order of their first entry; entries keep their order.
pub(super) fn streams_json(entries: Vec<Entry>) -> Value {
    let mut order: Vec<Arc<Labels>> = Vec::new();
    let mut by: HashMap<Arc<Labels>, Vec<Value>> = HashMap::new();
    for e in entries {
        let v = by.entry(e.labels.clone()).or_insert_with(|| {
            order.push(e.labels.clone());
            Vec::new()
        });
        v.push(json!([e.ts.to_string(), e.line]));
    }
    Value::Array(
        order
            .into_iter()
            .map(|l| {
                let values = by.remove(&l).unwrap_or_default();
                json!({"stream": labels_json(&l), "values": values})
            })
            .collect(),
    )
}

pub(super) fn matrix_json(m: &Matrix, start: i64, step: i64) -> Value {
    Value::Array(
        m.iter()
            .filter(|(_, pts)| !pts.is_empty())
            .map(|(l, pts)| {
                let values: Vec<Value> = pts
                    .iter()
                    .map(|(k, v)| json!([ts_json(start + *k as i64 * step), value_str(*v)]))
                    .collect();
                json!({"metric": labels_json(l), "values": values})
            })
            .collect(),
    )
}

/// One sample of a `vector` result.
pub(super) fn sample_json(labels: &Labels, t: i64, v: f64) -> Value {
    json!({"metric": labels_json(labels), "value": [ts_json(t), value_str(v)]})
}
