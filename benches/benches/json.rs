//! `| json`'s readers on real Zeek DNS lines, whose `rtt` is a float:
//! the unnarrowed reader against a bare serde_json parse of each line into
//! a tree (what it cost before it shared the narrowed reader), and an
//! unwrap of the float against the streaming reader (where the scanner
//! sent every such line before it kept a number's text). Then a metric
//! query's filter checked as its field is read (Loki's
//! `ShouldContinueParsingLine`) against the same filter written as an
//! `or` of itself, which is checked only after the line is read. Run with
//! `cargo bench -p skidder-benches --bench json`; the ratios are in
//! `docs/BENCHMARKS.md`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use skidder_searcher::logql::eval::{Labels, LinePipeline};
use skidder_searcher::logql::json_scan::{self, Recorder};
use skidder_searcher::logql::narrow;
use skidder_searcher::logql::{parse, Query};

fn dns_lines() -> Vec<String> {
    let path = skidder_common::testing::shared_data_dir().join("zeek/dns.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared data set)", path.display()));
    text.lines()
        .filter(|l| l.contains("\"rtt\""))
        .take(20_000)
        .map(str::to_owned)
        .collect()
}

fn benches(c: &mut Criterion) {
    let lines = dns_lines();
    assert!(lines.len() > 1_000, "too few DNS lines with an rtt");
    let bytes: usize = lines.iter().map(String::len).sum();
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("serde_json_value_parse", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                .count()
        })
    });
    g.bench_function("read_all", |b| {
        let mut out = Labels::new();
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                out.clear();
                n += usize::from(narrow::read_all(l, &mut out));
            }
            n
        })
    });
    // `| json | unwrap rtt | __error__=""`: `__error__` is never given,
    // so the line is read whole.
    let names = ["rtt".to_owned(), "__error__".to_owned()];
    g.bench_function("unwrap_float_json_scan", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| json_scan::read(l, &mut Recorder::new(&names)).is_some())
                .count()
        })
    });
    g.bench_function("unwrap_float_read_streaming", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| narrow::read_streaming(l, &mut Recorder::new(&names)))
                .count()
        })
    });
    // `sum by (query) (count_over_time({…} | json | proto="tcp" |
    // __error__="" [1m]))`: nearly every line is UDP, and `proto` comes a
    // third of the way in.
    for (name, filter) in [
        ("filter_checked_as_read", r#"proto="tcp""#),
        ("filter_checked_after", r#"proto="tcp" or proto="tcp""#),
    ] {
        let q = format!(r#"{{a="b"}} | json | {filter} | __error__="""#);
        let Ok(Query::Log(q)) = parse(&q) else {
            panic!("{q}")
        };
        let pipeline = LinePipeline::wanting(&q, &["query".to_owned()].into());
        let stream = Labels::new();
        g.bench_function(name, |b| {
            let mut out = Labels::new();
            b.iter(|| {
                lines
                    .iter()
                    .filter(|l| pipeline.eval(0, l, &stream, &mut out).is_some())
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(json, benches);
criterion_main!(json);
