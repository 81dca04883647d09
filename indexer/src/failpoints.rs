//! Named crash points for the soak test. Killing a process at a random
//! moment hits the narrow windows (between the data and the index upload,
//! between a stored block and its offset commit) only by luck; a crash
//! point aborts the process exactly there, as `kill -9` would, so every
//! window is proven on purpose.
//!
//! Compiled in only with the `failpoints` feature. Points are armed by the
//! `FAILPOINTS` environment variable in the `fail` crate's syntax, e.g.
//! `FAILPOINTS='uploader::after_data=3*off->return'` aborts the process the
//! fourth time a block's data object is stored. Without the feature every
//! point is an empty inline function.

/// Every crash point, in pipeline order.
pub const POINTS: &[&str] = &[
    "block_maker::mid_batch",
    "uploader::after_ledger",
    "uploader::after_data",
    "uploader::after_index",
    "uploader::after_checkpoint",
    "kafka_reader::before_commit",
];

/// One point inside each stage's work, as (stage, point), for the test
/// that makes each stage die in turn: armed with the `panic` action
/// (`parser::batch=3*off->panic`) the stage panics there, on its own
/// thread (the uploader's in an upload task), as a bug would.
pub const STAGE_POINTS: &[(&str, &str)] = &[
    ("kafka_reader", "kafka_reader::message"),
    ("parser", "parser::batch"),
    ("block_maker", "block_maker::mid_batch"),
    ("compressor", "compressor::block"),
    ("uploader", "uploader::before_ledger"),
];

/// Arms the points named in `FAILPOINTS`; call once at start-up.
#[cfg(feature = "failpoints")]
pub fn setup() {
    // The scenario holds the registry; it lives as long as the process.
    std::mem::forget(fail::FailScenario::setup());
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        tracing::warn!(%spec, "crash points armed");
    }
}

#[cfg(not(feature = "failpoints"))]
pub fn setup() {}

/// Aborts the process here if the point `name` is armed with `return`
/// and fires; panics here if it is armed with `panic`.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    if fail::eval(name, |_| ()).is_some() {
        eprintln!("crash point {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}
