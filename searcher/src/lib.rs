//! Skidder's read path. Empty until the searcher issue lands: it will list
//! object storage, prune blocks by time, labels and bloom filters, and
//! answer LogQL over Loki's HTTP API.
