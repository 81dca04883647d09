//! Retention markers (`tenant=<t>/_retention.json`) come from object
//! storage like every other object: decoding one must return an error,
//! never panic, and what decodes must answer every hour without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skidder_common::format::retention::Cutoffs;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Cutoffs::from_json(data) else {
        return;
    };
    // One reading per marker: what decodes survives a round trip.
    assert_eq!(Cutoffs::from_json(&c.to_json()).ok(), Some(c.clone()));
    for hour in [i64::MIN, -1, 0, 1, 500_000, i64::MAX] {
        let _ = (c.hides_default(hour), c.hides_any(hour), c.hides_hour(hour));
        for app in c.apps.keys() {
            let _ = c.hides(hour, app);
        }
    }
});
