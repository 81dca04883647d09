//! The narrowed `| json` reader against the streaming reader (serde_json's
//! parser): wherever the scanner answers, the streaming reader reads the
//! input as an object as far as it had to, handing the same wanted fields
//! in the same order, and stopping at the same one. No input may panic
//! either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::eval::{flatten_json, Labels};
use skidder_searcher::logql::json_scan::{read, Recorder};
use skidder_searcher::logql::narrow::read_streaming;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let mut full = Labels::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        flatten_json(&v, &mut full);
    }
    // Want every other field the full reader finds, and a few names: the
    // input decides whether the reading stops early.
    let mut names: Vec<String> = full.iter().step_by(2).map(|(k, _)| k.clone()).collect();
    names.extend(["a", "a_b", "level", "_1"].map(str::to_owned));
    if data.len() % 2 == 0 {
        names.truncate(1);
    }
    let mut slow = Recorder::new(&names);
    let streamed = read_streaming(line, &mut slow);
    let mut fast = Recorder::new(&names);
    if read(line, &mut fast).is_none() {
        return;
    }
    assert!(streamed, "answered what serde_json refuses: {line:?}");
    assert_eq!(fast.takes, slow.takes, "{line:?}");
});
