//! Skidder's benchmark harness, as a library the `harness` bench target
//! drives (`benches/benches/harness/`). It measures CPU-seconds from the
//! kernel rather than wall time, and compares every figure with a baseline
//! run in the same process tree, because the machines are shared and noisy.
//!
//! - [`corpus`]: the seeded Kubernetes-style log generator;
//! - [`inproc`]: the indexer pipeline behind an in-process source;
//! - [`kafka`]: the same through a real broker and the real binary;
//! - [`storage`]: sizes and bloom false-positive rates of a store;
//! - [`search`]: LogQL queries, timed, with bytes fetched and pruning;
//! - [`scale`]: a store shaped like 1 TB a day, and what a cold query
//!   costs on it in store requests;
//! - [`measure`]: CPU and memory readings from `/proc` and `getrusage`.

pub mod corpus;
pub mod inproc;
pub mod kafka;
pub mod measure;
pub mod scale;
pub mod search;
pub mod storage;
