//! Hive and Spark must read our data blocks directly. This test writes
//! blocks from real log lines through the indexer's own compressor, then
//! has Hadoop's SequenceFile reader (bundled in PySpark) read them back and
//! compare every record. PySpark is installed by `.ci/run`; if it is
//! missing the test fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use skidder_common::format::index::{build_bloom, BlockIndex, StreamEntry};
use skidder_common::format::layout::{
    hour_of, hour_prefix, index_key_of, is_compacted, now_ns, BlockName,
};
use skidder_common::format::seqfile::SeqFileReader;
use skidder_common::storage::{list_all, LocalStore, ObjectStore};
use skidder_indexer::compactor::{compact_hour, CompactOptions};
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

/// The real log files the tests read, with a short app name for each.
const FILES: [(&str, &str); 3] = [
    ("loghub/Spark_2k.log", "spark"),
    ("loghub/Thunderbird_2k.log", "thunderbird"),
    ("zeek/dns.json", "zeek"),
];

/// A block of `lines` (with their times) as the block maker seals it: one
/// stream, named after the app.
fn sealed(app: &str, first_offset: i64, recs: &[(i64, &str)]) -> SealedBlock {
    let mut lines = Vec::new();
    let mut records = Vec::new();
    for (t, l) in recs {
        records.push((*t, lines.len() as u32, l.len() as u32));
        lines.extend_from_slice(l.as_bytes());
    }
    let (min, max) = (recs[0].0, recs[recs.len() - 1].0);
    SealedBlock {
        name: BlockName {
            tenant: "t".into(),
            app: app.into(),
            hour: hour_of(min),
            topic: "logs".into(),
            partition: 0,
            first_offset,
            epoch: 0,
        },
        last_offset: first_offset + recs.len() as i64 - 1,
        streams: vec![StreamEntry {
            labels: vec![("source".into(), app.into())],
            first_record: 0,
            record_count: recs.len() as u32,
            min_time_ns: min,
            max_time_ns: max,
        }],
        min_time_ns: min,
        max_time_ns: max,
        raw_bytes: lines.len() as u64,
        offsets: (first_offset..).take(recs.len()).collect(),
        records,
        lines,
        bloom: build_bloom([1u64].into_iter(), 0.01),
    }
}

/// The non-blank lines of `text` with times 1 ms apart, each also written
/// to `expected` as the reader must return it.
fn records_of<'t>(text: &'t str, expected: &mut std::fs::File) -> Vec<(i64, &'t str)> {
    let recs: Vec<(i64, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| (1_700_000_000_000_000_000 + i as i64 * 1_000_003, l))
        .collect();
    for r in &recs {
        let line = serde_json::json!({"time_ns": r.0.to_string(), "line": r.1});
        writeln!(expected, "{line}").unwrap();
    }
    recs
}

/// Runs Hadoop's reader over `pattern` against `expected`.
fn hadoop_reads(pattern: &std::path::Path, expected: &std::path::Path) {
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/read_blocks.py"
        ))
        .arg(pattern)
        .arg(expected)
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

/// A settled day after compaction, its sources deleted once the grace
/// period passed: a `*.seq` glob over the day in Spark returns every
/// record exactly once.
#[test]
fn spark_reads_each_record_of_a_compacted_day_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = LocalStore::new(&root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut expected = std::fs::File::create(dir.path().join("expected.jsonl")).unwrap();
    let data = skidder_common::testing::shared_data_dir();
    let mut hours = std::collections::BTreeSet::new();
    // Each record's line by its Kafka offset, to check the compacted
    // indexes' offsets columns against.
    let mut by_offset = std::collections::HashMap::new();
    for (n, (file, app)) in FILES.iter().enumerate() {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        let recs = records_of(&text, &mut expected);
        // Small blocks of 300 records, as many flushes would cut them.
        for (c, chunk) in recs.chunks(300).enumerate() {
            let block = sealed(app, (n * 10_000 + c * 300) as i64, chunk);
            for (o, (_, line)) in block.offsets.iter().zip(chunk) {
                by_offset.insert(*o, line.to_string());
            }
            hours.insert(block.name.hour);
            let enc = encode(block, Vec::new());
            rt.block_on(store.put(&enc.data_key, enc.data)).unwrap();
            rt.block_on(store.put(&enc.index_key, enc.index)).unwrap();
        }
    }
    drop(expected);
    let opts = CompactOptions {
        grace_ns: 0,
        // Blocks written here have no ledger or checkpoints behind them.
        require_checkpoint: false,
        ..Default::default()
    };
    // One pass compacts, the next deletes the sources.
    for _ in 0..2 {
        for &hour in &hours {
            rt.block_on(compact_hour(
                &store,
                &hour_prefix("t", hour),
                &opts,
                now_ns(),
            ))
            .unwrap();
        }
    }
    let keys: Vec<String> = rt
        .block_on(list_all(&store, ""))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.ends_with(".seq"))
        .collect();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| is_compacted(k)),
        "small blocks left: {keys:?}"
    );
    // Compaction carries each record's Kafka offset into its index (v3).
    let mut traced = 0;
    for key in &keys {
        let idx = rt.block_on(store.get(&index_key_of(key))).unwrap();
        let idx = BlockIndex::decode(&idx).unwrap();
        let offsets = idx
            .offsets
            .expect("a compacted index of v3 sources has offsets");
        assert_eq!(offsets.sources, vec![("logs".to_string(), 0)]);
        let data = rt.block_on(store.get(key)).unwrap();
        let (_, records) = SeqFileReader::read_all(&data).unwrap();
        assert_eq!(records.len(), offsets.records.len());
        for ((_, line), (_, offset)) in records.iter().zip(&offsets.records) {
            assert_eq!(
                by_offset.get(offset),
                Some(line),
                "offset {offset} in {key}"
            );
            traced += 1;
        }
    }
    assert_eq!(traced, by_offset.len());
    hadoop_reads(
        &root.join("tenant=t/dt=*/hour=*/app=*/*.seq"),
        &dir.path().join("expected.jsonl"),
    );
}

#[test]
fn hadoop_sequencefile_reader_reads_our_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = std::fs::File::create(dir.path().join("expected.jsonl")).unwrap();
    let blocks = dir.path().join("blocks");
    std::fs::create_dir(&blocks).unwrap();
    let data = skidder_common::testing::shared_data_dir();
    for (n, (file, _)) in FILES.iter().enumerate() {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        let recs = records_of(&text, &mut expected);
        let enc = encode(sealed(file, n as i64 * 10_000, &recs), Vec::new());
        std::fs::write(blocks.join(format!("block{n}.seq")), &enc.data).unwrap();
    }
    drop(expected);
    hadoop_reads(&blocks, &dir.path().join("expected.jsonl"));
}
