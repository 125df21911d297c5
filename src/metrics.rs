//! Counters every stage bumps: plain relaxed atomics, added to per batch (not
//! per line) on the hot path. Observability (the `/metrics` endpoint) reads
//! them; the agent logs a summary of them.

use std::sync::atomic::{AtomicU64, Ordering};

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
    pub bulk_latency: Histogram,
}

/// Upper bounds of the latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A fixed-bucket latency histogram of relaxed atomics (Prometheus style:
/// cumulative buckets are computed when read).
#[derive(Debug, Default)]
pub struct Histogram {
    /// Count per bucket of `LATENCY_BUCKETS`, plus one for +Inf.
    buckets: [AtomicU64; 13],
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

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
