//! Ingest: the embedded index's writers, for the two ways lines reach it.
//!
//! - [`index_batches`]: batches straight from the readers (no Kafka). Every
//!   `commit_interval_ms` the batches indexed since the last commit are
//!   acknowledged, the checkpoints are snapshot, and the snapshot goes into
//!   the same tantivy commit as the documents. Index and checkpoints move
//!   together: after `kill -9` the readers resume exactly where the index
//!   ends, so no line is lost or indexed twice.
//! - [`index_records`]: records from Kafka as a consumer group. Each document
//!   replaces any with its id (the agent's deterministic id, so a line the
//!   agent or Kafka delivered twice stays one document); offsets are
//!   committed to Kafka only after the index commit that holds their records.

use crate::agent::batch::{Batch, Source};
use crate::agent::checkpoint::Checkpoints;
use crate::agent::stats::Stats;
use crate::common::ack::BatchAck;
use crate::common::clock::{clamp_record_ms, now_ms};
use crate::config::{ConfigError, IndexSection, KafkaConfig};
use crate::embedded::index::{IndexError, LineDoc, LineOrigin, Writer};
use crate::error::RunError;
use crate::record::{Origin, Record};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for a reader to register a batch the indexer already has
/// (the reader sends first, then registers: see `tail`).
const REGISTER_WAIT: Duration = Duration::from_secs(2);

/// While the readers are ahead of the indexer (batches wait in the channel
/// when a commit is due), commits come this many times less often: fewer,
/// larger segments, so less merging and less per-segment work while catching
/// up on a backlog. Lines still become searchable at the normal pace once
/// the backlog is gone.
const CATCH_UP_FACTOR: u32 = 10;

/// A batch indexed but not yet committed.
struct Indexed {
    ack: Arc<BatchAck>,
    source: Arc<Source>,
    /// File offset just past the batch.
    end: u64,
    lines: u32,
}

/// Indexes batches from the readers until every sender is gone, committing
/// with the checkpoints every `commit_interval_ms`, and applying retention.
pub fn index_batches(
    rx: Receiver<Batch>,
    mut w: Writer,
    checkpoints: Arc<Checkpoints>,
    host: Arc<str>,
    cfg: &IndexSection,
    stats: Arc<Stats>,
) -> Result<(), IndexError> {
    let every = Duration::from_millis(cfg.commit_interval_ms);
    let catching_up_every = every * CATCH_UP_FACTOR;
    let retention_every = Duration::from_millis(cfg.retention_check_ms);
    let retention = cfg.retention_days > 0 || cfg.retention_bytes > 0;
    let mut pending: Vec<Indexed> = Vec::new();
    let mut scratch = Vec::with_capacity(256);
    let mut last_commit = Instant::now();
    let mut next_commit = last_commit + every;
    let mut next_retention = Instant::now();
    loop {
        match rx.recv_timeout(next_commit.saturating_duration_since(Instant::now())) {
            Ok(batch) => {
                let src = &batch.source;
                for (line, span) in batch.lines().zip(&batch.spans) {
                    w.add(LineDoc::from_line(&line, batch.line_bytes(span), src, &host, batch.read_ms, &mut scratch))?;
                }
                pending.push(Indexed {
                    ack: batch.ack.clone(),
                    source: batch.source.clone(),
                    end: batch.end,
                    lines: batch.spans.len() as u32,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                commit(&mut w, &mut pending, &checkpoints, &stats)?;
                return Ok(());
            }
        }
        if retention && Instant::now() >= next_retention {
            if let Some(what) = w.enforce_retention(now_ms())? {
                tracing::info!("retention: deleting {what}");
            }
            next_retention = Instant::now() + retention_every;
        }
        let now = Instant::now();
        if now >= next_commit {
            let behind = !rx.is_empty() && now < last_commit + catching_up_every;
            if behind {
                next_commit = now + every;
            } else {
                if !pending.is_empty() || w.pending() > 0 {
                    commit(&mut w, &mut pending, &checkpoints, &stats)?;
                }
                last_commit = Instant::now();
                next_commit = last_commit + every;
            }
        }
    }
}

/// Acknowledges what was indexed, so the checkpoints reach it, and commits
/// the documents together with the checkpoint snapshot.
fn commit(
    w: &mut Writer,
    pending: &mut Vec<Indexed>,
    checkpoints: &Checkpoints,
    stats: &Stats,
) -> Result<(), IndexError> {
    let mut lines = 0u64;
    for p in pending.iter() {
        p.ack.ack_many(p.lines);
        lines += u64::from(p.lines);
    }
    // A reader registers its batch right after sending it; wait for that,
    // or the snapshot would stop short of lines the commit holds.
    let deadline = Instant::now() + REGISTER_WAIT;
    for p in pending.iter() {
        while p.source.progress.advance() < p.end && !p.source.progress.is_held() {
            if Instant::now() > deadline {
                tracing::warn!(path = %p.source.path, "a batch was not registered in time: its lines may be indexed again after a crash");
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    pending.clear();
    // The commit carries the checkpoints: its failures are theirs.
    if let Err(e) = w.commit(Some(checkpoints.snapshot())) {
        checkpoints.health().failed(e.to_string());
        return Err(e);
    }
    checkpoints.health().ok();
    stats.lines_acked.fetch_add(lines, Ordering::Relaxed);
    Ok(())
}

/// Next offset to commit per partition consumed since the last commit,
/// cleared for partitions taken away.
#[derive(Default)]
struct Consumed {
    next: HashMap<(String, i32), i64>,
}

struct IngestContext {
    consumed: Arc<Mutex<Consumed>>,
}

impl ClientContext for IngestContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::log_client_error("consumer", &error, reason);
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            // Not committed: the next owner reads them again; documents
            // already here are replaced, not doubled, if they come back.
            let mut c = self.consumed.lock().unwrap_or_else(|e| e.into_inner());
            for el in revoked.elements() {
                c.next.remove(&(el.topic().to_string(), el.partition()));
            }
        }
    }
}

/// Small cache of header text as shared strings (hosts and paths repeat).
#[derive(Default)]
struct Interned {
    map: HashMap<Vec<u8>, Arc<str>>,
}

impl Interned {
    fn get(&mut self, b: &[u8]) -> Arc<str> {
        if let Some(s) = self.map.get(b) {
            return s.clone();
        }
        if self.map.len() > 10_000 {
            self.map.clear();
        }
        let s: Arc<str> = Arc::from(String::from_utf8_lossy(b).as_ref());
        self.map.insert(b.to_vec(), s.clone());
        s
    }
}

/// Indexes the records of `topics` as consumer group `kafka.group_id` until
/// `stop`, committing offsets behind the index commits.
pub fn index_records(
    kafka: &KafkaConfig,
    topics: &[String],
    mut w: Writer,
    cfg: &IndexSection,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let consumed = Arc::new(Mutex::new(Consumed::default()));
    let consumer: BaseConsumer<IngestContext> = crate::kafka::consumer(kafka)
        .create_with_context(IngestContext { consumed: consumed.clone() })
        .map_err(|e| ConfigError { key: "kafka.consumer".into(), message: e.to_string() })?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|e| ConfigError { key: "kafka.topic".into(), message: e.to_string() })?;
    tracing::info!(topics = %topics.join(","), group = %kafka.group_id, "indexing Kafka records");
    let every = Duration::from_millis(cfg.commit_interval_ms);
    let retention = cfg.retention_days > 0 || cfg.retention_bytes > 0;
    let mut next_commit = Instant::now() + every;
    let mut next_retention = Instant::now();
    let mut strings = Interned::default();
    let mut scratch = Vec::with_capacity(256);
    let mut topic_names: HashMap<String, Arc<str>> = HashMap::new();
    let commit = |w: &mut Writer, consumer: &BaseConsumer<IngestContext>, mode: CommitMode| -> Result<(), IndexError> {
        w.commit(None)?;
        let mut c = consumed.lock().unwrap_or_else(|e| e.into_inner());
        let mut tpl = TopicPartitionList::new();
        for ((t, p), next) in c.next.drain() {
            let _ = tpl.add_partition_offset(&t, p, Offset::Offset(next));
        }
        drop(c);
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, mode) {
                tracing::warn!("offset commit failed: {e}");
            }
        }
        Ok(())
    };
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let headers: Vec<(&str, &[u8])> = m
                    .headers()
                    .map(|h| h.iter().map(|hd| (hd.key, hd.value.unwrap_or_default())).collect())
                    .unwrap_or_default();
                let origin = Origin::from_headers(headers.iter().copied());
                let value = m.payload().unwrap_or_default();
                let rec = Record {
                    value,
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    // The producer chose it: kept near now, so a forged far-future
                    // line neither stays first in "newest" nor escapes retention.
                    timestamp_ms: Some({
                        let now = now_ms();
                        clamp_record_ms(m.timestamp().to_millis().unwrap_or(now), now).0
                    }),
                    origin,
                };
                let topic = topic_names.entry(m.topic().to_string()).or_insert_with(|| Arc::from(m.topic())).clone();
                let o = origin.map(|o| LineOrigin {
                    host: strings.get(o.host),
                    path: strings.get(o.path),
                    offset: o.offset,
                    cut: o.cut,
                });
                w.add_replacing(LineDoc::new(&rec, Bytes::copy_from_slice(value), topic, o, &mut scratch))?;
                consumed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .next
                    .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
            }
            Some(Err(e)) => tracing::warn!("kafka consume: {e}"),
            None => {}
        }
        if retention && Instant::now() >= next_retention {
            if let Some(what) = w.enforce_retention(now_ms())? {
                tracing::info!("retention: deleting {what}");
            }
            next_retention = Instant::now() + Duration::from_millis(cfg.retention_check_ms);
        }
        if Instant::now() >= next_commit {
            if w.pending() > 0 {
                commit(&mut w, &consumer, CommitMode::Async)?;
            }
            next_commit = Instant::now() + every;
        }
    }
    // Synchronous at the end, so a restart does not read them again.
    Ok(commit(&mut w, &consumer, CommitMode::Sync)?)
}
