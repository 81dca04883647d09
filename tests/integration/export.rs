//! `skidder search --export`, as a user runs it: the demo's store (20,000
//! records) exported to moto (S3).
//!
//! 1. The export equals the same query's full result (`--limit` above the
//!    match count, `--output json`), line for line with times and labels.
//! 2. An export killed (SIGKILL) while its parts go up through a slow
//!    store (the fault proxy, 150 ms a request) leaves parts and no
//!    manifest, so nobody takes it for a finished one.
//! 3. Run again to the same prefix, with larger parts, it finishes: the
//!    manifest is written, the killed run's parts are deleted, and
//!    the result is again exactly the query's.
//! 4. A third run to the finished prefix is refused.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use skidder_common::storage::{list_all, ObjectStore, S3Store};
use skidder_common::testing::fault_proxy::FaultProxy;
use skidder_common::testing::{free_port, MotoServer};

use crate::support::{sigterm, Demo, BIN};

type Row = (i64, BTreeMap<String, String>, String);

const QUERY: &str = r#"{__app__=~".+"} |= "GET""#;

fn search(data: &std::path::Path, window: &[String], endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["search", "--store"])
        .arg(format!("file://{}", data.display()))
        .args(window)
        .args(["--s3-endpoint", endpoint])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("SKIDDER_LOG", "warn");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every row of every part a finished export's manifest names.
fn exported(rt: &tokio::runtime::Runtime, dest: &S3Store) -> (serde_json::Value, Vec<Row>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&rt.block_on(dest.get("_manifest.json")).unwrap()).unwrap();
    let mut rows = Vec::new();
    for p in manifest["parts"].as_array().unwrap() {
        let body = rt.block_on(dest.get(p["key"].as_str().unwrap())).unwrap();
        assert_eq!(Some(body.len() as u64), p["bytes"].as_u64());
        for l in std::str::from_utf8(&body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            rows.push((
                v["ts"].as_str().unwrap().parse().unwrap(),
                serde_json::from_value(v["labels"].clone()).unwrap(),
                v["line"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(Some(rows.len() as u64), manifest["lines"].as_u64());
    rows.sort();
    (manifest, rows)
}

fn keys(rt: &tokio::runtime::Runtime, dest: &S3Store) -> Vec<String> {
    rt.block_on(list_all(dest, ""))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

#[test]
fn an_export_equals_the_query_and_a_killed_one_leaves_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut demo = Demo::start(20_000, free_port(), &data).process;
    sigterm(demo.id());
    let _ = demo.0.wait();

    let moto = MotoServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = rt.block_on(S3Store::new("exports", "", &moto.s3_config()));
    rt.block_on(bucket.create_bucket()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let window = vec![
        "--from".to_owned(),
        (now - 4 * 3600).to_string(),
        "--to".to_owned(),
        (now + 60).to_string(),
    ];

    // The query's full result, from a plain search.
    let body = ok(search(
        &data,
        &window,
        &moto.endpoint(),
        &["--limit", "1000000", "--output", "json", QUERY],
    )
    .output()
    .unwrap());
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut want: Vec<Row> = Vec::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["stream"].clone()).unwrap();
        for v in s["values"].as_array().unwrap() {
            want.push((
                v[0].as_str().unwrap().parse().unwrap(),
                labels.clone(),
                v[1].as_str().unwrap().to_owned(),
            ));
        }
    }
    want.sort();
    assert!(want.len() > 2_000, "{} lines match", want.len());
    assert!(want.iter().all(|r| r.2.contains("GET")));

    // 1. The export equals it.
    let out = ok(search(
        &data,
        &window,
        &moto.endpoint(),
        &[
            "--export",
            "s3://exports/full",
            "--export-part-mib",
            "1",
            QUERY,
        ],
    )
    .output()
    .unwrap());
    assert!(
        out.starts_with(&format!("exported {} lines in ", want.len())),
        "{out}"
    );
    let full = rt.block_on(S3Store::new("exports", "full/", &moto.s3_config()));
    let (manifest, got) = exported(&rt, &full);
    assert!(got == want, "the export differs from the query's result");
    assert_eq!(manifest["query"].as_str(), Some(QUERY));
    assert!(
        manifest["parts"].as_array().unwrap().len() > 1,
        "{manifest}"
    );

    // 2. Killed half way: parts, no manifest.
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", moto.process.port), 7);
    proxy.fixed_latency(Duration::from_millis(150));
    let mut child = search(
        &data,
        &window,
        &proxy.endpoint(),
        &[
            "--export",
            "s3://exports/killed",
            "--export-part-mib",
            "1",
            QUERY,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let killed = rt.block_on(S3Store::new("exports", "killed/", &moto.s3_config()));
    let started = Instant::now();
    while keys(&rt, &killed).len() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before it was killed; slow the proxy down"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no part written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = keys(&rt, &killed);
    assert!(left.len() >= 2, "{left:?}");
    assert!(!left.iter().any(|k| k == "_manifest.json"), "{left:?}");
    drop(proxy);

    // 3. Again, with parts 4x larger: finished, the killed run's parts
    // gone, same rows.
    let out = ok(search(
        &data,
        &window,
        &moto.endpoint(),
        &[
            "--export",
            "s3://exports/killed",
            "--export-part-mib",
            "4",
            QUERY,
        ],
    )
    .output()
    .unwrap());
    assert!(out.starts_with("exported "), "{out}");
    let (manifest, got) = exported(&rt, &killed);
    assert!(
        got == want,
        "the re-run export differs from the query's result"
    );
    let mut named: Vec<String> = manifest["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    named.push("_manifest.json".into());
    named.sort();
    assert_eq!(
        keys(&rt, &killed),
        named,
        "only the manifest's parts remain"
    );

    // 4. A finished prefix is refused.
    let out = search(
        &data,
        &window,
        &moto.endpoint(),
        &["--export", "s3://exports/killed", QUERY],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a finished export"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
