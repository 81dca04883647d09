//! CPU time and memory of whole processes and of their threads, read from
//! the kernel: the harness compares CPU-seconds, not wall time, because the
//! machines are shared and noisy.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

/// User + system CPU of every child process waited for so far.
pub fn children_cpu() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

/// User + system CPU of this process, all threads.
pub fn self_cpu() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `who` is one of the two documented constants.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime from a `/proc/.../stat` line, in seconds.
fn stat_cpu(stat: &str) -> Option<(String, f64)> {
    // The name is in parentheses and may hold spaces; fields follow it.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // Fields 14 and 15 of the full line are 12 and 13 after the name.
    let ut: f64 = fields.get(11)?.parse().ok()?;
    let st: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (ut + st) / ticks_per_sec()))
}

/// CPU seconds of a process, summed over its threads.
pub fn process_cpu(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_cpu(&s))
        .map_or(0.0, |(_, c)| c)
}

/// CPU seconds per thread name of a process. Pipeline stages run on threads
/// named after them, so this is each stage's CPU time.
pub fn threads_cpu(pid: u32) -> BTreeMap<String, f64> {
    group(&sample(pid, &mut BTreeMap::new()), pid)
}

/// Reads every thread's (name, CPU seconds) into `seen`, by thread id.
fn sample(pid: u32, seen: &mut BTreeMap<u32, (String, f64)>) -> BTreeMap<u32, (String, f64)> {
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((name, cpu)) = fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| stat_cpu(&s))
            {
                seen.insert(tid, (name, cpu));
            }
        }
    }
    seen.clone()
}

/// Sums per-thread CPU by role.
fn group(threads: &BTreeMap<u32, (String, f64)>, pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (tid, (name, cpu)) in threads {
        // librdkafka names its threads rdk:main, rdk:broker1, ...
        let role = if *tid == pid {
            "main thread (source)".to_string()
        } else if name.starts_with("rdk:") {
            "kafka client (librdkafka)".to_string()
        } else if name.starts_with("tokio") {
            "async runtime (uploads, commits)".to_string()
        } else {
            name.clone()
        };
        *out.entry(role).or_insert(0.0) += cpu;
    }
    out
}

/// Samples a process's threads until stopped, so that threads which end
/// before the measurement (pipeline stages that drained) still count.
pub struct ThreadSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<BTreeMap<u32, (String, f64)>>,
    pid: u32,
}

impl ThreadSampler {
    pub fn start(pid: u32) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("cpu_sampler".into())
            .spawn(move || {
                let mut seen = BTreeMap::new();
                while !s.load(Ordering::Relaxed) {
                    sample(pid, &mut seen);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                sample(pid, &mut seen)
            })
            .unwrap_or_else(|_| std::thread::spawn(BTreeMap::new));
        ThreadSampler { stop, handle, pid }
    }

    /// CPU seconds by thread role, as [`threads_cpu`] groups them.
    pub fn finish(self) -> BTreeMap<String, f64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = self.handle.join().unwrap_or_default();
        group(&seen, self.pid)
    }
}

/// Peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:") * 1024
}

/// Resident memory of a process now (VmRSS), in bytes.
pub fn rss(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:") * 1024
}

fn status_kb(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The median of some samples (the mean of the middle two when even).
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "42 (rdk:broker 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let (name, cpu) = stat_cpu(line).unwrap();
        assert_eq!(name, "rdk:broker 1");
        assert!((cpu - 300.0 / ticks_per_sec()).abs() < 1e-9);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn this_process_has_threads_and_memory() {
        let me = std::process::id();
        assert!(!threads_cpu(me).is_empty());
        // RSS first: other tests' threads allocate meanwhile, and the peak
        // read afterwards covers every RSS read before it, not after.
        let now = rss(me);
        assert!(now > 0);
        assert!(peak_rss(me) >= now);
    }
}
