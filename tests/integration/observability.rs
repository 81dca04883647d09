//! The shipped dashboards and alert rules against what Skidder really
//! exports. The operations test (`retention.rs`) scrapes `/metrics` of the
//! real indexer, searcher and maintenance process under real traffic and
//! hands the pages here. Each page must pass `promtool check metrics`;
//! every `skidder_*` metric a Grafana panel or an alert rule names must be
//! on one of the pages; and the rules must pass `promtool check rules` and
//! their unit tests (`promtool test rules`).
//!
//! The compose test (`compose.rs`) runs a real Prometheus over the running
//! stack and hands its address to [`check_on_prometheus`]: every series
//! the dashboards chart is there, every dashboard variable has values,
//! every panel query returns data, and every alert rule evaluates.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool missing: run `bash .ci/run`, which installs Debian's prometheus");
    {
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The series names a page exports: each family's name, and for
/// histograms and summaries the `_bucket`, `_sum` and `_count` series.
fn exported(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Every `skidder_*` name in `text`.
fn skidder_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("skidder_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

/// Every `expr` of every panel target in a dashboard, nested rows included.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|x| exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// Checks the shipped dashboards and rules against `pages`, the scraped
/// `/metrics` of each process, named.
pub fn check_against_scrapes(pages: &[(&str, String)]) {
    let mut all = BTreeSet::new();
    for (process, page) in pages {
        let (ok, report) = promtool(&["check", "metrics"], Some(page));
        assert!(
            ok,
            "promtool check metrics on the {process}'s page:\n{report}"
        );
        let names = exported(page);
        assert!(!names.is_empty(), "the {process} exported nothing");
        all.extend(names);
    }
    let mut unknown = BTreeSet::new();
    let shipped = dashboards();
    for (file, v) in &shipped {
        let mut found = Vec::new();
        exprs(v, &mut found);
        assert!(found.len() >= 5, "{file}: {} queries", found.len());
        for e in &found {
            let names = skidder_names(e);
            assert!(
                !names.is_empty(),
                "{file}: a query on no Skidder metric: {e}"
            );
            unknown.extend(names.difference(&all).cloned());
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboards name {unknown:?}, not exported"
    );
    assert_eq!(shipped.len(), 3, "indexer, searcher and storage dashboards");
    let rules = deploy().join("prometheus/skidder-alerts.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let missing: Vec<_> = skidder_names(&text).difference(&all).cloned().collect();
    assert!(
        missing.is_empty(),
        "alert rules name {missing:?}, not exported"
    );
    let (ok, report) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "{report}");
    let tests = deploy().join("prometheus/skidder-alerts.test.yml");
    let (ok, report) = promtool(&["test", "rules", tests.to_str().unwrap()], None);
    assert!(ok, "{report}");
}

/// The shipped dashboards, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, serde_json::from_str(&text).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A GET on Prometheus's HTTP API: its `data`, or why not.
fn prometheus_api(port: u16, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let mut req = ureq::get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in params {
        req = req.query(*k, *v);
    }
    let mut resp = req.call().map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_str(
        &resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    Ok(body["data"].clone())
}

/// A dashboard's panel queries as Grafana sends them on opening it:
/// each variable filled the way Grafana fills it by default (`All`, that
/// is its `allValue`, where offered; else the first value), after checking
/// through Prometheus that its `label_values(...)` query has values.
/// `$__rate_interval` is what Grafana computes for the data source's
/// scrape interval: four of them.
fn panel_queries(port: u16, dashboard: &Value, scrape_secs: u64) -> Result<Vec<String>, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let fill = |text: &str, vars: &[(String, String)]| {
        let mut out = text.to_owned();
        for (name, value) in vars {
            out = out.replace(&format!("${name}"), value);
        }
        out
    };
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap();
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("${name}: not a label_values query: {q}"))?;
        let (selector, label) = inner
            .rsplit_once(',')
            .ok_or_else(|| format!("${name}: {q}"))?;
        let selector = fill(selector.trim(), &vars);
        let values = prometheus_api(
            port,
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", &selector)],
        )?;
        let values = values.as_array().cloned().unwrap_or_default();
        let Some(first) = values.first().and_then(Value::as_str) else {
            return Err(format!("${name} has no values: {q}"));
        };
        let value = match (v["includeAll"].as_bool(), v["allValue"].as_str()) {
            (Some(true), Some(all)) => all.to_owned(),
            _ => first.to_owned(),
        };
        vars.push((name.to_owned(), value));
    }
    vars.push((
        "__rate_interval".to_owned(),
        format!("{}s", 4 * scrape_secs),
    ));
    // Longest names first: `$__rate_interval` before a `$__rate`.
    vars.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let mut found = Vec::new();
    exprs(dashboard, &mut found);
    Ok(found.iter().map(|e| fill(e, &vars)).collect())
}

/// Checks the dashboards and alert rules on a real Prometheus (at
/// `port`, scraping every `scrape_secs`) that scrapes the running
/// indexer, searcher and compactor. Rates need two scrapes, so a query
/// without data is asked again until `wait` has passed; then every one
/// still without data, or refused, fails the test at once.
pub fn check_on_prometheus(port: u16, scrape_secs: u64, wait: Duration) {
    let deadline = Instant::now() + wait;
    let mut left: Vec<(String, String)> = Vec::new();
    let mut names = BTreeSet::new();
    // Every target scraped at least once, and up.
    loop {
        let up = prometheus_api(port, "/api/v1/query", &[("query", "up")]).unwrap();
        let up = up["result"].as_array().cloned().unwrap_or_default();
        if up.len() >= 3 && up.iter().all(|s| s["value"][1] == "1") {
            break;
        }
        assert!(Instant::now() < deadline, "targets not all up: {up:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for (file, d) in dashboards() {
        let queries =
            panel_queries(port, &d, scrape_secs).unwrap_or_else(|e| panic!("{file}: {e}"));
        for q in queries {
            names.extend(skidder_names(&q));
            left.push((file.clone(), q));
        }
    }
    assert!(left.len() > 50, "{} panel queries", left.len());
    // The series first: each metric a dashboard names is in Prometheus.
    for name in &names {
        let series = prometheus_api(port, "/api/v1/series", &[("match[]", name.as_str())]).unwrap();
        assert!(
            series.as_array().is_some_and(|s| !s.is_empty()),
            "Prometheus has no series {name}"
        );
    }
    let mut failures;
    loop {
        failures = Vec::new();
        left.retain(
            |(file, q)| match prometheus_api(port, "/api/v1/query", &[("query", q)]) {
                Ok(data) if data["result"].as_array().is_some_and(|r| !r.is_empty()) => false,
                Ok(_) => {
                    failures.push(format!("{file}: no data: {q}"));
                    true
                }
                Err(e) => {
                    failures.push(format!("{file}: refused: {q}: {e}"));
                    true
                }
            },
        );
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The alert rules, loaded and evaluated without error.
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(deploy().join("prometheus/skidder-alerts.yml")).unwrap(),
    )
    .unwrap();
    let shipped: usize = file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_sequence().unwrap().len())
        .sum();
    let rules = loop {
        let data = prometheus_api(port, "/api/v1/rules", &[]).unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        let evaluated = rules.iter().all(|r| r["health"] != "unknown");
        if evaluated || Instant::now() > deadline + Duration::from_secs(2 * scrape_secs) {
            break rules;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(rules.len(), shipped, "every shipped rule loaded");
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} on a real Prometheus: {r}",
            r["name"]
        );
    }
}

#[test]
fn a_metric_no_process_exports_fails_the_check() {
    let page = "# HELP skidder_x_total x\n# TYPE skidder_x_total counter\nskidder_x_total 1\n";
    let r = std::panic::catch_unwind(|| check_against_scrapes(&[("test", page.to_owned())]));
    assert!(
        r.is_err(),
        "dashboards naming real metrics must not match a made-up page"
    );
    let (ok, report) = promtool(
        &["check", "metrics"],
        Some("# HELP a_hours_total x\n# TYPE a_hours_total counter\na_hours_total 1\n"),
    );
    assert!(!ok, "promtool must refuse a name in hours: {report}");
    assert_eq!(
        skidder_names("rate(skidder_a_total[5m]) / skidder_b"),
        BTreeSet::from(["skidder_a_total".to_owned(), "skidder_b".to_owned()])
    );
}
