//! Export: the whole result of a log query, with no `limit`, written to an
//! object-store prefix for another team or tool.
//!
//! Layout under the prefix (`docs/FORMAT.md`, "Export"):
//! - `part-<run>-00000.ndjson`, `part-<run>-00001.ndjson`, …: one JSON
//!   object per line, `{"ts":"<ns>","time":"<RFC 3339>","labels":{…},"line":"…"}`,
//!   each part about `part_bytes` long; `<run>` is random per run, so two
//!   runs never write the same part;
//! - `_manifest.json`, written last, with a conditional put: the query,
//!   the range, every part with its line count, size and CRC32C, and any
//!   warning (a block that could not be read leaves a hole, and says so).
//!
//! A prefix without a manifest holds no finished export, however many
//! parts it has: a killed export leaves parts and no manifest, and a
//! second run over the same prefix writes the parts again and then the
//! manifest. Once a manifest exists, the prefix is refused.
//!
//! Memory stays bounded: the engine hands over a batch of blocks' matches
//! at a time ([`crate::engine::LogBatches`], at most 64 MiB of raw lines
//! unless one block alone is larger) and a part is written as soon as it
//! is full, so an export holds one batch and one part at most.
//! Lines are ordered by time within a batch; batches follow the blocks'
//! first times, and blocks of different partitions overlap.

pub mod jobs;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use skidder_common::storage::{ObjectStore, StorageError, StorageErrorKind};
use thiserror::Error;

use crate::engine::{Engine, Entry, SearchError, TimeRange};
use crate::logql::{self, Query};
use crate::metrics::Metrics;
use crate::time::rfc3339;

/// The object that marks a finished export.
pub const MANIFEST: &str = "_manifest.json";
/// Bumped when the manifest or the parts change shape.
pub const VERSION: u32 = 1;
/// A part is written once it holds this many bytes, unless told otherwise.
pub const DEFAULT_PART_BYTES: usize = 64 << 20;

/// `_manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportManifest {
    pub version: u32,
    pub query: String,
    pub tenant: String,
    /// The range, `[start, end)`, in Unix nanoseconds (as strings, like
    /// Loki's timestamps, so JSON readers keep every digit).
    pub start: String,
    pub end: String,
    pub started_at: String,
    pub finished_at: String,
    pub lines: u64,
    pub bytes: u64,
    pub blocks_scanned: u64,
    pub parts: Vec<ExportPart>,
    /// Blocks that could not be read: the export is missing their lines.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportPart {
    /// The part's key, relative to the export's prefix.
    pub key: String,
    pub lines: u64,
    pub bytes: u64,
    pub crc32c: u32,
}

/// What an export has done so far, read while it runs (progress bars,
/// the job API).
#[derive(Debug, Default)]
pub struct Progress {
    pub blocks_total: AtomicU64,
    pub blocks_scanned: AtomicU64,
    pub lines_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub parts_written: AtomicU64,
}

impl Progress {
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "blocks_total": get(&self.blocks_total),
            "blocks_scanned": get(&self.blocks_scanned),
            "lines_written": get(&self.lines_written),
            "bytes_written": get(&self.bytes_written),
            "parts_written": get(&self.parts_written),
        })
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub tenant: String,
    pub query: String,
    pub range: TimeRange,
    /// Bytes of NDJSON per part (at least 1).
    pub part_bytes: usize,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Parse(#[from] logql::ParseError),
    #[error("an export takes a log query; {0:?} is a metric query")]
    MetricQuery(String),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("the destination already holds a finished export ({MANIFEST}); choose another prefix")]
    Exists,
    #[error("writing the export: {0}")]
    Store(#[from] StorageError),
}

/// Runs `req` over `engine`'s store and writes the result under `dest`.
/// Returns the manifest it wrote last.
pub async fn export(
    engine: &Engine,
    metrics: &Metrics,
    dest: &dyn ObjectStore,
    req: &ExportRequest,
    progress: &Progress,
) -> Result<ExportManifest, ExportError> {
    let started_at = now_rfc3339();
    let q = match logql::parse(&req.query)? {
        Query::Log(q) => q,
        Query::Metric(_) => return Err(ExportError::MetricQuery(req.query.clone())),
    };
    match dest.head(MANIFEST).await {
        Ok(_) => return Err(ExportError::Exists),
        Err(e) if e.kind == StorageErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let mut batches = engine.log_batches(&req.tenant, req.range, &q).await?;
    progress
        .blocks_total
        .store(batches.blocks_total() as u64, Ordering::Relaxed);
    let mut parts = PartWriter::new(req.part_bytes.max(1), rand::random::<u32>());
    while let Some(entries) = batches.next_batch().await? {
        for e in &entries {
            parts.push(e);
            if parts.full() {
                parts.flush(dest, progress).await?;
            }
        }
        progress
            .blocks_scanned
            .store(batches.blocks_done() as u64, Ordering::Relaxed);
        metrics.export_lines.inc_by(entries.len() as u64);
    }
    parts.flush(dest, progress).await?;
    let manifest = ExportManifest {
        version: VERSION,
        query: req.query.clone(),
        tenant: req.tenant.clone(),
        start: req.range.start.to_string(),
        end: req.range.end.to_string(),
        started_at,
        finished_at: now_rfc3339(),
        lines: parts.done.iter().map(|p| p.lines).sum(),
        bytes: parts.done.iter().map(|p| p.bytes).sum(),
        blocks_scanned: batches.stats.blocks_scanned,
        parts: parts.done,
        warnings: batches.stats.warnings,
    };
    let body = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    match dest.put_if_absent(MANIFEST, Bytes::from(body)).await {
        Ok(()) => {}
        Err(e) if e.kind == StorageErrorKind::AlreadyExists => return Err(ExportError::Exists),
        Err(e) => return Err(e.into()),
    }
    remove_strays(dest, &manifest).await;
    Ok(manifest)
}

/// Deletes parts other runs left (killed, or beaten to the manifest). Best
/// effort: the manifest, not the listing, says what the export is.
async fn remove_strays(dest: &dyn ObjectStore, manifest: &ExportManifest) {
    let Ok(listed) = skidder_common::storage::list_all(dest, "part-").await else {
        return;
    };
    for m in listed {
        if !manifest.parts.iter().any(|p| p.key == m.key) {
            if let Err(e) = dest.delete(&m.key).await {
                tracing::warn!(key = %m.key, error = %e, "could not delete a stray export part");
            }
        }
    }
}

/// One NDJSON line: `{"ts":"…","time":"…","labels":{…},"line":"…"}`.
pub fn ndjson_line(e: &Entry, out: &mut Vec<u8>) {
    /// Labels as a JSON object, in their (sorted) order.
    struct AsMap<'a>(&'a [(String, String)]);
    impl Serialize for AsMap<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    #[derive(Serialize)]
    struct Row<'a> {
        ts: String,
        time: String,
        labels: AsMap<'a>,
        line: &'a str,
    }
    let row = Row {
        ts: e.ts.to_string(),
        time: rfc3339(e.ts, chrono::SecondsFormat::Nanos),
        labels: AsMap(&e.labels),
        line: &e.line,
    };
    serde_json::to_writer(&mut *out, &row).expect("JSON into a Vec");
    out.push(b'\n');
}

/// Fills parts and writes each once full.
struct PartWriter {
    part_bytes: usize,
    run: u32,
    buf: Vec<u8>,
    lines: u64,
    done: Vec<ExportPart>,
}

impl PartWriter {
    fn new(part_bytes: usize, run: u32) -> Self {
        PartWriter {
            part_bytes,
            run,
            buf: Vec::new(),
            lines: 0,
            done: Vec::new(),
        }
    }

    fn push(&mut self, e: &Entry) {
        ndjson_line(e, &mut self.buf);
        self.lines += 1;
    }

    fn full(&self) -> bool {
        self.buf.len() >= self.part_bytes
    }

    /// Writes what is buffered as the next part, if anything is.
    async fn flush(
        &mut self,
        dest: &dyn ObjectStore,
        progress: &Progress,
    ) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let key = format!("part-{:08x}-{:05}.ndjson", self.run, self.done.len());
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let part = ExportPart {
            key: key.clone(),
            lines: self.lines,
            bytes: body.len() as u64,
            crc32c: crc32c::crc32c(&body),
        };
        dest.put(&key, body).await?;
        progress
            .lines_written
            .fetch_add(part.lines, Ordering::Relaxed);
        progress
            .bytes_written
            .fetch_add(part.bytes, Ordering::Relaxed);
        progress.parts_written.fetch_add(1, Ordering::Relaxed);
        self.done.push(part);
        self.lines = 0;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    rfc3339(
        skidder_common::format::layout::now_ns(),
        chrono::SecondsFormat::Millis,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn an_ndjson_line_keeps_every_digit_and_escapes_the_line() {
        let e = Entry {
            ts: 1_796_559_569_388_016_123,
            labels: Arc::new(vec![
                ("__app__".into(), "cart".into()),
                ("level".into(), "warn \"hot\"".into()),
            ]),
            line: "a\tb \"c\"\n{\"x\":1} é".into(),
        };
        let mut out = Vec::new();
        ndjson_line(&e, &mut out);
        ndjson_line(&e, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 2, "one line per entry: {text}");
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(r#"{"ts":"1796559569388016123","time":"2026-12-06T"#),
            "{first}"
        );
        let v: serde_json::Value = serde_json::from_str(first).unwrap();
        assert_eq!(v["time"], "2026-12-06T12:19:29.388016123Z");
        assert_eq!(v["labels"]["level"], "warn \"hot\"");
        assert_eq!(v["line"], "a\tb \"c\"\n{\"x\":1} é");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    /// Exports are read by other tools, so their shape is frozen: a
    /// fixed manifest and line against `tests/golden/export/` (written if
    /// missing; commit them). A change to either is a new `VERSION`.
    #[test]
    fn the_export_format_matches_its_golden_files() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/export");
        let manifest = ExportManifest {
            version: VERSION,
            query: r#"{__app__="web"} |= "timeout""#.into(),
            tenant: "acme".into(),
            start: "1796552379403271116".into(),
            end: "1796563179403271116".into(),
            started_at: "2026-12-06T13:19:39.405Z".into(),
            finished_at: "2026-12-06T13:19:39.983Z".into(),
            lines: 2,
            bytes: 300,
            blocks_scanned: 1,
            parts: vec![ExportPart {
                key: "part-5f0c9a1e-00000.ndjson".into(),
                lines: 2,
                bytes: 300,
                crc32c: 3_323_559_846,
            }],
            warnings: vec!["skipped unreadable block x.seq: corrupt".into()],
        };
        let mut lines = Vec::new();
        for (ts, line) in [
            (1_796_559_569_388_016_123, "GET /a 200"),
            (-1, "before 1970"),
        ] {
            let e = Entry {
                ts,
                labels: Arc::new(vec![
                    ("__app__".into(), "web".into()),
                    ("level".into(), "info".into()),
                ]),
                line: line.into(),
            };
            ndjson_line(&e, &mut lines);
        }
        let written = serde_json::to_vec_pretty(&manifest).unwrap();
        for (name, bytes) in [("_manifest.json", &written), ("part.ndjson", &lines)] {
            let path = format!("{dir}/{name}");
            if !std::path::Path::new(&path).exists() {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(&path, bytes).unwrap();
                eprintln!("wrote {path}; commit it");
            }
            assert_eq!(
                &std::fs::read(&path).unwrap(),
                bytes,
                "{name}: the export writer changed: bump VERSION instead"
            );
        }
        let stored: ExportManifest =
            serde_json::from_slice(&std::fs::read(format!("{dir}/_manifest.json")).unwrap())
                .unwrap();
        assert_eq!(stored, manifest);
    }
}
