//! Helpers shared by the integration tests: a producer that checks every
//! delivery, the `skidder` binary, and scraping its metrics.

use std::collections::HashMap;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

pub const BIN: &str = env!("CARGO_BIN_EXE_skidder");

#[derive(Default)]
pub struct Delivery {
    failed: AtomicU64,
    delivered: AtomicU64,
    /// One past the highest delivered offset, per partition.
    ends: Mutex<HashMap<i32, i64>>,
}
impl ClientContext for Delivery {}
impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let mut ends = self.ends.lock().unwrap();
                let e = ends.entry(m.partition()).or_default();
                *e = (*e).max(m.offset() + 1);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A producer shaped like a log shipper's: messages batched for up to
/// 20 ms (`linger.ms`), many to a batch, and each batch lz4-compressed.
pub struct TestProducer {
    /// For what the helpers do not cover, such as transactions.
    pub inner: ThreadedProducer<Delivery>,
    pub sent: u64,
}

impl TestProducer {
    pub fn new(bootstrap: &str) -> Self {
        Self::with_config(bootstrap, &[])
    }

    /// A producer whose messages may be up to `max` bytes.
    pub fn with_max_message_bytes(bootstrap: &str, max: usize) -> Self {
        Self::with_config(bootstrap, &[("message.max.bytes", &max.to_string())])
    }

    /// The shipper-like defaults, then `config` (librdkafka properties).
    pub fn with_config(bootstrap: &str, config: &[(&str, &str)]) -> Self {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .set("message.max.bytes", "2000000");
        for (k, v) in config {
            c.set(*k, *v);
        }
        let inner = c.create_with_context(Delivery::default()).unwrap();
        TestProducer { inner, sent: 0 }
    }

    pub fn send(&mut self, topic: &str, key: &str, payload: &[u8], timestamp_ms: i64) {
        self.enqueue(
            BaseRecord::to(topic)
                .payload(payload)
                .key(key)
                .timestamp(timestamp_ms),
        );
    }

    /// Sends `payload` to one partition, with no key and the current time.
    pub fn send_to(&mut self, topic: &str, partition: i32, payload: &[u8]) {
        self.enqueue(
            BaseRecord::<(), [u8]>::to(topic)
                .payload(payload)
                .partition(partition),
        );
    }

    /// Queues `rec`, waiting while the producer's queue is full.
    fn enqueue<K: rdkafka::message::ToBytes + ?Sized>(&mut self, mut rec: BaseRecord<'_, K, [u8]>) {
        loop {
            match self.inner.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        self.sent += 1;
    }

    /// Waits for every delivery; fails the test if any failed. Returns the
    /// end offset of each partition, from the delivery reports.
    pub fn finish(self) -> HashMap<i32, i64> {
        self.inner.flush(Duration::from_secs(300)).unwrap();
        let ctx = self.inner.context();
        assert_eq!(ctx.failed.load(Ordering::Relaxed), 0, "deliveries failed");
        let ends = ctx.ends.lock().unwrap().clone();
        // Counted, not summed from the end offsets: the topic may already
        // hold other producers' messages.
        let delivered = ctx.delivered.load(Ordering::Relaxed) as i64;
        assert_eq!(delivered as u64, self.sent, "every message delivered once");
        ends
    }
}

/// Runs `skidder inspect --all` over a store; `env` adds environment.
pub fn inspect(store_args: &[&str], env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["inspect", "--all"]).args(store_args).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Every record `inspect --all --dump` prints, as JSON values.
pub fn dump(store_args: &[&str], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let out = inspect(store_args, env, &["--dump"]);
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The value of the first sample whose line starts with `name`.
/// Waits until the indexer serving metrics on `port` has stored at least
/// `n` records (its uploader's count), failing the test after `within`.
pub fn wait_stored(port: u16, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stored = http_get(port, "/metrics").map_or(0, |m| {
            metric(
                &m,
                r#"skidder_indexer_stage_records_out_total{stage="uploader"}"#,
            )
        });
        if stored >= n {
            return;
        }
        assert!(Instant::now() < deadline, "stored {stored} of {n} records");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until the partitions' checkpoints (`claims::stored_offset`)
/// cover `messages` messages in all, on topics that held nothing before:
/// the compactor takes only blocks a checkpoint has passed.
pub fn wait_checkpointed(
    rt: &tokio::runtime::Runtime,
    store: &dyn skidder_common::storage::ObjectStore,
    topics: &[&str],
    partitions: i32,
    messages: i64,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut covered = 0;
        for topic in topics {
            for p in 0..partitions {
                let stored = skidder_common::claims::stored_offset(store, topic, p);
                covered += rt.block_on(stored).unwrap().unwrap_or(0);
            }
        }
        if covered >= messages {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoints cover {covered} of {messages} messages"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Stops an indexer with SIGTERM: it must store what it holds and exit 0.
/// A process only just spawned may not have reached `main`, where the
/// handler is installed (the default action would kill it), so this waits
/// until the kernel shows SIGTERM caught.
pub fn stop_clean(child: &mut Guard) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !catches_sigterm(child.id()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM must exit 0: {status}");
}

/// Whether process `pid` has a handler for SIGTERM (signal 15: bit 14 of
/// the `SigCgt` mask in `/proc/<pid>/status`).
fn catches_sigterm(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 14) != 0)
}

pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A child process that is killed when the test ends, even by a panic, so
/// a failing test never leaves a server holding its output open.
pub struct Guard(pub Child);

/// Sends `sig` (as `kill` spells it: `-STOP`, `-CONT`) to a process.
pub fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A running `skidder demo`: what it printed up to "Ready.", and the
/// process, stopped when this drops.
pub struct Demo {
    pub process: Guard,
    pub printed: Vec<String>,
    /// Holds the demo's stderr, shown if it never gets ready.
    _stderr: tempfile::NamedTempFile,
}

impl Demo {
    /// Starts `skidder demo --records N` listening on `port` with its store
    /// in `data`, and waits until it prints "Ready.". A demo that is not
    /// ready within two minutes fails the test with its log, rather than
    /// hanging CI.
    pub fn start(records: usize, port: u16, data: &std::path::Path) -> Demo {
        use std::io::{BufRead, BufReader};
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut process = Guard(
            Command::new(BIN)
                .args(["demo", "--records", &records.to_string(), "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data)
                .env("SKIDDER_LOG", "info")
                .stdout(std::process::Stdio::piped())
                .stderr(stderr.reopen().unwrap())
                .spawn()
                .unwrap(),
        );
        let stdout = process.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let ready = line == "Ready.";
                let _ = tx.send(line);
                if ready {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line == "Ready." => break,
                Ok(line) => printed.push(line),
                Err(e) => {
                    let _ = process.kill();
                    let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    panic!(
                        "skidder demo not ready ({e}); stdout {printed:?}; stderr tail:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
        Demo {
            process,
            printed,
            _stderr: stderr,
        }
    }
}

/// Produces `n` real log lines (Apache's, from the shared data) to
/// `topic` as JSON records: `id` 1 to `n`, a timestamp in the last
/// minute (`ts`, milliseconds), a `service` of three, a `level`, and
/// Kubernetes fields.
pub fn produce_ids(bootstrap: &str, topic: &str, n: u64) {
    let text = std::fs::read_to_string(
        skidder_common::testing::shared_data_dir().join("loghub/Apache_2k.log"),
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut p = TestProducer::new(bootstrap);
    for id in 1..=n {
        let line = lines[id as usize % lines.len()];
        let service = ["web", "api", "audit"][id as usize % 3];
        let record = serde_json::json!({
            "ts": now_ms - 60_000 + id as i64,
            "service": service,
            "level": if line.contains("error") { "error" } else { "info" },
            "kubernetes": {"namespace": "shop", "pod": format!("{service}-{}", id % 4)},
            "message": line,
            "id": id,
        });
        p.send(topic, "", record.to_string().as_bytes(), now_ms);
    }
    p.finish();
}

/// How many times each record `id` comes back from the Loki API at
/// `base` (with `headers`), over the last two hours: `None` if the
/// request fails.
pub fn ids_found(base: &str, headers: &[(&str, &str)]) -> Option<HashMap<u64, u32>> {
    let end = chrono::Utc::now().timestamp_nanos_opt().unwrap() + 60_000_000_000;
    let start = end - 2 * 3_600_000_000_000;
    let mut req = ureq::get(format!("{base}/loki/api/v1/query_range"))
        .query("query", r#"{__app__=~".+"}"#)
        .query("start", start.to_string())
        .query("end", end.to_string())
        .query("limit", "5000");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().ok()?;
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    let mut seen = HashMap::new();
    for stream in body["data"]["result"].as_array()? {
        for v in stream["values"].as_array()? {
            let line: serde_json::Value = serde_json::from_str(v[1].as_str()?).ok()?;
            *seen.entry(line["id"].as_u64()?).or_default() += 1;
        }
    }
    Some(seen)
}

/// The AWS CLI the test tooling installs (`bash .ci/run`).
pub fn aws() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = std::path::PathBuf::from(home).join(".cache/skidder/venv/bin/aws");
    assert!(
        p.is_file(),
        "{} missing: run `bash .ci/run` to install the AWS CLI",
        p.display()
    );
    p
}

/// Asks the Loki API at `base` until ids 1 to `n` are all found, for at
/// most two minutes: how many came back exactly once, and how many ids
/// came back at all.
pub fn found_once(base: &str, headers: &[(&str, &str)], n: u64) -> (u64, u64) {
    let started = std::time::Instant::now();
    let seen = loop {
        let seen = ids_found(base, headers).unwrap_or_default();
        if seen.len() as u64 == n || started.elapsed() > Duration::from_secs(120) {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let once = (1..=n).filter(|i| seen.get(i) == Some(&1)).count() as u64;
    (once, seen.len() as u64)
}

/// The JSON body of a GET of `url`; the test fails on an error status.
pub fn get_json(url: &str) -> serde_json::Value {
    let mut resp = ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
}

/// An HTTP client that hands back error statuses as responses, for tests
/// that check them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A GET of `path` on 127.0.0.1:`port` as `tenant` (X-Scope-OrgID): its
/// status and body, whatever the status.
pub fn tenant_get(port: u16, path: &str, tenant: &str) -> (u16, String) {
    let mut resp = agent()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("X-Scope-OrgID", tenant)
        .call()
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

/// Waits until 127.0.0.1:`port` answers `path`, failing after 60 s.
pub fn wait_http(port: u16, path: &str, what: &str) {
    let started = Instant::now();
    while http_get(port, path).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Debian's Prometheus on 127.0.0.1:`port`, with its remote-write receiver
/// on and its data under `dir`; ready when this returns.
pub fn start_prometheus(dir: &std::path::Path, port: u16) -> Guard {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
    let prom = Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian's; bash .ci/run installs it)"),
    );
    wait_http(port, "/-/ready", "prometheus");
    prom
}
