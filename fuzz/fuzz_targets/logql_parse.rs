//! The LogQL parser is fed raw text from the HTTP API: no input may panic,
//! overflow the stack or take unbounded time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::{parse, parse_duration, Query};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_duration(src);
    match parse(src) {
        Ok(Query::Log(q)) => {
            // Walk what the pipeline walks: every matcher runs its regex.
            for m in &q.matchers {
                let _ = m.matches("");
                let _ = m.matches(src);
            }
            // Debug recurses through the whole tree, as drop does.
            let _ = format!("{q:?}");
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
