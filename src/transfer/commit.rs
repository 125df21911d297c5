//! Commit: each assigned partition's acknowledged prefix, and the offsets
//! committed behind it: in the loop, before partitions are taken away (the
//! rebalance callback), and at the end.

use crate::common::ack::Progress;
use crate::common::sync::lock;
use crate::kafka::stats::KafkaStats;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One assigned partition's acknowledgement tracking.
pub(super) struct Part {
    pub(super) progress: Progress,
    /// Last offset committed (-1: none yet).
    pub(super) committed: i64,
    /// Which assignment this tracker belongs to: acks of documents read
    /// under an earlier assignment of the partition are not counted here.
    pub(super) generation: u64,
}

#[derive(Default)]
pub(super) struct Trackers {
    pub(super) parts: HashMap<(Arc<str>, i32), Part>,
    pub(super) next_generation: u64,
}

impl Trackers {
    /// Offsets to commit: every partition whose acknowledged prefix grew.
    pub(super) fn take_commits(&mut self, only: Option<&TopicPartitionList>) -> TopicPartitionList {
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
pub(super) struct TransferContext {
    pub(super) trackers: Arc<Mutex<Trackers>>,
    /// Bumped whenever partitions are revoked: generations cached by
    /// [`super::consume::Transfer::track`] are then stale.
    pub(super) revocations: Arc<AtomicU64>,
    pub(super) kafka: Arc<KafkaStats>,
}

impl ClientContext for TransferContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::log_client_error("consumer", &error, reason);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.kafka.store(statistics);
    }
}

impl ConsumerContext for TransferContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let mut t = lock(&self.trackers);
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

/// Commits every partition whose acknowledged prefix grew.
pub(super) fn commit(
    consumer: &BaseConsumer<TransferContext>,
    trackers: &Mutex<Trackers>,
    last_commit: &mut Instant,
    mode: CommitMode,
) {
    *last_commit = Instant::now();
    let tpl = lock(trackers).take_commits(None);
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::warn!("offset commit failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::ack::BatchAck;

    fn offsets(tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
        let mut v: Vec<_> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition(), e.offset().to_raw().unwrap_or(-1)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commits_each_grown_prefix_once_and_only_for_the_partitions_asked() {
        let mut t = Trackers::default();
        let web: Arc<str> = "web".into();
        for p in [0, 1] {
            t.parts.insert((web.clone(), p), Part { progress: Progress::new(100), committed: -1, generation: 1 });
        }
        // Partition 0: requests up to offsets 110 and 120, the second acked first.
        let (a, b) = (Arc::new(BatchAck::new(1)), Arc::new(BatchAck::new(1)));
        t.parts[&(web.clone(), 0)].progress.push(a.clone(), 110);
        t.parts[&(web.clone(), 0)].progress.push(b.clone(), 120);
        b.ack();
        // Nothing acknowledged yet: the start offset is committed once.
        assert_eq!(offsets(&t.take_commits(None)), [("web".into(), 0, 100), ("web".into(), 1, 100)]);
        assert!(offsets(&t.take_commits(None)).is_empty(), "nothing grew");
        a.ack();
        let mut only = TopicPartitionList::new();
        only.add_partition("web", 1);
        assert!(offsets(&t.take_commits(Some(&only))).is_empty(), "partition 1 did not grow");
        assert_eq!(offsets(&t.take_commits(None)), [("web".into(), 0, 120)]);
    }
}
