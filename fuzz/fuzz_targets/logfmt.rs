//! `| logfmt`'s decoder on any line: no panic; every label name is one
//! Prometheus takes and no value holds U+FFFD, as in Loki; `--strict`
//! gives what the lenient reading gives up to its first fault; and
//! `--keep-empty` only adds empty values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_searcher::logql::logfmt::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let mut lenient = Vec::new();
    let clean = parse(line, &mut lenient, false, false);
    for (name, value) in &lenient {
        assert!(!name.is_empty(), "{line:?}");
        assert!(!name.as_bytes()[0].is_ascii_digit(), "{line:?}");
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line:?}"
        );
        assert!(!value.is_empty() && !value.contains('\u{fffd}'), "{line:?}");
    }
    let mut strict = Vec::new();
    assert_eq!(parse(line, &mut strict, false, true), clean, "{line:?}");
    assert!(lenient.starts_with(&strict), "{line:?}");
    if clean {
        assert_eq!(strict, lenient, "{line:?}");
    }
    let mut kept = Vec::new();
    parse(line, &mut kept, true, false);
    let without_empty: Vec<_> = kept.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    assert_eq!(without_empty, lenient, "{line:?}");
});
