//! Launchers for the real servers that integration tests run against. Each
//! starts a separate process on 127.0.0.1 with a free port and stops it on
//! drop. A missing server binary is a test failure, never a skip: install
//! them with `.ci/run` (see `../shared/TEST-SERVERS.md`).

pub mod fault_proxy;
mod kafka;

pub use kafka::{kafka_libs, KafkaBroker, KAFKA_VERSION};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The real logs in `shared/data` that tests and benchmarks read:
/// `$SKIDDER_SHARED_DATA` if set, else `../shared/data` beside the
/// workspace, else `/work/shared/data` (where a clone made elsewhere, such
/// as CI's `/tmp/ci-check`, finds it on these machines). Panics, naming the
/// places tried, when none exists: a missing data set fails the test.
pub fn shared_data_dir() -> PathBuf {
    let tried: Vec<PathBuf> = std::env::var_os("SKIDDER_SHARED_DATA")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data")),
            PathBuf::from("/work/shared/data"),
        ])
        .collect();
    tried
        .iter()
        .find(|p| p.join("loghub").is_dir())
        .cloned()
        .unwrap_or_else(|| panic!("the shared data set is missing; tried {tried:?}"))
}

/// A seeded generator for randomized tests: the same seed replays a run.
pub struct SeededRng(rand::rngs::StdRng);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(
            seed,
        ))
    }

    /// The next value. (Not `Iterator::next`: the stream never ends.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// A test's seed: `$<var>` when set (to replay a failure), else the clock.
/// Printed, so a failing run names the seed that replays it.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    eprintln!("seed: {seed} (replay with {var}={seed})");
    seed
}

/// Picks a port that is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on port {port} within 60 s");
}

/// Finds a server binary: `$env_var`, then the cache `.ci/run` installs
/// into, then `PATH`.
fn find_binary(env_var: &str, cached: &[PathBuf], name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return p.into();
    }
    for p in cached {
        if p.is_file() {
            return p.clone();
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{name} is not installed: run `bash .ci/run` (or see ../shared/TEST-SERVERS.md), \
         or point {env_var} at it"
    );
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
}

/// A process that is killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub port: u16,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A moto S3 server.
#[derive(Debug)]
pub struct MotoServer {
    pub process: ServerProcess,
}

impl MotoServer {
    pub fn start() -> Self {
        let bin = find_binary(
            "SKIDDER_MOTO_SERVER",
            &[home().join(".cache/skidder/venv/bin/moto_server")],
            "moto_server",
        );
        let port = free_port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        wait_for_port(port, &mut child, "moto_server");
        MotoServer {
            process: ServerProcess { child, port },
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The S3 settings that reach this server.
    pub fn s3_config(&self) -> crate::storage::S3Config {
        crate::storage::S3Config {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            path_style: Some(true),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            timeout_secs: None,
            multipart_part_bytes: None,
        }
    }
}
