//! librdkafka's statistics, kept where observability can read them.

use crate::common::sync::lock;
use rdkafka::statistics::Statistics;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// librdkafka `statistics.interval.ms` every client asks for.
pub const KAFKA_STATS_INTERVAL: Duration = Duration::from_secs(5);

/// Statistics older than this many intervals are not trusted (the client
/// is stuck or gone).
const STATS_STALE_INTERVALS: u32 = 3;

/// The latest librdkafka statistics of one client (its statistics callback
/// stores them here every `statistics.interval.ms`).
#[derive(Default)]
pub struct KafkaStats {
    latest: Mutex<Option<(Instant, Statistics)>>,
}

impl KafkaStats {
    /// Keeps `s` as the latest.
    pub fn store(&self, s: Statistics) {
        *lock(&self.latest) = Some((Instant::now(), s));
    }

    /// The latest statistics, if fresh enough to trust for `interval`.
    pub fn fresh(&self, interval: Duration) -> Option<Statistics> {
        let g = lock(&self.latest);
        let (at, s) = g.as_ref()?;
        (at.elapsed() <= interval * STATS_STALE_INTERVALS).then(|| s.clone())
    }
}
