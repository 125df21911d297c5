//! Ship: the Kafka producer stage. One thread takes batches off the channel
//! and hands every line to librdkafka as one record; delivery reports count
//! the batch's acknowledgement down.
//!
//! Record: value = the line's bytes; key = the file identity (so one file's
//! lines stay in one partition, in order); headers `host`, `path`, `offset`
//! (of the line's first byte), `fid`, and `split` (part number) / `truncated`
//! / `partial` for cut lines, `json = 1` when the collect entry asks the
//! transfer to merge JSON lines (`parse_json`); timestamp = when the line was read.
//! A journal entry (`agent::journal`) has its sequence number as `offset`,
//! its `__REALTIME_TIMESTAMP` as timestamp, and the `journal` headers.
//!
//! librdkafka's queue is bounded (`queue.buffering.max.kbytes`); when it is
//! full the thread polls and retries, so backpressure reaches the readers
//! through the bounded channel. Delivery never times out by default
//! (`message.timeout.ms = 0`): while Kafka is down, records wait. Failures
//! librdkafka gives up on anyway are retried when they are transient. A
//! record refused for its size (by librdkafka's or the broker's
//! `message.max.bytes`) is cut in two halves, each sent again with the
//! offset of its first byte, until it fits (review finding 9): a line the
//! broker cannot take never pins the file. A record rejected for good is
//! logged with its file and offset, counted, and pins the file's checkpoint
//! before it.

use crate::agent::batch::Batch;
use crate::agent::stats::Stats;
use crate::common::ack::BatchAck;
use crate::common::backoff::Backoff;
use crate::common::sync::lock;
use crate::config::{ConfigError, KafkaConfig};
use crate::error::RunError;
use crate::kafka::stats::KafkaStats;
use crate::record::Cut;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Producer settings.
#[derive(Clone)]
pub struct ShipConfig {
    /// Brokers and `[kafka.producer]` (see [`crate::kafka::producer`]).
    pub kafka: KafkaConfig,
    /// The `host` header.
    pub host: String,
    /// Longest record value the readers produce.
    pub max_line_bytes: usize,
}

/// A record librdkafka gave up on that is worth sending again.
struct Retry {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Option<OwnedHeaders>,
    timestamp: Option<i64>,
    ack: Arc<BatchAck>,
}

/// Receives delivery reports.
pub struct ShipContext {
    stats: Arc<Stats>,
    kafka: Arc<KafkaStats>,
    retry: Mutex<Vec<Retry>>,
}

impl ClientContext for ShipContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::log_client_error("producer", &error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.kafka.store(statistics);
    }
}

impl ProducerContext for ShipContext {
    type DeliveryOpaque = Arc<BatchAck>;

    fn delivery(&self, result: &DeliveryResult<'_>, ack: Arc<BatchAck>) {
        match result {
            Ok(_) => {
                if ack.ack() && ack.read_ms() > 0 {
                    // The batch's last line: its delivery latency, once per batch.
                    self.stats.delivery_latency.observe_ms(crate::common::clock::now_ms() - ack.read_ms());
                }
                self.stats.lines_acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                if is_size_refusal(e) {
                    let payload = msg.payload().unwrap_or_default();
                    let headers = msg.headers().map(|h| h.detach());
                    let rec = Refused {
                        topic: msg.topic(),
                        key: msg.key(),
                        payload,
                        headers,
                        timestamp: msg.timestamp().to_millis(),
                    };
                    self.recut(rec, e, ack);
                    return;
                }
                let (path, offset) = record_origin(msg.headers());
                if is_permanent(e) {
                    tracing::error!(topic = msg.topic(), %path, %offset, "Kafka rejected the record for good: {e}; the file's checkpoint stays before it");
                    self.stats.lines_failed.fetch_add(1, Ordering::Relaxed);
                    ack.fail();
                } else {
                    tracing::debug!(topic = msg.topic(), %path, %offset, "delivery failed, will retry: {e}");
                    lock(&self.retry).push(Retry {
                        topic: msg.topic().to_string(),
                        key: msg.key().map(<[u8]>::to_vec),
                        payload: msg.payload().unwrap_or_default().to_vec(),
                        headers: msg.headers().map(|h| h.detach()),
                        timestamp: msg.timestamp().to_millis(),
                        ack,
                    });
                }
            }
        }
    }
}

/// A record refused for its size, as it was sent.
struct Refused<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    headers: Option<OwnedHeaders>,
    timestamp: Option<i64>,
}

impl ShipContext {
    /// Cuts a record refused for its size in two and queues both halves
    /// for sending (the batch now waits for one record more). One too
    /// short to cut any more is rejected for good.
    fn recut(&self, rec: Refused<'_>, e: &KafkaError, ack: Arc<BatchAck>) {
        let (path, offset) = record_origin(rec.headers.as_ref());
        let Some(mid) = cut_in_two(rec.payload) else {
            tracing::error!(topic = rec.topic, %path, %offset, bytes = rec.payload.len(), "Kafka refused the record for its size even cut to {MIN_RECUT_BYTES} bytes: {e}; the file's checkpoint stays before it");
            self.stats.lines_failed.fetch_add(1, Ordering::Relaxed);
            ack.fail();
            return;
        };
        let start: u64 = offset.parse().unwrap_or(0);
        tracing::warn!(topic = rec.topic, %path, %offset, bytes = rec.payload.len(), "Kafka refused the record for its size ({e}): sending it again in two halves");
        ack.grow(1);
        self.stats.records_recut.fetch_add(1, Ordering::Relaxed);
        self.stats.lines_read.fetch_add(1, Ordering::Relaxed);
        let mut q = lock(&self.retry);
        for (n, range) in [(1, 0..mid), (2, mid..rec.payload.len())] {
            q.push(Retry {
                topic: rec.topic.to_string(),
                key: rec.key.map(<[u8]>::to_vec),
                payload: rec.payload[range.clone()].to_vec(),
                headers: Some(half_headers(rec.headers.as_ref(), start + range.start as u64, n)),
                timestamp: rec.timestamp,
                ack: ack.clone(),
            });
        }
    }
}

/// Records shorter than this are not cut any more: a broker that refuses
/// them is configured for something else than log lines.
const MIN_RECUT_BYTES: usize = 1024;

/// Where to cut a refused record in two: its middle, moved back to the
/// start of a UTF-8 character when one is within 3 bytes (so valid text
/// stays valid in both halves). None when it is too short to cut.
fn cut_in_two(payload: &[u8]) -> Option<usize> {
    if payload.len() < MIN_RECUT_BYTES {
        return None;
    }
    let mid = payload.len() / 2;
    let boundary = (0..4).map(|back| mid - back).find(|&i| payload[i] & 0xC0 != 0x80);
    Some(boundary.unwrap_or(mid))
}

/// The headers of one half of a cut record: the original's, with `offset`
/// moved to the half's first byte, and `split` = 1 or 2 when the record was
/// a whole line (a part, truncated or partial line keeps its own mark).
fn half_headers(orig: Option<&OwnedHeaders>, offset: u64, n: u32) -> OwnedHeaders {
    let mut num = itoa::Buffer::new();
    let mut part = itoa::Buffer::new();
    let mut out = OwnedHeaders::new_with_capacity(7);
    let mut marked = false;
    for h in orig.into_iter().flat_map(|h| h.iter()) {
        match h.key {
            "offset" => out = out.insert(Header { key: "offset", value: Some(num.format(offset)) }),
            k => {
                marked |= matches!(k, "split" | "truncated" | "partial");
                out = out.insert(Header { key: k, value: h.value });
            }
        }
    }
    if !marked {
        out = out.insert(Header { key: "split", value: Some(part.format(n)) });
    }
    out
}

/// Refusals of a record's size: the same bytes in smaller records go through.
fn is_size_refusal(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(e.rdkafka_error_code(), Some(MessageSizeTooLarge | MessageBatchTooLarge))
}

/// `path` and `offset` headers of a record, for error messages.
fn record_origin<H: Headers>(h: Option<&H>) -> (String, String) {
    let mut path = String::new();
    let mut offset = String::new();
    if let Some(h) = h {
        for hd in h.iter() {
            let v = String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned();
            match hd.key {
                "path" => path = v,
                "offset" => offset = v,
                _ => {}
            }
        }
    }
    (path, offset)
}

/// Errors no retry can fix: the record itself is refused. Authorization
/// and authentication refusals are not among them (review finding 9): an
/// ACL or a password being fixed must let the same records through, so
/// they are retried like a broker that is down.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidMessageSize
                | InvalidMessage
                | InvalidRecord
                | InvalidTopic
                | MessageBatchTooLarge
                | UnsupportedForMessageFormat
                | InvalidRequiredAcks
                | UnsupportedCompressionType
        )
    )
}

/// The shipping thread, and what shutdown needs to end it.
pub struct Shipper {
    thread: JoinHandle<()>,
    /// Set to give up on records still unacknowledged (shutdown deadline).
    abort: Arc<AtomicBool>,
}

impl Shipper {
    /// Waits for the thread to deliver what it has (it ends once every
    /// sender of its channel is dropped and its queue is acknowledged),
    /// giving up after `timeout`.
    pub fn finish(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if !self.thread.is_finished() {
            tracing::warn!("Kafka did not acknowledge everything within {timeout:?}: unacknowledged lines will be read again at the next start");
        }
        self.abort.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Creates the producer (a bad property is a config error naming it) and
/// starts the shipping thread.
/// librdkafka's statistics (every [`crate::kafka::stats::KAFKA_STATS_INTERVAL`]) go to `kafka`.
pub fn spawn(
    cfg: &ShipConfig,
    rx: Receiver<Batch>,
    stats: Arc<Stats>,
    kafka: Arc<KafkaStats>,
) -> Result<Shipper, RunError> {
    let ctx = ShipContext { stats: stats.clone(), kafka, retry: Mutex::new(Vec::new()) };
    let producer: BaseProducer<ShipContext> = crate::kafka::producer(&cfg.kafka, cfg.max_line_bytes)
        .create_with_context(ctx)
        .map_err(|e| ConfigError { key: "kafka.producer".into(), message: e.to_string() })?;
    let abort = Arc::new(AtomicBool::new(false));
    let mut ship = Ship { producer, host: cfg.host.clone(), abort: abort.clone() };
    let thread = thread::Builder::new()
        .name("ship".into())
        .spawn(move || ship.run(rx))
        .map_err(|source| RunError::Spawn { what: "ship", source })?;
    Ok(Shipper { thread, abort })
}

struct Ship {
    producer: BaseProducer<ShipContext>,
    host: String,
    abort: Arc<AtomicBool>,
}

impl Ship {
    fn run(&mut self, rx: Receiver<Batch>) {
        let mut retry_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut retry_at = Instant::now();
        loop {
            // Retries first: new batches wait until they are back in the queue.
            if !self.retries_pending() {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(batch) => self.send_batch(&batch),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if Instant::now() >= retry_at {
                if self.resend() {
                    retry_backoff.reset();
                }
                retry_at = Instant::now() + retry_backoff.next_wait();
            }
            self.producer.poll(Duration::from_millis(if self.retries_pending() { 20 } else { 0 }));
            if self.abort.load(Ordering::Acquire) {
                return;
            }
        }
        // Every sender is gone: deliver what is queued, until acknowledged or aborted.
        while (self.producer.in_flight_count() > 0 || self.retries_pending()) && !self.abort.load(Ordering::Acquire) {
            if self.retries_pending() {
                self.resend();
            }
            self.producer.poll(Duration::from_millis(50));
        }
    }

    fn retries_pending(&self) -> bool {
        !lock(&self.producer.context().retry).is_empty()
    }

    /// Puts failed-but-retriable records back in the queue. Returns whether
    /// all of them went in.
    fn resend(&mut self) -> bool {
        let pending = std::mem::take(&mut *lock(&self.producer.context().retry));
        let mut all = true;
        let mut left = Vec::new();
        for r in pending {
            let mut rec = BaseRecord::with_opaque_to(&r.topic, r.ack.clone()).payload(&r.payload[..]);
            if let Some(k) = &r.key {
                rec = rec.key(&k[..]);
            }
            if let Some(h) = r.headers.clone() {
                rec = rec.headers(h);
            }
            if let Some(ts) = r.timestamp {
                rec = rec.timestamp(ts);
            }
            let sent = self.producer.send(rec).map_err(|(e, _)| e);
            match sent {
                Ok(()) => {}
                Err(e) if is_size_refusal(&e) => {
                    let ctx = self.producer.context();
                    let refused = Refused {
                        topic: &r.topic,
                        key: r.key.as_deref(),
                        payload: &r.payload,
                        headers: r.headers.clone(),
                        timestamp: r.timestamp,
                    };
                    ctx.recut(refused, &e, r.ack.clone());
                }
                Err(_) => {
                    all = false;
                    left.push(r);
                }
            }
        }
        if !left.is_empty() {
            lock(&self.producer.context().retry).extend(left);
        }
        all
    }

    fn send_batch(&mut self, batch: &Batch) {
        let src = &batch.source;
        let mut num = itoa::Buffer::new();
        let mut part = itoa::Buffer::new();
        for (k, line) in batch.lines().enumerate() {
            // A journal entry: its sequence number for offset, its time for the timestamp.
            let entry = batch.journal.as_ref().map(|j| &j.entries[k]);
            let offset = entry.map_or(line.offset, |e| e.seqnum);
            let timestamp = entry.and_then(|e| e.realtime_ms).unwrap_or(batch.read_ms);
            let mut headers = OwnedHeaders::new_with_capacity(6)
                .insert(Header { key: "host", value: Some(self.host.as_str()) })
                .insert(Header { key: "path", value: Some(&*src.path) })
                .insert(Header { key: "offset", value: Some(num.format(offset)) })
                .insert(Header { key: "fid", value: Some(&*src.fid_text) });
            headers = match line.cut {
                Cut::Whole => headers,
                Cut::Part(n) => headers.insert(Header { key: "split", value: Some(part.format(n)) }),
                Cut::Truncated => headers.insert(Header { key: "truncated", value: Some("1") }),
                Cut::Partial => headers.insert(Header { key: "partial", value: Some("1") }),
            };
            if batch.parse_json {
                headers = headers.insert(Header { key: "json", value: Some("1") });
            }
            if let Some(e) = entry {
                headers = crate::agent::journal::headers(headers, e, &batch.block.data);
            }
            let mut record = BaseRecord::with_opaque_to(&src.topic, batch.ack.clone())
                .payload(line.bytes)
                .key(src.fid_text.as_bytes())
                .headers(headers)
                .timestamp(timestamp);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // librdkafka's queue is full: wait for deliveries.
                        record = r;
                        self.producer.poll(Duration::from_millis(10));
                        if self.abort.load(Ordering::Acquire) {
                            return;
                        }
                    }
                    Err((e, r)) if is_size_refusal(&e) => {
                        let refused = Refused {
                            topic: &src.topic,
                            key: Some(src.fid_text.as_bytes()),
                            payload: line.bytes,
                            headers: r.headers.clone(),
                            timestamp: Some(timestamp),
                        };
                        self.producer.context().recut(refused, &e, r.delivery_opaque);
                        break;
                    }
                    Err((e, r)) => {
                        tracing::error!(topic = %src.topic, path = %src.path, offset = line.offset, "Kafka refused the record: {e}; the file's checkpoint stays before it");
                        self.producer.context().stats.lines_failed.fetch_add(1, Ordering::Relaxed);
                        r.delivery_opaque.fail();
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_record_is_cut_at_a_character_boundary_near_its_middle() {
        assert_eq!(cut_in_two(&[b'a'; MIN_RECUT_BYTES - 1]), None, "too short to cut");
        assert_eq!(cut_in_two(&[b'a'; 2000]), Some(1000));
        // Three-byte characters: the middle (1500) is a character's first byte.
        let wide = "\u{20ac}".repeat(1000);
        assert_eq!(cut_in_two(wide.as_bytes()), Some(1500));
        let odd = format!("x{wide}");
        let mid = cut_in_two(odd.as_bytes()).unwrap();
        assert!(odd.is_char_boundary(mid) && (1498..=1500).contains(&mid), "{mid}");
        // Not UTF-8 at all: the middle, whatever it is.
        assert_eq!(cut_in_two(&[0x80; 2000]), Some(1000));
    }

    #[test]
    fn halves_carry_their_own_offset_and_a_part_number_unless_already_cut() {
        let orig = OwnedHeaders::new()
            .insert(Header { key: "host", value: Some("h") })
            .insert(Header { key: "offset", value: Some("100") });
        let half = half_headers(Some(&orig), 612, 2);
        let pairs: Vec<(&str, &[u8])> = half.iter().map(|h| (h.key, h.value.unwrap())).collect();
        assert_eq!(pairs, vec![("host", &b"h"[..]), ("offset", b"612"), ("split", b"2")]);
        let part = orig.insert(Header { key: "split", value: Some("3") });
        let half = half_headers(Some(&part), 700, 1);
        let pairs: Vec<(&str, &[u8])> = half.iter().map(|h| (h.key, h.value.unwrap())).collect();
        assert_eq!(pairs, vec![("host", &b"h"[..]), ("offset", b"700"), ("split", b"3")]);
    }

    #[test]
    fn size_refusals_are_told_apart() {
        use RDKafkaErrorCode::*;
        for (code, size) in
            [(MessageSizeTooLarge, true), (MessageBatchTooLarge, true), (InvalidRecord, false), (QueueFull, false)]
        {
            assert_eq!(is_size_refusal(&KafkaError::MessageProduction(code)), size, "{code:?}");
        }
    }

    #[test]
    fn authorization_and_authentication_refusals_are_retried() {
        use RDKafkaErrorCode::*;
        // (code, permanent)
        let table = [
            (TopicAuthorizationFailed, false),
            (ClusterAuthorizationFailed, false),
            (SaslAuthenticationFailed, false),
            (Authentication, false),
            (MessageTimedOut, false),
            (BrokerTransportFailure, false),
            (InvalidRecord, true),
            (InvalidTopic, true),
        ];
        for (code, permanent) in table {
            assert_eq!(is_permanent(&KafkaError::MessageProduction(code)), permanent, "{code:?}");
        }
    }
}
