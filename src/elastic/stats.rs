//! The `_bulk` path's counters (the transfer's, and `run`'s straight to
//! Elasticsearch): relaxed atomics bumped per request or per document;
//! observability reads them at scrape time.

use crate::common::histogram::Histogram;
use crate::common::sync::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The transfer's counters.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Records read from Kafka.
    pub records: AtomicU64,
    /// Documents stored (2xx).
    pub docs_indexed: AtomicU64,
    /// Documents already there (409 to create: a redelivery).
    pub docs_duplicate: AtomicU64,
    /// Document sends repeated after a 429/5xx or no answer.
    pub docs_retried: AtomicU64,
    /// Documents refused for good and written to the dead letter.
    pub docs_dead_lettered: AtomicU64,
    /// Of those, documents the dead-letter topic did not take in time,
    /// written to the dead-letter file instead.
    pub docs_dead_letter_fallback: AtomicU64,
    /// Documents with bytes that were not UTF-8 (replaced by U+FFFD).
    pub docs_lossy: AtomicU64,
    /// Records whose own timestamp was outside now − 30 days … now + 1 day:
    /// their index date comes from the nearest end of that window.
    pub docs_time_clamped: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bulk_bytes: AtomicU64,
    /// Requests that got no answer or a 429/5xx/other error as a whole.
    pub es_errors: AtomicU64,
    /// Milliseconds consuming was paused because every Elasticsearch
    /// worker was busy and the request queue full (backpressure).
    pub paused_ms: AtomicU64,
    /// Errors by HTTP status (0: no answer), whole requests and items alike.
    /// Locked only when Elasticsearch answers with an error.
    pub es_errors_by_status: Mutex<BTreeMap<u16, u64>>,
    pub bulk_latency: Histogram,
    /// From a line being read (the record timestamp) to Elasticsearch
    /// acknowledging its document.
    pub e2e_latency: Histogram,
    /// Whether the last request got an answer from Elasticsearch:
    /// 0 (none sent yet), [`ES_UP`], [`ES_DOWN`] or [`ES_DENIED`].
    pub es_state: std::sync::atomic::AtomicU8,
    /// The status (401 or 403) of the last refusal of our credentials;
    /// read when `es_state` is [`ES_DENIED`].
    pub es_denied_status: std::sync::atomic::AtomicU16,
    /// Records of `parse_json` topics indexed as plain text: not a JSON
    /// object, or more keys than a line may merge.
    pub docs_unmerged: AtomicU64,
    /// Dated indices deleted past `[es] retention_days`.
    pub indices_deleted: AtomicU64,
}

/// The last request was answered.
pub const ES_UP: u8 = 1;
/// The last request got no answer.
pub const ES_DOWN: u8 = 2;
/// The last request was refused for its credentials (401/403).
pub const ES_DENIED: u8 = 3;

impl TransferStats {
    /// The monotonic counters by name, for `/api/status`, `/metrics`
    /// (`logcollect_<name>_total`) and the totals logged at exit.
    pub fn totals(&self) -> [(&'static str, u64); 14] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("records", g(&self.records)),
            ("docs_indexed", g(&self.docs_indexed)),
            ("docs_duplicate", g(&self.docs_duplicate)),
            ("docs_retried", g(&self.docs_retried)),
            ("docs_dead_lettered", g(&self.docs_dead_lettered)),
            ("docs_dead_letter_fallback", g(&self.docs_dead_letter_fallback)),
            ("docs_lossy", g(&self.docs_lossy)),
            ("docs_time_clamped", g(&self.docs_time_clamped)),
            ("docs_unmerged", g(&self.docs_unmerged)),
            ("bulk_requests", g(&self.bulk_requests)),
            ("bulk_bytes", g(&self.bulk_bytes)),
            ("es_errors", g(&self.es_errors)),
            ("consumer_paused_milliseconds", g(&self.paused_ms)),
            ("es_indices_deleted", g(&self.indices_deleted)),
        ]
    }

    /// Records whether Elasticsearch answered the last request.
    pub fn es_answered(&self, answered: bool) {
        self.es_state.store(if answered { ES_UP } else { ES_DOWN }, Ordering::Relaxed);
    }

    /// Records that Elasticsearch refused our credentials (401 or 403).
    pub fn es_denied(&self, status: u16) {
        self.es_denied_status.store(status, Ordering::Relaxed);
        self.es_state.store(ES_DENIED, Ordering::Relaxed);
    }

    /// Why `/health/ready` fails on Elasticsearch's side, if it does.
    pub fn es_problem(&self) -> Option<String> {
        match self.es_state.load(Ordering::Relaxed) {
            ES_DOWN => Some("no answer to the last request".into()),
            ES_DENIED => Some(match self.es_denied_status.load(Ordering::Relaxed) {
                401 => "authentication failed (401): check the es credentials".into(),
                s => format!("forbidden ({s}): the es credentials may not write these indices"),
            }),
            _ => None,
        }
    }

    /// Counts `n` errors of `status` (0 = no answer).
    pub fn es_error(&self, status: u16, n: u64) {
        *lock(&self.es_errors_by_status).entry(status).or_default() += n;
    }
}
