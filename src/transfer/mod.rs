//! The transfer: consumes Kafka as a consumer group and bulk-indexes every
//! record into Elasticsearch, committing offsets only behind documents that
//! reached a final answer.
//!
//! ```text
//! poll ─► BulkBody.push (raw record bytes → NDJSON) ─► Request ─► es workers ─► _bulk
//!   ▲                                                                 │ per-document acks
//!   └── commit ◄── per-partition Progress (contiguous acked prefix) ◄─┘
//! ```
//!
//! Each partition's [`Progress`] holds its requests in order; its committed
//! offset moves only over records every one of which was stored, found
//! already stored (409) or dead-lettered. When partitions are revoked, what
//! is complete is committed synchronously and the rest is left for the next
//! owner (deterministic ids make its redelivery harmless). When every worker
//! is busy the assignment is paused while polling continues, so the group
//! membership survives a long Elasticsearch outage.

use crate::common::ack::{BatchAck, Progress};
use crate::common::clock::now_ms;
use crate::common::shutdown;
use crate::common::sync::lock;
use crate::common::totals::Totals;
use crate::config::{Config, ConfigError, EsConfig};
use crate::elastic::batcher::{message_mode, Batcher, Built};
use crate::elastic::body::MessageMode;
use crate::elastic::stats::TransferStats;
use crate::elastic::template::install_templates;
use crate::elastic::worker::{Request, Slot, Workers};
use crate::error::RunError;
use crate::kafka::stats::{KafkaStats, KAFKA_STATS_INTERVAL};
use crate::observe::Observed;
use crate::record::{Origin, Record};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Offsets are committed at least this often.
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Records polled between two looks at the clock while records stream.
const CLOCK_EVERY: u32 = 64;

/// One assigned partition's acknowledgement tracking.
struct Part {
    progress: Progress,
    /// Last offset committed (-1: none yet).
    committed: i64,
    /// Which assignment this tracker belongs to: acks of documents read
    /// under an earlier assignment of the partition are not counted here.
    generation: u64,
}

#[derive(Default)]
struct Trackers {
    parts: HashMap<(Arc<str>, i32), Part>,
    next_generation: u64,
}

impl Trackers {
    /// Offsets to commit: every partition whose acknowledged prefix grew.
    fn take_commits(&mut self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), part) in self.parts.iter_mut() {
            if only.is_some_and(|l| l.find_partition(topic, *partition).is_none()) {
                continue;
            }
            let next = part.progress.advance() as i64;
            if next > part.committed {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
                part.committed = next;
            }
        }
        tpl
    }
}

/// Consumer callbacks: commits what is complete before partitions go.
struct TransferContext {
    trackers: Arc<Mutex<Trackers>>,
    /// Bumped whenever partitions are revoked: generations cached by
    /// [`Transfer::track`] are then stale.
    revocations: Arc<AtomicU64>,
    kafka: Arc<KafkaStats>,
}

impl ClientContext for TransferContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::log_client_error(&error, reason);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.kafka.store(statistics);
    }
}

impl ConsumerContext for TransferContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut t = lock(&self.trackers);
            let tpl = t.take_commits(Some(revoked));
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    tracing::warn!("commit before giving up partitions failed: {e}");
                }
            }
            for el in revoked.elements() {
                t.parts.remove(&(Arc::from(el.topic()), el.partition()));
            }
            self.revocations.fetch_add(1, Ordering::Release);
            tracing::info!(partitions = revoked.count(), "partitions revoked: complete offsets committed");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// A document's partition inside the request being built.
struct OpenSlot {
    topic: Arc<str>,
    partition: i32,
    count: usize,
    last_offset: i64,
    generation: u64,
}

/// Runs the transfer until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), RunError> {
    let term = crate::common::shutdown::term_flag()?;
    run_until(cfg, &term)
}

/// Runs the transfer until `stop` is set, serving its metrics on `[http] listen`.
pub fn run_until(cfg: Config, stop: &AtomicBool) -> Result<(), RunError> {
    let observed = Arc::new(Observed::new("transfer"));
    if let Some(m) = &cfg.metrics {
        if m.topic.is_some() {
            tracing::info!("metrics.topic: the transfer collects no files; its host metrics are on /metrics only");
        }
        crate::observe::host_metrics::start(&cfg, &crate::control::host::detect(cfg.agent.host.as_deref()), &observed);
    }
    let _server = crate::observe::serve(cfg.http.listen, observed.clone());
    run_observed(cfg, stop, &observed)
}

/// Runs the transfer until `stop` is set, showing itself in `observed`.
pub fn run_observed(cfg: Config, stop: &AtomicBool, observed: &Observed) -> Result<(), RunError> {
    let need = |key: &str, what: &str| ConfigError { key: key.into(), message: what.into() };
    let kafka =
        cfg.kafka.clone().ok_or_else(|| need("kafka.address", "the transfer reads Kafka: set [kafka] address"))?;
    let es =
        cfg.es.clone().ok_or_else(|| need("es.address", "the transfer writes to Elasticsearch: set [es] address"))?;
    if kafka.topics.is_empty() {
        return Err(need("kafka.topic", "no topic to consume: set [kafka] topic (';' separated)").into());
    }
    let stats = Arc::new(TransferStats::default());
    observed.add_transfer(stats.clone());
    let kafka_stats = Arc::new(KafkaStats::default());
    observed.add_kafka("consumer", kafka_stats.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let queue = (es.chan_max_size / es.bulk_max_docs).saturating_sub(es.workers).max(1);
    let workers = Workers::start(&rt, &es, Some(&kafka), stats.clone(), queue)?;
    if es.manage_template && !rt.block_on(install_templates(&workers.worker.client, &es, &kafka.topics, stop)) {
        return Ok(()); // stopped while waiting for Elasticsearch
    }

    let trackers = Arc::new(Mutex::new(Trackers::default()));
    let revocations = Arc::new(AtomicU64::new(0));
    let mut cc = crate::kafka::consumer(&kafka);
    if cc.get("statistics.interval.ms").is_none() {
        cc.set("statistics.interval.ms", KAFKA_STATS_INTERVAL.as_millis().to_string());
    }
    let consumer: Arc<BaseConsumer<TransferContext>> = Arc::new(
        cc.create_with_context(TransferContext {
            trackers: trackers.clone(),
            revocations: revocations.clone(),
            kafka: kafka_stats,
        })
        .map_err(|e| need("kafka.consumer", &e.to_string()))?,
    );
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| need("kafka.topic", &e.to_string()))?;
    tracing::info!(topics = %kafka.topics.join(","), group = %kafka.group_id, es = %es.nodes.join(","), "transfer started");

    let mut t = Transfer {
        consumer,
        trackers,
        revocations,
        generations: Vec::new(),
        generations_at: 0,
        batcher: Batcher::new(
            es.index.clone(),
            es.bulk_max_bytes,
            es.bulk_max_docs,
            Duration::from_millis(es.bulk_max_wait_ms),
            stats.clone(),
        ),
        workers,
        es: es.clone(),
        stats: stats.clone(),
        topics: HashMap::new(),
        last_commit: Instant::now(),
    };
    // A second handle, so a polled message (which borrows the consumer) can
    // be handed to `t.add` while `t` is borrowed mutably.
    let polling = t.consumer.clone();
    let mut polled: u32 = 0;
    while !shutdown::is_set(stop) {
        let idle = match polling.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                t.add(&m, stop);
                false
            }
            Some(Err(e)) => {
                tracing::warn!("kafka consume: {e}");
                true
            }
            None => true,
        };
        if t.batcher.docs() >= es.bulk_max_docs {
            t.flush(stop);
        }
        // The clock is read every CLOCK_EVERY records while records stream
        // (thousands per millisecond), and at every idle poll.
        polled = polled.wrapping_add(1);
        if idle || polled % CLOCK_EVERY == 0 {
            let now = Instant::now();
            if t.batcher.is_due(now) {
                t.flush(stop);
            }
            if now.duration_since(t.last_commit) >= COMMIT_EVERY {
                t.commit(CommitMode::Async);
            }
        }
    }

    tracing::info!("stopping: finishing requests in flight, committing offsets");
    if !t.batcher.is_empty() {
        t.flush(&AtomicBool::new(false));
    }
    let deadline = Duration::from_millis(cfg.agent.shutdown_timeout_ms);
    let Transfer { consumer, trackers, workers, .. } = t;
    if !workers.finish(rt.handle(), deadline) {
        tracing::warn!("requests still in flight after {deadline:?}: their records will be consumed again");
    }
    let tpl = lock(&trackers).take_commits(None);
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!("final commit failed: {e}");
        }
    }
    report(&stats);
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

struct Transfer {
    consumer: Arc<BaseConsumer<TransferContext>>,
    trackers: Arc<Mutex<Trackers>>,
    revocations: Arc<AtomicU64>,
    /// (topic, partition, generation) of the partitions seen since the
    /// last revocation (`generations_at`): no lock per record.
    generations: Vec<(Arc<str>, i32, u64)>,
    generations_at: u64,
    /// The request being built; a slot per (partition, generation).
    batcher: Batcher<OpenSlot>,
    workers: Workers,
    es: EsConfig,
    stats: Arc<TransferStats>,
    topics: HashMap<String, (Arc<str>, MessageMode)>,
    last_commit: Instant,
}

impl Transfer {
    /// Appends one record to the request being built.
    fn add(&mut self, m: &BorrowedMessage<'_>, stop: &AtomicBool) {
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        let (topic, mut mode) = self.topic(m.topic());
        // One walk over the headers (each read is a call into librdkafka):
        // the agent's origin, and its mark on lines of entries with
        // `parse_json` (header `json: 1`). `from_headers` visits every pair.
        let mut json = false;
        let origin = m.headers().and_then(|h| {
            Origin::from_headers(h.iter().map(|hd| {
                let value = hd.value.unwrap_or_default();
                json |= hd.key == "json" && value == b"1";
                (hd.key, value)
            }))
        });
        if json {
            mode = MessageMode::ParseJson;
        }
        let rec = Record {
            value: m.payload().unwrap_or_default(),
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            origin,
        };
        let generation = self.track(&topic, m.partition(), m.offset());
        let (partition, offset) = (m.partition(), m.offset());
        let index_ms = rec.timestamp_ms.unwrap_or_else(now_ms);
        let read_ms = rec.timestamp_ms.unwrap_or(0);
        // A request that fills up on the way goes out first; `flush_request`
        // borrows everything but the builder.
        let Transfer { batcher, consumer, trackers, workers, stats, last_commit, .. } = self;
        batcher.push(
            &rec,
            index_ms,
            read_ms,
            mode,
            |built| flush_request(built, consumer, trackers, workers, stats, last_commit, stop),
            // Same partition and generation: a partition revoked and
            // assigned again while this request was built starts a slot
            // of its own.
            |slots| {
                let same = |s: &OpenSlot| s.partition == partition && s.generation == generation && s.topic == topic;
                match slots.iter().position(same) {
                    Some(i) => {
                        slots[i].count += 1;
                        slots[i].last_offset = offset;
                        i
                    }
                    None => {
                        slots.push(OpenSlot { topic, partition, count: 1, last_offset: offset, generation });
                        slots.len() - 1
                    }
                }
            },
        );
    }

    fn topic(&mut self, name: &str) -> (Arc<str>, MessageMode) {
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        let v = (Arc::from(name), message_mode(&self.es.parse_json, name));
        self.topics.insert(name.to_string(), v.clone());
        v
    }

    /// The tracker generation of a partition, created at its first record.
    fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64) -> u64 {
        let revocations = self.revocations.load(Ordering::Acquire);
        if revocations != self.generations_at {
            self.generations.clear();
            self.generations_at = revocations;
        }
        if let Some(g) = self.generations.iter().find(|g| g.1 == partition && *g.0 == **topic) {
            return g.2;
        }
        let mut t = lock(&self.trackers);
        let key = (topic.clone(), partition);
        let generation = match t.parts.get(&key) {
            Some(p) => p.generation,
            None => {
                t.next_generation += 1;
                let generation = t.next_generation;
                t.parts.insert(key, Part { progress: Progress::new(offset as u64), committed: -1, generation });
                generation
            }
        };
        self.generations.push((topic.clone(), partition, generation));
        generation
    }

    /// Hands the request being built to the workers.
    fn flush(&mut self, stop: &AtomicBool) {
        let built = self.batcher.take();
        let Transfer { consumer, trackers, workers, stats, last_commit, .. } = self;
        flush_request(built, consumer, trackers, workers, stats, last_commit, stop);
    }

    fn commit(&mut self, mode: CommitMode) {
        commit(&self.consumer, &self.trackers, &mut self.last_commit, mode);
    }
}

/// Commits every partition whose acknowledged prefix grew.
fn commit(
    consumer: &BaseConsumer<TransferContext>,
    trackers: &Mutex<Trackers>,
    last_commit: &mut Instant,
    mode: CommitMode,
) {
    *last_commit = Instant::now();
    let tpl = lock(trackers).take_commits(None);
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!("offset commit failed: {e}");
        }
    }
}

/// Gives a built request its acknowledgements (one per slot, queued in its
/// partition's progress) and hands it to the workers, waiting with the
/// assignment paused while they are all busy.
fn flush_request(
    built: Built<OpenSlot>,
    consumer: &BaseConsumer<TransferContext>,
    trackers: &Mutex<Trackers>,
    workers: &Workers,
    stats: &TransferStats,
    last_commit: &mut Instant,
    stop: &AtomicBool,
) {
    let mut slots = Vec::with_capacity(built.slots.len());
    {
        let t = lock(trackers);
        for s in built.slots {
            let ack = Arc::new(BatchAck::new(s.count));
            if let Some(p) = t.parts.get(&(s.topic.clone(), s.partition)) {
                if p.generation == s.generation {
                    p.progress.push(ack.clone(), s.last_offset as u64 + 1);
                }
            }
            slots.push(Slot { topic: s.topic, partition: s.partition, ack });
        }
    }
    let mut req = Request { body: built.body, docs: built.docs, slots, read_ms: built.read_ms };
    let mut paused_at: Option<Instant> = None;
    loop {
        match workers.tx.try_send(req) {
            Ok(()) => break,
            Err(mpsc::error::TrySendError::Closed(_)) => break,
            Err(mpsc::error::TrySendError::Full(r)) => {
                req = r;
                if shutdown::is_set(stop) {
                    // Not sent: its records are consumed again after the restart.
                    break;
                }
                if paused_at.is_none() {
                    let a = consumer.assignment().unwrap_or_default();
                    let _ = consumer.pause(&a);
                    paused_at = Some(Instant::now());
                }
                // Polling keeps the group membership and serves rebalances.
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let _ = consumer.seek(m.topic(), m.partition(), Offset::Offset(m.offset()), Duration::from_secs(1));
                }
                if last_commit.elapsed() >= COMMIT_EVERY {
                    commit(consumer, trackers, last_commit, CommitMode::Async);
                }
            }
        }
    }
    if let Some(since) = paused_at {
        let a = consumer.assignment().unwrap_or_default();
        let _ = consumer.resume(&a);
        stats.paused_ms.fetch_add(since.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

fn report(s: &TransferStats) {
    tracing::info!("transfer totals: {}", Totals(&s.totals()));
}
