//! `skidder demo` itself: it must start with no setup, and every query it
//! prints must return what it promises, from the demo and again from a
//! plain `skidder searcher --store file://…` over the demo's store. The
//! printed commands run as they are, through `sh`, with `skidder` meaning
//! the binary under test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::testing::free_port;

use crate::support::{http_get, sigterm, Demo, Guard, BIN};

#[test]
fn demo_starts_and_its_printed_queries_find_things() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut demo = Demo::start(5000, port, &data);
    let (mut trace, mut commands) = (String::new(), Vec::new());
    for line in &demo.printed {
        if let Some(rest) = line.strip_prefix("A trace id that exists: ") {
            trace = rest.split_whitespace().next().unwrap().to_owned();
        }
        if line.starts_with("  curl ") || line.starts_with("  skidder ") {
            commands.push(line.trim().to_owned());
        }
    }
    assert_eq!(trace.len(), 32, "the demo names a trace id");
    assert_eq!(commands.len(), 4, "{commands:?}");
    for cmd in &commands {
        check_printed(cmd, &trace);
    }
    sigterm(demo.process.id());
    assert!(
        demo.process.wait().unwrap().success(),
        "Ctrl-C/SIGTERM stops the demo cleanly"
    );

    // The same commands against a plain searcher over the demo's store,
    // on its defaults: the demo writes the default tenant.
    let again = free_port();
    let (_searcher, _) = searcher(&data, again, None, dir.path());
    let (from, to) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{again}"));
    for cmd in &commands {
        check_printed(&cmd.replace(&from, &to), &trace);
    }

    // A tenant with no data at all gets a warning naming those that have
    // some, in the response and in the log, and is counted.
    let other = free_port();
    let (_searcher, log) = searcher(&data, other, Some("nobody"), dir.path());
    let body = get_json(
        other,
        "/loki/api/v1/query_range?query=%7B__app__%3D~%22.%2B%22%7D&since=2h",
    );
    assert_eq!(body["data"]["result"], serde_json::json!([]), "{body}");
    let warning = body["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains(r#"tenant "nobody" has no data"#)
            && warning.contains("tenants with data: default"),
        "{body}"
    );
    let metrics = http_get(other, "/metrics").unwrap();
    assert!(
        metrics.contains("skidder_searcher_no_data_tenant_answers_total 1"),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("nobody") && logged.contains("has no data in this store"),
        "{logged}"
    );
    // The default tenant's answers carry no such warning.
    let body = get_json(
        again,
        "/loki/api/v1/query_range?query=%7B__app__%3D~%22.%2B%22%7D&since=2h&limit=5",
    );
    assert!(body.get("warnings").is_none(), "{body}");
    // And `skidder search --store` says it too.
    let out = Command::new(BIN)
        .args(["search", "--since", "2h", "--tenant", "nobody", "--store"])
        .arg(format!("file://{}", data.display()))
        .arg(r#"{__app__=~".+"}"#)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"warning: tenant "nobody" has no data"#)
    );
    context_around_the_trace(&data, &trace);
}

/// `skidder search --context 3` around the trace's one line: the three
/// lines of its stream before and after it, as a plain query over the
/// whole stream has them.
fn context_around_the_trace(data: &Path, trace: &str) {
    let search = |args: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(["search", "--since", "2h", "--store"])
            .arg(format!("file://{}", data.display()))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let query = format!(r#"{{__app__=~".+"}} |= "{trace}""#);
    let out = search(&["--context", "3", "--output", "json", &query]);
    let hits: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(hits.len(), 1, "{out}");
    let hit = &hits[0];
    assert!(hit["hit"][1].as_str().unwrap().contains(trace));
    // The whole stream, oldest first, from a plain query.
    let stream: std::collections::BTreeMap<String, String> =
        serde_json::from_value(hit["stream"].clone()).unwrap();
    let selector = format!(
        "{{{}}}",
        stream
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let all: serde_json::Value = serde_json::from_str(&search(&[
        "--forward",
        "--limit",
        "100000",
        "--output",
        "json",
        &selector,
    ]))
    .unwrap();
    let mut lines: Vec<(i64, String)> = all["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|v| {
            (
                v[0].as_str().unwrap().parse().unwrap(),
                v[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    let at: i64 = hit["hit"][0].as_str().unwrap().parse().unwrap();
    let pairs = |v: &serde_json::Value| -> Vec<(i64, String)> {
        let mut p: Vec<(i64, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_str().unwrap().parse().unwrap(),
                    e[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        p.sort();
        p
    };
    let earlier: Vec<_> = lines.iter().filter(|l| l.0 < at).cloned().collect();
    let later: Vec<_> = lines.iter().filter(|l| l.0 > at).cloned().collect();
    assert!(
        !earlier.is_empty() || !later.is_empty(),
        "a stream with neighbours: {hit} {selector}"
    );
    assert_eq!(
        pairs(&hit["before"]),
        earlier[earlier.len().saturating_sub(3)..]
    );
    assert_eq!(pairs(&hit["after"]), later[..later.len().min(3)]);
    // Raw: the hit marked `>`, its context indented, oldest first.
    let raw = search(&["--context", "3", &query]);
    let marked: Vec<&str> = raw.lines().filter(|l| l.starts_with("> ")).collect();
    assert_eq!(marked.len(), 1, "{raw}");
    assert!(marked[0].contains(trace));
    assert_eq!(
        raw.lines().count(),
        1 + hit["before"].as_array().unwrap().len() + hit["after"].as_array().unwrap().len(),
        "{raw}"
    );
}

/// Runs one printed command and checks it finds what the demo promises.
fn check_printed(cmd: &str, trace: &str) {
    let cmd = cmd.replacen("skidder ", &format!("{BIN} "), 1);
    let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    if cmd.contains(trace) {
        // The needle: exactly the one record that has it.
        let hits = if cmd.starts_with("curl") {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let values: Vec<&serde_json::Value> = v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["values"].as_array().unwrap())
                .collect();
            assert!(values
                .iter()
                .all(|e| e[1].as_str().unwrap().contains(trace)));
            values.len()
        } else {
            assert!(stdout.lines().all(|l| l.contains(trace)), "{stdout}");
            stdout.lines().count()
        };
        assert_eq!(hits, 1, "{cmd}: {stdout}");
    } else if cmd.starts_with("curl") {
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["data"]["resultType"], "matrix", "{cmd}");
        let total: f64 = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["values"].as_array().unwrap())
            .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
            .sum();
        assert!(
            total >= 5000.0,
            "{cmd}: every record counted at least once: {total}"
        );
    } else {
        assert!(!stdout.trim().is_empty(), "{cmd} found nothing");
        assert!(stdout.lines().count() <= 5, "{cmd}: --limit 5");
        assert!(
            stdout
                .lines()
                .all(|l| l.contains("\"http\":{") && l.contains("\"status\":50")),
            "{stdout}"
        );
    }
}

/// `skidder searcher --store file://<data>` on `port`, with
/// `default_tenant` from a config file if given; waits until it is ready.
/// Returns the process and the file its log goes to.
fn searcher(
    data: &Path,
    port: u16,
    tenant: Option<&str>,
    dir: &Path,
) -> (Guard, std::path::PathBuf) {
    let log = dir.join(format!("searcher-{port}.log"));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "searcher",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--store",
    ])
    .arg(format!("file://{}", data.display()))
    .env("SKIDDER_LOG", "warn")
    .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    if let Some(t) = tenant {
        let config = dir.join(format!("searcher-{port}.toml"));
        std::fs::write(&config, format!("default_tenant = \"{t}\"\n")).unwrap();
        cmd.arg("--config").arg(config);
    }
    let child = Guard(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port, "/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "searcher never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, log)
}

/// The JSON body of a GET.
fn get_json(port: u16, path: &str) -> serde_json::Value {
    let response = http_get(port, path).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}
