//! Latency histograms with fixed buckets: lock-free to observe, read at
//! scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

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
