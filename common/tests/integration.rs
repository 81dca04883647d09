//! Integration tests for `skidder-common`, in one binary: the storage
//! conformance suite on both backends, and the frozen format golden files.

use skidder_common::format::index::{build_bloom, BlockIndex, StreamEntry};
use skidder_common::format::label_summary::LabelSummary;
use skidder_common::format::manifest::{Entry, Manifest};
use skidder_common::format::offsets::RecordOffsets;
use skidder_common::format::pack;
use skidder_common::format::seqfile::{SeqFileReader, SeqFileWriter};
use skidder_common::format::slices;
use skidder_common::format::tokens::{token_hash, token_hash_v1};
use skidder_common::storage::{conformance, LocalStore, ObjectStore, S3Config, S3Store};
use skidder_common::testing::MotoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_passes_conformance_against_moto() {
    let moto = MotoServer::start();
    // Parts of S3's smallest size, so `put_file` goes up in three.
    let cfg = S3Config {
        multipart_part_bytes: Some(5 << 20),
        ..moto.s3_config()
    };
    let store = S3Store::new("logs", "pfx/", &cfg).await;
    store.create_bucket().await.unwrap();
    conformance::run(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    std::fs::write(&file, vec![7u8; conformance::BIG_FILE_BYTES]).unwrap();
    // Start, three parts, complete.
    assert_eq!(store.put_file("multi/part", &file).await.unwrap(), 5);
    assert_eq!(
        store.head("multi/part").await.unwrap().size,
        conformance::BIG_FILE_BYTES as u64
    );
    // The prefix is honoured: nothing lands outside it.
    let root = S3Store::new("logs", "", &moto.s3_config()).await;
    let all = skidder_common::storage::list_all(&root, "").await.unwrap();
    assert!(!all.is_empty() && all.iter().all(|m| m.key.starts_with("pfx/")));
}

// ---- Golden files: every format version is frozen. ----

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v1");
const GOLDEN_V2_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v2");

/// The records frozen in the v1 golden block, written out by hand.
const RECORDS: &[(i64, &str)] = &[
    (
        1_795_266_000_000_000_000,
        r#"{"level":"info","msg":"started","trace_id":"abc123"}"#,
    ),
    (
        1_795_266_001_000_000_000,
        r#"{"level":"info","msg":"GET /cart 200"}"#,
    ),
    (1_795_266_002_500_000_000, "plain text line with ünïcödé"),
];

fn golden_block() -> Vec<u8> {
    let mut w = SeqFileWriter::new(
        Vec::new(),
        &[("skidder.format", "1"), ("skidder.app", "checkout")],
        *b"0123456789abcdef",
    );
    for (t, l) in RECORDS {
        w.append(*t, l.as_bytes());
    }
    w.finish()
}

/// The v1 index: its bloom holds words and `key=value` field tokens.
fn golden_index(data: &[u8]) -> BlockIndex {
    BlockIndex {
        version: 1,
        min_time_ns: 1_795_266_000_000_000_000,
        max_time_ns: 1_795_266_002_500_000_000,
        record_count: 3,
        raw_bytes: RECORDS.iter().map(|(_, l)| l.len() as u64).sum(),
        tenant: "acme".into(),
        app: "checkout".into(),
        hour: 498_685,
        topic: "logs".into(),
        partition: 3,
        first_offset: 100,
        last_offset: 102,
        data_key: "tenant=acme/dt=2026-11-21/hour=13/app=checkout/logs.3.00000000000000000100.seq"
            .into(),
        data_size: data.len() as u64,
        data_crc32c: crc32c::crc32c(data),
        streams: vec![StreamEntry {
            labels: vec![("level".into(), "info".into())],
            first_record: 0,
            record_count: 3,
            min_time_ns: 1_795_266_000_000_000_000,
            max_time_ns: 1_795_266_002_500_000_000,
        }],
        bloom: build_bloom(
            ["abc123", "started", "level=info"]
                .iter()
                .map(|t| token_hash_v1(t.as_bytes())),
            0.01,
        ),
        offsets: None,
    }
}

#[test]
fn golden_v1_files_still_read_and_are_still_written_identically() {
    let block_path = format!("{GOLDEN_DIR}/block.seq");
    let index_path = format!("{GOLDEN_DIR}/block.idx");
    let block = golden_block();
    let index = golden_index(&block).encode();
    if !std::path::Path::new(&block_path).exists() {
        // First run for a new version: freeze it. Commit the files.
        std::fs::create_dir_all(GOLDEN_DIR).unwrap();
        std::fs::write(&block_path, &block).unwrap();
        std::fs::write(&index_path, &index).unwrap();
        eprintln!("wrote golden files to {GOLDEN_DIR}; commit them");
    }
    let stored_block = std::fs::read(&block_path).unwrap();
    let stored_index = std::fs::read(&index_path).unwrap();

    // Readers keep reading v1.
    let (header, records) = SeqFileReader::read_all(&stored_block).unwrap();
    assert_eq!(header.get("skidder.app"), Some("checkout"));
    let want: Vec<(i64, String)> = RECORDS.iter().map(|(t, l)| (*t, l.to_string())).collect();
    assert_eq!(records, want);
    let idx = BlockIndex::decode(&stored_index).unwrap();
    idx.verify_data(&stored_block).unwrap();
    assert_eq!(
        (idx.tenant.as_str(), idx.partition, idx.first_offset),
        ("acme", 3, 100)
    );
    let bloom = idx.bloom_filter().unwrap();
    for t in ["abc123", "started", "level=info"] {
        assert!(bloom.may_contain(token_hash_v1(t.as_bytes())), "{t}");
    }
    // The header bytes are Hadoop's, spelled out.
    assert!(stored_block.starts_with(b"SEQ\x06\x21org.apache.hadoop.io.LongWritable\x19org.apache.hadoop.io.Text\x01\x01\x26org.apache.hadoop.io.compress.Lz4Codec"));
    assert!(stored_index.starts_with(b"SKIX\x01\x00\x00\x00"));

    // Writers have not drifted: v1 output is byte-identical.
    assert_eq!(
        block, stored_block,
        "the v1 block writer changed: bump the version instead"
    );
    assert_eq!(
        index, stored_index,
        "the v1 index writer changed: bump the version instead"
    );
}

/// The v2 index of the same block: same layout, and its bloom holds the
/// words of field values instead of `key=value` tokens.
fn golden_index_v2(data: &[u8]) -> BlockIndex {
    let mut idx = golden_index(data);
    idx.version = 2;
    idx.bloom = build_bloom(
        ["abc123", "started", "info", "level", "get", "cart", "200"]
            .iter()
            .map(|t| token_hash(t.as_bytes())),
        0.01,
    );
    idx
}

#[test]
fn golden_v2_index_still_reads_and_is_still_written_identically() {
    let path = format!("{GOLDEN_V2_DIR}/block.idx");
    let block = std::fs::read(format!("{GOLDEN_DIR}/block.seq")).unwrap();
    let index = golden_index_v2(&block).encode();
    if !std::path::Path::new(&path).exists() {
        std::fs::create_dir_all(GOLDEN_V2_DIR).unwrap();
        std::fs::write(&path, &index).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKIX\x02\x00\x00\x00"));
    let idx = BlockIndex::decode(&stored).unwrap();
    assert_eq!(idx.version, 2);
    idx.verify_data(&block).unwrap();
    let bloom = idx.bloom_filter().unwrap();
    for t in ["abc123", "info", "cart"] {
        assert!(bloom.may_contain(token_hash(t.as_bytes())), "{t}");
    }
    assert_eq!(
        index, stored,
        "the v2 index writer changed: bump the version instead"
    );
}

const GOLDEN_V3_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/v3");

/// The v3 index of the same block: v2's, and the record-offsets column.
/// Records 1 and 2 are two lines of one message (offset 102).
fn golden_index_v3(data: &[u8]) -> BlockIndex {
    let mut idx = golden_index_v2(data);
    idx.version = 3;
    idx.offsets = Some(RecordOffsets {
        sources: vec![("logs".into(), 3)],
        records: vec![(0, 100), (0, 102), (0, 102)],
    });
    idx
}

#[test]
fn golden_v3_index_still_reads_and_is_still_written_identically() {
    let path = format!("{GOLDEN_V3_DIR}/block.idx");
    let block = std::fs::read(format!("{GOLDEN_DIR}/block.seq")).unwrap();
    let index = golden_index_v3(&block).encode();
    if !std::path::Path::new(&path).exists() {
        std::fs::create_dir_all(GOLDEN_V3_DIR).unwrap();
        std::fs::write(&path, &index).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKIX\x03\x00\x00\x00"));
    // The column, spelled out: one source ("logs", partition 3), then one
    // zigzag delta per record from the first offset (100): 0, +2, 0.
    let column = b"\x01\x00\x00\x00\x04\x00\x00\x00logs\x03\x00\x00\x00\x00\x04\x00";
    let at = stored.len() - 4 - column.len();
    assert_eq!(&stored[at..stored.len() - 4], column);
    let idx = BlockIndex::decode(&stored).unwrap();
    idx.verify_data(&block).unwrap();
    let offsets = idx.offsets.as_ref().unwrap();
    assert_eq!(offsets.records_of("logs", 3, 102), vec![1, 2]);
    assert_eq!(offsets.records_of("logs", 3, 100), vec![0]);
    assert!(idx.bloom_filter().unwrap().may_contain(token_hash(b"cart")));
    // Versions 1 and 2 still read, with no column.
    for v in ["v1", "v2"] {
        let old = std::fs::read(format!("{GOLDEN_DIR}/../{v}/block.idx")).unwrap();
        assert_eq!(BlockIndex::decode(&old).unwrap().offsets, None, "{v}");
    }
    assert_eq!(
        index, stored,
        "the v3 index writer changed: bump the version instead"
    );
}

/// Pack version 1, holding the v1 and v2 golden indexes.
#[test]
fn golden_v1_pack_still_reads_and_is_still_written_identically() {
    let path = format!("{GOLDEN_DIR}/hour.pack");
    let v1 = std::fs::read(format!("{GOLDEN_DIR}/block.idx")).unwrap();
    let v2 = std::fs::read(format!("{GOLDEN_V2_DIR}/block.idx")).unwrap();
    let names = [
        "app=checkout/logs.3.00000000000000000100.idx",
        "app=checkout/logs.3.00000000000000000200.idx",
    ];
    let pack = pack::encode(&[
        pack::Member {
            name: names[0],
            index: &v1,
        },
        pack::Member {
            name: names[1],
            index: &v2,
        },
    ]);
    if !std::path::Path::new(&path).exists() {
        std::fs::write(&path, &pack).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKPK\x01\x00\x00\x00\x02\x00\x00\x00"));
    let members = pack::decode(&stored).unwrap();
    let got: Vec<(&str, u16)> = members
        .iter()
        .map(|m| (m.name, BlockIndex::decode(m.index).unwrap().version))
        .collect();
    assert_eq!(got, vec![(names[0], 1), (names[1], 2)]);
    assert_eq!((members[0].index, members[1].index), (&v1[..], &v2[..]));
    assert_eq!(
        pack, stored,
        "the v1 pack writer changed: bump the version instead"
    );
}

/// Sliced blooms version 1, of the v1 and v2 golden indexes: filters of
/// two sizes, so two groups.
#[test]
fn golden_v1_slices_still_read_and_are_still_written_identically() {
    let path = format!("{GOLDEN_DIR}/hour.slices");
    let v1 = std::fs::read(format!("{GOLDEN_DIR}/block.idx")).unwrap();
    let v2 = std::fs::read(format!("{GOLDEN_V2_DIR}/block.idx")).unwrap();
    let names = [
        "app=checkout/logs.3.00000000000000000100.idx",
        "app=checkout/logs.3.00000000000000000200.idx",
    ];
    let (i1, b1) = BlockIndex::decode_with_bloom(&v1).unwrap();
    let (i2, b2) = BlockIndex::decode_with_bloom(&v2).unwrap();
    let input = |name, bytes: &[u8], index: &BlockIndex, bloom| slices::Input {
        name,
        index_size: bytes.len() as u64,
        index_version: index.version,
        bloom,
    };
    let written = slices::encode(&[
        input(names[0], &v1, &i1, &b1),
        input(names[1], &v2, &i2, &b2),
    ])
    .unwrap()
    .0;
    if !std::path::Path::new(&path).exists() {
        std::fs::write(&path, &written).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKBS\x01\x00\x00\x00"));
    let head = slices::Head::decode(&stored).unwrap();
    assert_eq!(head.total_len, stored.len() as u64);
    assert_eq!(head.groups.len(), 2);
    let got: Vec<(&str, u64, u16)> = head
        .blocks
        .iter()
        .map(|b| (b.name.as_str(), b.index_size, b.index_version))
        .collect();
    assert_eq!(
        got,
        vec![
            (names[0], v1.len() as u64, 1),
            (names[1], v2.len() as u64, 2)
        ]
    );
    // Lookups agree with each block's own filter.
    for word in ["abc123", "started", "cart", "nothere", "level=info"] {
        let tokens = vec![
            Vec::new(),
            vec![token_hash_v1(word.as_bytes())],
            vec![token_hash(word.as_bytes())],
        ];
        let probe = head.probe(&head.blocks, &tokens).unwrap();
        let chunks: slices::Chunks = probe
            .chunks()
            .into_iter()
            .map(|(at, r)| {
                let rows =
                    slices::chunk_rows(&stored[r.start as usize..r.end as usize], &r).unwrap();
                (at, rows.into())
            })
            .collect();
        let out: Vec<&str> = probe
            .ruled_out(&chunks)
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        let mut want = Vec::new();
        if !b1.may_contain(tokens[1][0]) {
            want.push(names[0]);
        }
        if !b2.may_contain(tokens[2][0]) {
            want.push(names[1]);
        }
        assert_eq!(out, want, "{word}");
    }
    assert_eq!(
        written, stored,
        "the v1 sliced-blooms writer changed: bump the version instead"
    );
}

#[tokio::test]
async fn corrupt_objects_are_reported_not_panicked_on() {
    let block = golden_block();
    let idx = golden_index(&block);
    for i in 0..block.len() {
        let mut b = block.clone();
        b[i] ^= 0x10;
        assert!(idx.verify_data(&b).is_err(), "flip at {i} undetected");
        let _ = SeqFileReader::read_all(&b);
    }
}

/// Manifest version 2: version 1's golden entries, one with a label
/// summary of three streams (one without `namespace`).
#[test]
fn golden_v2_manifest_still_reads_and_is_still_written_identically() {
    let path = format!("{GOLDEN_V2_DIR}/hour.mf");
    let mut manifest =
        Manifest::decode(&std::fs::read(format!("{GOLDEN_DIR}/hour.mf")).unwrap()).unwrap();
    let stream = |labels: &[(&str, &str)]| StreamEntry {
        labels: labels
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        first_record: 0,
        record_count: 1,
        min_time_ns: 0,
        max_time_ns: 0,
    };
    manifest.entries[0].labels = LabelSummary::of_streams(&[
        stream(&[("namespace", "payments"), ("pod", "checkout-1")]),
        stream(&[("namespace", "shop"), ("pod", "checkout-2")]),
        stream(&[("pod", "checkout-3")]),
    ]);
    let written = manifest.encode();
    if !std::path::Path::new(&path).exists() {
        std::fs::write(&path, &written).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKMF\x02\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"));
    let read = Manifest::decode(&stored).unwrap();
    assert_eq!(read, manifest);
    let labels = read.entries[0].labels.as_ref().unwrap();
    assert!(labels.may_match("namespace", |v| v == "shop"));
    assert!(!labels.may_match("namespace", |v| v == "billing"));
    assert_eq!(read.entries[1].labels, None);
    assert_eq!(
        written, stored,
        "the v2 manifest writer changed: bump the version instead"
    );
}

/// Manifest version 1: two entries of two apps, one with two sources.
#[test]
fn golden_v1_manifest_still_reads_and_is_still_written_identically() {
    let path = format!("{GOLDEN_DIR}/hour.mf");
    let entry = |name: &str, app: &str, sources: &[&str]| Entry {
        name: name.into(),
        index_size: 4096,
        data_size: 1 << 20,
        app: app.into(),
        min_time_ns: 1_795_266_000_000_000_000,
        max_time_ns: 1_795_269_599_000_000_000,
        records: 1000,
        raw_bytes: 300_000,
        created_ns: 1_795_270_800_000_000_000,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        labels: None,
    };
    let manifest = Manifest {
        generation: 2,
        created_ns: 1_795_271_000_000_000_000,
        entries: vec![
            entry(
                "app=checkout/compacted.0000000001.00000000000000ab.0.idx",
                "checkout",
                &[
                    "app=checkout/logs.3.00000000000000000100.idx",
                    "app=checkout/logs.3.00000000000000000200.idx",
                ],
            ),
            entry(
                "app=web/compacted.0000000002.00000000000000cd.0.idx",
                "web",
                &["app=web/logs.1.00000000000000000007.idx"],
            ),
        ],
    };
    let written = manifest.encode();
    if !std::path::Path::new(&path).exists() {
        std::fs::write(&path, &written).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"SKMF\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"));
    assert_eq!(Manifest::decode(&stored).unwrap(), manifest);
    assert_eq!(
        written, stored,
        "the v1 manifest writer changed: bump the version instead"
    );
}

/// The retention marker (`docs/FORMAT.md`, "Retention cut-offs"), frozen:
/// a marker written by hand here must encode to the committed bytes, the
/// committed bytes must decode to it, and another version is refused.
#[test]
fn golden_retention_marker_still_reads_and_is_still_written_identically() {
    use skidder_common::format::retention::{Cutoffs, RETENTION_VERSION};
    let marker = Cutoffs {
        version: RETENTION_VERSION,
        written_ns: 1_764_900_000_000_000_000,
        before_ns: 1_762_300_800_000_000_000,
        apps: [("audit".to_owned(), 1_733_011_200_000_000_000)]
            .into_iter()
            .collect(),
    };
    let path = format!("{GOLDEN_V2_DIR}/retention.json");
    if !std::path::Path::new(&path).exists() {
        std::fs::write(&path, marker.to_json()).unwrap();
        eprintln!("wrote {path}; commit it");
    }
    let stored = std::fs::read(&path).unwrap();
    assert_eq!(
        Cutoffs::from_json(&stored).unwrap(),
        marker,
        "a committed marker no longer reads: bump the version instead"
    );
    assert_eq!(
        marker.to_json(),
        stored,
        "the marker writer changed: bump the version instead"
    );
    let text = String::from_utf8(stored).unwrap();
    let other = text.replace(
        &format!("\"version\": {RETENTION_VERSION}"),
        &format!("\"version\": {}", RETENTION_VERSION + 1),
    );
    assert_ne!(other, text);
    assert!(Cutoffs::from_json(other.as_bytes()).is_err());
}
