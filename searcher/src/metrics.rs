//! Every metric the searcher exports, in one place.

use skidder_common::storage::{RequestCounters, StorageErrorKind};

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub hour_listings: IntCounter,
    pub blocks_listed: IntCounter,
    pub blocks_pruned: IntCounterVec,
    pub blocks_fetched: IntCounter,
    pub blocks_scanned: IntCounter,
    pub bytes_fetched: IntCounter,
    pub bytes_decompressed: IntCounter,
    pub lines_matched: IntCounter,
    pub cache: IntCounterVec,
    pub corrupt_objects: IntCounter,
    /// Index packs read, by result (`ok`, or `unreadable`: the query then
    /// fetched that hour's indexes one by one).
    pub packs_read: IntCounterVec,
    /// Hours pruned with sliced blooms, by result (`ok`, or `unreadable`:
    /// the query then read that hour's indexes instead).
    pub slices_read: IntCounterVec,
    /// Compaction manifests read, by result (`ok`, or `unreadable`: the
    /// query then read that hour's small blocks and no compacted one).
    pub manifests_read: IntCounterVec,
    /// Indexes (packed or cached copies) a block's checksum proved out of
    /// date, the block having been rewritten since; the query read the
    /// index object again and scanned with it.
    pub stale_indexes: IntCounter,
    /// Store faults during queries, by operation (`list`, `get_index`,
    /// `get_block`) and error kind; each failed its query with a 502.
    pub store_errors: IntCounterVec,
    /// Requests refused by a limit or by authentication, by reason.
    pub queries_rejected: IntCounterVec,
    /// Empty answers for a tenant that has no data in the store at all:
    /// most often a searcher and an indexer that disagree on the tenant.
    pub no_data_tenant_answers: IntCounter,
    pub queries_in_flight: IntGauge,
    /// Export jobs ended, by result (`ok`, `failed`).
    pub exports: IntCounterVec,
    /// Lines written by exports.
    pub export_lines: IntCounter,
    /// What the ruler sent, by target (`alertmanager`, `remote_write`)
    /// and result (`ok`, `failed`).
    pub ruler_sent: IntCounterVec,
    /// Live tails open.
    pub tails_active: IntGauge,
    /// Lines sent to live tails.
    pub tail_lines_sent: IntCounter,
    /// Lines a live tail did not send, by reason (`slow_client`: the client
    /// fell behind; `lagged`: the session fell behind the feed).
    pub tail_dropped: IntCounterVec,
    /// `skidder_store_requests_total{op, caller}` and its bytes: every
    /// request to the store, by step of the read path.
    pub store_requests: RequestCounters,
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c).expect("metric registered once")
        };
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let cv = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(m.clone()));
            m
        };
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "skidder_searcher_request_duration_seconds",
                "HTTP request latency by endpoint.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["endpoint"],
        )
        .expect("valid metric");
        reg(Box::new(request_seconds.clone()));
        let m = Metrics {
            requests: cv(
                "skidder_searcher_requests_total",
                "HTTP requests by endpoint and status.",
                &["endpoint", "status"],
            ),
            request_seconds,
            hour_listings: c(
                "skidder_searcher_hour_listings_total",
                "Hour prefixes listed.",
            ),
            blocks_listed: c(
                "skidder_searcher_blocks_listed_total",
                "Blocks found by listing.",
            ),
            blocks_pruned: cv(
                "skidder_searcher_blocks_pruned_total",
                "Blocks pruned, by rule.",
                &["rule"],
            ),
            blocks_fetched: c(
                "skidder_searcher_blocks_fetched_total",
                "Data blocks fetched.",
            ),
            blocks_scanned: c(
                "skidder_searcher_blocks_scanned_total",
                "Data blocks scanned.",
            ),
            bytes_fetched: c(
                "skidder_searcher_bytes_fetched_total",
                "Bytes fetched from the store.",
            ),
            bytes_decompressed: c(
                "skidder_searcher_bytes_decompressed_total",
                "Log bytes decompressed.",
            ),
            lines_matched: c(
                "skidder_searcher_lines_matched_total",
                "Lines that matched a query.",
            ),
            cache: cv(
                "skidder_searcher_cache_requests_total",
                "Cache lookups by cache and result.",
                &["cache", "result"],
            ),
            corrupt_objects: c(
                "skidder_searcher_corrupt_objects_total",
                "Objects skipped as corrupt.",
            ),
            packs_read: cv(
                "skidder_searcher_index_packs_read_total",
                "Index packs read, by result.",
                &["result"],
            ),
            slices_read: cv(
                "skidder_searcher_sliced_blooms_read_total",
                "Hours pruned with sliced blooms, by result.",
                &["result"],
            ),
            manifests_read: cv(
                "skidder_searcher_manifests_read_total",
                "Compaction manifests read, by result.",
                &["result"],
            ),
            stale_indexes: c(
                "skidder_searcher_stale_indexes_total",
                "Packed or cached indexes found out of date by their block's checksum, and read again.",
            ),
            store_errors: cv(
                "skidder_searcher_store_errors_total",
                "Object-store faults that failed a query, by operation and kind.",
                &["op", "kind"],
            ),
            queries_rejected: cv(
                "skidder_searcher_queries_rejected_total",
                "Requests refused by a limit or authentication, by reason.",
                &["reason"],
            ),
            no_data_tenant_answers: c(
                "skidder_searcher_no_data_tenant_answers_total",
                "Empty answers for a tenant with no data at all in the store (a tenant mismatch?).",
            ),
            exports: cv(
                "skidder_searcher_exports_total",
                "Exports ended, by result.",
                &["result"],
            ),
            export_lines: c(
                "skidder_searcher_export_lines_total",
                "Lines written by exports.",
            ),
            ruler_sent: cv(
                "skidder_searcher_ruler_sent_total",
                "Requests the ruler sent, by target and result.",
                &["target", "result"],
            ),
            tails_active: {
                let g = IntGauge::new("skidder_searcher_tails_active", "Live tails open.")
                    .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            tail_lines_sent: c(
                "skidder_searcher_tail_lines_sent_total",
                "Lines sent to live tails.",
            ),
            tail_dropped: cv(
                "skidder_searcher_tail_dropped_lines_total",
                "Lines live tails dropped, by reason.",
                &["reason"],
            ),
            queries_in_flight: {
                let g = IntGauge::new(
                    "skidder_searcher_queries_in_flight",
                    "Queries holding a concurrency slot.",
                )
                .expect("valid metric");
                reg(Box::new(g.clone()));
                g
            },
            store_requests: {
                let s = RequestCounters::new();
                s.register(&r).expect("metric registered once");
                s
            },
            registry: r,
        };
        m.start_at_zero();
        m
    }

    /// Starts the series whose labels are known at zero, so dashboards and
    /// alerts see them before the first event. The values are those the
    /// engine and the API use.
    fn start_at_zero(&self) {
        for reason in [
            "time_range",
            "bytes_scanned",
            "series",
            "samples",
            "matching",
            "tenant",
            "auth",
            "concurrency",
            "timeout",
            "tail_limit",
        ] {
            self.queries_rejected.with_label_values(&[reason]);
        }
        for rule in ["time", "labels", "bloom", "manifest_labels"] {
            self.blocks_pruned.with_label_values(&[rule]);
        }
        for result in ["ok", "failed"] {
            self.exports.with_label_values(&[result]);
        }
        for target in ["alertmanager", "remote_write"] {
            for result in ["ok", "failed"] {
                self.ruler_sent.with_label_values(&[target, result]);
            }
        }
        for reason in ["slow_client", "lagged"] {
            self.tail_dropped.with_label_values(&[reason]);
        }
        for v in [&self.packs_read, &self.slices_read, &self.manifests_read] {
            for result in ["ok", "unreadable"] {
                v.with_label_values(&[result]);
            }
        }
        for op in [
            "list",
            "get_manifest",
            "get_claim",
            "get_retention",
            "get_slices",
            "get_pack",
            "get_index",
            "get_block",
        ] {
            for kind in StorageErrorKind::ALL {
                self.store_errors.with_label_values(&[op, kind.as_str()]);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
