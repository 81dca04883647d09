//! The HTTP contract that Grafana's Loki data source and logcli rely on,
//! checked from Loki's published API documentation: the parameters they
//! send, the fields they read, the error shape, step alignment, and Loki's
//! tenancy header. The fixture is `skidder demo` (5,000 generated records)
//! plus a multi-tenant `skidder searcher` over the same data.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skidder_common::testing::free_port;

use crate::support::{agent, sigterm, Demo, Guard, BIN};

struct Fixture {
    demo: Guard,
    searcher: Guard,
    url: String,
    tenant_url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in [&mut self.demo, &mut self.searcher] {
            sigterm(c.id());
            let _ = c.0.wait();
        }
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let demo = Demo::start(5000, port, &data).process;
    let config = dir.path().join("searcher.toml");
    std::fs::write(&config, "multi_tenant = true\n").unwrap();
    let tport = free_port();
    let searcher = Guard(
        Command::new(BIN)
            .args([
                "searcher",
                "--config",
                config.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{tport}"),
            ])
            .arg("--store")
            .arg(format!("file://{}", data.display()))
            .env("SKIDDER_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let f = Fixture {
        demo,
        searcher,
        url: format!("http://127.0.0.1:{port}"),
        tenant_url: format!("http://127.0.0.1:{tport}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&f.tenant_url, "/ready", &[], &[]).0 != 200 {
        assert!(Instant::now() < deadline, "searcher never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    f
}

/// GET with query parameters and headers: (status, content type, body).
fn get(
    base: &str,
    path: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut req = agent().get(format!("{base}{path}"));
    for (k, v) in params {
        req = req.query(k, v);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.call() {
        Ok(mut r) => {
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (
                r.status().as_u16(),
                ct,
                r.body_mut().read_to_string().unwrap_or_default(),
            )
        }
        Err(_) => (0, String::new(), String::new()),
    }
}

fn json_ok(base: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, ct, body) = get(base, path, params, &[]);
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    assert!(
        ct.starts_with("application/json"),
        "{path}: content-type {ct}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    v
}

/// The last two hours, in nanoseconds at millisecond precision, as Grafana sends them.
fn ns_window() -> (i64, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        * 1_000_000;
    (now - 2 * 3_600_000_000_000, now)
}

#[test]
fn grafana_and_logcli_contract() {
    let f = fixture();
    let (start, end) = ns_window();
    let (s, e) = (start.to_string(), end.to_string());

    // Readiness.
    assert_eq!(get(&f.url, "/ready", &[], &[]).0, 200);

    // Grafana's "Save & test": an instant query of vector(1)+vector(1).
    let v = json_ok(
        &f.url,
        "/loki/api/v1/query",
        &[
            ("query", "vector(1)+vector(1)"),
            ("time", "1700000000000000000"),
        ],
    );
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"], serde_json::json!({}));
    assert_eq!(
        v["data"]["result"][0]["value"][0],
        serde_json::json!(1700000000)
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "2");

    // sort and sort_desc order an instant vector by value.
    for (func, ascending) in [("sort", true), ("sort_desc", false)] {
        let q = format!(r#"{func}(sum by (__app__) (count_over_time({{__app__=~".+"}}[2h])))"#);
        let v = json_ok(&f.url, "/loki/api/v1/query", &[("query", &q), ("time", &e)]);
        let values: Vec<f64> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| {
            if ascending {
                a.total_cmp(b)
            } else {
                b.total_cmp(a)
            }
        });
        assert!(values.len() > 2 && values == sorted, "{func}: {values:?}");
    }

    // Version detection.
    let v = json_ok(&f.url, "/loki/api/v1/status/buildinfo", &[]);
    assert!(v["version"].is_string());

    // Label browser: names, then values.
    let v = json_ok(&f.url, "/loki/api/v1/labels", &[("start", &s), ("end", &e)]);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in ["__app__", "level", "kubernetes_pod"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let v = json_ok(
        &f.url,
        "/loki/api/v1/label/level/values",
        &[("start", &s), ("end", &e)],
    );
    let values: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        values.contains(&"info") && values.contains(&"error"),
        "{values:?}"
    );

    // Series, as logcli and the label browser ask for them (GET and POST forms).
    let v = json_ok(
        &f.url,
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{__app__="checkout"}"#),
            ("start", &s),
            ("end", &e),
        ],
    );
    let series = v["data"].as_array().unwrap();
    assert!(!series.is_empty());
    assert!(series.iter().all(
        |l| l["__app__"] == "checkout" && l.as_object().unwrap().values().all(Value::is_string)
    ));
    let mut post = agent()
        .post(format!("{}/loki/api/v1/series", f.url))
        .send_form([
            ("match[]", r#"{__app__="cart"}"#),
            ("start", s.as_str()),
            ("end", e.as_str()),
        ])
        .unwrap();
    let v: Value = serde_json::from_str(&post.body_mut().read_to_string().unwrap()).unwrap();
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["__app__"] == "cart"));

    // Explore: a log query with what Grafana sends.
    let v = json_ok(
        &f.url,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{__app__="checkout"} |= "GET""#),
            ("limit", "1000"),
            ("start", &s),
            ("end", &e),
            ("step", "5"),
            ("direction", "backward"),
        ],
    );
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    assert!(
        v["data"]["stats"]["summary"]["totalLinesProcessed"]
            .as_u64()
            .unwrap()
            > 0
    );
    let mut all_ts = Vec::new();
    for stream in v["data"]["result"].as_array().unwrap() {
        assert!(stream["stream"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        for pair in stream["values"].as_array().unwrap() {
            let ts = pair[0]
                .as_str()
                .expect("timestamps are strings of nanoseconds");
            assert!(ts.bytes().all(|b| b.is_ascii_digit()));
            let ts: i64 = ts.parse().unwrap();
            assert!(ts >= start && ts <= end);
            assert!(pair[1].as_str().unwrap().contains("GET"));
            all_ts.push(ts);
        }
    }
    assert!(!all_ts.is_empty() && all_ts.len() <= 1000);
    // Within each stream newest first; across streams the limit took the newest.
    for stream in v["data"]["result"].as_array().unwrap() {
        let ts: Vec<i64> = stream["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] >= w[1]), "backward order");
    }
    // Forward with a small limit: the oldest lines, oldest first.
    let v = json_ok(
        &f.url,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{__app__="checkout"}"#),
            ("limit", "3"),
            ("start", &s),
            ("end", &e),
            ("direction", "forward"),
        ],
    );
    let n: usize = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, 3);

    // The log volume panel: a metric query with `step`; points sit on start + k*step.
    let step = 60i64;
    let v = json_ok(
        &f.url,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"sum by (level, detected_level) (count_over_time({__app__="checkout"} | drop __error__ [1m]))"#,
            ),
            ("start", &s),
            ("end", &e),
            ("step", &step.to_string()),
        ],
    );
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert!(!result.is_empty());
    let mut total = 0.0;
    for series in result {
        let keys: Vec<&String> = series["metric"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            vec!["level"],
            "grouped by level only (no detected_level here)"
        );
        for p in series["values"].as_array().unwrap() {
            let t = p[0]
                .as_f64()
                .expect("matrix timestamps are numbers of seconds");
            let t_ms = (t * 1e3).round() as i64;
            assert_eq!(
                (t_ms - start / 1_000_000).rem_euclid(step * 1000),
                0,
                "point {t} is off the step grid"
            );
            total += p[1]
                .as_str()
                .expect("values are strings")
                .parse::<f64>()
                .unwrap();
        }
    }
    // Windows of 1m at a 60 s step tile the range: every checkout line counted once.
    let lines = json_ok(
        &f.url,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{__app__="checkout"}"#),
            ("limit", "5000"),
            ("start", &s),
            ("end", &e),
        ],
    );
    let count: usize = lines["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(total as usize, count);

    // Query stats and volume hints.
    let v = json_ok(
        &f.url,
        "/loki/api/v1/index/stats",
        &[
            ("query", r#"{__app__="checkout"}"#),
            ("start", &s),
            ("end", &e),
        ],
    );
    for k in ["streams", "chunks", "entries", "bytes"] {
        assert!(v[k].as_u64().unwrap() > 0, "{k}: {v}");
    }
    let v = json_ok(
        &f.url,
        "/loki/api/v1/index/volume",
        &[("query", r#"{__app__=~".+"}"#), ("start", &s), ("end", &e)],
    );
    assert_eq!(v["data"]["resultType"], "vector");
    assert!(
        v["data"]["result"].as_array().unwrap().len() >= 5,
        "one per app: {v}"
    );

    // Errors: Loki's shape is a plain-text body with a 400.
    let (status, ct, body) = get(
        &f.url,
        "/loki/api/v1/query_range",
        &[("query", r#"{__app__="checkout""#)],
        &[],
    );
    assert_eq!(status, 400);
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(body.starts_with("parse error at line 1, col 20:"), "{body}");
    let (status, _, body) = get(
        &f.url,
        "/loki/api/v1/query_range",
        &[("query", r#"{__app__="x"}"#), ("limit", "abc")],
        &[],
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = get(&f.url, "/loki/api/v1/query_range", &[], &[]);
    assert_eq!(status, 400);

    // Request metrics by endpoint and status.
    let (_, _, metrics) = get(&f.url, "/metrics", &[], &[]);
    assert!(
        metrics.contains(
            r#"skidder_searcher_requests_total{endpoint="/loki/api/v1/query_range",status="400"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("skidder_searcher_blocks_pruned_total"));

    // Tenancy, Loki's way.
    let q = [
        ("query", r#"{__app__="checkout"}"#),
        ("start", s.as_str()),
        ("end", e.as_str()),
    ];
    let (status, _, _) = get(&f.tenant_url, "/loki/api/v1/query_range", &q, &[]);
    assert_eq!(status, 401, "no X-Scope-OrgID");
    let (status, _, body) = get(
        &f.tenant_url,
        "/loki/api/v1/query_range",
        &q,
        &[("X-Scope-OrgID", "default")],
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(!v["data"]["result"].as_array().unwrap().is_empty());
    let (status, _, body) = get(
        &f.tenant_url,
        "/loki/api/v1/query_range",
        &q,
        &[("X-Scope-OrgID", "other")],
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["data"]["result"].as_array().unwrap().is_empty(),
        "another tenant sees nothing"
    );
    assert!(
        v.get("warnings").is_none(),
        "with tenancy on, no hint names the tenants that have data: {v}"
    );
    for bad in ["../demo", "a|b", "demo/x"] {
        let (status, _, _) = get(
            &f.tenant_url,
            "/loki/api/v1/query_range",
            &q,
            &[("X-Scope-OrgID", bad)],
        );
        assert_eq!(status, 400, "tenant {bad:?}");
    }
}

/// Tokens and limits written in the searcher's TOML file reach the running
/// binary: authentication before anything else, the token's tenant, Loki's
/// plain-text errors, and `/ready` and `/metrics` left open.
#[test]
fn tokens_and_limits_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let start = |toml: &str| {
        let config = dir.path().join("searcher.toml");
        std::fs::write(&config, toml).unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .args(["searcher", "--config", config.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--store")
            .arg(format!("file://{}", data.display()))
            .env("SKIDDER_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (Guard(child), format!("http://127.0.0.1:{port}"))
    };

    // An unknown key is refused at start-up, naming the key.
    let (mut bad, _) = start("[auth]\nusers = {}\n");
    let status = bad.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bad.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("users"), "{err}");

    let (_searcher, url) =
        start("max_query_hours = 2\n[auth]\ntokens = { \"s3cr3t\" = \"team-a\" }\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&url, "/ready", &[], &[]).0 != 200 {
        assert!(Instant::now() < deadline, "searcher never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&url, "/metrics", &[], &[]).0, 200);

    let (start_ns, end_ns) = ns_window();
    let (s1, e) = ((end_ns - 3_600_000_000_000).to_string(), end_ns.to_string());
    let q = [
        ("query", r#"{__app__="checkout"}"#),
        ("start", s1.as_str()),
        ("end", e.as_str()),
    ];
    let path = "/loki/api/v1/query_range";
    let (status, ct, body) = get(&url, path, &q, &[]);
    assert_eq!((status, body.as_str()), (401, "missing bearer token\n"));
    assert!(ct.starts_with("text/plain"), "{ct}");
    let (status, _, body) = get(&url, path, &q, &[("Authorization", "Bearer nope")]);
    assert_eq!((status, body.as_str()), (401, "invalid bearer token\n"));

    let token = ("Authorization", "Bearer s3cr3t");
    let (status, _, body) = get(&url, path, &q, &[token]);
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get(&url, path, &q, &[token, ("X-Scope-OrgID", "team-a")]);
    assert_eq!(status, 200);
    let (status, _, body) = get(&url, path, &q, &[token, ("X-Scope-OrgID", "team-b")]);
    assert_eq!(status, 403, "{body}");

    // max_query_hours from the file: two hours pass, three do not.
    let s3 = (start_ns - 3_600_000_000_000).to_string();
    let long = [q[0], ("start", s3.as_str()), ("end", e.as_str())];
    let (status, ct, body) = get(&url, path, &long, &[token]);
    assert_eq!(status, 400, "{body}");
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(
        body.starts_with("the query time range exceeds the limit"),
        "{body}"
    );
}
