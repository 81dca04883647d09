//! The LogQL parser is fed raw text from the HTTP API: no input may panic,
//! overflow the stack or take unbounded time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::eval::LinePipeline;
use skidder_searcher::logql::{format_query, parse, parse_duration, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(src);
    let _ = format_query(src);
    match parse(src) {
        Ok(Query::Log(q)) => {
            // Walk what the pipeline walks: every matcher runs its regex.
            for m in &q.matchers {
                let _ = m.matches("");
                let _ = m.matches(src);
            }
            // Debug recurses through the whole tree, as drop does.
            let _ = format!("{q:?}");
            // Run the pipeline (parsers, filters, templates) on the input
            // itself, with a stream label a template may read.
            let stream = vec![("level".to_owned(), src.to_owned())];
            let mut extracted = Vec::new();
            let _ =
                LinePipeline::new(&q).eval(1_700_000_000_000_000_000, src, &stream, &mut extracted);
        }
        Ok(Query::Metric(e)) => {
            let _ = e.log_query();
            let _ = format!("{e:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
