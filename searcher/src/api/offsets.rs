//! Lookup by Kafka offset over HTTP, Skidder's own endpoint (Loki has
//! none): `GET /skidder/api/v1/offset?topic=logs&partition=3&offset=42`,
//! with Loki's `start`/`end` or `since` (default: the last 24 hours) for
//! the blocks to look in. The answer holds the message's stored records,
//! the blocks that may hold some but predate per-record offsets, and its
//! dead letters. Dead letters belong to no tenant (the indexer refused
//! them before it knew one, or for one), so with bearer tokens on they
//! are left out.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::Uri;
use axum::response::Response;
use serde_json::{json, Value};

use super::error::ApiError;
use super::middleware::Tenant;
use super::params::Params;
use super::responses::{labels_json, success};
use super::Shared;
use crate::engine::{KafkaOffset, OffsetLookup, TimeRange};
use crate::time::rfc3339;

/// How far back a lookup looks when the request names no range.
pub const DEFAULT_SPAN_NS: i64 = 24 * 3_600_000_000_000;

/// The `data` of an answer; the CLI prints the same.
pub fn offset_json(m: &KafkaOffset, found: &OffsetLookup, dead_letters: bool) -> Value {
    let records: Vec<Value> = found
        .records
        .iter()
        .map(|r| {
            json!({
                "ts": r.ts.to_string(),
                "time": rfc3339(r.ts, chrono::SecondsFormat::Nanos),
                "labels": labels_json(&r.labels),
                "line": r.line,
                "block": r.block,
                "record": r.record,
            })
        })
        .collect();
    let unresolved: Vec<Value> = found
        .unresolved
        .iter()
        .map(|b| json!({"block": b.block, "first_offset": b.first_offset, "last_offset": b.last_offset}))
        .collect();
    let mut data = json!({
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "records": records,
        "unresolved_blocks": unresolved,
    });
    if dead_letters {
        data["dead_letters"] = found
            .dead_letters
            .iter()
            .map(|d| json!({"key": d.key, "line": d.line, "reason": d.reason, "bytes": d.bytes}))
            .collect();
    }
    data
}

pub(super) async fn offset(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &body);
    let need = |k: &str| {
        p.get(k)
            .ok_or_else(|| ApiError::bad(format!("missing parameter {k}")))
    };
    let spelled = format!(
        "{}:{}:{}",
        need("topic")?,
        need("partition")?,
        need("offset")?
    );
    let m: KafkaOffset = spelled.parse().map_err(ApiError::bad)?;
    let (start, end) = p.range(DEFAULT_SPAN_NS)?;
    let found = s
        .engine
        .by_offset(&tenant, TimeRange { start, end }, &m)
        .await?;
    let dead_letters = s.cfg.tenancy.tokens.is_empty();
    Ok(success(offset_json(&m, &found, dead_letters), &found.stats))
}
