//! The `skidder` package's integration tests, in one binary. Each runs the
//! real binary against real servers started as separate processes: tansu
//! (Kafka), moto (S3) and PySpark (Hadoop's reader). See `scripts/test-all`.

mod backpressure;
mod crash;
mod demo;
mod e2e;
mod hadoop;
mod loki_api;
mod support;
