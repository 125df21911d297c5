//! Consume: records polled from Kafka into `_bulk` requests (one slot per
//! partition and assignment generation), handed to the workers with the
//! assignment paused while they are all busy.

use super::commit::{commit, Part, Trackers, TransferContext};
use super::{CLOCK_EVERY, COMMIT_EVERY};
use crate::common::ack::{BatchAck, Progress};
use crate::common::clock::{clamp_record_ms, now_ms};
use crate::common::shutdown;
use crate::common::sync::lock;
use crate::config::EsConfig;
use crate::elastic::batcher::{message_mode, Batcher, Built};
use crate::elastic::body::MessageMode;
use crate::elastic::stats::TransferStats;
use crate::elastic::worker::{Request, Slot, Workers};
use crate::record::{Origin, Record};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::Offset;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A document's partition inside the request being built.
pub(super) struct OpenSlot {
    pub(super) topic: Arc<str>,
    pub(super) partition: i32,
    pub(super) count: usize,
    pub(super) last_offset: i64,
    pub(super) generation: u64,
}

pub(super) struct Transfer {
    pub(super) consumer: Arc<BaseConsumer<TransferContext>>,
    pub(super) trackers: Arc<Mutex<Trackers>>,
    pub(super) revocations: Arc<AtomicU64>,
    /// (topic, partition, generation) of the partitions seen since the
    /// last revocation (`generations_at`): no lock per record.
    pub(super) generations: Vec<(Arc<str>, i32, u64)>,
    pub(super) generations_at: u64,
    /// The request being built; a slot per (partition, generation).
    pub(super) batcher: Batcher<OpenSlot>,
    pub(super) workers: Workers,
    pub(super) es: EsConfig,
    pub(super) stats: Arc<TransferStats>,
    pub(super) topics: HashMap<String, (Arc<str>, MessageMode)>,
    pub(super) last_commit: Instant,
    /// Wall clock (ms) read with the monotonic one, every [`CLOCK_EVERY`]
    /// records: the window record timestamps are kept within.
    pub(super) now_ms: i64,
}

impl Transfer {
    /// Polls records into requests until `stop` is set, handing requests
    /// to the workers when full or due and committing every [`COMMIT_EVERY`].
    pub(super) fn consume_until(&mut self, stop: &AtomicBool) {
        // A second handle, so a polled message (which borrows the consumer)
        // can be handed to `add` while `self` is borrowed mutably.
        let polling = self.consumer.clone();
        let mut polled: u32 = 0;
        while !shutdown::is_set(stop) {
            let idle = match polling.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    self.add(&m, stop);
                    false
                }
                Some(Err(e)) => {
                    tracing::warn!("kafka consume: {e}");
                    true
                }
                None => true,
            };
            if self.batcher.docs() >= self.es.bulk_max_docs {
                self.flush(stop);
            }
            // The clock is read every CLOCK_EVERY records while records
            // stream (thousands per millisecond), and at every idle poll.
            polled = polled.wrapping_add(1);
            if idle || polled % CLOCK_EVERY == 0 {
                let now = Instant::now();
                self.now_ms = now_ms();
                if self.batcher.is_due(now) {
                    self.flush(stop);
                }
                if now.duration_since(self.last_commit) >= COMMIT_EVERY {
                    self.commit(CommitMode::Async);
                }
            }
        }
    }

    /// Sends the request being built, waits up to `deadline` for every
    /// request to be answered, and commits what is complete.
    pub(super) fn finish(mut self, rt: &tokio::runtime::Handle, deadline: Duration) {
        if !self.batcher.is_empty() {
            self.flush(&AtomicBool::new(false));
        }
        let Transfer { consumer, trackers, workers, .. } = self;
        if !workers.finish(rt, deadline) {
            tracing::warn!("requests still in flight after {deadline:?}: their records will be consumed again");
        }
        let tpl = lock(&trackers).take_commits(None);
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!("final commit failed: {e}");
            }
        }
    }

    /// Appends one record to the request being built.
    pub(super) fn add(&mut self, m: &BorrowedMessage<'_>, stop: &AtomicBool) {
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
        // The producer chose the timestamp: it may pick the day of the
        // index only within a window around now (a bounded number of indices).
        let now = self.now_ms;
        let (index_ms, clamped) = clamp_record_ms(rec.timestamp_ms.unwrap_or(now), now);
        if clamped {
            self.stats.docs_time_clamped.fetch_add(1, Ordering::Relaxed);
        }
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

    pub(super) fn topic(&mut self, name: &str) -> (Arc<str>, MessageMode) {
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        let v = (Arc::from(name), message_mode(&self.es.parse_json, name));
        self.topics.insert(name.to_string(), v.clone());
        v
    }

    /// The tracker generation of a partition, created at its first record.
    pub(super) fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64) -> u64 {
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
    pub(super) fn flush(&mut self, stop: &AtomicBool) {
        let built = self.batcher.take();
        let Transfer { consumer, trackers, workers, stats, last_commit, .. } = self;
        flush_request(built, consumer, trackers, workers, stats, last_commit, stop);
    }

    pub(super) fn commit(&mut self, mode: CommitMode) {
        commit(&self.consumer, &self.trackers, &mut self.last_commit, mode);
    }
}

/// Gives a built request its acknowledgements (one per slot, queued in its
/// partition's progress) and hands it to the workers, waiting with the
/// assignment paused while they are all busy.
pub(super) fn flush_request(
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
