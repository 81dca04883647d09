//! Stage 1: reads Kafka as a consumer group member and cuts per-partition
//! batches for the parser.
//!
//! It owns the consumer, so it also does everything that needs it:
//! committing the offsets the tracker says are stored, pausing fetching
//! under memory pressure, and handling rebalances. On assignment it loads
//! the partition's checkpoint and ledger from the object store (the offsets
//! stored there win where they are ahead of Kafka's); on revocation it
//! flushes the partition's blocks, waits for them to be stored and commits,
//! so the next owner starts exactly where this one stopped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use skidder_common::service::{ErrorChain, Shutdown};
use skidder_common::storage::ObjectStore;

mod gaps;

use gaps::Gaps;

use super::{StageError, StageExit};
use crate::assignment::{check_range, confirm_claims, load_with_retries, AssignError};
use crate::config::KafkaConfig;
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::{Control, Item, PartitionPlan, RawBatch, TopicPartition};
use crate::offsets::OffsetTracker;
use crate::queue::{Sender, TryPushError, Weighted};

impl Shared {
    /// The refused assignment, once it has waited [`REJOIN_WAIT`] for a
    /// rebalance in vain.
    fn stale_refusal(&mut self) -> Option<AssignError> {
        let waited = self.refused.as_ref()?.1.elapsed();
        if waited < REJOIN_WAIT {
            return None;
        }
        self.refused.take().map(|(e, _)| e)
    }
}

/// The parser is gone: nothing read from here on can be stored.
#[derive(Debug)]
struct DownstreamClosed;

/// What the poll loop and the rebalance callbacks share. Both run on the
/// reader thread, so the lock is never contended.
#[derive(Default)]
struct Shared {
    builders: HashMap<TopicPartition, (RawBatch, Instant)>,
    pending: VecDeque<Item<RawBatch>>,
    pending_bytes: usize,
    /// Per assigned partition, the next offset to take: messages below it
    /// are already stored (below the start offset) or already taken.
    next: HashMap<TopicPartition, i64>,
    /// Offset jumps seen while reading, not yet explained; see [`Gaps`].
    gaps: Gaps,
    failure: Option<AssignError>,
    /// An assignment whose confirming commit Kafka refused, and when: its
    /// partitions stay unread until the group rebalances, which a member
    /// outside the current generation brings about by rejoining. Cleared
    /// by the next rebalance; past [`REJOIN_WAIT`] it stops the indexer.
    refused: Option<(AssignError, Instant)>,
}

pub struct ReaderContext {
    shared: Mutex<Shared>,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    out: Sender<Item<RawBatch>>,
    cfg: KafkaConfig,
    drain_timeout: Duration,
    assignment_changed: AtomicBool,
}

impl ClientContext for ReaderContext {
    fn stats(&self, stats: Statistics) {
        let mut log_starts = HashMap::new();
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                if part.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(part.consumer_lag);
                }
                if part.lo_offset >= 0 {
                    log_starts.insert((topic.as_str(), *p), part.lo_offset);
                }
            }
        }
        let deleted = self
            .lock()
            .gaps
            .settle(|tp| log_starts.get(&(&*tp.topic, tp.partition)).copied());
        for (tp, gap, n) in deleted {
            self.report_deleted(&tp, gap.expected, gap.got, n);
        }
    }
}

impl ConsumerContext for ReaderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.lock().refused = None;
        let result = match rebalance {
            Rebalance::Assign(tpl) => self.on_assign(consumer, tpl),
            Rebalance::Revoke(tpl) => {
                self.on_revoke(consumer, tpl);
                Ok(())
            }
            Rebalance::Error(e) => {
                tracing::error!(error = %e, "rebalance error");
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %ErrorChain(&e), "partition assignment failed");
            self.lock().failure = Some(e);
        }
        self.assignment_changed.store(true, Ordering::SeqCst);
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            self.commit_failed(offsets, &e);
        }
    }
}

/// Kafka refused a commit because this member is not in the group's
/// current generation.
fn generation_refused(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::IllegalGeneration
                | C::UnknownMemberId
                | C::RebalanceInProgress
                | C::FencedInstanceId
                | C::AssignmentLost
        )
    )
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: e.topic().into(),
            partition: e.partition(),
        })
        .collect()
}

impl ReaderContext {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        rt: tokio::runtime::Handle,
        tracker: Arc<OffsetTracker>,
        metrics: Arc<Metrics>,
        out: Sender<Item<RawBatch>>,
        cfg: KafkaConfig,
        drain_timeout: Duration,
    ) -> Self {
        ReaderContext {
            shared: Mutex::new(Shared::default()),
            store,
            rt,
            tracker,
            metrics,
            out,
            cfg,
            drain_timeout,
            assignment_changed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<(), AssignError> {
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(30))
            .map_err(AssignError::Committed)?;
        let mut plans = Vec::new();
        for tp in tps_of(tpl) {
            let kafka = committed
                .find_partition(&tp.topic, tp.partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                });
            let plan = load_with_retries(&self.rt, &*self.store, &tp, kafka)?;
            let deleted = self.check_kafka_range(consumer, &tp, plan.start_offset)?;
            plans.push((plan, deleted));
        }
        match self.confirm(consumer, &plans) {
            Ok(()) => {}
            // The group moved on while this member was assigning (a
            // rebalance in flight, or a freeze past the session): reading
            // would be reading partitions that are no longer ours.
            Err(e @ AssignError::NotConfirmed { .. }) => {
                tracing::warn!(error = %ErrorChain(&e),
                    "assignment not taken; its partitions stay unread until the group rebalances");
                self.metrics.unconfirmed_assignments.inc();
                self.lock().refused = Some((e, Instant::now()));
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        tracing::info!(partitions = plans.len(), "assignment confirmed: reading");
        for (plan, deleted) in plans {
            // Counted once: the jump to the log start is not a gap, and
            // the commits start past it.
            let from = plan.start_offset + deleted as i64;
            let keys = plan
                .ledger
                .iter()
                .map(|e| (e.last_offset, e.key()))
                .chain(plan.stale_ledger_keys.iter().cloned())
                .collect();
            self.tracker.assign(&plan.tp, plan.epoch, from, None, keys);
            let mut s = self.lock();
            s.next.insert(plan.tp.clone(), from);
            s.pending.push_back(Item::Control(Control::Assign(plan)));
        }
        Ok(())
    }

    /// Commits each new partition's start, which Kafka accepts only from a
    /// member of the group's current generation, then confirms the epoch
    /// claims (`format::fence`). A member frozen past its session, or
    /// overtaken by another rebalance, gets here with an old generation:
    /// the commit fails and its claims stay unconfirmed and supersede
    /// nothing.
    fn confirm(
        &self,
        consumer: &BaseConsumer<Self>,
        plans: &[(PartitionPlan, u64)],
    ) -> Result<(), AssignError> {
        let Some((first, _)) = plans.first() else {
            return Ok(());
        };
        let mut tpl = TopicPartitionList::new();
        for (p, _) in plans {
            if let Err(e) = tpl.add_partition_offset(
                &p.tp.topic,
                p.tp.partition,
                Offset::Offset(p.start_offset),
            ) {
                tracing::warn!(error = %e, "bad commit offset");
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => break,
                // Only a blip is retried: a refused generation stays refused.
                Err(e) if attempt < CONFIRM_ATTEMPTS && !generation_refused(&e) => {
                    tracing::warn!(error = %e, attempt, "the commit confirming new epochs failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(source) => {
                    return Err(AssignError::NotConfirmed {
                        topic: first.tp.topic.to_string(),
                        partition: first.tp.partition,
                        epoch: first.epoch,
                        source: Box::new(source),
                    })
                }
            }
        }
        // A confirmation long after the commit may come from a member that
        // froze in between and lost the partition since; a newer claim may
        // already have read past this one.
        let deadline = Instant::now() + MAX_CONFIRM_DELAY;
        let plans: Vec<&PartitionPlan> = plans.iter().map(|(p, _)| p).collect();
        confirm_claims(&self.rt, &*self.store, &plans, deadline)
    }

    /// Compares where the partition starts with what Kafka holds now; see
    /// [`check_range`]. Returns how many offsets below the log start were
    /// never indexed. If Kafka does not answer, the check is left to the
    /// gap check of the reading itself.
    fn check_kafka_range(
        &self,
        consumer: &BaseConsumer<Self>,
        tp: &TopicPartition,
        start: i64,
    ) -> Result<u64, AssignError> {
        let (low, high) =
            match consumer.fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(10)) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "could not read the partition's offsets; not checked");
                    return Ok(0);
                }
            };
        let deleted = check_range(tp, start, low, high)?;
        if deleted > 0 {
            self.report_deleted(tp, start, low, deleted);
        }
        Ok(deleted)
    }

    fn report_deleted(&self, tp: &TopicPartition, from: i64, to: i64, deleted: u64) {
        self.metrics.deleted_unindexed_records.inc_by(deleted);
        tracing::error!(
            topic = %tp.topic, partition = tp.partition, from, to, deleted,
            "Kafka deleted records before they were indexed (retention or delete-records); \
             they are lost, and reading continues at the log start"
        );
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let tps = tps_of(tpl);
        tracing::info!(partitions = tps.len(), "partitions revoked: flushing");
        self.flush_and_wait(Some(tps.clone()), true);
        self.commit(consumer, CommitMode::Sync);
        let mut s = self.lock();
        for tp in &tps {
            self.tracker.forget(tp);
            s.next.remove(tp);
            s.gaps.forget(tp);
        }
    }

    /// Sends everything buffered plus a flush downstream and waits until it
    /// is all stored. Returns false on timeout.
    fn flush_and_wait(&self, partitions: Option<Vec<TopicPartition>>, forget: bool) -> bool {
        {
            let mut s = self.lock();
            let keys: Vec<TopicPartition> = s
                .builders
                .keys()
                .filter(|tp| partitions.as_ref().is_none_or(|ps| ps.contains(tp)))
                .cloned()
                .collect();
            for tp in keys {
                self.cut(&mut s, &tp);
            }
            s.pending.push_back(Item::Control(Control::Flush {
                partitions: partitions.clone(),
                forget,
            }));
            while let Some(item) = s.pending.pop_front() {
                if let Item::Data(b) = &item {
                    s.pending_bytes -= b.weight();
                }
                if self.out.push(item).is_err() {
                    return false;
                }
            }
        }
        let deadline = Instant::now() + self.drain_timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            if self.tracker.wait_drained(partitions.as_deref(), slice) {
                return true;
            }
            // A stage behind died: what it held will never be stored.
            if self.out.is_closed() {
                tracing::error!("a pipeline stage stopped before every block was stored");
                return false;
            }
            if Instant::now() >= deadline {
                tracing::error!("blocks were not all stored within the drain timeout");
                return false;
            }
        }
    }

    /// Commits every watermark that moved.
    fn commit(&self, consumer: &BaseConsumer<Self>, mode: CommitMode) {
        let commits = self.tracker.take_commits();
        if commits.is_empty() {
            return;
        }
        crash_point("kafka_reader::before_commit");
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &commits {
            if let Err(e) =
                tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
            {
                tracing::warn!(error = %e, "bad commit offset");
            }
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            self.commit_failed(&tpl, &e);
        }
    }

    /// Hands a failed commit back to the tracker, so the next commit
    /// carries it even if no offset moves in between.
    fn commit_failed(&self, offsets: &TopicPartitionList, e: &rdkafka::error::KafkaError) {
        self.metrics.kafka_errors.inc();
        tracing::warn!(error = %e, "offset commit failed; the next commit retries it");
        for el in offsets.elements() {
            if let Offset::Offset(o) = el.offset() {
                let tp = TopicPartition {
                    topic: el.topic().into(),
                    partition: el.partition(),
                };
                self.tracker.commit_failed(&tp, o);
            }
        }
    }

    /// Adds one message to its partition's batch, cutting the batch when full.
    fn add(&self, tp: TopicPartition, offset: i64, ts: Option<i64>, payload: &[u8]) {
        let mut s = self.lock();
        // Each offset once per assignment. Below `next`, a message is stored
        // already (a replay below the start offset) or taken already:
        // librdkafka can rewind a partition's fetch position (seen after
        // rebalances and broker restarts: a partition started at its
        // committed offset re-delivered from `auto.offset.reset`; compare
        // confluentinc/librdkafka#2190, #4686), and taking a message again
        // would put it in a block twice. A partition not assigned here is
        // not ours to read.
        match s.next.get_mut(&tp) {
            Some(next) if offset >= *next => {
                let expected = std::mem::replace(next, offset + 1);
                if offset > expected {
                    s.gaps.record(&tp, expected, offset);
                }
            }
            _ => {
                self.metrics.replay_skipped_records.inc();
                return;
            }
        }
        let entry = s.builders.entry(tp.clone()).or_insert_with(|| {
            self.tracker.hold(&tp, offset);
            (
                RawBatch::new(tp.topic.clone(), tp.partition),
                Instant::now(),
            )
        });
        entry.0.push(offset, ts, payload);
        let full = entry.0.messages.len() >= self.cfg.batch_messages
            || entry.0.payload.len() >= self.cfg.batch_bytes;
        if full {
            self.cut(&mut s, &tp);
        }
    }

    /// Ends a partition's batch and queues it. The tracker learns how far
    /// the partition was read here, not per message: until then the
    /// batch's hold keeps its watermark at the batch's first offset anyway.
    fn cut(&self, s: &mut Shared, tp: &TopicPartition) {
        if let Some((b, _)) = s.builders.remove(tp) {
            if let Some(last) = b.messages.last() {
                self.tracker.advance(tp, last.offset + 1);
            }
            s.pending_bytes += b.weight();
            s.pending.push_back(Item::Data(b));
        }
    }

    /// Cuts batches that waited long enough, and moves what fits downstream.
    fn forward(&self) -> Result<(), DownstreamClosed> {
        let mut s = self.lock();
        let linger = Duration::from_millis(self.cfg.batch_linger_ms);
        let old: Vec<TopicPartition> = s
            .builders
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= linger)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in old {
            self.cut(&mut s, &tp);
        }
        while let Some(item) = s.pending.pop_front() {
            let w = match &item {
                Item::Data(b) => b.weight(),
                Item::Control(_) => 0,
            };
            match self.out.try_push(item) {
                Ok(()) => s.pending_bytes -= w,
                Err(TryPushError::Full(item)) => {
                    s.pending.push_front(item);
                    break;
                }
                Err(TryPushError::Closed(_)) => return Err(DownstreamClosed),
            }
        }
        if self.out.is_closed() {
            return Err(DownstreamClosed);
        }
        Ok(())
    }
}

/// Builds the consumer with Skidder's defaults, then the user's properties.
pub fn consumer(
    cfg: &KafkaConfig,
    ctx: ReaderContext,
) -> Result<BaseConsumer<ReaderContext>, rdkafka::error::KafkaError> {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Records of aborted transactions are never delivered, and open
        // transactions hold their partition back until they end.
        // librdkafka's default too; stated because exactly-once needs it.
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", "32768")
        // A message bigger than a fetch response may hold stalls its
        // partition for good; allow up to 1 GiB (broker limits are far lower).
        .set("receive.message.max.bytes", "1073741824")
        .set("partition.assignment.strategy", "range,roundrobin")
        // A crashed member keeps its partitions, unread, until its session
        // times out; so does one killed mid-rebalance, once per rebalance
        // it was caught in. librdkafka's 45 s makes a restart loop take
        // minutes; heartbeats come from librdkafka's own thread, so 10 s
        // costs nothing. docs/GUARANTEES.md, "Restarts and the group session".
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    let consumer: BaseConsumer<ReaderContext> = c.create_with_context(ctx)?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// Messages taken per poll burst, between the loop's checks (pause,
/// shutdown, forwarding). About a batch: small enough that a pause or a
/// rebalance waits for no more than a few milliseconds of reading.
const BURST: usize = 512;

/// Commits tried before an assignment's epochs count as not confirmed.
const CONFIRM_ATTEMPTS: u32 = 3;

/// The longest a claim may be confirmed after the commit that proved its
/// claimer's generation. Kafka expires a member's session after 6 s at
/// the least (`group.min.session.timeout.ms`), and only then can another
/// member claim and confirm the epoch above; so a claim confirmed in time
/// is never confirmed after a newer one, and what a newer confirmed claim
/// decides never changes.
const MAX_CONFIRM_DELAY: Duration = Duration::from_secs(3);

/// How long an assignment Kafka refused to confirm may wait for the
/// rebalance that replaces it before the indexer stops. A member outside
/// the generation learns so from its next heartbeat (every 3 s) and
/// rejoins; a rebalance then waits for the other members, at most for
/// their session (10 s) or `max.poll.interval.ms` when one is stuck.
const REJOIN_WAIT: Duration = Duration::from_secs(120);

/// How often the reader logs where each partition stands.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The stage loop. `pause` is raised by the memory monitor.
pub fn run(
    consumer: BaseConsumer<ReaderContext>,
    shutdown: &Shutdown,
    pause: &AtomicBool,
) -> StageExit {
    let ctx = consumer.context();
    let commit_every = Duration::from_millis(ctx.cfg.commit_interval_ms.max(10));
    let mut last_commit = Instant::now();
    let mut last_progress = Instant::now();
    let mut paused_since: Option<Instant> = None;
    let counters = ctx.metrics.stage_counters("kafka_reader");
    let mut topic: Arc<str> = "".into();
    let exit = loop {
        if shutdown.is_triggered() {
            break StageExit::Quit;
        }
        if let Some(f) = ctx.lock().failure.take() {
            break StageExit::Failure(f.into());
        }
        if let Some(e) = ctx.lock().stale_refusal() {
            tracing::error!(error = %ErrorChain(&e),
                "no rebalance replaced an assignment Kafka refused to confirm; stopping");
            break StageExit::Failure(e.into());
        }
        // librdkafka may or may not keep a partition's pause flag across a
        // rebalance, so after one, state the current pause on the whole new
        // assignment rather than trust either behaviour.
        // An assignment not taken (refused) is paused until the next one.
        if ctx.assignment_changed.swap(false, Ordering::SeqCst) {
            if let Ok(a) = consumer.assignment() {
                let _ = if paused_since.is_some() || ctx.lock().refused.is_some() {
                    consumer.pause(&a)
                } else {
                    consumer.resume(&a)
                };
            }
        }
        let want_pause = pause.load(Ordering::Relaxed) || ctx.lock().pending.len() > 4;
        match (want_pause, paused_since) {
            (true, None) => {
                if let Ok(a) = consumer.assignment() {
                    if consumer.pause(&a).is_ok() {
                        ctx.metrics.kafka_pauses.inc();
                        ctx.metrics.kafka_paused.set(1);
                        paused_since = Some(Instant::now());
                    }
                }
            }
            (false, Some(t)) => {
                if let Ok(a) = consumer.assignment() {
                    let _ = consumer.resume(&a);
                }
                ctx.metrics
                    .kafka_paused_seconds
                    .inc_by(t.elapsed().as_secs_f64());
                ctx.metrics.kafka_paused.set(0);
                paused_since = None;
            }
            _ => {}
        }
        if ctx.forward().is_err() {
            break StageExit::DownstreamClosed;
        }
        // One wait, then whatever else is ready without waiting: the checks
        // above run once a burst, not once a message.
        let mut timeout = Duration::from_millis(100);
        let (mut records, mut bytes) = (0, 0);
        for _ in 0..BURST {
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    // One topic name allocation per topic, not per message.
                    if *topic != *m.topic() {
                        topic = m.topic().into();
                    }
                    let tp = TopicPartition {
                        topic: topic.clone(),
                        partition: m.partition(),
                    };
                    records += 1;
                    bytes += m.payload_len() as u64;
                    crash_point("kafka_reader::message");
                    ctx.add(
                        tp,
                        m.offset(),
                        m.timestamp().to_millis(),
                        m.payload().unwrap_or_default(),
                    );
                }
                Some(Err(e)) => {
                    ctx.metrics.kafka_errors.inc();
                    tracing::warn!(error = %e, "kafka consumer error");
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        counters.add(records, bytes, records, bytes);
        if last_commit.elapsed() >= commit_every {
            ctx.commit(&consumer, CommitMode::Async);
            last_commit = Instant::now();
        }
        // A stalled partition shows here: its watermark stops while it reads.
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            tracing::info!(
                paused = paused_since.is_some(),
                pending = ctx.lock().pending.len(),
                partitions = %ctx.tracker.progress(),
                "progress"
            );
        }
    };
    if let Some(t) = paused_since {
        ctx.metrics
            .kafka_paused_seconds
            .inc_by(t.elapsed().as_secs_f64());
    }
    // Flush, wait for storage, commit: a clean stop loses and repeats nothing.
    // A downstream stage that died stored nothing more: the commit then
    // carries only what was stored before.
    let drained = ctx.flush_and_wait(None, false);
    ctx.commit(&consumer, CommitMode::Sync);
    ctx.out.close();
    consumer.unsubscribe();
    match exit {
        StageExit::Quit if !drained => StageExit::Failure(StageError::DrainTimeout),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Receiver;

    fn reader(
        rt: &tokio::runtime::Runtime,
        dir: &std::path::Path,
    ) -> (ReaderContext, Receiver<Item<RawBatch>>) {
        let m = Arc::new(Metrics::new());
        let (out, rx) = crate::queue::byte_queue(
            16,
            1 << 20,
            m.queue_bytes.with_label_values(&["t"]),
            m.queue_blocked_seconds.with_label_values(&["t"]),
        );
        let store = Arc::new(skidder_common::storage::LocalStore::new(dir).unwrap());
        let ctx = ReaderContext::new(
            store,
            rt.handle().clone(),
            Arc::new(OffsetTracker::default()),
            m,
            out,
            KafkaConfig::default(),
            Duration::from_secs(1),
        );
        (ctx, rx)
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition,
        }
    }

    #[test]
    fn each_offset_is_taken_once_per_assignment() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _rx) = reader(&rt, dir.path());
        // Assigned with everything below 5 stored.
        ctx.tracker.assign(&tp(0), 1, 5, Some(5), vec![]);
        ctx.lock().next.insert(tp(0), 5);
        // A replay below the start, then a rewind over offsets already
        // taken (librdkafka falling back to auto.offset.reset), then a
        // message of a partition this member was never given.
        for offset in [3, 4, 5, 6, 7, 0, 5, 6, 7, 8] {
            ctx.add(tp(0), offset, None, b"{}");
        }
        ctx.add(tp(1), 0, None, b"{}");
        let s = ctx.lock();
        let taken: Vec<i64> = s.builders[&tp(0)]
            .0
            .messages
            .iter()
            .map(|m| m.offset)
            .collect();
        assert_eq!(taken, [5, 6, 7, 8]);
        assert!(!s.builders.contains_key(&tp(1)));
        assert_eq!(ctx.metrics.replay_skipped_records.get(), 7);
        assert_eq!(ctx.tracker.watermark(&tp(1)), None, "not tracked");
    }
}
