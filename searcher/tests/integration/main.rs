//! The searcher's integration tests, in one binary:
//! - `pruning`: pruned results equal a brute-force scan of the input;
//! - `api`: the HTTP service over a real S3 server (moto): tenant
//!   isolation, bearer tokens, query limits, store faults;
//! - `packs`: index packs save GETs and never change a result, even when
//!   late, stale or unreadable;
//! - `tail`: the indexer's tail packs and by-folder listings of a large
//!   hour save requests and never change a result;
//! - `corrupt`: corrupt, truncated and missing objects are skipped with a
//!   warning and counted, never a wrong line or a panic;
//! - `unwrap`: range functions over unwrapped values, with hand-worked
//!   answers;
//! - `readme`: every query of the README's LogQL table parses and runs;
//! - `context`: Grafana's "show context" requests return exactly the
//!   neighbouring lines, across blocks and hours;
//! - `export`: a query's whole result exported to S3, as an HTTP job and
//!   through the library, equals the input's lines, once each.

mod api;
mod context;
mod corrupt;
mod export;
mod fixture;
mod listing;
mod packs;
mod pruning;
mod readme;
mod tail;
mod unwrap;
