//! Grafana's "show context" on a log line: two `query_range` requests
//! around the line's time, with its stream's selector, `direction`
//! backward then forward and `limit=10`, exactly as Grafana's Loki data
//! source sends them (a 2-hour window each way; `end` exclusive for the
//! lines before, `start` inclusive for the lines after, Grafana dropping
//! the row itself). They must return exactly the stream's neighbouring
//! lines, in order, across block boundaries and across an hour boundary.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skidder_common::storage::{list_all, LocalStore, ObjectStore};
use skidder_searcher::api::ApiConfig;
use skidder_searcher::engine::{Engine, EngineConfig};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines_in_blocks, Rec, BASE_MS};

const TENANT: &str = "default";
const HOUR_NS: i64 = 3_600_000_000_000;
const TWO_HOURS_NS: i64 = 2 * HOUR_NS;

/// Two streams (level info and warn) of one app, interleaved, 997 ms
/// apart: 4,000 lines from 22:13:20, across the 23:00 hour boundary.
fn lines() -> Vec<String> {
    (0..4000)
        .map(|i| {
            let level = ["info", "warn"][i % 2];
            serde_json::json!({"app": "checkout", "level": level, "msg": format!("line {i}")})
                .to_string()
        })
        .collect()
}

/// The lines of a streams response, in the order given.
fn lines_of(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert!(result.len() <= 1, "one stream asked for: {body}");
    result
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn grafanas_show_context_returns_exactly_the_neighbouring_lines() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()).unwrap());
    // Blocks of about 512 bytes, so ten lines of one stream always span
    // several blocks (fewer than 10 lines of it per block, checked below).
    let recs: Vec<Rec> = rt.block_on(index_lines_in_blocks(&*store, TENANT, &lines(), 512));
    let blocks = rt
        .block_on(list_all(&*store, "tenant=default/"))
        .unwrap()
        .iter()
        .filter(|m| m.key.ends_with(".seq"))
        .count();
    assert!(
        blocks > 2000 / 8,
        "{blocks} blocks for 2,000 lines per stream"
    );
    let engine = Arc::new(Engine::new(
        store,
        EngineConfig::default(),
        Arc::new(Metrics::new()),
    ));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(skidder_searcher::serve(
        listener,
        engine,
        ApiConfig::default(),
        std::future::pending(),
    ));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let get = |params: &[(&str, String)]| -> String {
        let mut req = agent.get(format!("{url}/loki/api/v1/query_range"));
        for (k, v) in params {
            req = req.query(*k, v);
        }
        let mut resp = req.call().unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{body}");
        body
    };

    let info: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.labels.iter().any(|(k, v)| k == "level" && v == "info"))
        .collect();
    let boundary = (BASE_MS * 1_000_000 / HOUR_NS + 1) * HOUR_NS;
    // Hits: the stream's first line of the new hour, one in the middle of
    // the old hour, and the stream's first and last lines.
    let first_after = info.iter().position(|r| r.ts >= boundary).unwrap();
    for hit in [first_after, first_after - 3, 700, 0, info.len() - 1] {
        let row = info[hit];
        let selector = r#"{__app__="checkout", level="info"}"#.to_owned();
        // Grafana's "before": backward, ending (exclusive) at the row.
        let before = lines_of(&get(&[
            ("query", selector.clone()),
            ("limit", "10".into()),
            ("start", (row.ts - TWO_HOURS_NS).to_string()),
            ("end", row.ts.to_string()),
            ("direction", "backward".into()),
        ]));
        let want: Vec<String> = info[hit.saturating_sub(10)..hit]
            .iter()
            .rev()
            .map(|r| r.line.clone())
            .collect();
        assert_eq!(before, want, "before line {hit}");
        // Grafana's "after": forward, starting (inclusive) at the row,
        // which Grafana then drops.
        let after = lines_of(&get(&[
            ("query", selector),
            ("limit", "10".into()),
            ("start", row.ts.to_string()),
            ("end", (row.ts + TWO_HOURS_NS).to_string()),
            ("direction", "forward".into()),
        ]));
        let want: Vec<String> = info[hit..(hit + 10).min(info.len())]
            .iter()
            .map(|r| r.line.clone())
            .collect();
        assert_eq!(after, want, "after line {hit}");
        if hit == first_after {
            // The lines before are in the previous hour, the row in this one.
            assert!(info[hit - 1].ts < boundary && row.ts >= boundary);
        }
    }
}
