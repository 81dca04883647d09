//! The narrowed `| json` reader against the streaming reader (serde_json's
//! parser): wherever the scanner answers, the streaming reader reads the
//! input as an object as far as it had to, handing the same wanted fields
//! in the same order, and stopping at the same one. No input may panic
//! either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::json_scan::{read, reference_fields, Recorder};
use skidder_searcher::logql::eval::Labels;
use skidder_searcher::logql::narrow::{read_all, read_streaming};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let reference = reference_fields(line);
    // The unnarrowed reader takes what serde_json takes, and gives what
    // the reference gives.
    let mut all = Labels::new();
    assert_eq!(read_all(line, &mut all), reference.is_some(), "{line:?}");
    if let Some(want) = &reference {
        let want: Labels = want.clone().into_iter().collect();
        assert_eq!(all, want, "{line:?}");
    }
    let full = reference.unwrap_or_default();
    // Want every other field the full reader finds, and a few names: the
    // input decides whether the reading stops early.
    let mut names: Vec<String> = full.keys().step_by(2).cloned().collect();
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
