//! Per-stage micro-benchmarks of the format code: LZ4 framing, SequenceFile
//! writing, tokenising, slicing bloom filters. Run with `cargo bench -p
//! skidder-benches --bench format`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skidder_common::format::hadoop_lz4;
use skidder_common::format::index::for_each_set_bit;
use skidder_common::format::seqfile::SeqFileWriter;
use skidder_common::format::slices;
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

/// 1,024 filters of 64 KiB, half their bits set (as a full filter has):
/// a day's compacted blocks at 1 TB a day are about 7,700 such columns.
fn sample_filters() -> Vec<Vec<u8>> {
    (0..1024u64)
        .map(|i| {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..64 << 10)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// Turning filters into sliced rows, in 32 MiB bands as `skidder pack`
/// does for a day, against two baselines in the same run: copying the
/// bytes (the floor), and setting one row bit per set filter bit (how
/// rows were filled until December 7).
fn slicing(c: &mut Criterion) {
    let filters = sample_filters();
    let header = [0u8; 45];
    let names: Vec<String> = (0..filters.len()).map(|i| format!("b{i:05}")).collect();
    let columns: Vec<slices::Column<'_>> = names
        .iter()
        .map(|name| slices::Column {
            name,
            index_size: 1,
            index_version: 2,
            bits: 8 * (64 << 10),
            header: &header,
        })
        .collect();
    let plan = slices::plan(&columns, 1).unwrap();
    let total: usize = filters.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("slices");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10);
    g.bench_function("write_rows", |b| {
        b.iter(|| {
            let mut n = 0usize;
            plan.write_rows(
                32 << 20,
                |i, start, buf| {
                    let start = start as usize;
                    buf.copy_from_slice(&filters[i][start..start + buf.len()]);
                    Ok::<(), ()>(())
                },
                |bytes| {
                    n += bytes.len();
                    Ok(())
                },
            )
            .unwrap();
            n
        })
    });
    g.bench_function("baseline_copy", |b| {
        let mut out = vec![0u8; total];
        b.iter(|| {
            for (i, f) in filters.iter().enumerate() {
                out[i * f.len()..(i + 1) * f.len()].copy_from_slice(f);
            }
            out[total / 2]
        })
    });
    g.bench_function("baseline_bit_by_bit", |b| {
        let row_bytes = filters.len() / 8;
        let mut rows = vec![0u8; total];
        b.iter(|| {
            rows.fill(0);
            for (column, f) in filters.iter().enumerate() {
                let (byte, bit) = (column / 8, 1u8 << (column % 8));
                for_each_set_bit(f, |row| rows[row as usize * row_bytes + byte] |= bit);
            }
            rows[total / 2]
        })
    });
    g.finish();
}

criterion_group!(format, benches, slicing);
criterion_main!(format);
