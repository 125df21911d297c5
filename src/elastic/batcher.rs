//! The one `_bulk` request builder, in front of the workers: the transfer
//! (records from Kafka) and `run` straight to Elasticsearch (lines from the
//! readers) both append documents here.
//!
//! For every document the builder remembers which *slot* it owes its
//! acknowledgement to (a Kafka partition for the transfer, a reader's batch
//! for `run`); the caller decides what a slot is, the builder keeps the
//! bookkeeping that must not drift between the two: the body, the document →
//! slot table, the read times, the index-name fallback, the JSON mode and
//! when a request is due.

use crate::config::IndexPattern;
use crate::elastic::body::{BulkBody, MessageMode, PushOutcome};
use crate::elastic::index_name::IndexNames;
use crate::elastic::stats::TransferStats;
use crate::record::Record;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a document goes when its index name cannot be made (a timestamp
/// out of range for the pattern): never lost, easy to find.
pub const UNROUTABLE_INDEX: &str = "logcollect-unroutable";

/// A request taken from the builder: the body, the slot `docs[i]` of each
/// document, the slots in the order they were opened, and each document's
/// read time (ms since the epoch, 0: unknown).
pub struct Built<S> {
    pub body: Bytes,
    pub docs: Vec<u16>,
    pub slots: Vec<S>,
    pub read_ms: Vec<i64>,
}

/// The mode of `topic`'s lines under `[es] parse_json` (topics, or `*`).
pub fn message_mode(parse_json: &[String], topic: &str) -> MessageMode {
    if parse_json.iter().any(|t| t == "*" || t == topic) {
        MessageMode::ParseJson
    } else {
        MessageMode::Plain
    }
}

/// Builds one request at a time; `S` is what a slot holds.
pub struct Batcher<S> {
    body: BulkBody,
    names: IndexNames,
    /// The open request's slots; `docs[i] < slots.len()` always.
    slots: Vec<S>,
    docs: Vec<u16>,
    /// One per document, beside `docs`.
    read_ms: Vec<i64>,
    /// When the open request got its first document (`None`: empty).
    first_doc_at: Option<Instant>,
    max_docs: usize,
    max_wait: Duration,
    stats: Arc<TransferStats>,
    /// Documents sent to [`UNROUTABLE_INDEX`] since the last warning, and
    /// when that was: one warning per [`UNROUTABLE_LOG_EVERY`] at most.
    unroutable: u64,
    unroutable_logged: Option<Instant>,
}

/// The least time between two warnings about unroutable documents.
const UNROUTABLE_LOG_EVERY: Duration = Duration::from_secs(10);

impl<S> Batcher<S> {
    /// Requests of at most `max_bytes` and `max_docs`, due `max_wait` after
    /// their first document; index names from `pattern`.
    pub fn new(
        pattern: IndexPattern,
        max_bytes: usize,
        max_docs: usize,
        max_wait: Duration,
        stats: Arc<TransferStats>,
    ) -> Self {
        Batcher {
            body: BulkBody::new(max_bytes),
            names: IndexNames::new(pattern),
            slots: Vec::new(),
            docs: Vec::new(),
            read_ms: Vec::new(),
            first_doc_at: None,
            max_docs,
            max_wait,
            stats,
            unroutable: 0,
            unroutable_logged: None,
        }
    }

    /// Appends `rec` (indexed by `index_ms`, read at `read_ms`, 0 if
    /// unknown). When the open request has no room, `flush` gets it first.
    /// Then `slot` picks the document's slot among the open request's (an
    /// existing index, or a new one it pushed).
    pub fn push(
        &mut self,
        rec: &Record<'_>,
        index_ms: i64,
        read_ms: i64,
        mode: MessageMode,
        mut flush: impl FnMut(Built<S>),
        slot: impl FnOnce(&mut Vec<S>) -> usize,
    ) {
        loop {
            let index = match self.names.name(rec.topic, index_ms) {
                Ok(i) => i,
                Err(e) => {
                    self.unroutable += 1;
                    if !matches!(self.unroutable_logged, Some(t) if t.elapsed() < UNROUTABLE_LOG_EVERY) {
                        let n = std::mem::take(&mut self.unroutable);
                        tracing::error!(
                            "{e}: the document goes to index {UNROUTABLE_INDEX} ({n} so since the last such warning)"
                        );
                        self.unroutable_logged = Some(Instant::now());
                    }
                    UNROUTABLE_INDEX
                }
            };
            match self.body.push(rec, index, mode) {
                PushOutcome::Full => flush(self.take()),
                PushOutcome::Added { lossy, merged_json } => {
                    if mode == MessageMode::ParseJson && !merged_json {
                        self.stats.docs_unmerged.fetch_add(1, Ordering::Relaxed);
                    }
                    if lossy {
                        self.stats.docs_lossy.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
        }
        let i = slot(&mut self.slots);
        debug_assert!(i < self.slots.len());
        self.docs.push(i as u16);
        self.read_ms.push(read_ms);
        self.first_doc_at.get_or_insert_with(Instant::now);
    }

    /// Whether the open request should go now: enough documents, its first
    /// one waited `max_wait`, or its slots are about to outgrow `u16`.
    pub fn is_due(&self, now: Instant) -> bool {
        !self.docs.is_empty()
            && (self.docs.len() >= self.max_docs
                || self.slots.len() >= usize::from(u16::MAX)
                || self.first_doc_at.is_some_and(|f| now.duration_since(f) >= self.max_wait))
    }

    /// How long until the open request is due by time (`max_wait` when empty).
    pub fn due_in(&self, now: Instant) -> Duration {
        match self.first_doc_at {
            Some(f) => self.max_wait.saturating_sub(now.duration_since(f)),
            None => self.max_wait,
        }
    }

    /// Documents in the open request.
    pub fn docs(&self) -> usize {
        self.docs.len()
    }

    /// Whether the open request has no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Takes the open request; the builder starts an empty one.
    pub fn take(&mut self) -> Built<S> {
        let body = Bytes::copy_from_slice(self.body.as_bytes());
        self.body.clear();
        self.first_doc_at = None;
        Built {
            body,
            docs: std::mem::take(&mut self.docs),
            slots: std::mem::take(&mut self.slots),
            read_ms: std::mem::take(&mut self.read_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(topic: &'a str, value: &'a [u8], offset: i64) -> Record<'a> {
        Record { value, topic, partition: 0, offset, timestamp_ms: Some(1_795_600_800_000), origin: None }
    }

    fn batcher(max_bytes: usize, max_docs: usize) -> Batcher<&'static str> {
        let pattern = IndexPattern::parse("{topic}").unwrap();
        Batcher::new(pattern, max_bytes, max_docs, Duration::from_secs(3600), Arc::default())
    }

    /// The slot picker both callers use: the last slot if it is the same.
    fn same_or_new(key: &'static str) -> impl FnOnce(&mut Vec<&'static str>) -> usize {
        move |slots| {
            if slots.last() != Some(&key) {
                slots.push(key);
            }
            slots.len() - 1
        }
    }

    #[test]
    fn documents_remember_their_slots_and_requests_split_when_full() {
        let mut b = batcher(1 << 20, 1000);
        let mut flushed = Vec::new();
        for (i, key) in ["a", "a", "b", "a"].into_iter().enumerate() {
            b.push(&rec("web", b"line", i as i64), 0, 7, MessageMode::Plain, |r| flushed.push(r), same_or_new(key));
        }
        assert!(flushed.is_empty());
        assert_eq!(b.docs(), 4);
        let r = b.take();
        assert_eq!(r.slots, ["a", "b", "a"]);
        assert_eq!(r.docs, [0, 0, 1, 2]);
        assert_eq!(r.read_ms, [7; 4]);
        assert_eq!(memchr::memchr_iter(b'\n', &r.body).count(), 8);
        assert!(b.is_empty() && b.take().body.is_empty());

        // A body with room for about two documents: the third flushes.
        let one = {
            let mut b = batcher(1 << 20, 1000);
            b.push(&rec("web", b"line", 0), 0, 0, MessageMode::Plain, |_| {}, same_or_new("a"));
            b.take().body.len()
        };
        let mut b = batcher(one * 2 + one / 2, 1000);
        for i in 0..3 {
            b.push(&rec("web", b"line", i), 0, 0, MessageMode::Plain, |r| flushed.push(r), same_or_new("a"));
        }
        assert_eq!(flushed.len(), 1);
        assert_eq!((flushed[0].docs.len(), flushed[0].slots.len()), (2, 1));
        assert_eq!((b.docs(), b.take().docs), (1, vec![0]));
    }

    #[test]
    fn due_by_count_or_time_and_unroutable_names_fall_back() {
        let mut b = batcher(1 << 20, 2);
        let now = Instant::now();
        assert!(!b.is_due(now));
        b.push(&rec("web", b"x", 0), 0, 0, MessageMode::Plain, |_| {}, same_or_new("a"));
        assert!(!b.is_due(now));
        assert!(b.is_due(now + Duration::from_secs(3601)));
        b.push(&rec("web", b"x", 1), 0, 0, MessageMode::Plain, |_| {}, same_or_new("a"));
        assert!(b.is_due(now));

        let pattern = IndexPattern::parse("{topic}-%Y.%m.%d").unwrap();
        let mut b: Batcher<()> = Batcher::new(pattern, 1 << 20, 10, Duration::ZERO, Arc::default());
        b.push(
            &rec("web", b"x", 0),
            i64::MAX,
            0,
            MessageMode::Plain,
            |_| {},
            |s| {
                s.push(());
                0
            },
        );
        let body = b.take().body;
        assert!(std::str::from_utf8(&body).unwrap().contains(UNROUTABLE_INDEX), "{body:?}");
    }

    #[test]
    fn parse_json_topics() {
        let topics = ["app".to_string()];
        assert_eq!(message_mode(&topics, "app"), MessageMode::ParseJson);
        assert_eq!(message_mode(&topics, "web"), MessageMode::Plain);
        assert_eq!(message_mode(&["*".to_string()], "web"), MessageMode::ParseJson);
        assert_eq!(message_mode(&[], "web"), MessageMode::Plain);
    }
}
