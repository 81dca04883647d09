//! The narrowed `| json` reader against serde_json, `| json`'s full
//! reader: wherever it answers, serde_json reads the input as an object,
//! with the same wanted fields in the same order. No input may panic it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::eval::{flatten_json, Labels};
use skidder_searcher::logql::json_scan::{read, Wants};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = serde_json::from_str::<serde_json::Value>(line).ok();
    let mut full = Labels::new();
    if let Some(v) = &parsed {
        flatten_json(v, &mut full);
    }
    // Want every other field the full reader finds, and a few names.
    let mut names: Vec<String> = full.iter().step_by(2).map(|(k, _)| k.clone()).collect();
    names.extend(["a", "a_b", "level", "_1"].map(str::to_owned));
    let wants = |path: &str| Wants::of(names.iter().map(String::as_str), path);
    let mut got = Labels::new();
    if read(line, &wants, &mut got).is_none() {
        return;
    }
    assert!(
        matches!(parsed, Some(serde_json::Value::Object(_))),
        "answered what serde_json refuses: {line:?}"
    );
    full.retain(|(k, _)| names.contains(k));
    assert_eq!(got, full, "{line:?}");
});
