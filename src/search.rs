//! `skidder searcher` (the Loki-API service) and `skidder search` (the CLI
//! client, against a searcher URL or straight against a store).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::Value;
use skidder_common::format::layout::now_ns;
use skidder_common::service::Shutdown;
use skidder_common::storage::open_store;
use skidder_searcher::api::{run_range, RangeRequest};
use skidder_searcher::config::SearcherConfig;
use skidder_searcher::engine::{Direction, Engine, EngineConfig, TimeRange};
use skidder_searcher::logql::{parse, Query};
use skidder_searcher::metrics::Metrics;
use skidder_searcher::time::{parse_step, parse_time};

use crate::flags::{runtime, signalled, StoreFlags};
use crate::live_kafka::KafkaFeed;
use skidder_searcher::live::LiveFeed;
use skidder_searcher::ruler::Ruler;

#[derive(Args)]
pub struct SearcherFlags {
    /// TOML config file; flags and environment override it.
    #[arg(long, env = "SKIDDER_CONFIG")]
    pub config: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
    /// Address to serve Loki's HTTP API on.
    #[arg(long, env = "SKIDDER_LISTEN")]
    pub listen: Option<String>,
    /// Take the tenant from X-Scope-OrgID, as Loki does.
    #[arg(long, env = "SKIDDER_MULTI_TENANT")]
    pub multi_tenant: bool,
    /// Evaluate the alerting and recording rules in this folder (see
    /// `[ruler]` in deploy/searcher.toml for where results go).
    #[arg(long, env = "SKIDDER_RULES_DIR")]
    pub rules_dir: Option<String>,
    /// Serve live tails from the Kafka topics of this indexer config (its
    /// `[kafka]` and `[parse]`).
    #[arg(long, env = "SKIDDER_TAIL_INDEXER_CONFIG")]
    pub tail_indexer_config: Option<String>,
}

impl SearcherFlags {
    pub fn settings(&self) -> anyhow::Result<SearcherConfig> {
        let mut cfg = match &self.config {
            Some(p) => SearcherConfig::from_file(p)?,
            None => SearcherConfig::default(),
        };
        if let Some(v) = &self.store.store {
            cfg.store.url = v.clone();
        }
        if let Some(v) = &self.store.s3_endpoint {
            cfg.store.s3.endpoint = Some(v.clone());
        }
        if let Some(v) = &self.listen {
            cfg.listen = v.clone();
        }
        if self.multi_tenant {
            cfg.multi_tenant = true;
        }
        if let Some(v) = &self.rules_dir {
            cfg.ruler.rules_dir = v.clone();
        }
        if let Some(v) = &self.tail_indexer_config {
            cfg.tail.indexer_config = v.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn bind(
    rt: &tokio::runtime::Runtime,
    cfg: &SearcherConfig,
) -> anyhow::Result<tokio::net::TcpListener> {
    rt.block_on(tokio::net::TcpListener::bind(&cfg.listen))
        .with_context(|| format!("listening on {}", cfg.listen))
}

/// Serves `cfg` on `listener` until `shutdown`; used by `searcher` and `demo`.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    cfg: &SearcherConfig,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let store = rt
        .block_on(open_store(&cfg.store_url()?, &cfg.store.s3))
        .context("opening the store")?;
    let engine = Arc::new(Engine::new(store, cfg.engine(), Arc::new(Metrics::new())));
    let mut api = cfg.api();
    if !cfg.tail.indexer_config.is_empty() {
        let feed: Arc<dyn LiveFeed> = KafkaFeed::start(&cfg.tail.indexer_config)?;
        api.live = Some(feed);
    }
    if let Some(rc) = cfg.ruler.ruler(&cfg.default_tenant) {
        let _in_runtime = rt.enter();
        api.ruler = Some(Ruler::start(engine.clone(), rc).context("loading the ruler's rules")?);
    }
    tracing::info!(listen = %cfg.listen, store = %cfg.store.url, tail = api.live.is_some(), "searcher ready");
    rt.block_on(skidder_searcher::serve(
        listener,
        engine,
        api,
        signalled(shutdown),
    ))
    .context("serving HTTP")
}

pub fn run_searcher(flags: SearcherFlags) -> anyhow::Result<ExitCode> {
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let cfg = flags.settings()?;
    let rt = runtime()?;
    let listener = bind(&rt, &cfg)?;
    serve(&rt, listener, &cfg, shutdown)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    /// One line per entry: time, labels, line.
    Raw,
    /// Loki's JSON response.
    Json,
}

#[derive(Args)]
pub struct SearchFlags {
    /// The LogQL query.
    #[arg(default_value = "", required_unless_present = "offset")]
    pub query: String,
    /// A searcher to ask, e.g. http://127.0.0.1:7280.
    #[arg(long, env = "SKIDDER_URL", conflicts_with = "store")]
    pub url: Option<String>,
    #[command(flatten)]
    pub store: StoreFlags,
    /// How far back to look, e.g. 1h or 30m (default 1h; 24h with `--offset`).
    #[arg(long, conflicts_with = "from")]
    pub since: Option<String>,
    /// Start: RFC 3339 or a Unix epoch.
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 or a Unix epoch; now by default.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Step of metric queries, e.g. 1m.
    #[arg(long)]
    pub step: Option<String>,
    #[arg(long, default_value_t = false)]
    pub forward: bool,
    /// The tenant (X-Scope-OrgID) for a searcher, or the tenant to read from a store.
    #[arg(long, env = "SKIDDER_TENANT", default_value = "default")]
    pub tenant: String,
    #[arg(long, value_enum, default_value = "raw")]
    pub output: Output,
    /// Show this many lines of each hit's stream before and after it
    /// (log queries only); the hit is marked `>`.
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    /// Write the whole result of a log query, with no limit, to this
    /// prefix (`s3://bucket/prefix` or `file:///path`) as NDJSON parts and
    /// a `_manifest.json` written last. Reads the store itself (`--store`).
    #[arg(long, value_name = "URL", conflicts_with_all = ["context", "url"])]
    pub export: Option<String>,
    /// Follow the query live through the searcher (`--url`), as
    /// `logcli query --tail` does: the last `--limit` lines since
    /// `--since`, then each new line as it arrives.
    #[arg(long, conflicts_with_all = ["context", "export", "store"])]
    pub tail: bool,
    /// Instead of a query: the records one Kafka message became,
    /// `topic:partition:offset`, with its dead letters.
    #[arg(long, value_name = "TOPIC:PARTITION:OFFSET", conflicts_with_all = ["context", "export", "tail"])]
    pub offset: Option<String>,
    /// NDJSON per export part, in MiB.
    #[arg(long, default_value_t = 64, requires = "export")]
    pub export_part_mib: usize,
}

/// Where `skidder search` asks: a searcher over HTTP, or a store read
/// directly with the searcher's own engine.
pub enum Source {
    Url {
        agent: ureq::Agent,
        url: String,
        tenant: String,
    },
    Store {
        rt: tokio::runtime::Runtime,
        engine: Box<Engine>,
        tenant: String,
    },
}

impl Source {
    fn open(f: &SearchFlags) -> anyhow::Result<Source> {
        if let Some(url) = &f.url {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            return Ok(Source::Url {
                agent,
                url: url.trim_end_matches('/').to_owned(),
                tenant: f.tenant.clone(),
            });
        }
        let rt = runtime()?;
        let Some(store) = f.store.open(&rt)? else {
            bail!("give --url of a searcher, or --store")
        };
        let engine = Box::new(Engine::new(
            store,
            EngineConfig::default(),
            Arc::new(Metrics::new()),
        ));
        Ok(Source::Store {
            rt,
            engine,
            tenant: f.tenant.clone(),
        })
    }

    /// A GET of the searcher's `path`, its JSON body.
    pub(crate) fn get(
        agent: &ureq::Agent,
        url: &str,
        tenant: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let mut req = agent
            .get(format!("{url}{path}"))
            .header("X-Scope-OrgID", tenant);
        for (k, v) in params {
            req = req.query(*k, v);
        }
        let mut resp = req.call().with_context(|| format!("asking {url}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .context("reading the response")?;
        if !status.is_success() {
            bail!("{status}: {}", text.trim());
        }
        serde_json::from_str(&text).context("the searcher's response is not JSON")
    }

    /// Loki's `query_range` response body for `query`.
    pub fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        limit: usize,
        direction: Direction,
        step: Option<i64>,
    ) -> anyhow::Result<Value> {
        match self {
            Source::Url { agent, url, tenant } => {
                let mut params = vec![
                    ("query", query.to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("limit", limit.to_string()),
                    (
                        "direction",
                        match direction {
                            Direction::Forward => "forward",
                            Direction::Backward => "backward",
                        }
                        .to_owned(),
                    ),
                ];
                if let Some(s) = step {
                    params.push(("step", format!("{}", s as f64 / 1e9)));
                }
                Self::get(agent, url, tenant, "/loki/api/v1/query_range", &params)
            }
            Source::Store { rt, engine, tenant } => {
                let req = RangeRequest {
                    query,
                    start,
                    end,
                    limit,
                    direction,
                    step,
                    tenant_hint: true,
                };
                let (data, stats) = rt
                    .block_on(run_range(engine, tenant, req))
                    .map_err(|e| anyhow::anyhow!(e.message))?;
                let mut body = serde_json::json!({"status": "success", "data": data});
                if !stats.warnings.is_empty() {
                    body["warnings"] = serde_json::json!(stats.warnings);
                }
                Ok(body)
            }
        }
    }

    /// The label sets of the streams `query`'s selector matches.
    pub fn series(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
        let data = match self {
            Source::Url { agent, url, tenant } => {
                let params = [
                    ("match[]", query.to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                ];
                Self::get(agent, url, tenant, "/loki/api/v1/series", &params)?["data"].take()
            }
            Source::Store { rt, engine, tenant } => {
                let Ok(Query::Log(q)) = parse(query) else {
                    bail!("--context takes a log query");
                };
                let (series, _) = rt
                    .block_on(engine.series(tenant, TimeRange { start, end }, &[q.matchers]))
                    .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                serde_json::json!(series
                    .iter()
                    .map(|l| l.iter().cloned().collect::<BTreeMap<_, _>>())
                    .collect::<Vec<_>>())
            }
        };
        serde_json::from_value(data).context("the series are not label sets")
    }
}

/// Each line of a list of Loki streams (`{"stream", "values"}`) as
/// `skidder search` prints it: time, labels, line; with its time.
pub fn stream_lines(streams: &Value) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for s in streams.as_array().into_iter().flatten() {
        let labels = s["stream"].to_string();
        for v in s["values"].as_array().into_iter().flatten() {
            let ts: i64 = v[0].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let time = skidder_searcher::time::rfc3339(ts, chrono::SecondsFormat::Millis);
            lines.push((
                ts,
                format!("{time} {labels} {}", v[1].as_str().unwrap_or_default()),
            ));
        }
    }
    lines
}

pub fn print_raw(body: &Value) {
    let data = &body["data"];
    if data["resultType"] == "streams" {
        let mut lines = stream_lines(&data["result"]);
        lines.sort_by_key(|l| std::cmp::Reverse(l.0));
        for (_, l) in lines {
            println!("{l}");
        }
    } else {
        for s in data["result"].as_array().into_iter().flatten() {
            let points = s["values"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![s["value"].clone()]);
            for p in points {
                println!(
                    "{} {} {}",
                    s["metric"],
                    p[0],
                    p[1].as_str().unwrap_or_default()
                );
            }
        }
    }
    for w in body["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
}

pub fn run_search(f: SearchFlags) -> anyhow::Result<ExitCode> {
    let end = match &f.to {
        Some(t) => parse_time(t).with_context(|| format!("invalid --to {t:?}"))?,
        None => now_ns(),
    };
    let start = match &f.from {
        Some(t) => parse_time(t).with_context(|| format!("invalid --from {t:?}"))?,
        None => {
            let since = match (&f.since, &f.offset) {
                (Some(s), _) => s.as_str(),
                (None, Some(_)) => "24h",
                (None, None) => "1h",
            };
            end - parse_step(since).with_context(|| format!("invalid --since {since:?}"))?
        }
    };
    let step = f
        .step
        .as_deref()
        .map(|s| parse_step(s).with_context(|| format!("invalid --step {s:?}")))
        .transpose()?;
    if f.tail {
        return crate::search_tail::run(&f, start);
    }
    let source = Source::open(&f)?;
    if let Some(m) = &f.offset {
        return crate::search_offset::run(&source, m, (start, end), f.output);
    }
    if let Some(dest) = &f.export {
        return crate::export::run(&f, &source, dest, (start, end));
    }
    let direction = if f.forward {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let body = source.range(&f.query, start, end, f.limit, direction, step)?;
    if f.context > 0 {
        crate::search_context::print(&source, &f.query, (start, end), &body, f.context, f.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    match f.output {
        Output::Json => println!("{body}"),
        Output::Raw => print_raw(&body),
    }
    Ok(ExitCode::SUCCESS)
}
