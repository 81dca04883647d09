//! Code shared by Skidder's indexer and searcher, in three modules that do
//! not depend on each other, each ready to become its own crate:
//!
//! - [`format`](mod@format): the on-storage formats, pure code over byte slices;
//! - [`storage`]: the object-store interface, its backends and its test suite;
//! - [`service`]: what every long-running service needs: metrics serving and
//!   shutdown signals.
//!
//! The `testing` feature adds test support: `storage::conformance`, the
//! suite every storage backend must pass, and `testing`, launchers for the
//! real servers that integration tests run against.

pub mod claims;
pub mod format;
pub mod service;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
