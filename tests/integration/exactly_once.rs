//! What every exactly-once test shares: a producer of numbered records, the
//! indexer process, waiting until the store holds everything Kafka does,
//! and the final count of each record *through the searcher*, the way a
//! user would find it. A record found 0 times is lost, found twice is
//! duplicated; both must be 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::claims;
use skidder_common::storage::LocalStore;
use skidder_common::testing::{free_port, SeededRng};

use crate::support::{Guard, TestProducer, BIN};

/// The apps records are spread over; each gets its own blocks.
pub const APPS: [&str; 3] = ["api", "web", "db"];
/// Event times fall in the two hours from here (seconds).
pub const BASE_SECS: i64 = 1_700_000_000;

/// An indexer config that cuts small blocks and commits often, so kills
/// land between every kind of step.
pub const INDEXER_CONFIG: &str = r#"
[kafka]
commit_interval_ms = 200
batch_messages = 500
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[blocks]
target_bytes = 32768
flush_interval_secs = 1
[upload]
checkpoint_interval_secs = 1
"#;

/// How a producer paces itself: a pause of `pause_ms` every `every`
/// messages (0 = no pause).
#[derive(Clone, Copy)]
pub struct Pace {
    pub every: u64,
    pub pause_ms: u64,
}

/// Produces records `first_id..first_id + count` to `topic` from a thread:
/// one to three records a message (newline-separated JSON), keyed over 64
/// keys, spread over [`APPS`] and two hours. Returns the end offset of
/// each partition and the last id produced.
pub fn produce(
    bootstrap: String,
    topic: &'static str,
    seed: u64,
    first_id: u64,
    count: u64,
    pace: Pace,
) -> std::thread::JoinHandle<(HashMap<i32, i64>, u64)> {
    std::thread::spawn(move || {
        let mut rng = SeededRng::new(seed ^ 0x5EED);
        let mut producer = TestProducer::new(&bootstrap);
        let (mut id, last, mut msg) = (first_id - 1, first_id - 1 + count, 0u64);
        while id < last {
            let n = (1 + rng.below(3) as u64).min(last - id);
            let lines: Vec<String> = (0..n)
                .map(|_| {
                    id += 1;
                    let app = rng.pick(&APPS);
                    let ts = BASE_SECS + rng.below(7200) as i64;
                    format!(r#"{{"id":{id},"app":"{app}","ts":{ts},"msg":"event number {id} in {app}"}}"#)
                })
                .collect();
            msg += 1;
            producer.send(
                topic,
                &(msg % 64).to_string(),
                lines.join("\n").as_bytes(),
                BASE_SECS * 1000,
            );
            if pace.every > 0 && msg % pace.every == 0 {
                std::thread::sleep(Duration::from_millis(pace.pause_ms));
            }
        }
        (producer.finish(), id)
    })
}

/// One indexer process of consumer group `group`, with its log in `log`
/// and `/metrics` on `metrics_port`. `env` adds environment (failpoints).
pub struct IndexerRun<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub group: &'a str,
    pub config: &'a Path,
    pub store: &'a str,
}

impl IndexerRun<'_> {
    pub fn start(&self, metrics_port: u16, log: &Path, env: &[(&str, String)]) -> Guard {
        let mut cmd = Command::new(BIN);
        cmd.args(["indexer", "--config", self.config.to_str().unwrap()])
            .args(["--kafka-brokers", self.bootstrap, "--topics", self.topic])
            .args(["--group-id", self.group, "--store", self.store])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("SKIDDER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Guard(cmd.spawn().unwrap())
    }
}

/// What one test's indexers share: a local store, a folder for their logs
/// and their config file, all removed when the test ends.
pub struct LocalRun {
    pub dir: tempfile::TempDir,
    pub logs: tempfile::TempDir,
    /// `file://` URL of `dir`.
    pub store: String,
    pub config: tempfile::NamedTempFile,
}

impl LocalRun {
    pub fn new(config: &str) -> LocalRun {
        let dir = tempfile::tempdir().unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), config).unwrap();
        LocalRun {
            store: format!("file://{}", dir.path().display()),
            dir,
            logs: logs_dir(),
            config: file,
        }
    }

    /// Indexers of `group` reading `topic` into this store.
    pub fn run<'a>(&'a self, bootstrap: &'a str, topic: &'a str, group: &'a str) -> IndexerRun<'a> {
        IndexerRun {
            bootstrap,
            topic,
            group,
            config: self.config.path(),
            store: &self.store,
        }
    }
}

/// A folder for indexer logs, removed when the test ends unless
/// `SKIDDER_KEEP_LOGS=<dir>` asks to keep them (in a new folder there).
fn logs_dir() -> tempfile::TempDir {
    let Some(keep) = std::env::var_os("SKIDDER_KEEP_LOGS") else {
        return tempfile::tempdir().unwrap();
    };
    std::fs::create_dir_all(&keep).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("logs-")
        .disable_cleanup(true)
        .tempdir_in(keep)
        .unwrap();
    eprintln!("indexer logs kept in {}", dir.path().display());
    dir
}

/// Prints the end of every log in `logs`, oldest first, so the run that
/// failed comes last and survives a truncated CI log.
pub fn post_mortem(logs: &Path) {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified());
            (modified.unwrap_or(std::time::UNIX_EPOCH), e.path())
        })
        .collect();
    files.sort();
    let newest = files.len().saturating_sub(1);
    for (i, (_, f)) in files.iter().enumerate() {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let shown = if i == newest { 150 } else { 40 };
        eprintln!(
            "==== {} (last {shown} of {} lines)",
            f.display(),
            lines.len()
        );
        for l in &lines[lines.len().saturating_sub(shown)..] {
            eprintln!("{l}");
        }
    }
}

/// The stored offset of each partition of `topic` in a local store: the
/// newest epoch's checkpoint, or its claim's start.
pub fn checkpoints(dir: &Path, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let Ok(store) = LocalStore::new(dir) else {
        return HashMap::new();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    (0..partitions)
        .filter_map(|p| {
            let next = rt
                .block_on(claims::stored_offset(&store, topic, p))
                .ok()??;
            Some((p, next))
        })
        .collect()
}

/// Waits until every partition's stored checkpoint reaches its end offset,
/// failing (with the logs) if an indexer in `running` dies or `timeout`
/// passes.
pub fn wait_stored(
    dir: &Path,
    topic: &str,
    ends: &HashMap<i32, i64>,
    running: &mut [&mut Guard],
    logs: &Path,
    timeout: Duration,
) {
    let partitions = ends.keys().max().map_or(0, |p| p + 1);
    let stored = || checkpoints(dir, topic, partitions);
    wait_checkpoints(&stored, ends, running, logs, timeout);
}

/// [`wait_stored`] for any store: `stored` reads the checkpoints.
pub fn wait_checkpoints(
    stored: &dyn Fn() -> HashMap<i32, i64>,
    ends: &HashMap<i32, i64>,
    running: &mut [&mut Guard],
    logs: &Path,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while &stored() != ends {
        for child in running.iter_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                post_mortem(logs);
                panic!("an indexer died by itself: {status}");
            }
        }
        if Instant::now() >= deadline {
            post_mortem(logs);
            panic!("never caught up: {:?} vs {ends:?}", stored());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `skidder searcher` with `args` (and `env`) on a free port and
/// waits until it is ready: (process, base URL).
pub fn spawn_searcher(args: &[&str], env: &[(&str, &str)]) -> (Guard, String) {
    let port = free_port();
    let child = Guard(
        Command::new(BIN)
            .arg("searcher")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("SKIDDER_LOG", "warn")
            .envs(env.iter().copied())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{url}/ready")).call().is_err() {
        assert!(Instant::now() < deadline, "searcher never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, url)
}

/// A `skidder searcher` over `store`, with limits raised so one query may
/// return every record of an app.
pub struct Searcher {
    _child: Guard,
    pub url: String,
    _config: tempfile::NamedTempFile,
}

impl Searcher {
    pub fn start(store: &str) -> Searcher {
        Searcher::start_with(store, &[])
    }

    /// As [`Searcher::start`], with `env` added: for an S3 store,
    /// `SKIDDER_S3_ENDPOINT` and the AWS credentials.
    pub fn start_with(store: &str, env: &[(&str, &str)]) -> Searcher {
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            "max_limit = 5000000\nquery_timeout_secs = 600\n",
        )
        .unwrap();
        let config_path = config.path().to_str().unwrap();
        let (child, url) = spawn_searcher(&["--config", config_path, "--store", store], env);
        Searcher {
            _child: child,
            url,
            _config: config,
        }
    }

    /// How many times the searcher returns each record id, over every app
    /// and the whole time range. Fails on any warning: a partial answer
    /// cannot prove anything.
    pub fn count_ids(&self) -> HashMap<u64, u32> {
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let (start, end) = (
            BASE_SECS * 1_000_000_000,
            (BASE_SECS + 7201) * 1_000_000_000,
        );
        for app in APPS {
            let mut resp = ureq::get(format!("{}/loki/api/v1/query_range", self.url))
                .query("query", format!(r#"{{__app__="{app}"}}"#))
                .query("start", start.to_string())
                .query("end", end.to_string())
                .query("limit", "5000000")
                .query("direction", "forward")
                .call()
                .unwrap();
            let text = resp
                .body_mut()
                .with_config()
                .limit(4 << 30)
                .read_to_string()
                .unwrap();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(body["warnings"].is_null(), "partial answer: {body}");
            for stream in body["data"]["result"].as_array().unwrap() {
                for v in stream["values"].as_array().unwrap() {
                    let line: serde_json::Value =
                        serde_json::from_str(v[1].as_str().unwrap()).unwrap();
                    *seen.entry(line["id"].as_u64().unwrap()).or_default() += 1;
                }
            }
        }
        seen
    }
}

/// What the final check found.
#[derive(Debug, PartialEq, Eq)]
pub struct Tally {
    pub found: u64,
    pub lost: u64,
    pub duplicated: u64,
}

/// Counts records `1..=produced` in `seen`; prints the first lost ids.
pub fn tally(seen: &HashMap<u64, u32>, produced: u64) -> Tally {
    let lost: Vec<u64> = (1..=produced).filter(|i| !seen.contains_key(i)).collect();
    if !lost.is_empty() {
        eprintln!("first lost ids: {:?}", &lost[..lost.len().min(10)]);
    }
    let extra = seen.keys().filter(|&&i| i == 0 || i > produced).count();
    assert_eq!(extra, 0, "ids never produced came back");
    Tally {
        found: seen.len() as u64,
        lost: lost.len() as u64,
        duplicated: seen.values().filter(|&&n| n > 1).count() as u64,
    }
}
