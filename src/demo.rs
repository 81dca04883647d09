//! `skidder demo`: the one-command start. It runs an embedded Kafka
//! (librdkafka's mock cluster), produces realistic Kubernetes-style JSON
//! logs into it, and runs the real indexer pipeline into a local directory
//! store. Needs nothing installed but the binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use skidder_common::format::layout::{now_ns, NS_PER_HOUR};
use skidder_common::service::Shutdown;
use skidder_common::storage::{list_all, LocalStore};
use skidder_indexer::config::{AppSource, IndexerConfig, TenantSource};
use skidder_indexer::metrics::Metrics;
use skidder_searcher::config::SearcherConfig;

use crate::flags::runtime;

#[derive(Args)]
pub struct DemoFlags {
    /// Where the local store lives.
    #[arg(long, default_value = "./skidder-data")]
    pub data_dir: String,
    /// How many log records to generate.
    #[arg(long, default_value_t = 50_000)]
    pub records: u64,
    /// Where the searcher serves Loki's HTTP API.
    #[arg(long, default_value = "127.0.0.1:7280")]
    pub listen: String,
}

const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "cart",
    "frontend",
    "auth",
    "inventory",
];
const LEVELS: &[(&str, u32)] = &[("info", 80), ("warn", 12), ("error", 6), ("debug", 2)];
const PATHS: &[&str] = &[
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/pay",
    "/login",
    "/healthz",
    "/api/v1/items",
];
/// Message shapes drawn from the Loghub and Zeek samples in `shared/data`.
const MESSAGES: &[&str] = &[
    "Received request for {path} from {ip}",
    "Completed {path} in {ms} ms",
    "Connection reset by peer while reading response from {ip}",
    "Failed password for invalid user admin from {ip} port 22 ssh2",
    "Session opened for user {user}",
    "Cache miss for key cart:{user}",
    "Upstream timed out (110: Connection timed out) while connecting to {ip}",
    "Payment authorised for order {order}",
    "Retrying publish to topic orders, attempt 2",
    "GC pause 12.5 ms, heap 512 MB",
];

/// A seeded generator: the same seed gives the same run.
struct Gen(rand::rngs::StdRng);
impl Gen {
    fn new(seed: u64) -> Self {
        Gen(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            seed,
        ))
    }
    fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// One Kubernetes-style JSON log record; returns it, its trace id and its service.
fn generate(g: &mut Gen, ts_ns: i64) -> (String, String, &'static str) {
    let service = g.pick(SERVICES);
    let roll = (g.next() % 100) as u32;
    let mut acc = 0;
    let level = LEVELS
        .iter()
        .find(|(_, w)| {
            acc += w;
            roll < acc
        })
        .map_or("info", |(l, _)| l);
    let path = g.pick(PATHS);
    let ip = format!(
        "10.{}.{}.{}",
        g.next() % 256,
        g.next() % 256,
        g.next() % 256
    );
    let ms = g.next() % 900 + 1;
    let msg = g
        .pick(MESSAGES)
        .replace("{path}", path)
        .replace("{ip}", &ip)
        .replace("{ms}", &ms.to_string())
        .replace("{user}", &format!("u{}", g.next() % 5000))
        .replace("{order}", &format!("o-{}", g.next() % 1_000_000));
    let trace = format!("{:016x}{:016x}", g.next(), g.next());
    let status = if level == "error" {
        500 + g.next() % 4
    } else {
        [200, 200, 200, 201, 204, 302, 404][(g.next() % 7) as usize]
    };
    let pod = format!("{service}-{:x}-{}", g.next() % 4096, g.next() % 3);
    let rec = serde_json::json!({
        "ts": chrono_rfc3339(ts_ns),
        "level": level,
        "service": service,
        "msg": msg,
        "trace_id": trace,
        "http": {"method": if path == "/login" { "POST" } else { "GET" }, "path": path, "status": status, "duration_ms": ms},
        "kubernetes": {"namespace": "shop", "pod": pod, "node": format!("node-{}", g.next() % 8)},
    });
    (rec.to_string(), trace, service)
}

fn chrono_rfc3339(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn run(flags: DemoFlags) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let shutdown = Shutdown::on_signals().context("installing signal handlers")?;
    let cluster = MockCluster::new(1).context("starting the embedded Kafka")?;
    cluster
        .create_topic("logs", 4, 1)
        .context("creating topic logs")?;
    let brokers = cluster.bootstrap_servers();
    eprintln!(
        "embedded Kafka at {brokers}; producing {} records",
        flags.records
    );

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the producer")?;
    let mut g = Gen::new(42);
    let now = now_ns();
    let span = NS_PER_HOUR; // the last hour
    let (mut needle, mut needle_app) = (String::new(), "");
    for i in 0..flags.records {
        let ts = now - span + (span / flags.records.max(1) as i64) * i as i64;
        let (rec, trace, service) = generate(&mut g, ts);
        if i == flags.records / 2 {
            (needle, needle_app) = (trace, service);
        }
        let key = (i % 16).to_string();
        let mut r = BaseRecord::to("logs").payload(&rec).key(&key);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;

    let mut cfg = IndexerConfig::default();
    cfg.kafka.brokers = brokers;
    cfg.kafka.topics = vec!["logs".into()];
    cfg.kafka.group_id = "skidder-demo".into();
    let data_dir = std::path::absolute(&flags.data_dir).context("resolving --data-dir")?;
    cfg.store.url = format!("file://{}", data_dir.display());
    cfg.parse.app = AppSource::Template("{service}".into());
    cfg.parse.tenant = TenantSource::Fixed("default".into());
    cfg.parse.label_fields = vec![
        "level".into(),
        "kubernetes.namespace".into(),
        "kubernetes.pod".into(),
    ];
    cfg.blocks.flush_interval_secs = 5;
    cfg.upload.checkpoint_interval_secs = 1;
    cfg.validate()?;
    let store = Arc::new(LocalStore::new(&data_dir)?);
    let metrics = Arc::new(Metrics::new());

    // Stop once every produced record is stored (or on Ctrl-C).
    let watcher = {
        let (m, s, want) = (metrics.clone(), shutdown.clone(), flags.records);
        std::thread::spawn(move || {
            let started = Instant::now();
            while !s.is_triggered() {
                let stored = m.records_out.with_label_values(&["uploader"]).get();
                if stored >= want {
                    eprintln!(
                        "all {want} records stored in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    s.trigger();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Bind first, so a busy port fails before the indexing.
    let mut search_cfg = SearcherConfig {
        listen: flags.listen.clone(),
        ..Default::default()
    };
    search_cfg.store.url = cfg.store.url.clone();
    let listener = crate::search::bind(&rt, &search_cfg)?;
    skidder_indexer::pipeline::run(
        &cfg,
        store.clone(),
        rt.handle(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    let _ = watcher.join();
    let indexed = metrics.records_out.with_label_values(&["uploader"]).get();
    if indexed < flags.records {
        // Ctrl-C during indexing.
        return Ok(ExitCode::SUCCESS);
    }

    let objects = rt.block_on(list_all(&*store, "tenant="))?;
    let blocks = objects.iter().filter(|o| o.key.ends_with(".seq")).count();
    let stored: u64 = objects.iter().map(|o| o.size).sum();
    let url = format!("http://{}", flags.listen);
    println!(
        "\nIndexed {indexed} records into {blocks} blocks ({stored} bytes) under {}",
        data_dir.display()
    );
    println!("A trace id that exists: {needle} (app {needle_app})");
    println!("Searcher (Loki API) at {url}: point Grafana's Loki data source there. Ctrl-C stops.");
    println!("Try:");
    println!("  curl -sG {url}/loki/api/v1/query_range --data-urlencode 'query={{__app__=\"{needle_app}\"}} | trace_id=\"{needle}\"' --data-urlencode since=2h");
    println!(
        "  skidder search --url {url} --since 2h '{{__app__=\"{needle_app}\"}} |= \"{needle}\"'"
    );
    println!("  skidder search --url {url} --since 2h --limit 5 '{{__app__=\"checkout\"}} | json | http_status >= 500'");
    println!("  curl -sG {url}/loki/api/v1/query_range --data-urlencode 'query=sum by (level) (count_over_time({{__app__=~\".+\"}}[10m]))' --data-urlencode since=2h --data-urlencode step=600");
    // Before "Ready.": a signal sent on seeing it must find the handler.
    let stop = Shutdown::on_signals().context("installing signal handlers")?;
    println!("Ready.");
    crate::search::serve(&rt, listener, &search_cfg, stop)?;
    Ok(ExitCode::SUCCESS)
}
