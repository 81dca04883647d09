//! Export to object storage, over a real S3 server (moto): 210,000 real
//! log lines (loghub's, each wrapped in a JSON record) are indexed for one
//! tenant and a few for another. Then:
//!
//! - an export job started over HTTP (`POST /skidder/api/v1/exports`)
//!   reports its progress until done, and its parts hold exactly the
//!   tenant's lines, each once, with their times and labels, as the input
//!   has them: nothing lost, nothing doubled, nothing of the other tenant;
//! - a filtered export equals the same query's full result from the
//!   engine, line for line, and a brute-force filter of the input;
//! - the manifest is written last and names every part, whose CRC32C and
//!   size match; a second export to the same prefix is refused;
//! - the other tenant can neither see the job nor read its lines.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use skidder_common::storage::{list_all, ObjectStore, S3Store};
use skidder_common::testing::{shared_data_dir, MotoServer};
use skidder_searcher::api::ApiConfig;
use skidder_searcher::auth::{TenantPolicy, Tokens};
use skidder_searcher::engine::{Direction, Engine, EngineConfig, TimeRange};
use skidder_searcher::export::jobs::ExportTarget;
use skidder_searcher::export::{export, ExportManifest, ExportRequest, Progress, MANIFEST};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines_in_blocks, Rec, BASE_MS};

const LINES: usize = 210_000;
const PART_BYTES: usize = 4 << 20;

/// Real lines from every loghub file, cycled, each in a JSON record with
/// its own number, an app of three and a time 80 ms after the previous
/// one (about 4.7 hours in all).
fn records(n: usize, tenant: &str) -> Vec<String> {
    let dir = shared_data_dir().join("loghub");
    let mut real = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        real.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    assert!(real.len() > 20_000, "{} loghub lines", real.len());
    (0..n)
        .map(|i| {
            let line = &real[i % real.len()];
            let app = ["web", "api", "audit"][i % 3];
            serde_json::json!({
                "ts": BASE_MS + i as i64 * 80,
                "app": app,
                "level": if line.to_lowercase().contains("error") { "error" } else { "info" },
                "tenant_check": tenant,
                "n": i,
                "message": line,
            })
            .to_string()
        })
        .collect()
}

/// (time, labels, line) of every row of every part the manifest names,
/// after checking each part's size and CRC32C.
fn read_parts(
    rt: &tokio::runtime::Runtime,
    dest: &dyn ObjectStore,
    m: &ExportManifest,
) -> Vec<(i64, BTreeMap<String, String>, String)> {
    let mut rows = Vec::new();
    for p in &m.parts {
        let body = rt.block_on(dest.get(&p.key)).unwrap();
        assert_eq!(body.len() as u64, p.bytes, "{}", p.key);
        assert_eq!(crc32c::crc32c(&body), p.crc32c, "{}", p.key);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text.lines().count() as u64, p.lines, "{}", p.key);
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let ts: i64 = v["ts"].as_str().unwrap().parse().unwrap();
            let time = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
            assert_eq!(time.timestamp_nanos_opt().unwrap(), ts, "{l}");
            let labels = serde_json::from_value(v["labels"].clone()).unwrap();
            rows.push((ts, labels, v["line"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(rows.len() as u64, m.lines);
    rows
}

fn rec_row(r: &Rec) -> (i64, BTreeMap<String, String>, String) {
    (r.ts, r.labels.iter().cloned().collect(), r.line.clone())
}

fn http(method: &str, url: &str, tenant: &str, params: &[(&str, String)]) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut resp = if method == "POST" {
        let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agent
            .post(url)
            .header("X-Scope-OrgID", tenant)
            .send_form(form)
            .unwrap()
    } else {
        agent
            .get(url)
            .header("X-Scope-OrgID", tenant)
            .call()
            .unwrap()
    };
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn exports_write_the_whole_result_once_with_a_manifest_last() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = MotoServer::start();
    let logs = rt.block_on(S3Store::new("logs", "", &moto.s3_config()));
    rt.block_on(logs.create_bucket()).unwrap();
    let exports = rt.block_on(S3Store::new("exports", "", &moto.s3_config()));
    rt.block_on(exports.create_bucket()).unwrap();
    let logs: Arc<dyn ObjectStore> = Arc::new(logs);
    let acme = rt.block_on(index_lines_in_blocks(
        &*logs,
        "acme",
        &records(LINES, "acme"),
        256 << 10,
    ));
    let globex = rt.block_on(index_lines_in_blocks(
        &*logs,
        "globex",
        &records(3_000, "globex"),
        1 << 20,
    ));
    assert_eq!((acme.len(), globex.len()), (LINES, 3_000));
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(Engine::new(
        logs.clone(),
        EngineConfig::default(),
        metrics.clone(),
    ));
    let range = TimeRange {
        start: BASE_MS * 1_000_000,
        end: (BASE_MS + 6 * 3_600_000) * 1_000_000,
    };

    // 1. Everything of acme's, as an HTTP job.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let api = ApiConfig {
        tenancy: TenantPolicy {
            tokens: Tokens::default(),
            multi_tenant: true,
            default_tenant: "default".into(),
        },
        export: Some(ExportTarget {
            url: "s3://exports/jobs".into(),
            s3: moto.s3_config(),
            part_bytes: PART_BYTES,
            max_jobs: 2,
        }),
        ..ApiConfig::default()
    };
    rt.spawn(skidder_searcher::serve(
        listener,
        engine.clone(),
        api,
        std::future::pending(),
    ));
    let jobs = format!("{url}/skidder/api/v1/exports");
    let window = [
        ("start", range.start.to_string()),
        ("end", range.end.to_string()),
    ];
    let params = |q: &str| {
        let mut p = vec![("query", q.to_owned())];
        p.extend(window.iter().cloned());
        p
    };
    // A metric query is no export.
    let (status, body) = http(
        "POST",
        &jobs,
        "acme",
        &params(r#"count_over_time({__app__="web"}[1m])"#),
    );
    assert_eq!(status, 400, "{body}");
    let (status, job) = http("POST", &jobs, "acme", &params(r#"{__app__=~".+"}"#));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(
        job["destination"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/acme/{id}")),
        "{job}"
    );
    // The other tenant sees neither the job nor it in its list.
    let (status, _) = http("GET", &format!("{jobs}/{id}"), "globex", &[]);
    assert_eq!(status, 404);
    let (status, list) = http("GET", &jobs, "globex", &[]);
    assert_eq!(
        (status, list["exports"].as_array().unwrap().len()),
        (200, 0)
    );
    let started = Instant::now();
    let mut seen_progress = Vec::new();
    let done = loop {
        let (status, job) = http("GET", &format!("{jobs}/{id}"), "acme", &[]);
        assert_eq!(status, 200, "{job}");
        match job["status"].as_str().unwrap() {
            "done" => break job,
            "failed" => panic!("export failed: {job}"),
            _ => seen_progress.push(job["progress"]["lines_written"].as_u64().unwrap()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "export not done: {job}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let p = &done["progress"];
    assert_eq!(done["lines"].as_u64(), Some(LINES as u64), "{done}");
    assert_eq!(p["lines_written"].as_u64(), Some(LINES as u64), "{done}");
    assert!(p["blocks_total"].as_u64().unwrap() > 100, "{done}");
    assert_eq!(p["blocks_scanned"], p["blocks_total"], "{done}");
    assert!(
        seen_progress.windows(2).all(|w| w[0] <= w[1]),
        "{seen_progress:?}"
    );
    let (_, list) = http("GET", &jobs, "acme", &[]);
    assert_eq!(list["exports"][0]["id"].as_str(), Some(id.as_str()));

    let job_dest = rt.block_on(S3Store::new(
        "exports",
        &format!("jobs/acme/{id}/"),
        &moto.s3_config(),
    ));
    let manifest: ExportManifest =
        serde_json::from_slice(&rt.block_on(job_dest.get(MANIFEST)).unwrap()).unwrap();
    assert_eq!(
        (manifest.tenant.as_str(), manifest.lines),
        ("acme", LINES as u64)
    );
    assert!(manifest.warnings.is_empty(), "{:?}", manifest.warnings);
    // Parts of about PART_BYTES: 210,000 lines of JSON are far more than
    // one, and no part is much larger than asked.
    assert!(manifest.parts.len() >= 10, "{} parts", manifest.parts.len());
    let biggest = manifest.parts.iter().map(|p| p.bytes).max().unwrap();
    assert!(
        biggest < PART_BYTES as u64 + 64 * 1024,
        "a part of {biggest} bytes"
    );
    let listed: Vec<String> = rt
        .block_on(list_all(&job_dest, ""))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed.len(), manifest.parts.len() + 1, "{listed:?}");
    let mut got = read_parts(&rt, &job_dest, &manifest);
    let mut want: Vec<_> = acme.iter().map(rec_row).collect();
    got.sort();
    want.sort();
    assert!(got == want, "the export is not exactly acme's lines");

    // 2. A filtered export, through the library, equals the same query's
    // full result from the engine and a brute-force filter of the input.
    let query = r#"{__app__="api"} |= "error" != "kernel""#;
    let dest = rt.block_on(S3Store::new("exports", "filtered/", &moto.s3_config()));
    let req = ExportRequest {
        tenant: "acme".into(),
        query: query.into(),
        range,
        part_bytes: 256 << 10,
    };
    let progress = Progress::default();
    let m = rt
        .block_on(export(&engine, &metrics, &dest, &req, &progress))
        .unwrap();
    let mut got = read_parts(&rt, &dest, &m);
    let Ok(Query::Log(q)) = parse(query) else {
        panic!("a log query")
    };
    let (full, _) = rt
        .block_on(engine.logs("acme", range, &q, usize::MAX, Direction::Forward, true))
        .unwrap();
    let mut from_engine: Vec<_> = full
        .iter()
        .map(|e| (e.ts, e.labels.iter().cloned().collect(), e.line.clone()))
        .collect();
    let mut brute: Vec<_> = acme
        .iter()
        .filter(|r| {
            r.labels.iter().any(|(k, v)| k == "__app__" && v == "api")
                && r.line.contains("error")
                && !r.line.contains("kernel")
        })
        .map(rec_row)
        .collect();
    got.sort();
    from_engine.sort();
    brute.sort();
    assert!(brute.len() > 1_000, "{} lines match", brute.len());
    assert_eq!(got.len(), brute.len());
    assert!(got == brute, "the filtered export differs from the input");
    assert!(
        got == from_engine,
        "the filtered export differs from the query"
    );
    assert!(m.parts.len() > 1, "{} parts", m.parts.len());
    // A second export to the same prefix is refused, and changes nothing.
    let err = rt
        .block_on(export(&engine, &metrics, &dest, &req, &progress))
        .unwrap_err();
    assert!(
        err.to_string().contains("already holds a finished export"),
        "{err}"
    );
    let again: ExportManifest =
        serde_json::from_slice(&rt.block_on(dest.get(MANIFEST)).unwrap()).unwrap();
    assert_eq!(again, m);
    assert_eq!(
        metrics.exports.with_label_values(&["ok"]).get(),
        1,
        "the HTTP job counted once"
    );
}
