//! Counters every stage bumps: plain relaxed atomics, added to per batch (not
//! per line) on the hot path; no locks, no formatting. Observability
//! ([`crate::observe`], the `/metrics` endpoint) reads them at scrape time;
//! the agent and the transfer also log a summary of them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The agent's counters. Each is monotonic unless its doc says otherwise.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes_read: AtomicU64,
    /// Lines handed to the next stage (parts of cut lines count one each).
    pub lines_read: AtomicU64,
    /// Lines the next stage acknowledged.
    pub lines_acked: AtomicU64,
    /// Lines the next stage rejected for good.
    pub lines_failed: AtomicU64,
    /// Parts of lines longer than `max_line_bytes` (split or truncated).
    pub lines_cut: AtomicU64,
    /// Unfinished last lines shipped after the idle timeout.
    pub lines_partial: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    /// Readers running now (goes up and down).
    pub files_open: AtomicU64,
    /// From a batch being read to Kafka acknowledging its last line.
    pub delivery_latency: Histogram,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

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
    /// Documents with bytes that were not UTF-8 (replaced by U+FFFD).
    pub docs_lossy: AtomicU64,
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
    /// [`ES_UNKNOWN`] (none sent yet), [`ES_UP`] or [`ES_DOWN`].
    pub es_state: std::sync::atomic::AtomicU8,
}

pub const ES_UNKNOWN: u8 = 0;
pub const ES_UP: u8 = 1;
pub const ES_DOWN: u8 = 2;

impl TransferStats {
    /// Records whether Elasticsearch answered the last request.
    pub fn es_answered(&self, answered: bool) {
        self.es_state.store(if answered { ES_UP } else { ES_DOWN }, Ordering::Relaxed);
    }

    /// `None` until a request was sent.
    pub fn es_reachable(&self) -> Option<bool> {
        match self.es_state.load(Ordering::Relaxed) {
            ES_UP => Some(true),
            ES_DOWN => Some(false),
            _ => None,
        }
    }

    /// Counts `n` errors of `status` (0 = no answer).
    pub fn es_error(&self, status: u16, n: u64) {
        *self.es_errors_by_status.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += n;
    }
}

/// Upper bounds of the latency buckets, in seconds: from a millisecond to
/// the minutes a line waits while a destination is down.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A fixed-bucket latency histogram of relaxed atomics (Prometheus style:
/// cumulative buckets are computed when read).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket of `LATENCY_BUCKETS`, plus one for +Inf.
    buckets: [AtomicU64; 17],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observes a latency given in milliseconds (negative: clock skew, 0).
    pub fn observe_ms(&self, ms: i64) {
        self.observe(std::time::Duration::from_millis(ms.max(0) as u64));
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// (sum in seconds, count, (upper bound, count) per bucket), the
    /// counts per bucket (not cumulative), the last bucket's bound
    /// `f64::MAX` for +Inf: what prometheus-client's encoder takes.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounded() {
        let h = Histogram::default();
        // (observation, first bucket bound that holds it)
        for ms in [0, 1, 3, 1000, 400_000] {
            h.observe(Duration::from_millis(ms));
        }
        h.observe_ms(-5);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 6);
        assert!((sum - 401.004).abs() < 1e-6, "{sum}");
        let at = |bound: f64| buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(at(0.001), 3);
        assert_eq!(at(0.005), 1);
        assert_eq!(at(1.0), 1);
        assert_eq!(at(300.0), 0);
        assert_eq!(buckets.last().unwrap(), &(f64::MAX, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), count);
    }
}
