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

use crate::agent::AgentError;
use crate::batch::{BatchAck, Progress};
use crate::bulk::{BulkBody, IndexNames, MessageMode, Origin, PushOutcome, Record};
use crate::checkpoint::now_ms;
use crate::config::{Config, ConfigError, EsConfig, KafkaConfig};
use crate::es::{DeadLetterSink, EsClient, Request, Slot, Worker};
use crate::metrics::TransferStats;
use crate::observe::{KafkaStats, Observed, KAFKA_STATS_INTERVAL};
use bytes::Bytes;
use rdkafka::config::ClientConfig;
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
        tracing::warn!("kafka: {error}: {reason}");
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.kafka.store(statistics);
    }
}

impl ConsumerContext for TransferContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
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

pub(crate) fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", k.brokers.join(","))
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("enable.partition.eof", "false")
        // librdkafka postpones a partition's next fetch by this much when
        // its local queue is over the thresholds below; its default (1 s)
        // let the queue run dry between fetches: 178k -> 323k docs/s into
        // the perf sink (perf/README.md).
        .set("fetch.queue.backoff.ms", "10")
        // Pre-fetched records held by librdkafka (one queue for all
        // partitions): 16 MiB instead of 64, no slower with the short backoff.
        .set("queued.max.messages.kbytes", "16384");
    for (key, v) in &k.consumer {
        c.set(key, v);
    }
    c
}

/// Runs the transfer until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), AgentError> {
    let term = crate::agent::term_flag()?;
    run_until(cfg, &term)
}

/// Runs the transfer until `stop` is set, serving its metrics on `[http] listen`.
pub fn run_until(cfg: Config, stop: &AtomicBool) -> Result<(), AgentError> {
    let observed = Arc::new(Observed::new("transfer"));
    if let Some(m) = &cfg.metrics {
        if m.topic.is_some() {
            tracing::info!("metrics.topic: the transfer collects no files; its host metrics are on /metrics only");
        }
        crate::observe::start_host_metrics(&cfg, &crate::host::detect(cfg.agent.host.as_deref()), &observed);
    }
    let _server = crate::observe::serve(cfg.http.listen, observed.clone());
    run_observed(cfg, stop, &observed)
}

/// Runs the transfer until `stop` is set, showing itself in `observed`.
pub fn run_observed(cfg: Config, stop: &AtomicBool, observed: &Observed) -> Result<(), AgentError> {
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
    let client = EsClient::new(&es).map_err(|m| need("es", &m))?;
    let dead_letter =
        rt.block_on(DeadLetterSink::open(&es.dead_letter, &kafka.brokers)).map_err(|m| need("es.dead_letter", &m))?;
    let worker = Arc::new(Worker {
        client,
        dead_letter,
        stats: stats.clone(),
        max_backoff: Duration::from_millis(es.retry_max_backoff_ms),
    });
    let queue = (es.chan_max_size / es.bulk_max_docs).saturating_sub(es.workers).max(1);
    let (tx, workers) = crate::es::spawn_workers(rt.handle(), &worker, es.workers, queue);

    if es.manage_template && !rt.block_on(install_templates(&worker.client, &es, &kafka.topics, stop)) {
        return Ok(()); // stopped while waiting for Elasticsearch
    }

    let trackers = Arc::new(Mutex::new(Trackers::default()));
    let revocations = Arc::new(AtomicU64::new(0));
    let mut cc = consumer_config(&kafka);
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
        body: BulkBody::new(es.bulk_max_bytes),
        names: IndexNames::new(es.index.clone()),
        slots: Vec::new(),
        docs: Vec::new(),
        read_ms: Vec::new(),
        first_doc_at: None,
        tx,
        es: es.clone(),
        stats: stats.clone(),
        topics: HashMap::new(),
        last_commit: Instant::now(),
    };
    // A second handle, so a polled message (which borrows the consumer) can
    // be handed to `t.add` while `t` is borrowed mutably.
    let polling = t.consumer.clone();
    let max_wait = Duration::from_millis(es.bulk_max_wait_ms);
    let mut polled: u32 = 0;
    while !stop.load(Ordering::Acquire) {
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
        if !t.body.is_empty() && t.body.docs() >= es.bulk_max_docs {
            t.flush(stop);
        }
        // The clock is read every CLOCK_EVERY records while records stream
        // (thousands per millisecond), and at every idle poll.
        polled = polled.wrapping_add(1);
        if idle || polled % CLOCK_EVERY == 0 {
            let now = Instant::now();
            if t.first_doc_at.is_some_and(|f| now.duration_since(f) >= max_wait) {
                t.flush(stop);
            }
            if now.duration_since(t.last_commit) >= COMMIT_EVERY {
                t.commit(CommitMode::Async);
            }
        }
    }

    tracing::info!("stopping: finishing requests in flight, committing offsets");
    if !t.body.is_empty() {
        t.flush(&AtomicBool::new(false));
    }
    let deadline = Duration::from_millis(cfg.agent.shutdown_timeout_ms);
    let Transfer { consumer, trackers, tx, .. } = t;
    drop(tx);
    let finished = rt.block_on(async {
        tokio::time::timeout(deadline, async {
            for w in workers {
                let _ = w.await;
            }
        })
        .await
        .is_ok()
    });
    if !finished {
        tracing::warn!("requests still in flight after {deadline:?}: their records will be consumed again");
    }
    let tpl = trackers.lock().unwrap_or_else(|e| e.into_inner()).take_commits(None);
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!("final commit failed: {e}");
        }
    }
    report(&stats);
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Installs one index template per topic (`logcollect-<topic>`, so
/// transfers consuming other topics do not overwrite each other's) before
/// anything is indexed. Waits while no node answers; a template refused for
/// good is logged and the transfer goes on with dynamic mapping. Returns
/// false if `stop` was set while waiting.
pub(crate) async fn install_templates(client: &EsClient, es: &EsConfig, topics: &[String], stop: &AtomicBool) -> bool {
    for topic in topics {
        let name = format!("logcollect-{}", topic.to_ascii_lowercase());
        let body = crate::bulk::index_template(&[es.index.wildcard(topic)], 100);
        let mut backoff = Duration::from_millis(200);
        loop {
            match client.put_template(&name, body.clone()).await {
                Ok(()) => {
                    tracing::info!(template = %name, pattern = %es.index.wildcard(topic), "index template installed");
                    break;
                }
                Err(Some(msg)) => {
                    tracing::warn!(template = %name, "index template refused ({msg}); indexing with dynamic mapping (set es.manage_template = false to skip)");
                    break;
                }
                Err(None) => {
                    tracing::warn!(template = %name, "Elasticsearch unreachable; retrying the index template in {backoff:?}");
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if stop.load(Ordering::Acquire) {
                            return false;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(es.retry_max_backoff_ms));
                }
            }
        }
    }
    true
}

struct Transfer {
    consumer: Arc<BaseConsumer<TransferContext>>,
    trackers: Arc<Mutex<Trackers>>,
    revocations: Arc<AtomicU64>,
    /// (topic, partition, generation) of the partitions seen since the
    /// last revocation (`generations_at`): no lock per record.
    generations: Vec<(Arc<str>, i32, u64)>,
    generations_at: u64,
    body: BulkBody,
    names: IndexNames,
    /// Partitions of the request being built; `docs[i]` indexes it.
    slots: Vec<OpenSlot>,
    docs: Vec<u16>,
    /// Record timestamp (the agent's read time) of each document.
    read_ms: Vec<i64>,
    first_doc_at: Option<Instant>,
    tx: mpsc::Sender<Request>,
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
        loop {
            let ts = rec.timestamp_ms.unwrap_or_else(now_ms);
            let index = match self.names.name(rec.topic, ts) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!("{e}: the record goes to index logcollect-unroutable");
                    "logcollect-unroutable"
                }
            };
            match self.body.push(&rec, index, mode) {
                PushOutcome::Full => self.flush(stop),
                PushOutcome::Added { lossy, .. } => {
                    if lossy {
                        self.stats.docs_lossy.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        self.first_doc_at.get_or_insert_with(Instant::now);
        // Same partition and generation: a partition revoked and assigned
        // again while this request was built starts a slot of its own.
        let slot = match self
            .slots
            .iter()
            .position(|s| s.partition == m.partition() && s.generation == generation && *s.topic == *m.topic())
        {
            Some(i) => i,
            None => {
                self.slots.push(OpenSlot { topic, partition: m.partition(), count: 0, last_offset: 0, generation });
                self.slots.len() - 1
            }
        };
        self.slots[slot].count += 1;
        self.slots[slot].last_offset = m.offset();
        self.docs.push(slot as u16);
        self.read_ms.push(rec.timestamp_ms.unwrap_or(0));
    }

    fn topic(&mut self, name: &str) -> (Arc<str>, MessageMode) {
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        let json = self.es.parse_json.iter().any(|t| t == "*" || t == name);
        let v = (Arc::from(name), if json { MessageMode::ParseJson } else { MessageMode::Plain });
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
        let mut t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Hands the request being built to the workers, waiting (with the
    /// assignment paused) while they are all busy.
    fn flush(&mut self, stop: &AtomicBool) {
        let body = Bytes::copy_from_slice(self.body.as_bytes());
        self.body.clear();
        self.first_doc_at = None;
        let docs = std::mem::take(&mut self.docs);
        let mut slots = Vec::with_capacity(self.slots.len());
        {
            let t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
            for s in self.slots.drain(..) {
                let ack = Arc::new(BatchAck::new(s.count));
                if let Some(p) = t.parts.get(&(s.topic.clone(), s.partition)) {
                    if p.generation == s.generation {
                        p.progress.push(ack.clone(), s.last_offset as u64 + 1);
                    }
                }
                slots.push(Slot { topic: s.topic, partition: s.partition, ack });
            }
        }
        let mut req = Request { body, docs, slots, read_ms: std::mem::take(&mut self.read_ms) };
        let mut paused_at: Option<Instant> = None;
        loop {
            match self.tx.try_send(req) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
                Err(mpsc::error::TrySendError::Full(r)) => {
                    req = r;
                    if stop.load(Ordering::Acquire) {
                        // Not sent: its records are consumed again after the restart.
                        break;
                    }
                    if paused_at.is_none() {
                        let a = self.consumer.assignment().unwrap_or_default();
                        let _ = self.consumer.pause(&a);
                        paused_at = Some(Instant::now());
                    }
                    // Polling keeps the group membership and serves rebalances.
                    if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                        let _ = self.consumer.seek(
                            m.topic(),
                            m.partition(),
                            Offset::Offset(m.offset()),
                            Duration::from_secs(1),
                        );
                    }
                    if self.last_commit.elapsed() >= COMMIT_EVERY {
                        self.commit(CommitMode::Async);
                    }
                }
            }
        }
        if let Some(since) = paused_at {
            let a = self.consumer.assignment().unwrap_or_default();
            let _ = self.consumer.resume(&a);
            self.stats.paused_ms.fetch_add(since.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn commit(&mut self, mode: CommitMode) {
        self.last_commit = Instant::now();
        let tpl = self.trackers.lock().unwrap_or_else(|e| e.into_inner()).take_commits(None);
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::warn!("offset commit failed: {e}");
            }
        }
    }
}

fn report(s: &TransferStats) {
    let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    tracing::info!(
        records = g(&s.records),
        indexed = g(&s.docs_indexed),
        duplicate = g(&s.docs_duplicate),
        retried = g(&s.docs_retried),
        dead_lettered = g(&s.docs_dead_lettered),
        requests = g(&s.bulk_requests),
        paused_ms = g(&s.paused_ms),
        "transfer totals"
    );
}
