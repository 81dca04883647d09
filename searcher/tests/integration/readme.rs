//! Every query in the README's LogQL table, run: each must parse and be
//! answered by the engine over lines shaped like the examples' apps (JSON
//! for `checkout`, logfmt for `gw`, access logs for `nginx`, Promtail's
//! packed lines for `a`). The only failure allowed is Loki's pipeline
//! error for a metric over lines a parser could not read.

use std::path::Path;
use std::sync::Arc;

use skidder_common::storage::LocalStore;
use skidder_searcher::engine::{Direction, Engine, EngineConfig, SearchError, TimeRange};
use skidder_searcher::logql::{format_query, parse, Query};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines, BASE_MS};

const TENANT: &str = "readme";

/// The code spans of the README's LogQL table that are queries, with
/// `...`/`…` standing for a selector and `\|` unescaped.
fn table_queries(readme: &str) -> Vec<String> {
    let start = readme
        .find("### Query language (LogQL)")
        .expect("the README's LogQL section");
    let table = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let mut out = Vec::new();
    for row in table {
        let example = row.rsplit(" | ").next().unwrap_or("");
        for (i, span) in example.split('`').enumerate() {
            // Fragments like `without (...)` and `topk(5, ...)` stand
            // for part of a query.
            if i % 2 == 0 || span.contains("...)") {
                continue;
            }
            let q = span
                .replace("\\|", "|")
                .replace("{…}", r#"{__app__="checkout"}"#)
                .replace("{...}", r#"{__app__="checkout"}"#)
                .replace("...", r#"{__app__="checkout"}"#);
            if q.contains('{') && !q.starts_with('#') && !q.starts_with("{{") {
                out.push(q);
            }
        }
    }
    out
}

fn lines() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..60 {
        let status = [200, 500, 503][i % 3];
        let level = ["info", "warn", "error"][i % 3];
        let method = ["GET", "POST"][i % 2];
        out.push(
            serde_json::json!({
                "app": "checkout",
                "level": level,
                "msg": format!("GET /cart took {i} ms timeout"),
                "http_status": status,
                "http_method": method,
                "http_path": "/cart",
                "trace_id": if i == 7 { "4bf92f3577b34da6a3ce929d0e0e4736".to_owned() } else { format!("{i:032x}") },
                "pod": format!("api-{}", i % 2),
            })
            .to_string(),
        );
        out.push(format!(
            "app=gw level=info took={}ms size={}MB duration_ms={} status={status} client=10.0.{}.{} route=/api service=gw",
            i * 10,
            i,
            i * 10,
            i % 3,
            i + 1,
        ));
        out.push(format!(
            r#"{{"app":"nginx","message":"10.0.0.{} - - [14/Nov/2023:22:13:20 +0000] \"GET /p/{i} HTTP/1.1\" {status} 512"}}"#,
            i + 1
        ));
        out.push(
            serde_json::json!({"app": "a", "_entry": format!("GET /cart {status}"), "container": "api", "level": "warn"})
                .to_string(),
        );
        out.push(serde_json::json!({"app": "cron", "msg": "job done"}).to_string());
    }
    out
}

#[tokio::test]
async fn every_query_in_the_readme_table_parses_and_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let queries = table_queries(&readme);
    assert!(queries.len() >= 25, "found only {queries:?}");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::new(dir.path()).unwrap());
    index_lines(&*store, TENANT, &lines()).await;
    let engine = Engine::new(store, EngineConfig::default(), Arc::new(Metrics::new()));
    let (start, end) = (
        (BASE_MS - 3_600_000) * 1_000_000,
        (BASE_MS + 3 * 3_600_000) * 1_000_000,
    );
    let mut answered = 0;
    for q in &queries {
        let parsed = parse(q).unwrap_or_else(|e| panic!("README query {q:?}: {e}"));
        let formatted = format_query(q).unwrap();
        assert_eq!(
            format!("{:?}", parse(&formatted).unwrap()),
            format!("{parsed:?}"),
            "{q}"
        );
        let found = match parsed {
            Query::Log(lq) => {
                let range = TimeRange { start, end };
                let (entries, _) = engine
                    .logs(TENANT, range, &lq, 100, Direction::Backward, true)
                    .await
                    .unwrap_or_else(|e| panic!("README query {q:?}: {e}"));
                !entries.is_empty()
            }
            Query::Metric(m) => match engine
                .metric(TENANT, &m, start, end, 600_000_000_000, true)
                .await
            {
                Ok((matrix, _)) => !matrix.is_empty(),
                Err(SearchError::Pipeline { .. }) => false,
                Err(e) => panic!("README query {q:?}: {e}"),
            },
        };
        answered += usize::from(found);
    }
    // Most examples find something in lines made for them: a table of
    // queries that all answer nothing would prove little.
    assert!(
        answered * 3 >= queries.len() * 2,
        "only {answered} of {} README queries found data",
        queries.len()
    );
}
