//! Hive and Spark must read our data blocks directly. This test writes
//! blocks from real log lines through the indexer's own compressor, then
//! has Hadoop's SequenceFile reader (bundled in PySpark) read them back and
//! compare every record. PySpark is installed by `.ci/run`; if it is
//! missing the test fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use skidder_common::format::index::{build_bloom, StreamEntry};
use skidder_common::format::layout::BlockName;
use skidder_indexer::models::SealedBlock;
use skidder_indexer::stages::compressor::encode;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SKIDDER_SPARK_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p = PathBuf::from(home).join(".cache/skidder/venv/bin/python");
    assert!(
        p.is_file(),
        "{} missing: run `bash .ci/run` to install pyspark",
        p.display()
    );
    p
}

#[test]
fn hadoop_sequencefile_reader_reads_our_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = std::fs::File::create(dir.path().join("expected.jsonl")).unwrap();
    let blocks = dir.path().join("blocks");
    std::fs::create_dir(&blocks).unwrap();
    let root = skidder_common::testing::shared_data_dir();
    let root = root.display();
    for (n, file) in [
        "loghub/Spark_2k.log",
        "loghub/Thunderbird_2k.log",
        "zeek/dns.json",
    ]
    .iter()
    .enumerate()
    {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let mut lines = Vec::new();
        let mut records = Vec::new();
        for (i, l) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let t = 1_700_000_000_000_000_000 + i as i64 * 1_000_003;
            records.push((t, lines.len() as u32, l.len() as u32));
            lines.extend_from_slice(l.as_bytes());
            writeln!(
                expected,
                "{}",
                serde_json::json!({"time_ns": t.to_string(), "line": l})
            )
            .unwrap();
        }
        let n_records = records.len() as u32;
        let block = SealedBlock {
            name: BlockName {
                tenant: "t".into(),
                app: file.to_string(),
                hour: 472_222,
                topic: "logs".into(),
                partition: 0,
                first_offset: n as i64 * 10_000,
            },
            last_offset: n as i64 * 10_000 + n_records as i64,
            streams: vec![StreamEntry {
                labels: vec![("source".into(), file.to_string())],
                first_record: 0,
                record_count: n_records,
                min_time_ns: records[0].0,
                max_time_ns: records[records.len() - 1].0,
            }],
            min_time_ns: records[0].0,
            max_time_ns: records[records.len() - 1].0,
            raw_bytes: lines.len() as u64,
            records,
            lines,
            bloom: build_bloom([1u64].into_iter(), 0.01),
        };
        let enc = encode(block, Vec::new());
        std::fs::write(blocks.join(format!("block{n}.seq")), &enc.data).unwrap();
    }
    drop(expected);
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/read_blocks.py"
        ))
        .arg(&blocks)
        .arg(dir.path().join("expected.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Hadoop reader failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK: Hadoop read"), "{stdout}");
}
