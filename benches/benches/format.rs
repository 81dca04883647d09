//! Per-stage micro-benchmarks of the format code: LZ4 framing, SequenceFile
//! writing, tokenising. Run with `cargo bench -p skidder-benches`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skidder_common::format::hadoop_lz4;
use skidder_common::format::seqfile::SeqFileWriter;
use skidder_common::format::tokens::for_each_word_hash;

fn sample_lines() -> Vec<String> {
    (0..20_000)
        .map(|i| {
            format!(
                r#"{{"ts":"2026-11-21T13:00:{:02}.{i:06}Z","level":"info","service":"checkout","msg":"Completed /api/v1/cart in {} ms","trace_id":"{:032x}"}}"#,
                i % 60,
                i % 900,
                (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let lines = sample_lines();
    let raw: Vec<u8> = lines.join("\n").into_bytes();
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("hadoop_lz4_compress", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            hadoop_lz4::compress(&raw, &mut out);
        })
    });
    g.bench_function("seqfile_write", |b| {
        b.iter(|| {
            let mut w = SeqFileWriter::new(Vec::new(), &[], [0; 16]);
            for (i, l) in lines.iter().enumerate() {
                w.append(i as i64, l.as_bytes());
            }
            w.finish()
        })
    });
    g.bench_function("tokenize_words", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for l in &lines {
                for_each_word_hash(l.as_bytes(), |h| n ^= h);
            }
            n
        })
    });
    g.finish();
}

criterion_group!(format, benches);
criterion_main!(format);
