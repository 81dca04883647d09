//! The shipped dashboards and alert rules against what Skidder really
//! exports. The operations test (`retention.rs`) scrapes `/metrics` of the
//! real indexer, searcher and maintenance process under real traffic and
//! hands the pages here. Each page must pass `promtool check metrics`;
//! every `skidder_*` metric a Grafana panel or an alert rule names must be
//! on one of the pages; and the rules must pass `promtool check rules` and
//! their unit tests (`promtool test rules`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    let mut dashboards = 0;
    let mut unknown = BTreeSet::new();
    for entry in std::fs::read_dir(deploy().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut found = Vec::new();
        exprs(&v, &mut found);
        assert!(
            found.len() >= 5,
            "{}: {} queries",
            path.display(),
            found.len()
        );
        for e in &found {
            let names = skidder_names(e);
            assert!(
                !names.is_empty(),
                "{}: a query on no Skidder metric: {e}",
                path.display()
            );
            unknown.extend(names.difference(&all).cloned());
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboards name {unknown:?}, not exported"
    );
    assert_eq!(dashboards, 3, "indexer, searcher and storage dashboards");
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
