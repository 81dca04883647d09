//! The searcher's HTTP service over a real S3 server (moto), holding data
//! of two tenants written by the indexer's own code. The store is wrapped
//! in [`TestStore`] (hooks: [`Recorder`]), which records every key listed or read and can fail
//! or hold requests on demand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use skidder_common::format::index::BlockIndex;
use skidder_common::storage::{
    list_all, ObjectStore, S3Store, StorageError, StorageErrorKind, StorageResult,
};
use skidder_common::testing::MotoServer;
use skidder_searcher::api::ApiConfig;
use skidder_searcher::auth::{TenantPolicy, Tokens};
use skidder_searcher::engine::{Engine, EngineConfig};
use skidder_searcher::metrics::Metrics;

use crate::fixture::{index_lines, HookedStore, Hooks, BASE_MS};

const A: &str = "team-a";
const B: &str = "team-b";

/// Which requests [`TestStore`] fails, and how.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Listings fail.
    List(StorageErrorKind),
    /// Gets of keys with this suffix fail.
    Get(&'static str, StorageErrorKind),
}

/// Store hooks that record every prefix listed and key read, and can
/// fail requests or hold block reads until released.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Vec<String>>,
    fault: Mutex<Option<Fault>>,
    /// Block reads wait for `gate` and report to `entered` first.
    hold_blocks: AtomicBool,
    gate: tokio::sync::Semaphore,
    entered: Mutex<Option<mpsc::Sender<String>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            seen: Mutex::new(Vec::new()),
            fault: Mutex::new(None),
            hold_blocks: AtomicBool::new(false),
            gate: tokio::sync::Semaphore::new(0),
            entered: Mutex::new(None),
        }
    }

    fn take_seen(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn set_fault(&self, f: Option<Fault>) {
        *self.fault.lock().unwrap() = f;
    }

    /// From now on block reads wait until [`release`]; each one first
    /// sends its key to the returned receiver.
    fn hold_blocks(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        *self.entered.lock().unwrap() = Some(tx);
        self.hold_blocks.store(true, Ordering::SeqCst);
        rx
    }

    fn release(&self) {
        self.hold_blocks.store(false, Ordering::SeqCst);
        self.gate.add_permits(1 << 20);
    }
}

#[async_trait]
impl Hooks for Recorder {
    async fn before_get(&self, _: &dyn ObjectStore, key: &str) -> StorageResult<()> {
        self.seen.lock().unwrap().push(key.to_owned());
        let fault = *self.fault.lock().unwrap();
        if let Some(Fault::Get(suffix, kind)) = fault {
            if key.ends_with(suffix) {
                return Err(StorageError::new(kind, key, "injected fault"));
            }
        }
        if key.ends_with(".seq") && self.hold_blocks.load(Ordering::SeqCst) {
            if let Some(tx) = &*self.entered.lock().unwrap() {
                let _ = tx.send(key.to_owned());
            }
            let _permit = self.gate.acquire().await;
        }
        Ok(())
    }

    fn before_list(&self, prefix: &str) -> StorageResult<()> {
        self.seen.lock().unwrap().push(prefix.to_owned());
        if let Some(Fault::List(kind)) = *self.fault.lock().unwrap() {
            return Err(StorageError::new(kind, prefix, "injected fault"));
        }
        Ok(())
    }
}

/// The store every test here reads through.
type TestStore = HookedStore<Recorder>;

/// Log lines of one tenant: two apps, three levels, each naming its tenant.
fn lines(tenant: &str) -> Vec<String> {
    (0..1200)
        .map(|i| {
            let (app, level) = (
                ["checkout", "cart"][i % 2],
                ["info", "warn", "error"][i % 3],
            );
            serde_json::json!({
                "app": app,
                "level": level,
                "msg": format!("request {i} served"),
                "owner": tenant,
            })
            .to_string()
        })
        .collect()
}

/// Moto with both tenants' data, and searchers over it in one runtime.
struct Env {
    rt: tokio::runtime::Runtime,
    store: Arc<TestStore>,
    _moto: MotoServer,
}

struct Searcher {
    url: String,
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let moto = MotoServer::start();
    let s3 = rt.block_on(S3Store::new("logs", "skidder/", &moto.s3_config()));
    rt.block_on(s3.create_bucket()).unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(s3);
    for t in [A, B] {
        let recs = rt.block_on(index_lines(&*inner, t, &lines(t)));
        assert_eq!(recs.len(), 1200);
    }
    Env {
        rt,
        store: Arc::new(TestStore::new(inner, Recorder::new())),
        _moto: moto,
    }
}

impl Env {
    fn serve(&self, engine: EngineConfig, api: ApiConfig) -> Searcher {
        let metrics = Arc::new(Metrics::new());
        let engine = Arc::new(Engine::new(self.store.clone(), engine, metrics));
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        self.rt.spawn(skidder_searcher::serve(
            listener,
            engine,
            api,
            std::future::pending(),
        ));
        Searcher { url }
    }

    /// Keys of one kind (`.idx`/`.seq`) under a tenant.
    fn keys(&self, tenant: &str, suffix: &str) -> Vec<String> {
        let all = self
            .rt
            .block_on(list_all(&*self.store.inner, &format!("tenant={tenant}/")))
            .unwrap();
        all.into_iter()
            .map(|m| m.key)
            .filter(|k| k.ends_with(suffix))
            .collect()
    }
}

fn multi_tenant() -> ApiConfig {
    ApiConfig {
        tenancy: TenantPolicy {
            tokens: Tokens::default(),
            multi_tenant: true,
            default_tenant: "default".into(),
        },
        ..ApiConfig::default()
    }
}

/// The start of a long body, for assertion messages.
fn short(body: &str) -> String {
    body.chars().take(400).collect()
}

/// (status, body) of a GET; `headers` as given, values may be empty.
fn get(url: &str, path: &str, params: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, String) {
    // The guard turns a hang (say, a timeout that never fires) into a failure.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut req = agent.get(format!("{url}{path}"));
    for (k, v) in params {
        req = req.query(k, v);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn ns(ms: i64) -> String {
    (ms * 1_000_000).to_string()
}

/// The data's window: a minute before the first record to two hours on.
fn window() -> (String, String) {
    (ns(BASE_MS - 60_000), ns(BASE_MS + 2 * 3_600_000))
}

/// Every data endpoint, as Grafana and logcli call them over the data's
/// window: (path, params).
fn every_endpoint() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let (s, e) = window();
    let mid = ns(BASE_MS + 600_000);
    let range = |q: &str| {
        vec![
            ("query", q.to_owned()),
            ("start", s.clone()),
            ("end", e.clone()),
            ("limit", "2000".to_owned()),
        ]
    };
    vec![
        ("/loki/api/v1/query_range", range(r#"{__app__=~".+"}"#)),
        (
            "/loki/api/v1/query_range",
            range(r#"sum by (level) (count_over_time({__app__=~".+"} |= "served" [10m]))"#),
        ),
        (
            "/loki/api/v1/query",
            vec![
                ("query", r#"{__app__="checkout"}"#.to_owned()),
                ("time", mid.clone()),
            ],
        ),
        (
            "/loki/api/v1/query",
            vec![
                (
                    "query",
                    r#"count_over_time({__app__="cart"}[30m])"#.to_owned(),
                ),
                ("time", mid),
            ],
        ),
        (
            "/loki/api/v1/labels",
            vec![("start", s.clone()), ("end", e.clone())],
        ),
        (
            "/loki/api/v1/label/level/values",
            vec![("start", s.clone()), ("end", e.clone())],
        ),
        (
            "/loki/api/v1/series",
            vec![
                ("match[]", r#"{__app__=~".+"}"#.to_owned()),
                ("start", s.clone()),
                ("end", e.clone()),
            ],
        ),
        ("/loki/api/v1/index/stats", range(r#"{__app__=~".+"}"#)),
        ("/loki/api/v1/index/volume", range(r#"{__app__=~".+"}"#)),
    ]
}

fn params<'a>(p: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    p.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The log lines of a streams response.
fn log_lines(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().clone())
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}

/// The value of a sample in Prometheus text, e.g. `name{a="b"}`; 0 if absent.
fn metric(s: &Searcher, sample: &str) -> f64 {
    let (_, text) = get(&s.url, "/metrics", &[], &[]);
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_tenant_never_lists_or_reads_another_tenants_objects() {
    let env = env();
    // A team-a index that names a team-b block: the searcher must read
    // the block next to the index it listed, never what the index says.
    let idx_key = env.keys(A, ".idx").remove(0);
    let foreign = env.keys(B, ".seq").remove(0);
    let inner = env.store.inner.clone();
    env.rt.block_on(async {
        let mut idx = BlockIndex::decode(&inner.get(&idx_key).await.unwrap()).unwrap();
        idx.data_key = foreign.clone();
        inner.put(&idx_key, idx.encode().into()).await.unwrap();
    });
    let s = env.serve(EngineConfig::default(), multi_tenant());
    let as_a = [("X-Scope-OrgID", A)];

    for (path, p) in every_endpoint() {
        let (status, body) = get(&s.url, path, &params(&p), &as_a);
        assert_eq!(status, 200, "{path} {p:?}: {body}");
        assert!(
            !body.contains(B),
            "{path} shows team-b data: {}",
            short(&body)
        );
        assert!(!body.contains("warnings"), "{path}: {}", short(&body));
        let v: Value = serde_json::from_str(&body).unwrap();
        let found = match path {
            "/loki/api/v1/index/stats" => v["entries"].as_u64().unwrap() > 0,
            "/loki/api/v1/labels" | "/loki/api/v1/label/level/values" | "/loki/api/v1/series" => {
                !v["data"].as_array().unwrap().is_empty()
            }
            _ => !v["data"]["result"].as_array().unwrap().is_empty(),
        };
        assert!(
            found,
            "{path} {p:?} found nothing, so proves nothing: {body}"
        );
    }
    let (_, body) = get(
        &s.url,
        "/loki/api/v1/query_range",
        &params(&every_endpoint()[0].1),
        &as_a,
    );
    let got = log_lines(&body);
    assert_eq!(got.len(), 1200, "every team-a line, and only those");
    assert!(got.iter().all(|l| l.contains(A)));

    let seen = env.store.take_seen();
    assert!(seen.iter().any(|k| k.ends_with(".seq")), "blocks were read");
    assert!(
        seen.iter().any(|k| k.ends_with(".idx")),
        "indexes were read"
    );
    // Epoch claims are the one exception: fleet metadata under `_ledger/`
    // whose start offsets decide which blocks are superseded; nothing of
    // them reaches an answer.
    let outside: Vec<&String> = seen
        .iter()
        .filter(|k| {
            !k.starts_with("tenant=team-a/")
                && skidder_common::format::ledger::parse_claim_key(k).is_none()
        })
        .collect();
    assert!(outside.is_empty(), "team-a's queries touched {outside:?}");

    // The recorder sees other tenants when asked: the check above can fail.
    let (status, _) = get(
        &s.url,
        "/loki/api/v1/labels",
        &params(&every_endpoint()[4].1),
        &[("X-Scope-OrgID", B)],
    );
    assert_eq!(status, 200);
    assert!(env
        .store
        .take_seen()
        .iter()
        .any(|k| k.starts_with("tenant=team-b/")));

    // Hostile or federated tenant ids are 400 on every endpoint, before
    // any object is touched.
    for bad in [
        "../team-b",
        "team-a|team-b",
        "",
        "team-a/x",
        "/",
        "..",
        "%2e%2e",
    ] {
        for (path, p) in every_endpoint() {
            let (status, body) = get(&s.url, path, &params(&p), &[("X-Scope-OrgID", bad)]);
            assert_eq!(status, 400, "{bad:?} on {path}: {body}");
            assert!(body.starts_with("invalid tenant id"), "{body}");
        }
    }
    let (status, _) = get(&s.url, every_endpoint()[0].0, &[], &[]);
    assert_eq!(status, 401, "no X-Scope-OrgID");
    assert!(env.store.take_seen().is_empty(), "refused before reading");
}

fn with_tokens() -> ApiConfig {
    let tokens = BTreeMap::from([
        ("s3cr3t-a".to_owned(), A.to_owned()),
        ("s3cr3t-b".to_owned(), B.to_owned()),
    ]);
    ApiConfig {
        tenancy: TenantPolicy {
            tokens: Tokens::new(&tokens),
            multi_tenant: false,
            default_tenant: "default".into(),
        },
        ..ApiConfig::default()
    }
}

#[test]
fn bearer_tokens_authenticate_and_decide_the_tenant() {
    let env = env();
    let s = env.serve(EngineConfig::default(), with_tokens());
    let p = every_endpoint();
    let logs = params(&p[0].1);
    let path = p[0].0;

    // Open for the orchestrator and Prometheus.
    assert_eq!(get(&s.url, "/ready", &[], &[]).0, 200);
    assert_eq!(get(&s.url, "/metrics", &[], &[]).0, 200);

    // Everything else needs a known token.
    for (path, p) in every_endpoint() {
        for h in [
            vec![],
            vec![("Authorization", "Bearer wrong")],
            vec![("Authorization", "Bearer s3cr3t-")],
            vec![("Authorization", "Basic s3cr3t-a")],
            vec![("X-Scope-OrgID", A)],
        ] {
            let (status, body) = get(&s.url, path, &params(&p), &h);
            assert_eq!(status, 401, "{path} with {h:?}: {body}");
        }
    }
    assert_eq!(
        get(&s.url, "/loki/api/v1/status/buildinfo", &[], &[]).0,
        401
    );
    assert!(env.store.take_seen().is_empty(), "refused before reading");

    // The token decides the tenant.
    for (token, tenant) in [("Bearer s3cr3t-a", A), ("bearer s3cr3t-b", B)] {
        let (status, body) = get(&s.url, path, &logs, &[("Authorization", token)]);
        assert_eq!(status, 200, "{body}");
        let got = log_lines(&body);
        assert_eq!(got.len(), 1200);
        assert!(got.iter().all(|l| l.contains(tenant)), "{tenant}");
    }
    // The header may agree with the token, never override it.
    let a = ("Authorization", "Bearer s3cr3t-a");
    assert_eq!(get(&s.url, path, &logs, &[a, ("X-Scope-OrgID", A)]).0, 200);
    let (status, body) = get(&s.url, path, &logs, &[a, ("X-Scope-OrgID", B)]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        get(&s.url, "/loki/api/v1/status/buildinfo", &[], &[a]).0,
        200
    );
    assert!(
        metric(
            &s,
            r#"skidder_searcher_queries_rejected_total{reason="auth"}"#
        ) >= 45.0
    );
}

/// Limits small enough for the test data: one hour; the data's blocks
/// hold about 130 kB of lines per tenant.
fn limited(bytes: u64, series: usize) -> EngineConfig {
    EngineConfig {
        max_hours: 3,
        max_bytes_scanned: bytes,
        max_series: series,
        ..EngineConfig::default()
    }
}

#[test]
fn query_limits_refuse_with_a_clear_400() {
    let env = env();
    let as_a = [("X-Scope-OrgID", A)];
    let s = env.serve(limited(u64::MAX, 5000), multi_tenant());

    // Time range, on every endpoint (a metric's [range] counts), before
    // anything is listed.
    let (start, end) = (ns(BASE_MS - 3_600_000), ns(BASE_MS + 3 * 3_600_000));
    for (path, mut p) in every_endpoint() {
        for (k, v) in p.iter_mut() {
            match *k {
                "start" => *v = start.clone(),
                "end" => *v = end.clone(),
                "query" if path == "/loki/api/v1/query" && v.contains("[30m]") => {
                    *v = r#"count_over_time({__app__="cart"}[4h])"#.into()
                }
                _ => {}
            }
        }
        if path == "/loki/api/v1/query" && p[0].1.starts_with('{') {
            continue; // an instant log query always looks back one hour
        }
        let (status, body) = get(&s.url, path, &params(&p), &as_a);
        assert_eq!(status, 400, "{path} {p:?}: {body}");
        assert!(
            body.starts_with(
                "the query time range exceeds the limit (query length: 5h, limit: 3h)"
            ),
            "{path}: {body}"
        );
    }
    assert!(env.store.take_seen().is_empty(), "refused before listing");
    assert!(
        metric(
            &s,
            r#"skidder_searcher_queries_rejected_total{reason="time_range"}"#
        ) >= 8.0
    );

    // Bytes scanned: every endpoint that reads blocks (logs, metrics and
    // the volume, which sums bytes) is refused before fetching any.
    let tiny = env.serve(limited(1000, 5000), multi_tenant());
    let p = every_endpoint();
    let (scanning, index_only) = ([0, 1, 2, 3, 8], [4, 5, 6, 7]);
    for i in scanning {
        let (path, p) = &p[i];
        let (status, body) = get(&tiny.url, path, &params(p), &as_a);
        assert_eq!(status, 400, "{path} {p:?}: {body}");
        assert_eq!(
            body,
            "query would scan more than 1000 bytes; narrow the time range or the stream selector\n"
        );
    }
    let seen = env.store.take_seen();
    assert!(seen.iter().any(|k| k.ends_with(".idx")), "{seen:?}");
    assert!(seen.iter().all(|k| !k.ends_with(".seq")), "{seen:?}");
    // Endpoints that read only indexes are not refused; a budget that fits passes.
    for i in index_only {
        let (path, p) = &p[i];
        let (status, body) = get(&tiny.url, path, &params(p), &as_a);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let roomy = env.serve(limited(10 << 20, 5000), multi_tenant());
    for i in scanning {
        let (path, p) = &p[i];
        assert_eq!(get(&roomy.url, path, &params(p), &as_a).0, 200, "{path}");
    }

    // Series: six (app x level) streams; a result of more than five is refused.
    let five = env.serve(limited(u64::MAX, 5), multi_tenant());
    let api5 = ApiConfig {
        max_series: 5,
        ..multi_tenant()
    };
    let five_api = env.serve(limited(u64::MAX, 5), api5);
    let (s_, e_) = window();
    let q = |q: &'static str| {
        vec![
            ("query", q),
            ("start", s_.as_str()),
            ("end", e_.as_str()),
            ("step", "600"),
        ]
    };
    let (status, body) = get(
        &five.url,
        "/loki/api/v1/query_range",
        &q(r#"count_over_time({__app__=~".+"}[10m])"#),
        &as_a,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("maximum number of series (5) reached for a single query"),
        "{body}"
    );
    // Only the result counts: six inner series summed into three are fine.
    let (status, body) = get(
        &five.url,
        "/loki/api/v1/query_range",
        &q(r#"sum by (level) (count_over_time({__app__=~".+"}[10m]))"#),
        &as_a,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &five_api.url,
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{__app__=~".+"}"#),
            ("start", &s_),
            ("end", &e_),
        ],
        &as_a,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("maximum number of series (5)"), "{body}");
    let (status, _) = get(
        &five_api.url,
        "/loki/api/v1/labels",
        &[("start", &s_), ("end", &e_)],
        &as_a,
    );
    assert_eq!(status, 200, "label names are not series");
}

#[test]
fn approx_topk_answers_instant_queries_and_refuses_ranges() {
    let env = env();
    let as_a = [("X-Scope-OrgID", A)];
    let s = env.serve(EngineConfig::default(), multi_tenant());
    // The lines whose message has "request 1", by level, counted here.
    let mut by_level: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines(A).iter().filter(|l| l.contains("request 1")) {
        let v: Value = serde_json::from_str(line).unwrap();
        *by_level
            .entry(v["level"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let mut want: Vec<(String, usize)> = by_level.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    want.truncate(2);

    let q =
        r#"approx_topk(2, sum by (level) (count_over_time({__app__=~".+"} |= "request 1" [1h])))"#;
    let at = ns(BASE_MS + 1_800_000);
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/query",
        &[("query", q), ("time", &at)],
        &as_a,
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector", "{body}");
    let mut got: Vec<(String, usize)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"]["level"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    got.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(got, want, "{body}");

    // Loki answers it only at an instant; a range is a clear 400.
    let (start, end) = window();
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/query_range",
        &[
            ("query", q),
            ("start", &start),
            ("end", &end),
            ("step", "60"),
        ],
        &as_a,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("approx_topk is only supported for instant queries"),
        "{body}"
    );
}

#[test]
fn a_query_past_its_timeout_is_a_504() {
    let env = env();
    let api = ApiConfig {
        query_timeout: Duration::from_millis(300),
        ..multi_tenant()
    };
    let s = env.serve(EngineConfig::default(), api);
    // Block reads never finish: only the timeout can end the query.
    let _entered = env.store.hold_blocks();
    let p = every_endpoint();
    let (status, body) = get(&s.url, p[1].0, &params(&p[1].1), &[("X-Scope-OrgID", A)]);
    assert_eq!(status, 504, "{body}");
    assert!(body.starts_with("request timed out after 300ms"), "{body}");
    assert_eq!(metric(&s, "skidder_searcher_queries_in_flight"), 0.0);
    assert_eq!(
        metric(
            &s,
            r#"skidder_searcher_queries_rejected_total{reason="timeout"}"#
        ),
        1.0
    );
    env.store.release();
}

#[test]
fn queries_beyond_the_concurrency_limit_get_429() {
    let env = env();
    let api = ApiConfig {
        max_concurrent_queries: 1,
        queue_wait: Duration::ZERO,
        ..multi_tenant()
    };
    let s = env.serve(EngineConfig::default(), api);
    let entered = env.store.hold_blocks();
    let p = every_endpoint();
    let (path, first) = (p[1].0, p[1].1.clone());
    let url = s.url.clone();
    let running =
        std::thread::spawn(move || get(&url, path, &params(&first), &[("X-Scope-OrgID", A)]));
    // The first query holds the only slot once it reads a block.
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("the first query reached the store");

    for (path, p) in every_endpoint() {
        let (status, body) = get(&s.url, path, &params(&p), &[("X-Scope-OrgID", A)]);
        assert_eq!(status, 429, "{path}: {body}");
        assert!(body.starts_with("too many outstanding requests"), "{body}");
    }
    assert_eq!(get(&s.url, "/ready", &[], &[]).0, 200, "not a query");
    assert_eq!(metric(&s, "skidder_searcher_queries_in_flight"), 1.0);

    env.store.release();
    let (status, body) = running.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(&s.url, p[0].0, &params(&p[0].1), &[("X-Scope-OrgID", A)]);
    assert_eq!(status, 200, "the slot is free again");
    assert_eq!(
        metric(
            &s,
            r#"skidder_searcher_queries_rejected_total{reason="concurrency"}"#
        ),
        9.0
    );
}

#[test]
fn store_faults_fail_the_query_and_are_counted() {
    let env = env();
    let s = env.serve(EngineConfig::default(), multi_tenant());
    let as_a = [("X-Scope-OrgID", A)];
    let p = every_endpoint();

    for (fault, op, kind) in [
        (Fault::Get(".seq", StorageErrorKind::Io), "get_block", "io"),
        (
            Fault::Get(".idx", StorageErrorKind::Service),
            "get_index",
            "service",
        ),
        (Fault::List(StorageErrorKind::Timeout), "list", "timeout"),
    ] {
        env.store.set_fault(Some(fault));
        // A fresh searcher each time: nothing cached hides the fault.
        let s = env.serve(EngineConfig::default(), multi_tenant());
        for (path, p) in [&p[0], &p[1]] {
            let (status, body) = get(&s.url, path, &params(p), &as_a);
            assert_eq!(status, 502, "{fault:?} on {path}: {body}");
            assert!(
                body.starts_with("the object store failed, so the result would be incomplete"),
                "{body}"
            );
        }
        // Counted per failed request; each query failed on at least one.
        let sample = format!(r#"skidder_searcher_store_errors_total{{kind="{kind}",op="{op}"}}"#);
        assert!(metric(&s, &sample) >= 2.0, "{sample}");
    }
    env.store.set_fault(None);

    // Missing and corrupt objects are not faults: skipped, with warnings.
    env.store
        .set_fault(Some(Fault::Get(".idx", StorageErrorKind::NotFound)));
    let fresh = env.serve(EngineConfig::default(), multi_tenant());
    let (status, body) = get(&fresh.url, p[0].0, &params(&p[0].1), &as_a);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let w = v["warnings"].to_string();
    assert!(w.contains("no longer exists"), "{w}");
    env.store.set_fault(None);

    let block = env.keys(A, ".seq").remove(0);
    env.rt
        .block_on(
            env.store
                .inner
                .put(&block, Bytes::from_static(b"not a block")),
        )
        .unwrap();
    let (status, body) = get(&s.url, p[0].0, &params(&p[0].1), &as_a);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["warnings"].to_string().contains("skipped corrupt block"),
        "{body}"
    );
    assert!(
        log_lines(&body).len() < 1200,
        "the corrupt block is skipped"
    );
    assert_eq!(metric(&s, "skidder_searcher_corrupt_objects_total"), 1.0);
    assert_eq!(
        metric(
            &s,
            r#"skidder_searcher_store_errors_total{kind="io",op="get_block"}"#
        ),
        0.0
    );
}

/// Grafana's query editor and field panels: `format_query`,
/// `detected_labels`, `detected_fields` and a field's values, over
/// team-a's data (two apps, three levels, JSON lines with `app`, `level`,
/// `msg` and `owner`).
#[test]
fn grafana_format_and_detected_endpoints_answer_as_loki() {
    let env = env();
    let s = env.serve(EngineConfig::default(), multi_tenant());
    let as_a = [("X-Scope-OrgID", A)];
    let (start, end) = window();
    let json = |path: &str, p: &[(&str, &str)]| -> Value {
        let (status, body) = get(&s.url, path, p, &as_a);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains(B), "{path} shows team-b data: {body}");
        serde_json::from_str(&body).unwrap()
    };

    let v = json(
        "/loki/api/v1/format_query",
        &[(
            "query",
            "sum by(level)(rate({__app__=\"cart\"}|json|level!=\"debug\"[5m]))",
        )],
    );
    assert_eq!(v["status"], "success");
    assert_eq!(
        v["data"],
        r#"sum by (level) (rate({__app__="cart"} | json | level!="debug"[5m]))"#
    );
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/format_query",
        &[("query", "{__app__=")],
        &as_a,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("parse error at line 1"), "{body}");

    // Stream labels: __app__ (checkout, cart) and level (three values).
    let v = json(
        "/loki/api/v1/detected_labels",
        &[
            ("query", r#"{__app__=~".+"}"#),
            ("start", &start),
            ("end", &end),
        ],
    );
    let labels: Vec<(String, u64)> = v["detectedLabels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["label"].as_str().unwrap().to_owned(),
                l["cardinality"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(labels.contains(&("__app__".into(), 2)), "{labels:?}");
    assert!(labels.contains(&("level".into(), 3)), "{labels:?}");

    // Fields of the cart's lines: app (one value), level (three), msg
    // (one per line: 600 cart lines, all within the default 1,000) and
    // owner (team-a), all strings found by the json parser.
    let q = [
        ("query", r#"{__app__="cart"}"#),
        ("start", &start[..]),
        ("end", &end[..]),
    ];
    let v = json("/loki/api/v1/detected_fields", &q);
    let field = |name: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["label"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {v}"))
    };
    assert_eq!(field("level")["cardinality"], 3);
    assert_eq!(field("level")["type"], "string");
    assert_eq!(field("level")["parsers"], serde_json::json!(["json"]));
    assert_eq!(field("app")["cardinality"], 1);
    assert_eq!(field("msg")["cardinality"], 600);
    assert_eq!(field("owner")["cardinality"], 1);
    assert_eq!(v["fields"].as_array().unwrap().len(), 4, "{v}");
    // line_limit bounds the lines read: 10 lines, 10 messages.
    let mut few = q.to_vec();
    few.push(("line_limit", "10"));
    let v = json("/loki/api/v1/detected_fields", &few);
    let msg = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"] == "msg")
        .cloned()
        .unwrap();
    assert_eq!(msg["cardinality"], 10, "{v}");

    let v = json("/loki/api/v1/detected_field/level/values", &q);
    assert_eq!(v["values"], serde_json::json!(["error", "info", "warn"]));
    let (status, body) = get(
        &s.url,
        "/loki/api/v1/detected_fields",
        &[("query", r#"count_over_time({__app__="cart"}[1m])"#)],
        &as_a,
    );
    assert_eq!(status, 400, "{body}");
}
