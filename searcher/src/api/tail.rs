//! `/loki/api/v1/tail`: Loki's live tail, a websocket, as `logcli query
//! --tail` and Grafana's live mode use it.
//!
//! Parameters as Loki reads them: `query` (a log query), `limit` (lines
//! of history, default 100), `start` (history from, default an hour ago),
//! `delay_for` (0 to 5 s: how long lines wait, to be sent in time order).
//! The session first sends the newest `limit` stored lines since `start`,
//! oldest first, then what the live feed brings, every 100 ms or
//! `delay_for`: `{"streams":[{"stream":{…},"values":[["<ns>","<line>"]]}]}`,
//! with `"dropped_entries":[{"labels":{…},"timestamp":"<ns>"}]` when the
//! client fell more than `max_pending` lines behind. A client that does not
//! take a message within 10 s is disconnected; a session ends after
//! `max_duration`, with a close frame saying so.
//!
//! Tails do not take query slots and have no query timeout: they are held
//! open. They are limited per tenant instead (`TailLimits`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use skidder_common::format::layout::{now_ns, NS_PER_HOUR};
use tokio::sync::broadcast::error::RecvError;

use super::error::ApiError;
use super::middleware::Tenant;
use super::params::Params;
use super::responses::{labels_json, streams_json};
use super::Shared;
use crate::engine::{Direction, Entry, TimeRange};
use crate::live::{Dropped, TailFilter};
use crate::logql::{self, Query};
use crate::metrics::Metrics;

/// How long a client may take to accept one message.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Loki's ceiling on `delay_for`.
const MAX_DELAY_SECS: u64 = 5;

/// Open tails per tenant.
#[derive(Default)]
pub(super) struct TailCounts(Mutex<HashMap<String, usize>>);

/// One open tail; counted until dropped.
struct TailSlot {
    counts: Shared,
    tenant: String,
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        let mut m = self
            .counts
            .tails
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.tenant);
            }
        }
        self.counts.engine.metrics().tails_active.dec();
    }
}

fn take_slot(s: &Shared, tenant: &str) -> Result<TailSlot, ApiError> {
    let max = s.cfg.tail.max_per_tenant;
    {
        let mut m = s.tails.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(tenant.to_owned()).or_default();
        if *n >= max {
            return Err(ApiError::rejected(
                StatusCode::TOO_MANY_REQUESTS,
                "tail_limit",
                format!("max concurrent tail requests limit exceeded: {max} tails are open for this tenant"),
            ));
        }
        *n += 1;
    }
    s.engine.metrics().tails_active.inc();
    Ok(TailSlot {
        counts: s.clone(),
        tenant: tenant.to_owned(),
    })
}

pub(super) async fn tail(
    State(s): State<Shared>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(feed) = s.cfg.live.clone() else {
        return Err(ApiError::not_found(
            "live tail is off: start the searcher with the indexer's config (--tail-indexer-config)",
        ));
    };
    let p = Params::new(&uri, &[]);
    let query = p.query()?;
    let q = match logql::parse(query)? {
        Query::Log(q) => q,
        Query::Metric(_) => {
            return Err(ApiError::bad(format!(
                "tail takes a log query; {query:?} is a metric query"
            )))
        }
    };
    let limit = p.limit(s.cfg.max_limit)?;
    let end = now_ns();
    let start = p.time("start")?.unwrap_or(end - NS_PER_HOUR).min(end);
    let delay = match p.get("delay_for") {
        None => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(d) if d <= MAX_DELAY_SECS => d,
            _ => {
                return Err(ApiError::bad(format!(
                    "invalid delay_for {v:?}: 0 to {MAX_DELAY_SECS} seconds"
                )))
            }
        },
    };
    let slot = take_slot(&s, &tenant)?;
    // Subscribed before the history is read, so no line falls between.
    let rx = feed.subscribe();
    let (mut history, _) = s
        .engine
        .logs(
            &tenant,
            TimeRange { start, end },
            &q,
            limit,
            Direction::Backward,
            true,
        )
        .await?;
    history.reverse();
    let filter = TailFilter::new(&tenant, &q, s.cfg.tail.max_pending);
    let every = Duration::from_secs(delay).max(Duration::from_millis(100));
    let max_duration = s.cfg.tail.max_duration;
    let metrics = s.engine.metrics().clone();
    Ok(ws.on_upgrade(move |socket| async move {
        let session = Session {
            socket,
            filter,
            metrics,
        };
        session.run(rx, history, every, max_duration).await;
        drop(slot);
    }))
}

struct Session {
    socket: WebSocket,
    filter: TailFilter,
    metrics: Arc<Metrics>,
}

impl Session {
    async fn run(
        mut self,
        mut rx: tokio::sync::broadcast::Receiver<crate::live::LiveBatch>,
        history: Vec<Entry>,
        every: Duration,
        max_duration: Duration,
    ) {
        if !history.is_empty() && !self.send(history, Vec::new(), 0).await {
            return;
        }
        let deadline = tokio::time::Instant::now() + max_duration;
        let mut tick = tokio::time::interval(every);
        let mut lagged = 0u64;
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(batch) => self.filter.offer(&batch),
                    Err(RecvError::Lagged(n)) => {
                        lagged += n;
                        self.metrics.tail_dropped.with_label_values(&["lagged"]).inc_by(n);
                    }
                    Err(RecvError::Closed) => {
                        self.close(1011, "the live feed stopped").await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if self.filter.is_empty() && lagged == 0 && self.filter.dropped_uncounted == 0 {
                        continue;
                    }
                    let (lines, dropped) = self.filter.take();
                    let uncounted = std::mem::take(&mut self.filter.dropped_uncounted) + std::mem::take(&mut lagged);
                    if !self.send(lines, dropped, uncounted).await {
                        return;
                    }
                }
                msg = self.socket.recv() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.close(1000, "tail session reached its maximum duration").await;
                    return;
                }
            }
        }
    }

    /// Sends one message; false if the client is gone or too slow.
    async fn send(&mut self, mut lines: Vec<Entry>, dropped: Vec<Dropped>, uncounted: u64) -> bool {
        lines.sort_by_key(|l| l.ts);
        let sent = lines.len() as u64;
        let dropped_n = dropped.len() as u64 + uncounted;
        let body = message(lines, &dropped, uncounted);
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(body.into()))).await
        {
            Ok(Ok(())) => {
                self.metrics.tail_lines_sent.inc_by(sent);
                self.metrics
                    .tail_dropped
                    .with_label_values(&["slow_client"])
                    .inc_by(dropped_n);
                true
            }
            Ok(Err(_)) => false,
            Err(_) => {
                self.metrics
                    .tail_dropped
                    .with_label_values(&["slow_client"])
                    .inc_by(sent);
                self.close(1008, "client too slow: a message was not taken within 10 s")
                    .await;
                false
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

/// Loki's tail message: lines grouped by stream in order of first
/// appearance (as `query_range` groups them), and the dropped lines.
/// Lines dropped without their labels (the session fell behind the feed)
/// are reported with empty labels.
fn message(lines: Vec<Entry>, dropped: &[Dropped], uncounted: u64) -> String {
    let mut body = json!({ "streams": streams_json(lines) });
    if !dropped.is_empty() || uncounted > 0 {
        let now = now_ns().to_string();
        let mut d: Vec<Value> = dropped
            .iter()
            .map(|d| json!({"labels": labels_json(&d.labels), "timestamp": d.ts.to_string()}))
            .collect();
        d.extend((0..uncounted.min(1000)).map(|_| json!({"labels": {}, "timestamp": now})));
        body["dropped_entries"] = Value::Array(d);
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::eval::Labels;

    #[test]
    fn a_message_groups_lines_by_stream_and_lists_what_was_dropped() {
        let a = Arc::new(vec![("__app__".to_owned(), "web".to_owned())]);
        let b = Arc::new(vec![("__app__".to_owned(), "api".to_owned())]);
        let line = |labels: &Arc<Labels>, ts: i64, line: &str| Entry {
            ts,
            labels: labels.clone(),
            line: line.into(),
        };
        let body = message(
            vec![line(&a, 1, "x"), line(&b, 2, "y"), line(&a, 3, "z")],
            &[Dropped {
                labels: b.clone(),
                ts: 4,
            }],
            0,
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "streams": [
                    {"stream": {"__app__": "web"}, "values": [["1", "x"], ["3", "z"]]},
                    {"stream": {"__app__": "api"}, "values": [["2", "y"]]},
                ],
                "dropped_entries": [{"labels": {"__app__": "api"}, "timestamp": "4"}],
            })
        );
        let v: Value = serde_json::from_str(&message(Vec::new(), &[], 0)).unwrap();
        assert_eq!(v, json!({"streams": []}));
    }
}
