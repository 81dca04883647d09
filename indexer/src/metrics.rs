//! Every metric the indexer exports, in one place. Names follow
//! `skidder_indexer_<name>_<unit>[_total]`; stages update them per batch.

use skidder_common::storage::{RequestCounters, StorageErrorKind};

use prometheus::{
    exponential_buckets, Counter, CounterVec, Gauge, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub const STAGES: [&str; 5] = [
    "kafka_reader",
    "parser",
    "block_maker",
    "compressor",
    "uploader",
];

pub struct Metrics {
    pub registry: Registry,
    /// `skidder_store_requests_total{op, caller}` and its bytes: every
    /// request to the store, by the part of the indexer that made it.
    pub store_requests: RequestCounters,
    pub records_in: IntCounterVec,
    pub records_out: IntCounterVec,
    pub bytes_in: IntCounterVec,
    pub bytes_out: IntCounterVec,
    pub queue_bytes: IntGaugeVec,
    pub queue_blocked_seconds: CounterVec,
    pub kafka_pauses: IntCounter,
    pub kafka_paused_seconds: Counter,
    pub kafka_paused: IntGauge,
    pub unconfirmed_assignments: IntCounter,
    pub kafka_errors: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub upload_seconds: HistogramVec,
    pub upload_errors: IntCounterVec,
    pub upload_retries: IntCounter,
    pub blocks_written: IntCounter,
    pub data_bytes_written: IntCounter,
    pub index_bytes_written: IntCounter,
    pub tail_packs_written: IntCounterVec,
    pub tail_pack_bytes: IntGauge,
    pub plain_text_records: IntCounter,
    pub repeated_value_hits: IntCounter,
    pub replay_skipped_records: IntCounter,
    pub deleted_unindexed_records: IntCounter,
    pub replayed_blocks: IntCounter,
    pub memory_cuts: IntCounter,
    pub refused_records: IntCounterVec,
    pub dead_letter_bytes: IntCounter,
    pub resident_bytes: IntGauge,
    pub open_block_bytes: IntGauge,
    pub uploading_bytes: IntGauge,
}

/// Request counters, registered in `r`.
fn store_requests(r: &Registry) -> RequestCounters {
    let s = RequestCounters::new();
    s.register(r).expect("metric registered once");
    s
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are unique constants, so registration cannot collide.
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let c =
            |name: &str, help: &str| reg(&r, IntCounter::new(name, help).expect("valid metric"));
        let g = |name: &str, help: &str| reg(&r, IntGauge::new(name, help).expect("valid metric"));
        let m = Metrics {
            records_in: cv(
                "skidder_indexer_stage_records_in_total",
                "Records entering each stage.",
                &["stage"],
            ),
            records_out: cv(
                "skidder_indexer_stage_records_out_total",
                "Records leaving each stage.",
                &["stage"],
            ),
            bytes_in: cv(
                "skidder_indexer_stage_bytes_in_total",
                "Bytes entering each stage.",
                &["stage"],
            ),
            bytes_out: cv(
                "skidder_indexer_stage_bytes_out_total",
                "Bytes leaving each stage.",
                &["stage"],
            ),
            queue_bytes: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "skidder_indexer_queue_bytes",
                        "Bytes held in each inter-stage queue.",
                    ),
                    &["queue"],
                )
                .expect("valid metric"),
            ),
            queue_blocked_seconds: reg(
                &r,
                CounterVec::new(
                    Opts::new(
                        "skidder_indexer_queue_blocked_seconds_total",
                        "Time producers spent blocked on a full queue (backpressure), per queue.",
                    ),
                    &["queue"],
                )
                .expect("valid metric"),
            ),
            kafka_pauses: c(
                "skidder_indexer_kafka_pauses_total",
                "Times Kafka fetching was paused by backpressure.",
            ),
            kafka_paused_seconds: reg(
                &r,
                Counter::new(
                    "skidder_indexer_kafka_paused_seconds_total",
                    "Time Kafka fetching spent paused.",
                )
                .expect("valid metric"),
            ),
            kafka_paused: g(
                "skidder_indexer_kafka_paused",
                "1 while Kafka fetching is paused by backpressure (memory or a full parser queue), else 0.",
            ),
            kafka_errors: c(
                "skidder_indexer_kafka_errors_total",
                "Errors reported by the Kafka consumer.",
            ),
            consumer_lag: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "skidder_indexer_consumer_lag_records",
                        "High watermark minus the next offset to read.",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid metric"),
            ),
            upload_seconds: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "skidder_indexer_upload_duration_seconds",
                        "Object upload latency.",
                    )
                    .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
                    &["object"],
                )
                .expect("valid metric"),
            ),
            upload_errors: cv(
                "skidder_indexer_upload_errors_total",
                "Failed upload attempts, by error kind.",
                &["kind"],
            ),
            upload_retries: c(
                "skidder_indexer_upload_retries_total",
                "Upload attempts that were retries.",
            ),
            blocks_written: c(
                "skidder_indexer_blocks_written_total",
                "Data blocks stored with their index.",
            ),
            data_bytes_written: c(
                "skidder_indexer_data_bytes_written_total",
                "Bytes of data blocks stored.",
            ),
            index_bytes_written: c(
                "skidder_indexer_index_bytes_written_total",
                "Bytes of index objects stored.",
            ),
            tail_packs_written: cv(
                "skidder_indexer_tail_packs_written_total",
                "Tail packs of the newest hours' indexes, by result: ok, or failed (given up; readers GET those indexes one by one).",
                &["result"],
            ),
            tail_pack_bytes: g(
                "skidder_indexer_tail_pack_bytes",
                "Bytes of index copies waiting for their tail pack.",
            ),
            plain_text_records: c(
                "skidder_indexer_plain_text_records_total",
                "Records kept as plain text because they were not JSON or not UTF-8.",
            ),
            repeated_value_hits: c(
                "skidder_indexer_repeated_value_hits_total",
                "Nested JSON values whose words the parser took from its cache of repeated values.",
            ),
            replay_skipped_records: c(
                "skidder_indexer_replay_skipped_records_total",
                "Replayed records skipped because a stored block already holds them.",
            ),
            deleted_unindexed_records: c(
                "skidder_indexer_kafka_deleted_unindexed_records_total",
                "Records Kafka deleted (retention, delete-records) before the indexer read them; they are lost.",
            ),
            unconfirmed_assignments: c(
                "skidder_indexer_unconfirmed_assignments_total",
                "Assignments whose confirming commit Kafka refused (this member was not in the group's current generation); their partitions stay unread until the group rebalances.",
            ),
            replayed_blocks: c(
                "skidder_indexer_replayed_blocks_total",
                "Blocks rebuilt from the ledger after a restart.",
            ),
            memory_cuts: c(
                "skidder_indexer_memory_cut_blocks_total",
                "Blocks cut early because open blocks passed their memory budget.",
            ),
            refused_records: cv(
                "skidder_indexer_refused_records_total",
                "Records refused by a limit and written whole to the dead-letter prefix, by reason.",
                &["reason"],
            ),
            dead_letter_bytes: c(
                "skidder_indexer_dead_letter_bytes_total",
                "Bytes written to the dead-letter prefix.",
            ),
            resident_bytes: g(
                "skidder_indexer_resident_memory_bytes",
                "Resident memory of the process.",
            ),
            open_block_bytes: g(
                "skidder_indexer_open_block_bytes",
                "Bytes in blocks being built.",
            ),
            uploading_bytes: g(
                "skidder_indexer_uploading_bytes",
                "Bytes of blocks being uploaded.",
            ),
            store_requests: store_requests(&r),
            registry: r,
        };
        // Series that start at zero, so dashboards and alerts see them
        // before the first event.
        for stage in STAGES {
            for v in [&m.records_in, &m.records_out, &m.bytes_in, &m.bytes_out] {
                v.with_label_values(&[stage]);
            }
        }
        for kind in StorageErrorKind::ALL {
            m.upload_errors.with_label_values(&[kind.as_str()]);
        }
        for reason in crate::dead_letter::Reason::ALL {
            m.refused_records.with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "failed"] {
            m.tail_packs_written.with_label_values(&[result]);
        }
        m
    }

    /// A stage's four counters, looked up once for a hot loop.
    pub fn stage_counters(&self, stage: &str) -> StageCounters {
        StageCounters {
            records_in: self.records_in.with_label_values(&[stage]),
            bytes_in: self.bytes_in.with_label_values(&[stage]),
            records_out: self.records_out.with_label_values(&[stage]),
            bytes_out: self.bytes_out.with_label_values(&[stage]),
        }
    }

    /// Counts a batch through a stage.
    pub fn stage(
        &self,
        stage: &str,
        records_in: u64,
        bytes_in: u64,
        records_out: u64,
        bytes_out: u64,
    ) {
        self.records_in
            .with_label_values(&[stage])
            .inc_by(records_in);
        self.bytes_in.with_label_values(&[stage]).inc_by(bytes_in);
        self.records_out
            .with_label_values(&[stage])
            .inc_by(records_out);
        self.bytes_out.with_label_values(&[stage]).inc_by(bytes_out);
    }
}

/// See [`Metrics::stage_counters`].
pub struct StageCounters {
    records_in: IntCounter,
    bytes_in: IntCounter,
    records_out: IntCounter,
    bytes_out: IntCounter,
}

impl StageCounters {
    pub fn add(&self, records_in: u64, bytes_in: u64, records_out: u64, bytes_out: u64) {
        self.records_in.inc_by(records_in);
        self.bytes_in.inc_by(bytes_in);
        self.records_out.inc_by(records_out);
        self.bytes_out.inc_by(bytes_out);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The metrics of `skidder compact` and `skidder retention`, the
/// maintenance passes over settled hours: what they did, when they last
/// succeeded (a dashboard's "compaction lag"), and what each tenant
/// stores. Served on `--metrics-listen`.
pub struct MaintenanceMetrics {
    pub registry: Registry,
    /// Every request the passes make, under `caller="maintenance"`.
    pub store_requests: RequestCounters,
    pub compactor_passes: IntCounterVec,
    pub compactor_last_success: Gauge,
    pub hours_compacted: IntCounter,
    pub hours_failed: IntCounter,
    pub compacted_blocks_written: IntCounter,
    pub compacted_bytes_written: IntCounter,
    pub compactor_objects_deleted: IntCounter,
    pub retention_passes: IntCounterVec,
    pub retention_last_success: Gauge,
    pub retention_deleted_bytes: IntCounterVec,
    pub retention_deleted_objects: IntCounterVec,
    pub retention_oldest_hour_age: IntGaugeVec,
    pub tenant_stored_bytes: IntGaugeVec,
    pub tenant_stored_objects: IntGaugeVec,
}

impl Default for MaintenanceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MaintenanceMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let cv = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gv = |name: &str, help: &str| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), &["tenant"]).expect("valid metric"),
            )
        };
        let c =
            |name: &str, help: &str| reg(&r, IntCounter::new(name, help).expect("valid metric"));
        let fg = |name: &str, help: &str| reg(&r, Gauge::new(name, help).expect("valid metric"));
        let m = MaintenanceMetrics {
            compactor_passes: cv(
                "skidder_compactor_passes_total",
                "Compaction passes, by result (ok, failed).",
                &["result"],
            ),
            compactor_last_success: fg(
                "skidder_compactor_last_success_timestamp_seconds",
                "When the last compaction pass that succeeded ended (Unix seconds).",
            ),
            hours_compacted: c(
                "skidder_compactor_hour_compactions_total",
                "Hours whose small blocks were compacted.",
            ),
            hours_failed: c(
                "skidder_compactor_hour_failures_total",
                "Hours a compaction pass could not compact (tried again next pass).",
            ),
            compacted_blocks_written: c(
                "skidder_compactor_blocks_written_total",
                "Compacted blocks written.",
            ),
            compacted_bytes_written: c(
                "skidder_compactor_bytes_written_total",
                "Bytes of compacted blocks written, data and index.",
            ),
            compactor_objects_deleted: c(
                "skidder_compactor_objects_deleted_total",
                "Small blocks and stale objects deleted after the grace period.",
            ),
            retention_passes: cv(
                "skidder_retention_passes_total",
                "Retention passes, by result (ok, failed).",
                &["result"],
            ),
            retention_last_success: fg(
                "skidder_retention_last_success_timestamp_seconds",
                "When the last retention pass that succeeded ended (Unix seconds).",
            ),
            retention_deleted_bytes: cv(
                "skidder_retention_deleted_bytes_total",
                "Bytes retention deleted, by tenant.",
                &["tenant"],
            ),
            retention_deleted_objects: cv(
                "skidder_retention_deleted_objects_total",
                "Objects retention deleted, by tenant.",
                &["tenant"],
            ),
            retention_oldest_hour_age: gv(
                "skidder_retention_oldest_hour_age_seconds",
                "Age of the start of the oldest hour a tenant keeps, at the last retention pass.",
            ),
            tenant_stored_bytes: gv(
                "skidder_tenant_stored_bytes",
                "Bytes a tenant stores, as the last retention pass left it.",
            ),
            tenant_stored_objects: gv(
                "skidder_tenant_stored_objects",
                "Objects a tenant stores, as the last retention pass left it.",
            ),
            store_requests: store_requests(&r),
            registry: r,
        };
        for result in ["ok", "failed"] {
            m.compactor_passes.with_label_values(&[result]);
            m.retention_passes.with_label_values(&[result]);
        }
        m
    }
}
