//! Skidder's on-storage formats, as pure code over byte slices.
//!
//! Nothing here does I/O or touches tokio, so every decoder can be fuzzed and
//! property-tested in isolation. `docs/FORMAT.md` is the specification; the
//! golden files under `common/tests/golden/` freeze each version.

pub mod error;
pub mod fence;
pub mod hadoop_lz4;
pub mod index;
pub mod label_summary;
pub mod layout;
pub mod ledger;
pub mod manifest;
pub mod offsets;
pub mod pack;
pub mod retention;
pub mod seqfile;
pub mod slices;
pub mod tokens;
pub mod vint;

pub use error::FormatError;
