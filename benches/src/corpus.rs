//! A seeded generator of Kubernetes-style JSON logs, shaped like what
//! fluent-bit ships from a cluster, with its value distributions taken from
//! real data in `../shared/data`:
//!
//! - services and message templates come from the Loghub systems (each
//!   system is a service; its 2,000 real lines are the templates, with every
//!   digit re-drawn so ids and durations vary);
//! - levels follow each system's own level mix;
//! - network fields (`net`) are real Zeek `conn`/`dns`/`ssl` field values;
//! - every record has a fresh random `trace_id` and `span_id`.
//!
//! The same seed gives the same corpus, byte for byte.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One Loghub system, as a service.
struct Service {
    name: String,
    /// (level, message) pairs from real lines.
    templates: Vec<(&'static str, String)>,
    pods: Vec<Pod>,
}

struct Pod {
    /// The `kubernetes` object, pre-rendered: constant for a pod.
    kubernetes: String,
}

/// A network fact from Zeek, pre-rendered as a JSON object.
type NetFact = String;

/// Rare event injected every so often, so the benchmark has a rare word.
pub const RARE_WORD: &str = "segfault";
const RARE_EVERY: u64 = 500_000;

/// A request in flight: the log lines it writes share a pod and a trace.
struct Request {
    service: usize,
    pod: usize,
    /// trace id (32 hex) then span id (16 hex).
    ids: String,
    lines_left: u32,
}

pub struct Generator {
    rng: StdRng,
    active: Vec<Request>,
    /// The next record starts a request of its own, of one line.
    pub single_next: bool,
    services: Vec<Service>,
    net: Vec<NetFact>,
    /// Event time of the next record, ns.
    time_ns: i64,
    step_ns: i64,
    pub records: u64,
}

const NAMESPACES: [&str; 4] = ["storage", "compute", "platform", "edge"];
const LEVELS: [&str; 5] = ["debug", "info", "warn", "error", "fatal"];

fn level_of(line: &str) -> &'static str {
    let up = line.to_ascii_uppercase();
    for (needle, level) in [
        (" FATAL", "fatal"),
        (" ERROR", "error"),
        (" SEVERE", "error"),
        ("FAIL", "error"),
        (" WARN", "warn"),
        (" DEBUG", "debug"),
        (" TRACE", "debug"),
    ] {
        if up.contains(needle) {
            return level;
        }
    }
    "info"
}

/// Drops the leading timestamp-like tokens (digits, dates, times) that each
/// Loghub system writes in its own layout: the generator adds its own time.
fn strip_prefix(line: &str) -> &str {
    let mut rest = line.trim();
    for _ in 0..4 {
        let tok_end = rest.find(' ').unwrap_or(rest.len());
        let tok = &rest[..tok_end];
        let timey = !tok.is_empty()
            && tok
                .bytes()
                .all(|b| b.is_ascii_digit() || b"-/:.,[]".contains(&b))
            || matches!(
                tok,
                "Jan"
                    | "Feb"
                    | "Mar"
                    | "Apr"
                    | "May"
                    | "Jun"
                    | "Jul"
                    | "Aug"
                    | "Sep"
                    | "Oct"
                    | "Nov"
                    | "Dec"
                    | "Mon"
                    | "Tue"
                    | "Wed"
                    | "Thu"
                    | "Fri"
                    | "Sat"
                    | "Sun"
            );
        if !timey || tok_end == rest.len() {
            break;
        }
        rest = rest[tok_end..].trim_start();
    }
    rest
}

fn hex(rng: &mut StdRng, n: usize, out: &mut String) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for _ in 0..n {
        out.push(H[rng.random_range(0..16)] as char);
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.into()).to_string()
}

impl Generator {
    /// Reads the templates from `data` (the `../shared/data` folder).
    pub fn new(
        data: &Path,
        seed: u64,
        start_ns: i64,
        span_ns: i64,
        approx_bytes: u64,
    ) -> io::Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut files: Vec<_> = fs::read_dir(data.join("loghub"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        let mut services = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let text = String::from_utf8_lossy(&fs::read(f)?).into_owned();
            let system = f
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("svc")
                .trim_end_matches("_2k")
                .to_ascii_lowercase();
            let templates: Vec<(&'static str, String)> = text
                .lines()
                .map(|l| (level_of(l), strip_prefix(l).to_owned()))
                .filter(|(_, m)| !m.is_empty())
                .collect();
            let namespace = NAMESPACES[i % NAMESPACES.len()];
            let pods = (0..rng.random_range(2..6))
                .map(|_| Self::pod(&mut rng, &system, namespace))
                .collect();
            services.push(Service {
                name: system,
                templates,
                pods,
            });
        }
        if services.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no Loghub *.log files under {}", data.display()),
            ));
        }
        let net = Self::net_facts(&data.join("zeek"))?;
        // Spread the corpus evenly over the span; ~1,500 bytes a record.
        let records = (approx_bytes / 1_500).max(1) as i64;
        Ok(Generator {
            rng,
            active: Vec::new(),
            single_next: false,
            services,
            net,
            time_ns: start_ns,
            step_ns: (span_ns / records).max(1),
            records: 0,
        })
    }

    fn pod(rng: &mut StdRng, service: &str, namespace: &str) -> Pod {
        let mut hash = String::new();
        hex(rng, 10, &mut hash);
        let mut suffix = String::new();
        hex(rng, 5, &mut suffix);
        let mut uid = String::new();
        hex(rng, 32, &mut uid);
        let mut docker = String::new();
        hex(rng, 64, &mut docker);
        let node = format!(
            "ip-10-0-{}-{}.ec2.internal",
            rng.random_range(0..8),
            rng.random_range(2..250)
        );
        let mut checksum = String::new();
        hex(rng, 64, &mut checksum);
        let version = format!("1.{}.{}", rng.random_range(0..30), rng.random_range(0..10));
        // What fluent-bit's kubernetes filter adds with its defaults (labels
        // and annotations on), for a pod of a Helm-installed deployment.
        let kubernetes = format!(
            r#"{{"pod_name":"{service}-{hash}-{suffix}","namespace_name":"{namespace}","pod_id":"{}-{}-{}-{}-{}","labels":{{"app":"{service}","app.kubernetes.io/name":"{service}","app.kubernetes.io/instance":"{service}-{namespace}","app.kubernetes.io/version":"{version}","app.kubernetes.io/component":"backend","app.kubernetes.io/part-of":"{namespace}","app.kubernetes.io/managed-by":"Helm","helm.sh/chart":"{service}-{version}","pod-template-hash":"{hash}"}},"annotations":{{"checksum/config":"{checksum}","kubectl.kubernetes.io/restartedAt":"2026-10-{:02}T{:02}:{:02}:{:02}Z","prometheus.io/scrape":"true","prometheus.io/port":"9102","prometheus.io/path":"/metrics"}},"host":"{node}","container_name":"{service}","docker_id":"{docker}","container_hash":"registry.example.com/{namespace}/{service}@sha256:{docker}","container_image":"registry.example.com/{namespace}/{service}:{version}"}}"#,
            &uid[..8],
            &uid[8..12],
            &uid[12..16],
            &uid[16..20],
            &uid[20..],
            rng.random_range(1..29),
            rng.random_range(0..24),
            rng.random_range(0..60),
            rng.random_range(0..60),
        );
        Pod { kubernetes }
    }

    /// Scalar fields of real Zeek records, a few per fact.
    fn net_facts(zeek: &Path) -> io::Result<Vec<NetFact>> {
        let mut facts = Vec::new();
        for name in ["conn.json", "dns.json", "ssl.json", "http.json"] {
            let Ok(text) = fs::read_to_string(zeek.join(name)) else {
                continue;
            };
            for line in text.lines().take(2_000) {
                let Ok(serde_json::Value::Object(o)) =
                    serde_json::from_str::<serde_json::Value>(line)
                else {
                    continue;
                };
                let mut m = serde_json::Map::new();
                for (k, short) in [
                    ("id.orig_h", "src_ip"),
                    ("id.orig_p", "src_port"),
                    ("id.resp_h", "dst_ip"),
                    ("id.resp_p", "dst_port"),
                    ("proto", "proto"),
                    ("query", "dns_query"),
                    ("server_name", "tls_sni"),
                    ("host", "http_host"),
                    ("uri", "http_uri"),
                    ("status_code", "http_status"),
                ] {
                    if let Some(v) = o.get(k) {
                        m.insert(short.into(), v.clone());
                    }
                }
                if !m.is_empty() {
                    facts.push(serde_json::Value::Object(m).to_string());
                }
            }
        }
        if facts.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no Zeek records under {}", zeek.display()),
            ));
        }
        Ok(facts)
    }

    /// Appends one record (no newline) to `out`; returns its trace id's
    /// position in `out` (32 bytes).
    pub fn record(&mut self, out: &mut Vec<u8>) -> usize {
        let rng = &mut self.rng;
        // A request logs one to six lines, all with its trace and span ids;
        // up to 32 requests are in flight at once.
        let single = std::mem::take(&mut self.single_next);
        let pick = if !single && self.active.len() >= 32
            || (!self.active.is_empty() && rng.random_range(0..10) < 7 && !single)
        {
            Some(rng.random_range(0..self.active.len()))
        } else {
            None
        };
        let req = match pick {
            Some(i) => {
                let r = &mut self.active[i];
                r.lines_left -= 1;
                if r.lines_left == 0 {
                    self.active.swap_remove(i)
                } else {
                    Request {
                        service: r.service,
                        pod: r.pod,
                        ids: r.ids.clone(),
                        lines_left: 0,
                    }
                }
            }
            None => {
                // A few services are much busier than the rest, as in real clusters.
                let r: f64 = rng.random();
                let service =
                    (((r * r) * self.services.len() as f64) as usize).min(self.services.len() - 1);
                let pod = rng.random_range(0..self.services[service].pods.len());
                let mut ids = String::with_capacity(48);
                hex(rng, 48, &mut ids);
                let lines = if single { 1 } else { rng.random_range(1..=6) };
                if lines > 1 {
                    self.active.push(Request {
                        service,
                        pod,
                        ids: ids.clone(),
                        lines_left: lines - 1,
                    });
                }
                Request {
                    service,
                    pod,
                    ids,
                    lines_left: 0,
                }
            }
        };
        let svc = &self.services[req.service];
        let pod = &svc.pods[req.pod];
        let (mut level, template) = {
            let (l, t) = &svc.templates[rng.random_range(0..svc.templates.len())];
            (*l, t.as_str())
        };
        let mut msg = String::with_capacity(template.len());
        self.records += 1;
        if self.records % RARE_EVERY == RARE_EVERY / 2 {
            level = LEVELS[4];
            msg.push_str(&format!(
                "worker {} exited: {RARE_WORD} at 0x{:x}",
                rng.random_range(1..64),
                rng.random::<u32>()
            ));
        } else {
            // Runs of four or more digits (ids, sizes, addresses, times) are
            // drawn afresh; shorter numbers (ports, codes, counts) are kept
            // as the real line had them.
            let b = template.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let mut j = i;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j - i >= 4 {
                    for _ in i..j {
                        msg.push((b'0' + rng.random_range(0..10u8)) as char);
                    }
                    i = j;
                } else if j > i {
                    msg.push_str(&template[i..j]);
                    i = j;
                } else {
                    let ch = template[i..].chars().next().unwrap_or(' ');
                    msg.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        let secs = self.time_ns.div_euclid(1_000_000_000);
        let nanos = self.time_ns.rem_euclid(1_000_000_000);
        let t = chrono::DateTime::from_timestamp(secs, nanos as u32)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ");
        self.time_ns += self.step_ns;
        let ids = req.ids;
        let net = if rng.random_range(0..4) == 0 {
            let f = &self.net[rng.random_range(0..self.net.len())];
            format!(r#","net":{f}"#)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"{{"time":"{t}","stream":"stdout","level":"{level}","service":"{}","trace_id":""#,
            svc.name
        );
        let trace_at = out.len();
        let _ = write!(
            out,
            r#"{}","span_id":"{}","msg":{}{net},"kubernetes":{}}}"#,
            &ids[..32],
            &ids[32..],
            json_str(&msg),
            pod.kubernetes
        );
        trace_at
    }
}

/// A generated corpus on disk: newline-delimited JSON split into files.
pub struct Corpus {
    pub files: Vec<std::path::PathBuf>,
    pub bytes: u64,
    pub records: u64,
    /// A trace id present exactly once, and its record number.
    pub needle: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Writes about `bytes` of corpus under `dir`, in files of `file_bytes`.
/// Reuses the files when a manifest for the same seed and size is there.
pub fn generate(data: &Path, dir: &Path, seed: u64, bytes: u64) -> io::Result<Corpus> {
    let manifest = dir.join(format!("manifest-{seed}-{bytes}.json"));
    if let Ok(text) = fs::read_to_string(&manifest) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            let files: Vec<std::path::PathBuf> = v["files"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(Into::into))
                        .collect()
                })
                .unwrap_or_default();
            if !files.is_empty() && files.iter().all(|f| f.exists()) {
                return Ok(Corpus {
                    files,
                    bytes: v["bytes"].as_u64().unwrap_or(0),
                    records: v["records"].as_u64().unwrap_or(0),
                    needle: v["needle"].as_str().unwrap_or_default().into(),
                    start_ns: v["start_ns"].as_i64().unwrap_or(0),
                    end_ns: v["end_ns"].as_i64().unwrap_or(0),
                });
            }
        }
    }
    fs::create_dir_all(dir)?;
    // Four hours ending two days ago: old enough to be "closed" hours.
    let now = chrono::Utc::now().timestamp();
    let end_s = (now - 2 * 86_400) / 3_600 * 3_600;
    let start_ns = (end_s - 4 * 3_600) * 1_000_000_000;
    let span_ns = 4 * 3_600 * 1_000_000_000;
    let mut g = Generator::new(data, seed, start_ns, span_ns, bytes)?;
    const FILE_BYTES: u64 = 256 << 20;
    let mut files = Vec::new();
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    let needle_at = bytes / 2;
    let mut needle = String::new();
    while written < bytes {
        let path = dir.join(format!("corpus-{seed}-{:04}.ndjson", files.len()));
        let mut f = io::BufWriter::with_capacity(1 << 20, fs::File::create(&path)?);
        let mut in_file = 0u64;
        while in_file < FILE_BYTES && written + in_file < bytes {
            buf.clear();
            // The needle: a trace of one line, halfway through.
            let is_needle = needle.is_empty() && written + in_file >= needle_at;
            g.single_next = is_needle;
            let at = g.record(&mut buf);
            if is_needle {
                needle = String::from_utf8_lossy(&buf[at..at + 32]).into_owned();
            }
            buf.push(b'\n');
            f.write_all(&buf)?;
            in_file += buf.len() as u64;
        }
        f.flush()?;
        written += in_file;
        files.push(path);
    }
    let corpus = Corpus {
        files,
        bytes: written,
        records: g.records,
        needle,
        start_ns,
        end_ns: g.time_ns + 1,
    };
    let v = serde_json::json!({
        "files": corpus.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "bytes": corpus.bytes, "records": corpus.records, "needle": corpus.needle,
        "start_ns": corpus.start_ns, "end_ns": corpus.end_ns,
    });
    fs::write(manifest, v.to_string())?;
    Ok(corpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> std::path::PathBuf {
        skidder_common::testing::shared_data_dir()
    }

    #[test]
    fn records_are_json_with_a_trace_id_and_the_seed_decides_them() {
        let mut a = Generator::new(&data(), 7, 0, 3_600_000_000_000, 1 << 20).unwrap();
        let mut b = Generator::new(&data(), 7, 0, 3_600_000_000_000, 1 << 20).unwrap();
        for _ in 0..2_000 {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            let at = a.record(&mut x);
            b.record(&mut y);
            assert_eq!(x, y);
            let v: serde_json::Value = serde_json::from_slice(&x).unwrap();
            assert_eq!(v["trace_id"].as_str().unwrap().as_bytes(), &x[at..at + 32]);
            assert!(v["kubernetes"]["pod_name"].is_string());
            assert!(LEVELS.contains(&v["level"].as_str().unwrap()));
        }
    }

    #[test]
    fn the_needle_is_in_exactly_one_record_and_traces_span_several() {
        let dir = tempfile::tempdir().unwrap();
        let c = generate(&data(), dir.path(), 3, 4 << 20).unwrap();
        let text = std::fs::read_to_string(&c.files[0]).unwrap();
        assert_eq!(text.matches(c.needle.as_str()).count(), 1);
        let mut per_trace = std::collections::HashMap::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            *per_trace
                .entry(v["trace_id"].as_str().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        assert!(per_trace.values().any(|&n| n > 1));
        assert!(per_trace.values().all(|&n| n <= 6));
    }
}
