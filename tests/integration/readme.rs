//! The README's "Operations" section, run as written. Its `sh` blocks are
//! read from the README itself and each command runs through `sh`, in a
//! working folder, with `skidder` the binary under test and `aws` the real
//! AWS CLI, against moto (`SKIDDER_S3_ENDPOINT`, `AWS_ENDPOINT_URL`) that
//! holds the README's buckets, `logs` and `archive`, and real log lines of
//! tenant `acme` indexed from Apache Kafka: today, yesterday, and 40 days
//! ago (past the example policy's 30 days). The example policy is the
//! README's own `toml` block.
//!
//! What is changed, and why:
//! - `0.0.0.0:<port>` becomes a free port on 127.0.0.1;
//! - retention waits 2 s between publishing cut-offs and deleting, not
//!   3 minutes (`SKIDDER_RETENTION_GRACE`);
//! - a command with `--every` runs until its first pass succeeds, then gets
//!   SIGTERM and must exit 0;
//! - `helm install` renders with `helm template` (there is no cluster);
//! - `docker …` and `cargo build --release` are not run here:
//!   `compose.rs` runs the compose services' commands, and a release build
//!   takes minutes on two cores (CI compiles the benchmarks, which build
//!   the same code with optimisations).
//!
//! Beyond each command succeeding, what the README promises must hold:
//! the dry run names the tenant and deletes nothing; retention removes
//! the 40-day-old hour and keeps the rest; the archive holds the tenant's
//! objects and its epoch claims; after the restore a search through the
//! laptop copy finds the lines it asks for; the export holds exactly the
//! lines that search finds, and its manifest says so.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skidder_common::storage::{list_all, S3Store};
use skidder_common::testing::{free_port, shared_data_dir, KafkaBroker, MotoServer};

use rdkafka::producer::Producer;

use crate::support::{aws, http_get, metric, stop_clean, wait_stored, Guard, TestProducer, BIN};

const DAY_MS: i64 = 86_400_000;

/// The commands of the `sh` blocks between `## Operations` and the next
/// `## ` heading: continuation lines joined, comments dropped.
fn operations_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Operations")
        .expect("an Operations section");
    let rest = &readme[start + 1..];
    let section = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3)];
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let line = strip_comment(line);
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let cmd = pending.split_whitespace().collect::<Vec<_>>().join(" ");
        if !cmd.is_empty() && !cmd.starts_with('#') {
            out.push(cmd);
        }
        pending.clear();
    }
    out
}

/// `line` without a trailing ` # comment` (one outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'#') if i == 0 || bytes[i - 1] == b' ' => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The first `toml` block after `heading`.
fn toml_block(readme: &str, heading: &str) -> String {
    let at = readme.find(heading).unwrap();
    let from = at + readme[at..].find("```toml\n").unwrap() + 8;
    readme[from..from + readme[from..].find("```").unwrap()].to_owned()
}

/// Hadoop's log lines, some of which say "timeout".
fn lines() -> Vec<String> {
    let text = std::fs::read_to_string(shared_data_dir().join("loghub/Hadoop_2k.log")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

struct Env {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    moto: String,
}

impl Env {
    fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("sh");
        let path = std::env::var("PATH").unwrap_or_default();
        c.arg("-c")
            .arg(cmd)
            .current_dir(&self.dir)
            .env("PATH", format!("{}:{path}", self.bin.display()))
            .env("SKIDDER_S3_ENDPOINT", &self.moto)
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("SKIDDER_LOG", "warn")
            .env("SKIDDER_RETENTION_GRACE", "2s")
            .stdin(Stdio::null());
        c
    }

    /// Runs `cmd` to its end: its standard output; the test fails if it fails.
    fn run(&self, cmd: &str) -> String {
        let out = self.command(cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a `--every` command until `metrics` shows a first successful
    /// pass of `what`, then stops it as an orchestrator would.
    fn run_timer(&self, cmd: &str, port: u16, what: &str) {
        let log = self.dir.join("timer.log");
        let mut child = Guard(
            self.command(&format!("exec {cmd}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let started = Instant::now();
        loop {
            let page = http_get(port, "/metrics").unwrap_or_default();
            if metric(&page, &format!("{what}{{result=\"ok\"}}")) >= 1 {
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{cmd} exited ({status}):\n{}", read(&log));
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{cmd}: no {what} in 120 s:\n{}",
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        stop_clean(&mut child);
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn the_readme_operations_commands_run_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let commands = operations_commands(&readme);
    assert!(commands.len() >= 10, "{commands:#?}");

    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("skidder")).unwrap();
    std::os::unix::fs::symlink(aws(), bin.join("aws")).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let moto = MotoServer::start();
    let env = Env {
        dir: work.clone(),
        bin,
        moto: moto.endpoint(),
    };
    env.run("aws s3 mb s3://logs && aws s3 mb s3://archive");

    // Tenant acme: apps web and api, today, yesterday and 40 days ago.
    let kafka = KafkaBroker::start();
    kafka.create_topic("acme", 2);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut producer = TestProducer::new(&kafka.bootstrap());
    // Offset 0 of partition 0, which the README looks up.
    let probe = "the first message of partition 0";
    let rec = serde_json::json!({"ts": now_ms, "app": "api", "message": probe});
    producer.send_to("acme", 0, rec.to_string().as_bytes());
    producer.inner.flush(Duration::from_secs(30)).unwrap();
    let mut sent = 1u64;
    let mut timeouts = 0u64;
    for (i, line) in lines().iter().enumerate().take(1200) {
        let days_back = [0, 1, 40][i % 3];
        let app = ["web", "api"][i / 3 % 2];
        let ts = now_ms - days_back * DAY_MS - i as i64 * 1000;
        let rec = serde_json::json!({"ts": ts, "app": app, "message": line});
        producer.send("acme", app, rec.to_string().as_bytes(), now_ms);
        sent += 1;
        if app == "web" && days_back < 30 && line.contains("timeout") {
            timeouts += 1;
        }
    }
    producer.finish();
    assert!(timeouts > 0, "the data has lines the README's search finds");
    std::fs::write(
        work.join("indexer.toml"),
        "[parse]\ntimestamp_fields = [\"ts\"]\napp = { template = \"{app}\" }\ntenant = \"topic\"\n\
         [blocks]\nflush_interval_secs = 2\n[upload]\ncheckpoint_interval_secs = 1\n",
    )
    .unwrap();
    let metrics = free_port();
    let mut indexer = Guard(
        env.command(&format!(
            "exec skidder indexer --config indexer.toml --kafka-brokers {} --topics acme \
             --store s3://logs/skidder --metrics-listen 127.0.0.1:{metrics}",
            kafka.bootstrap()
        ))
        .spawn()
        .unwrap(),
    );
    wait_stored(metrics, sent, Duration::from_secs(180));
    stop_clean(&mut indexer);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys = |bucket: &str| -> BTreeSet<String> {
        let store = rt.block_on(S3Store::new(bucket, "skidder/", &moto.s3_config()));
        rt.block_on(list_all(&store, ""))
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let old_day = chrono::DateTime::from_timestamp_millis(now_ms - 40 * DAY_MS)
        .unwrap()
        .format("dt=%Y-%m-%d/")
        .to_string();
    let old = |keys: &BTreeSet<String>| keys.iter().filter(|k| k.contains(&old_day)).count();
    let indexed = keys("logs");
    assert!(old(&indexed) > 0, "the 40-day-old day was indexed");

    std::fs::write(
        work.join("retention.toml"),
        toml_block(&readme, "### Retention"),
    )
    .unwrap();
    std::fs::write(
        work.join("longer.toml"),
        "[retention]\ndefault = \"365d\"\n",
    )
    .unwrap();

    let mut ran = Vec::new();
    for cmd in &commands {
        let mut cmd = cmd.clone();
        let port = free_port();
        let bound = cmd.contains("0.0.0.0:");
        if let Some(at) = cmd.find("0.0.0.0:") {
            let end = cmd[at + 8..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(cmd.len(), |e| at + 8 + e);
            cmd.replace_range(at..end, &format!("127.0.0.1:{port}"));
        }
        if cmd.starts_with("docker ") || cmd.starts_with("cargo build") {
            continue;
        }
        if cmd.starts_with("helm install") {
            cmd = cmd.replacen("helm install", "helm template", 1);
            cmd = cmd.replace(
                "deploy/helm",
                &format!("{}/deploy/helm", env!("CARGO_MANIFEST_DIR")),
            );
        }
        let before = keys("logs");
        if cmd.contains("--every") {
            assert!(bound, "{cmd}: a timer without metrics cannot be watched");
            let what = if cmd.starts_with("skidder compact") {
                "skidder_compactor_passes_total"
            } else {
                "skidder_retention_passes_total"
            };
            env.run_timer(&cmd, port, what);
        } else {
            let out = env.run(&cmd);
            if cmd.contains("--dry-run") {
                assert!(out.contains("tenant acme"), "{cmd}:\n{out}");
                assert_eq!(keys("logs"), before, "{cmd} deleted nothing");
            }
            if cmd.contains("--export") {
                assert!(
                    out.starts_with(&format!("exported {timeouts} lines in ")),
                    "{cmd}:\n{out}"
                );
            } else if cmd.contains("_manifest.json") {
                let manifest: serde_json::Value =
                    serde_json::from_str(&read(&work.join("web-timeouts.json"))).unwrap();
                assert_eq!(manifest["lines"].as_u64(), Some(timeouts), "{manifest}");
            } else if cmd.contains("--offset") {
                let found: Vec<&str> = out.lines().collect();
                assert!(
                    found.len() == 1 && found[0].contains(probe),
                    "{cmd}:\n{out}"
                );
            } else if cmd.starts_with("skidder search") {
                let found: Vec<&str> = out.lines().collect();
                assert!(!found.is_empty(), "{cmd} found nothing");
                assert!(found.iter().all(|l| l.contains("timeout")), "{out}");
                assert_eq!(found.len() as u64, timeouts, "{cmd}");
            }
        }
        if cmd.starts_with(
            "skidder retention --store s3://logs/skidder --retention retention.toml --every",
        ) {
            let after = keys("logs");
            assert_eq!(old(&after), 0, "{cmd}: the 40-day-old day is gone");
            let younger: BTreeSet<&String> = before
                .iter()
                .filter(|k| k.starts_with("tenant=acme/dt=") && !k.contains(&old_day))
                .collect();
            assert!(
                younger.iter().all(|k| after.contains(*k)),
                "{cmd}: younger days stay"
            );
        }
        eprintln!("ran: {cmd}");
        ran.push(cmd);
    }
    // The archive holds what the live bucket held of the tenant (but its
    // retention marker), and the epoch claims.
    let live = keys("logs");
    let archive = keys("archive");
    let tenant: BTreeSet<&String> = live
        .iter()
        .filter(|k| k.starts_with("tenant=acme/") && !k.ends_with("_retention.json"))
        .collect();
    assert!(tenant.iter().all(|k| archive.contains(*k)), "archived");
    assert!(
        archive
            .iter()
            .any(|k| k.starts_with("_ledger/") && k.contains("/epoch.")),
        "the epoch claims are archived: {archive:?}"
    );
    assert!(
        ran.iter()
            .any(|c| c.starts_with("skidder search --store file://")),
        "the laptop search ran: {ran:#?}"
    );
}

#[test]
fn commands_are_read_from_sh_blocks_of_the_operations_section_only() {
    let readme = "# X\n```sh\nnot this\n```\n## Operations\ntext\n```sh\na \\\n  b # note\n# comment\nc '#x' # y\n```\n```toml\nnot = 1\n```\n## Next\n```sh\nnor this\n```\n";
    assert_eq!(operations_commands(readme), ["a b", "c '#x'"]);
}
