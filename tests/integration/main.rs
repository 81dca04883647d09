//! The `skidder` package's integration tests, in one binary. Each runs the
//! real binary against real servers started as separate processes: Apache
//! Kafka, moto (S3) and PySpark (Hadoop's reader). See `scripts/test-all`.

mod backpressure;
mod compose;
mod crash;
mod demo;
mod e2e;
mod exactly_once;
mod export;
mod fault_proxy;
mod hadoop;
mod helm;
mod hostile;
mod kafka_faults;
mod kafka_producers;
mod kafka_security;
mod load;
mod loki_api;
mod observability;
mod offsets;
mod readme;
mod restart_loop;
mod retention;
mod ruler;
mod s3_faults;
mod stage_death;
mod support;
mod tail;
mod topic_changes;
mod zombie;
