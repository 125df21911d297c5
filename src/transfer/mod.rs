//! The transfer: consumes Kafka as a consumer group and bulk-indexes every
//! record into Elasticsearch, committing offsets only behind documents that
//! reached a final answer.
//!
//! ```text
//! poll ─► BulkBody.push (raw record bytes → NDJSON) ─► Request ─► es workers ─► _bulk
//!   ▲                                                                 │ per-document acks
//!   └── commit ◄── per-partition Progress (contiguous acked prefix) ◄─┘
//! ```
//!
//! Each partition's [`crate::common::ack::Progress`] holds its requests in order; its committed
//! offset moves only over records every one of which was stored, found
//! already stored (409) or dead-lettered. When partitions are revoked, what
//! is complete is committed synchronously and the rest is left for the next
//! owner (deterministic ids make its redelivery harmless). When every worker
//! is busy the assignment is paused while polling continues, so the group
//! membership survives a long Elasticsearch outage.

mod commit;
mod consume;

use crate::common::totals::Totals;
use crate::config::{Config, ConfigError};
use crate::control::reload::Reload;
use crate::elastic::batcher::Batcher;
use crate::elastic::stats::TransferStats;
use crate::elastic::template::install_templates;
use crate::elastic::worker::Workers;
use crate::error::RunError;
use crate::kafka::stats::{KafkaStats, KAFKA_STATS_INTERVAL};
use crate::observe::Observed;
use commit::{Trackers, TransferContext};
use consume::Transfer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Offsets are committed at least this often.
pub(super) const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// Records polled between two looks at the clock while records stream.
pub(super) const CLOCK_EVERY: u32 = 64;

/// Runs the transfer with the config loaded from `path` until SIGTERM or
/// SIGINT (SIGHUP only names what would need a restart).
pub fn run(cfg: Config, path: &std::path::Path) -> Result<(), RunError> {
    crate::common::fs::private_umask();
    let term = crate::common::shutdown::term_flag()?;
    // SIGHUP reloads nothing live here (the transfer collects no files), but
    // it must not end the process; changed sections are named.
    let reload = crate::control::reload::on_sighup(path, &cfg, "transfer", false)?;
    run_until(cfg, &term, Some(&reload))
}

/// Runs the transfer until `stop` is set, serving its metrics on `[http]
/// listen` (and `POST /api/reload` when there is a `reload`).
pub fn run_until(cfg: Config, stop: &AtomicBool, reload: Option<&Reload>) -> Result<(), RunError> {
    let observed = Arc::new(Observed::new("transfer"));
    if let Some(r) = reload {
        observed.set_reloader(r.reloader());
    }
    if let Some(m) = &cfg.metrics {
        if m.topic.is_some() {
            tracing::info!("metrics.topic: the transfer collects no files; its host metrics are on /metrics only");
        }
        crate::observe::host_metrics::start(&cfg, &crate::control::host::detect(cfg.agent.host.as_deref()), &observed);
    }
    let _server = crate::observe::serve(&cfg.http, observed.clone());
    run_observed(cfg, stop, &observed)
}

/// Runs the transfer until `stop` is set, showing itself in `observed`.
pub fn run_observed(cfg: Config, stop: &AtomicBool, observed: &Observed) -> Result<(), RunError> {
    let need = |key: &str, what: &str| ConfigError { key: key.into(), message: what.into() };
    let kafka =
        cfg.kafka.clone().ok_or_else(|| need("kafka.address", "the transfer reads Kafka: set [kafka] address"))?;
    let es =
        cfg.es.clone().ok_or_else(|| need("es.address", "the transfer writes to Elasticsearch: set [es] address"))?;
    if kafka.topics.is_empty() {
        return Err(need("kafka.topic", "no topic to consume: set [kafka] topic (';' separated)").into());
    }
    let stats = Arc::new(TransferStats::default());
    observed.add_transfer(stats.clone());
    let kafka_stats = Arc::new(KafkaStats::default());
    observed.add_kafka("consumer", kafka_stats.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let queue = (es.chan_max_size / es.bulk_max_docs).saturating_sub(es.workers).max(1);
    let workers = Workers::start(&rt, &es, Some(&kafka), stats.clone(), queue)?;
    if es.manage_template && !rt.block_on(install_templates(&workers.worker.client, &es, &kafka.topics, &stats, stop)) {
        return Ok(()); // stopped while waiting for Elasticsearch
    }
    crate::elastic::retention::spawn(rt.handle(), &es, &kafka.topics, stats.clone()).map_err(ConfigError::from)?;

    let trackers = Arc::new(Mutex::new(Trackers::default()));
    let revocations = Arc::new(AtomicU64::new(0));
    let mut cc = crate::kafka::consumer(&kafka);
    if cc.get("statistics.interval.ms").is_none() {
        cc.set("statistics.interval.ms", KAFKA_STATS_INTERVAL.as_millis().to_string());
    }
    let consumer: Arc<BaseConsumer<TransferContext>> = Arc::new(
        cc.create_with_context(TransferContext {
            trackers: trackers.clone(),
            revocations: revocations.clone(),
            kafka: kafka_stats,
        })
        .map_err(|e| need("kafka.consumer", &e.to_string()))?,
    );
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| need("kafka.topic", &e.to_string()))?;
    tracing::info!(topics = %kafka.topics.join(","), group = %kafka.group_id, es = %es.nodes.join(","), "transfer started");

    let mut t = Transfer {
        consumer,
        trackers,
        revocations,
        generations: Vec::new(),
        generations_at: 0,
        batcher: Batcher::new(
            es.index.clone(),
            es.bulk_max_bytes,
            es.bulk_max_docs,
            Duration::from_millis(es.bulk_max_wait_ms),
            stats.clone(),
        ),
        workers,
        es: es.clone(),
        stats: stats.clone(),
        topics: HashMap::new(),
        last_commit: Instant::now(),
        now_ms: crate::common::clock::now_ms(),
    };
    t.consume_until(stop);
    tracing::info!("stopping: finishing requests in flight, committing offsets");
    t.finish(rt.handle(), Duration::from_millis(cfg.agent.shutdown_timeout_ms));
    report(&stats);
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

fn report(s: &TransferStats) {
    tracing::info!("transfer totals: {}", Totals(&s.totals()));
}
