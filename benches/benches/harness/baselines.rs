//! The baselines every figure is compared with, run in the same harness:
//! the `lz4` command-line tool, tantivy (the engine inside Quickwit) and
//! ripgrep.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skidder_benches::measure;

/// CPU seconds `lz4 -1` takes to compress the files to /dev/null.
pub fn lz4_cpu(files: &[PathBuf]) -> Result<f64> {
    let before = measure::children_cpu();
    for f in files {
        let st = Command::new("lz4")
            .args(["-1", "-q", "-c"])
            .arg(f)
            .stdout(Stdio::null())
            .status()
            .context("running lz4 (apt-get install lz4)")?;
        if !st.success() {
            bail!("lz4 failed on {}: {st}", f.display());
        }
    }
    Ok((measure::children_cpu() - before).as_secs_f64())
}

/// Median wall time of `rg ARGS FILES` over `runs` runs, after one warm-up
/// run so the page cache holds the files.
pub fn rg_ms(args: &[String], files: &[PathBuf], runs: usize) -> Result<f64> {
    let run = || -> Result<Duration> {
        let t = Instant::now();
        let st = Command::new("rg")
            .args(args)
            .args(files)
            .stdout(Stdio::null())
            .status()
            .context("running rg (apt-get install ripgrep)")?;
        // rg exits 1 when nothing matched, which is not a failure here.
        if st.code().is_none_or(|c| c > 1) {
            bail!("rg {args:?} failed: {st}");
        }
        Ok(t.elapsed())
    };
    run()?;
    let mut times = Vec::new();
    for _ in 0..runs {
        times.push(run()?.as_secs_f64() * 1e3);
    }
    Ok(measure::median(times))
}

/// What tantivy took to index the files: CPU seconds and index bytes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TantivyReport {
    pub cpu_s: f64,
    pub raw_bytes: u64,
    pub index_bytes: u64,
    pub docs: u64,
}

/// Indexes the records as Quickwit would: the whole line as a stored text
/// field, a few string fields and a fast timestamp. Runs in the child
/// process the harness starts, so the CPU time is tantivy's alone.
pub fn tantivy_index(files: &[PathBuf], dir: &Path) -> Result<TantivyReport> {
    use std::io::BufRead;
    use tantivy::schema::{Schema, FAST, INDEXED, STORED, STRING, TEXT};
    use tantivy::{doc, Index};

    let cpu0 = measure::self_cpu();
    let mut sb = Schema::builder();
    let line = sb.add_text_field("line", TEXT | STORED);
    let level = sb.add_text_field("level", STRING);
    let service = sb.add_text_field("service", STRING);
    let trace = sb.add_text_field("trace_id", STRING);
    let ts = sb.add_i64_field("ts", INDEXED | FAST);
    let schema = sb.build();
    std::fs::create_dir_all(dir)?;
    let index = Index::create_in_dir(dir, schema)?;
    let mut w: tantivy::IndexWriter = index.writer_with_num_threads(2, 512 << 20)?;
    let (mut raw, mut docs) = (0u64, 0u64);
    for f in files {
        let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(f)?);
        for l in r.lines() {
            let l = l?;
            raw += l.len() as u64 + 1;
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            let t = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap_or(""))
                .map(|t| t.timestamp_nanos_opt().unwrap_or(0))
                .unwrap_or(0);
            w.add_document(doc!(
                line => l.as_str(),
                level => s("level"),
                service => s("service"),
                trace => s("trace_id"),
                ts => t,
            ))?;
            docs += 1;
        }
    }
    w.commit()?;
    w.wait_merging_threads()?;
    let cpu_s = (measure::self_cpu() - cpu0).as_secs_f64();
    let index_bytes = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(TantivyReport {
        cpu_s,
        raw_bytes: raw,
        index_bytes,
        docs,
    })
}

/// The first files of the corpus holding at least `bytes`.
pub fn prefix_files(files: &[PathBuf], bytes: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut n = 0;
    for f in files {
        if n >= bytes {
            break;
        }
        n += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        out.push(f.clone());
    }
    out
}
