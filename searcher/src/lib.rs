//! Skidder's read path: stateless LogQL search over object storage, served
//! over Loki's HTTP API so Grafana and logcli work unchanged.
//!
//! - [`logql`]: the query language, parsed with positioned errors;
//! - [`pipeline`]: per-line evaluation (filters, parsers, label filters);
//! - [`engine`]: listing, pruning (time, labels, bloom), scanning, metrics;
//! - [`api`]: Loki's HTTP endpoints.

pub mod api;
pub mod cache;
pub mod engine;
pub mod logql;
pub mod metrics;
pub mod pipeline;
