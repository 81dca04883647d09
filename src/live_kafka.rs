//! The live feed behind `/loki/api/v1/tail`: the indexer's own Kafka
//! topics, read by the searcher (`docs/DESIGN.md`, "Live tail").
//!
//! A line must reach a tail within about 2 s of being produced, and a
//! block is flushed only every 2 minutes, so a tail cannot wait for the
//! store. The searcher reads the newest records where they already are:
//! one consumer per searcher, with partitions *assigned* at their end (no
//! consumer group joins, nothing is committed, the indexer's offsets are
//! untouched), parsed with the indexer's own parser and `[parse]` rules,
//! so a record gets exactly the tenant, app and labels it will be stored
//! under. It reads only while a tail is open; with none, it lets its
//! partitions go, and the next tail starts again at their end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use skidder_indexer::config::IndexerConfig;
use skidder_indexer::models::RawBatch;
use skidder_indexer::stages::parser::Parser;
use skidder_searcher::live::{LiveBatch, LiveFeed, LiveRecord};
use skidder_searcher::logql::eval::Labels;
use tokio::sync::broadcast;

/// Batches held for sessions that are behind; a session further behind
/// loses lines (counted as `lagged`).
const CHANNEL_BATCHES: usize = 256;
/// A batch is sent after this many messages, or after `LINGER`.
const BATCH_MESSAGES: usize = 1000;
const LINGER: Duration = Duration::from_millis(50);
/// How often the topics' partitions are looked up again (new partitions).
const METADATA_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct KafkaFeed {
    tx: broadcast::Sender<LiveBatch>,
}

impl LiveFeed for KafkaFeed {
    fn subscribe(&self) -> broadcast::Receiver<LiveBatch> {
        self.tx.subscribe()
    }
}

impl KafkaFeed {
    /// Starts the reader thread for the topics and parse rules of the
    /// indexer config at `path`.
    pub fn start(path: &str) -> anyhow::Result<Arc<KafkaFeed>> {
        let cfg = IndexerConfig::from_file(path)
            .with_context(|| format!("reading the indexer config {path} for live tail"))?;
        let parser = Parser::new(cfg.parse.clone()).context("the indexer config's [parse]")?;
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &cfg.kafka.brokers)
            // Required by librdkafka; never joined (partitions are
            // assigned) and never committed.
            .set("group.id", format!("{}-tail", cfg.kafka.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "16384");
        for (k, v) in &cfg.kafka.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer = c.create().context("creating the tail's Kafka consumer")?;
        let (tx, _) = broadcast::channel(CHANNEL_BATCHES);
        let feed = Arc::new(KafkaFeed { tx: tx.clone() });
        let topics = cfg.kafka.topics.clone();
        std::thread::Builder::new()
            .name("tail-kafka".into())
            .spawn(move || Reader::new(consumer, parser, topics, tx).run())
            .context("starting the tail's Kafka reader")?;
        Ok(feed)
    }
}

struct Reader {
    consumer: BaseConsumer,
    parser: Parser,
    topics: Vec<String>,
    tx: broadcast::Sender<LiveBatch>,
    /// Partitions assigned, per topic; empty while no tail is open.
    assigned: BTreeMap<String, usize>,
    looked_up: Option<Instant>,
}

impl Reader {
    fn new(
        consumer: BaseConsumer,
        parser: Parser,
        topics: Vec<String>,
        tx: broadcast::Sender<LiveBatch>,
    ) -> Self {
        Reader {
            consumer,
            parser,
            topics,
            tx,
            assigned: BTreeMap::new(),
            looked_up: None,
        }
    }

    fn run(mut self) {
        loop {
            if self.tx.receiver_count() == 0 {
                if !self.assigned.is_empty() {
                    let _ = self.consumer.unassign();
                    self.assigned.clear();
                    self.looked_up = None;
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if self.looked_up.is_none_or(|t| t.elapsed() > METADATA_EVERY) {
                self.assign_new_partitions();
            }
            self.read_batch();
        }
    }

    /// Assigns, at their end, the topics' partitions not yet assigned.
    fn assign_new_partitions(&mut self) {
        self.looked_up = Some(Instant::now());
        let mut tpl = TopicPartitionList::new();
        let mut counts = self.assigned.clone();
        for topic in &self.topics {
            let md = match self
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
            {
                Ok(md) => md,
                Err(e) => {
                    tracing::warn!(topic, error = %e, "live tail: topic metadata");
                    continue;
                }
            };
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len());
            let have = self.assigned.get(topic).copied().unwrap_or(0);
            for p in have..n {
                let _ = tpl.add_partition_offset(topic, p as i32, Offset::End);
            }
            counts.insert(topic.clone(), n.max(have));
        }
        if tpl.count() == 0 {
            return;
        }
        // `incremental_assign` keeps the partitions already read.
        let result = if self.assigned.values().all(|&n| n == 0) {
            self.consumer.assign(&tpl)
        } else {
            self.consumer.incremental_assign(&tpl)
        };
        match result {
            Ok(()) => self.assigned = counts,
            Err(e) => tracing::warn!(error = %e, "live tail: assigning partitions"),
        }
    }

    /// Reads up to a batch of messages (or `LINGER`), parses them per
    /// partition and sends what they hold.
    fn read_batch(&mut self) {
        let started = Instant::now();
        let mut raws: BTreeMap<(String, i32), RawBatch> = BTreeMap::new();
        let mut n = 0;
        while n < BATCH_MESSAGES {
            let left = LINGER.saturating_sub(started.elapsed());
            if left.is_zero() && n > 0 {
                break;
            }
            let Some(msg) = self.consumer.poll(left.max(Duration::from_millis(1))) else {
                if started.elapsed() >= LINGER {
                    break;
                }
                continue;
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "live tail: Kafka");
                    continue;
                }
            };
            let Some(payload) = msg.payload() else {
                continue;
            };
            let topic = msg.topic().to_owned();
            let raw = raws
                .entry((topic.clone(), msg.partition()))
                .or_insert_with(|| RawBatch::new(topic.into(), msg.partition()));
            raw.push(msg.offset(), msg.timestamp().to_millis(), payload);
            n += 1;
        }
        if raws.is_empty() {
            return;
        }
        let mut out = Vec::new();
        for raw in raws.values() {
            let parsed = self.parser.parse_batch(raw);
            // A stream's labels as the searcher shows them, built once per
            // batch and shared by its records.
            let labels: Vec<Arc<Labels>> = parsed
                .streams
                .iter()
                .map(|s| {
                    let mut l = s.labels.to_vec();
                    l.push(("__app__".into(), s.app.to_string()));
                    l.sort();
                    Arc::new(l)
                })
                .collect();
            for r in &parsed.records {
                let (Some(s), Some(labels)) = (
                    parsed.streams.get(r.stream as usize),
                    labels.get(r.stream as usize),
                ) else {
                    continue;
                };
                out.push(LiveRecord {
                    tenant: s.tenant.clone(),
                    labels: labels.clone(),
                    ts: r.time_ns,
                    line: String::from_utf8_lossy(parsed.line(r)).into_owned(),
                });
            }
        }
        if !out.is_empty() {
            // No receiver left: nothing to do; the loop lets go next turn.
            let _ = self.tx.send(Arc::new(out));
        }
    }
}
