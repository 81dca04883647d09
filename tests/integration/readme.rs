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
//! - each port of `0.0.0.0:<port>` and `localhost:<port>`, in commands and
//!   in the README's `searcher.toml`, becomes one free port on 127.0.0.1;
//!   Prometheus (Debian's, remote-write receiver on) listens on the one
//!   that stands for 9090. No Alertmanager runs: the README's alert waits
//!   5 minutes in `pending` before it would be sent, and `ruler.rs` tests
//!   the sending;
//! - a `skidder searcher` command runs in the background until the end;
//!   `skidder search --tail` runs until the lines it must show arrive;
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
//! lines that search finds, and its manifest says so; `--context 5` prints
//! exactly each hit's five neighbours of its stream on either side; the
//! README's rules are evaluated: the alert is pending with the count of
//! matching lines sent, and the recorded series is in Prometheus with the
//! count of lines sent; the tail shows the last hour's matching lines, then
//! exactly the matching lines produced to Kafka during it, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skidder_common::storage::{list_all, S3Store};
use skidder_common::testing::{free_port, shared_data_dir, KafkaBroker, MotoServer};

use rdkafka::producer::Producer;

use crate::support::{
    aws, get_json, http_get, metric, start_prometheus, stop_clean, tenant_get, wait_http,
    wait_stored, Guard, TestProducer, BIN,
};

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

/// The first fenced block of `lang` after `heading`.
fn fenced_block(readme: &str, heading: &str, lang: &str) -> String {
    let at = readme.find(heading).unwrap();
    let fence = format!("```{lang}\n");
    let from = at + readme[at..].find(&fence).unwrap() + fence.len();
    readme[from..from + readme[from..].find("```").unwrap()].to_owned()
}

/// The README's ports, each standing for one free port on 127.0.0.1.
#[derive(Default)]
struct Ports(BTreeMap<u16, u16>);

impl Ports {
    fn get(&mut self, readme_port: u16) -> u16 {
        *self.0.entry(readme_port).or_insert_with(free_port)
    }

    /// `text` with every `0.0.0.0:<port>` and `localhost:<port>` on
    /// 127.0.0.1 and its free port; the free ports, in order.
    fn localize(&mut self, text: &str) -> (String, Vec<u16>) {
        let mut out = String::new();
        let mut used = Vec::new();
        let mut rest = text;
        loop {
            let next = ["0.0.0.0:", "localhost:"]
                .iter()
                .filter_map(|host| rest.find(host).map(|at| (at, host.len())))
                .min();
            let Some((at, len)) = next else { break };
            let digits = rest[at + len..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - at - len, |e| e);
            let Ok(readme_port) = rest[at + len..at + len + digits].parse() else {
                out.push_str(&rest[..at + len]);
                rest = &rest[at + len..];
                continue;
            };
            let port = self.get(readme_port);
            used.push(port);
            out.push_str(&rest[..at]);
            out.push_str(&format!("127.0.0.1:{port}"));
            rest = &rest[at + len + digits..];
        }
        out.push_str(rest);
        (out, used)
    }
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

/// One line the test produced for tenant acme.
struct Sent {
    ts: i64,
    app: &'static str,
    days_back: i64,
    line: String,
}

/// What the README's commands must show, worked out from the lines sent.
struct Expect {
    sent: Vec<Sent>,
}

impl Expect {
    fn today_web(&self) -> impl Iterator<Item = &Sent> {
        self.sent
            .iter()
            .filter(|s| s.app == "web" && s.days_back == 0)
    }

    /// `--context n` of `{__app__="web"} |= "timeout"` over 48 hours: per
    /// hit, newest first, its stream's n lines before (within two hours),
    /// the hit, and n after; as (mark, line), `--` between groups.
    fn context(&self, n: usize) -> Vec<(&'static str, String)> {
        const TWO_HOURS_MS: i64 = 2 * 3_600_000;
        let mut web: Vec<&Sent> = self
            .sent
            .iter()
            .filter(|s| s.app == "web" && s.days_back < 2)
            .collect();
        web.sort_by_key(|s| s.ts);
        let mut out = Vec::new();
        for (k, hit) in web.iter().enumerate().rev() {
            if !hit.line.contains("timeout") {
                continue;
            }
            if !out.is_empty() {
                out.push(("--", String::new()));
            }
            let near = |s: &&&Sent| (s.ts - hit.ts).abs() <= TWO_HOURS_MS;
            let before = web[k.saturating_sub(n)..k].iter().filter(near);
            out.extend(before.map(|s| ("  ", s.line.clone())));
            out.push(("> ", hit.line.clone()));
            let after = web[k + 1..(k + 1 + n).min(web.len())].iter().filter(near);
            out.extend(after.map(|s| ("  ", s.line.clone())));
        }
        out
    }
}

/// Whether a printed line (time, labels, the stored JSON record) holds
/// the log line sent as the record's message.
fn shows(printed: &str, line: &str) -> bool {
    printed.contains(&serde_json::Value::String(line.to_owned()).to_string())
}

/// `out` (raw `--context` output) is `expected`: same marks, and each
/// printed line holds the expected log line.
fn assert_context(out: &str, expected: &[(&str, String)]) {
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), expected.len(), "{out}");
    for (g, (mark, line)) in got.iter().zip(expected) {
        let ok = if *mark == "--" {
            *g == "--"
        } else {
            g.starts_with(mark) && shows(g, line)
        };
        assert!(ok, "expected {mark}{line}\ngot {g}\nin:\n{out}");
    }
}

/// The README's rules, evaluated by the searcher on `port`: the alert is
/// pending with the count of today's web lines with WARN or ERROR, and the
/// recorded series reaches Prometheus with the count of today's web lines.
fn check_rules(port: u16, prom_port: u16, expect: &Expect) {
    let warn = expect
        .today_web()
        .filter(|s| s.line.contains("WARN") || s.line.contains("ERROR"))
        .count();
    assert!(warn > 20, "the data makes the README's alert pend: {warn}");
    let started = Instant::now();
    let alert = loop {
        let (status, body) = tenant_get(port, "/prometheus/api/v1/alerts", "acme");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(a) = v["data"]["alerts"].get(0) {
            break a.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no alert: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(alert["labels"]["alertname"], "WebWarnings", "{alert}");
    assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    assert_eq!(alert["state"], "pending", "{alert}");
    assert_eq!(alert["value"], warn.to_string(), "{alert}");

    let lines = expect.today_web().count() as f64;
    let url = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=web:lines:count1h");
    let recorded = || -> Option<f64> {
        get_json(&url)["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    let started = Instant::now();
    while recorded() != Some(lines) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "recorded {:?}, sent {lines}",
            recorded()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Both rules have now been evaluated (the group runs them in order, so
    // the alert can show before the recording rule has run once).
    let (_, body) = tenant_get(port, "/prometheus/api/v1/rules", "acme");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rules = &v["data"]["groups"][0]["rules"];
    assert_eq!(
        (rules[0]["health"].as_str(), rules[1]["health"].as_str()),
        (Some("ok"), Some("ok")),
        "{v}"
    );
}

/// Runs the README's tail command: it must print the last hour's web lines
/// with ERROR, then exactly the web lines with ERROR produced while it
/// runs, in order (after warm-up lines sent until it shows one, since the
/// searcher assigns the topic's partitions once a tail is open).
fn check_tail(env: &Env, cmd: &str, kafka: &KafkaBroker, expect: &Expect) {
    let mut history: Vec<&Sent> = expect
        .today_web()
        .filter(|s| s.line.contains("ERROR"))
        .collect();
    history.sort_by_key(|s| s.ts);
    assert!(!history.is_empty(), "the tail has history to show");
    let mut child = Guard(
        env.command(&format!("exec {cmd}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let shown: Arc<Mutex<Vec<String>>> = Arc::default();
    let stdout = child.stdout.take().unwrap();
    let into = shown.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
    let real = |shown: &Mutex<Vec<String>>| -> Vec<String> {
        let shown = shown.lock().unwrap();
        shown
            .iter()
            .filter(|l| !l.contains("warm-up"))
            .cloned()
            .collect()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{cmd}: {what}; shown:\n{}",
                shown.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("no history", &|| real(&shown).len() >= history.len());

    let mut producer = TestProducer::new(&kafka.bootstrap());
    let send = |producer: &mut TestProducer, app: &str, ts: i64, line: &str| {
        let rec = serde_json::json!({"ts": ts, "app": app, "message": line});
        producer.send("acme", app, rec.to_string().as_bytes(), ts);
    };
    let started = Instant::now();
    while !shown.lock().unwrap().iter().any(|l| l.contains("warm-up")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{cmd}: no warm-up line"
        );
        let now = chrono::Utc::now().timestamp_millis();
        send(&mut producer, "web", now, "ERROR warm-up");
        producer.inner.flush(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let base = chrono::Utc::now().timestamp_millis();
    let mut live = Vec::new();
    for (j, line) in lines().into_iter().skip(1200).take(300).enumerate() {
        let app = ["web", "api"][j % 2];
        send(&mut producer, app, base + j as i64, &line);
        if app == "web" && line.contains("ERROR") {
            live.push(line);
        }
    }
    producer.finish();
    assert!(!live.is_empty(), "lines the tail must show are produced");
    let want: Vec<&str> = history
        .iter()
        .map(|s| s.line.as_str())
        .chain(live.iter().map(String::as_str))
        .collect();
    wait("not every line", &|| real(&shown).len() >= want.len());
    std::thread::sleep(Duration::from_secs(1));
    let got = real(&shown);
    assert_eq!(got.len(), want.len(), "{cmd}:\n{}", got.join("\n"));
    for (g, w) in got.iter().zip(&want) {
        assert!(shows(g, w), "{cmd}: expected {w}\ngot {g}");
    }
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
    let mut sent = Vec::new();
    for (i, line) in lines().into_iter().enumerate().take(1200) {
        let days_back = [0, 1, 40][i % 3];
        let app = ["web", "api"][i / 3 % 2];
        let ts = now_ms - days_back * DAY_MS - i as i64 * 1000;
        let rec = serde_json::json!({"ts": ts, "app": app, "message": line});
        producer.send("acme", app, rec.to_string().as_bytes(), now_ms);
        sent.push(Sent {
            ts,
            app,
            days_back,
            line,
        });
    }
    producer.finish();
    let timeouts = sent
        .iter()
        .filter(|s| s.app == "web" && s.days_back < 30 && s.line.contains("timeout"))
        .count() as u64;
    assert!(timeouts > 0, "the data has lines the README's search finds");
    let expect = Expect { sent };
    std::fs::write(
        work.join("indexer.toml"),
        format!(
            "[kafka]\nbrokers = \"{}\"\ntopics = [\"acme\"]\n\
             [parse]\ntimestamp_fields = [\"ts\"]\napp = {{ template = \"{{app}}\" }}\ntenant = \"topic\"\n\
             [blocks]\nflush_interval_secs = 2\n[upload]\ncheckpoint_interval_secs = 1\n",
            kafka.bootstrap()
        ),
    )
    .unwrap();
    let metrics = free_port();
    let mut indexer = Guard(
        env.command(&format!(
            "exec skidder indexer --config indexer.toml --store s3://logs/skidder \
             --metrics-listen 127.0.0.1:{metrics}"
        ))
        .spawn()
        .unwrap(),
    );
    wait_stored(
        metrics,
        expect.sent.len() as u64 + 1,
        Duration::from_secs(180),
    );
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
    // The days the 40-day-old lines fell on: two when the test runs just
    // after midnight UTC, as its lines span 20 minutes.
    let old_days: BTreeSet<String> = expect
        .sent
        .iter()
        .filter(|s| s.days_back == 40)
        .map(|s| {
            let at = chrono::DateTime::from_timestamp_millis(s.ts).unwrap();
            at.format("dt=%Y-%m-%d/").to_string()
        })
        .collect();
    let is_old = |k: &str| old_days.iter().any(|d| k.contains(d.as_str()));
    let old = |keys: &BTreeSet<String>| keys.iter().filter(|k| is_old(k)).count();
    let indexed = keys("logs");
    assert!(old(&indexed) > 0, "the 40-day-old day was indexed");

    std::fs::write(
        work.join("retention.toml"),
        fenced_block(&readme, "### Retention", "toml"),
    )
    .unwrap();
    std::fs::write(
        work.join("longer.toml"),
        "[retention]\ndefault = \"365d\"\n",
    )
    .unwrap();
    // The searcher's config and acme's rules, as the README gives them,
    // and the Prometheus its config writes to.
    let mut ports = Ports::default();
    let live = "### Live tail, alerts and recording rules";
    let (searcher_toml, _) = ports.localize(&fenced_block(&readme, live, "toml"));
    std::fs::write(work.join("searcher.toml"), searcher_toml).unwrap();
    std::fs::create_dir_all(work.join("rules/acme")).unwrap();
    std::fs::write(
        work.join("rules/acme/web.yaml"),
        fenced_block(&readme, live, "yaml"),
    )
    .unwrap();
    let prom_port = ports.get(9090);
    let _prometheus = start_prometheus(&dir.path().join("prometheus"), prom_port);

    let mut searchers = Vec::new();
    let mut ran = Vec::new();
    for cmd in &commands {
        let (mut cmd, used) = ports.localize(cmd);
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
            let port = *used
                .first()
                .unwrap_or_else(|| panic!("{cmd}: a timer without metrics cannot be watched"));
            let what = if cmd.starts_with("skidder compact") {
                "skidder_compactor_passes_total"
            } else {
                "skidder_retention_passes_total"
            };
            env.run_timer(&cmd, port, what);
        } else if cmd.starts_with("skidder searcher") {
            let port = used[0];
            let searcher = Guard(env.command(&format!("exec {cmd}")).spawn().unwrap());
            wait_http(port, "/ready", &cmd);
            check_rules(port, prom_port, &expect);
            searchers.push(searcher);
        } else if cmd.contains("--tail") {
            check_tail(&env, &cmd, &kafka, &expect);
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
            } else if cmd.contains("--context 5") {
                assert_context(&out, &expect.context(5));
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
                .filter(|k| k.starts_with("tenant=acme/dt=") && !is_old(k))
                .collect();
            assert!(
                younger.iter().all(|k| after.contains(*k)),
                "{cmd}: younger days stay"
            );
        }
        eprintln!("ran: {cmd}");
        ran.push(cmd);
    }
    for mut searcher in searchers {
        stop_clean(&mut searcher);
    }
    for what in ["skidder searcher", "--tail", "--context 5"] {
        assert!(ran.iter().any(|c| c.contains(what)), "{what} ran: {ran:#?}");
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

#[test]
fn each_readme_port_stands_for_one_free_port() {
    let mut ports = Ports::default();
    let (text, used) = ports
        .localize("--listen 0.0.0.0:7280 --url http://localhost:7280/x localhost:9090 0.0.0.0:");
    assert_eq!(used.len(), 3);
    assert_eq!(used[0], used[1]);
    assert_ne!(used[0], used[2]);
    assert_eq!(
        text,
        format!(
            "--listen 127.0.0.1:{0} --url http://127.0.0.1:{0}/x 127.0.0.1:{1} 0.0.0.0:",
            used[0], used[2]
        )
    );
}
