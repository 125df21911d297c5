//! `run` with Elasticsearch and no Kafka: readers ─► channel ─► `_bulk`,
//! checkpoints on disk behind Elasticsearch's acknowledgements, as the
//! agent keeps them behind Kafka's.

use super::{collected_topics, es_backend, Ctx};
use crate::agent::batch::{Batch, Source};
use crate::agent::checkpoint::Checkpoints;
use crate::agent::stats::Stats;
use crate::common::ack::BatchAck;
use crate::common::shutdown::{self, Every};
use crate::config::EsConfig;
use crate::elastic::batcher::{message_mode, Batcher, Built};
use crate::elastic::stats::TransferStats;
use crate::elastic::template::install_templates;
use crate::elastic::worker::{Request, Slot, Workers};
use crate::error::RunError;
use crate::observe;
use crate::record::{Origin, Record, NOT_FROM_KAFKA};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs until `stop` is set or the sink ends.
pub(super) fn es_direct(ctx: &Ctx<'_>, es: &EsConfig) -> Result<(), RunError> {
    let (cfg, rt) = (ctx.cfg, ctx.rt);
    let checkpoints = Arc::new(Checkpoints::open(&cfg.agent.data_dir)?);
    let host = crate::control::host::detect(cfg.agent.host.as_deref());
    let stats = Arc::new(Stats::default());
    let (tx, rx) = crate::agent::batch_channel(cfg);
    ctx.obs.add_agent(observe::agent_view(stats.clone(), checkpoints.clone(), &rx));
    let es_stats = Arc::new(TransferStats::default());
    ctx.obs.add_transfer(es_stats.clone());
    ctx.serving(es_backend(cfg, es, &collected_topics(cfg))?, || {
        let workers = Workers::start(rt, es, None, es_stats.clone(), es.workers)?;
        if es.manage_template {
            rt.block_on(install_templates(&workers.worker.client, es, &collected_topics(cfg), &es_stats, ctx.stop));
        }
        let sink = EsSink { es: es.clone(), host, workers, stats: es_stats };
        let shutdown_timeout = Duration::from_millis(cfg.agent.shutdown_timeout_ms);
        let handle = rt.handle().clone();
        let sink_thread =
            thread::Builder::new().name("es".into()).spawn(move || sink.run(rx, &handle, shutdown_timeout))?;
        let (disc, stop_discovery) = ctx.start_readers(checkpoints.clone(), tx, stats.clone())?;
        tracing::info!(es = %es.nodes.join(","), files = cfg.collect.len(), "run started: collecting into Elasticsearch");
        let mut save = Every::new(Duration::from_millis(cfg.agent.checkpoint_interval_ms));
        shutdown::wait(
            ctx.stop,
            || sink_thread.is_finished(),
            || {
                if save.due() {
                    crate::agent::save_checkpoints(&checkpoints, &cfg.agent.data_dir);
                }
            },
        );
        drop(stop_discovery);
        let _ = disc.join();
        let _ = sink_thread.join();
        Ok(checkpoints.save()?)
    })
    .map(|_| ())
}

/// Batches to `_bulk` requests for the Elasticsearch workers; a slot per
/// reader batch, whose acknowledgement the documents count down.
struct EsSink {
    es: EsConfig,
    host: String,
    workers: Workers,
    stats: Arc<TransferStats>,
}

impl EsSink {
    /// Until every reader is gone: batches into requests; then waits for
    /// the requests in flight (up to `timeout`).
    fn run(self, rx: Receiver<Batch>, rt: &tokio::runtime::Handle, timeout: Duration) {
        let mut batcher: Batcher<Slot> = Batcher::new(
            self.es.index.clone(),
            self.es.bulk_max_bytes,
            self.es.bulk_max_docs,
            Duration::from_millis(self.es.bulk_max_wait_ms),
            self.stats.clone(),
        );
        loop {
            let wait = if batcher.is_empty() { Duration::from_millis(100) } else { batcher.due_in(Instant::now()) };
            match rx.recv_timeout(wait) {
                Ok(batch) => self.add(&mut batcher, &batch),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if batcher.is_due(Instant::now()) {
                self.send(batcher.take());
            }
        }
        if !batcher.is_empty() {
            self.send(batcher.take());
        }
        if !self.workers.finish(rt, timeout) {
            tracing::warn!("Elasticsearch did not answer everything within {timeout:?}: those lines are read again at the next start");
        }
    }

    /// Appends every line of `batch`.
    fn add(&self, batcher: &mut Batcher<Slot>, batch: &Batch) {
        let src: &Source = &batch.source;
        let mode = message_mode(&self.es.parse_json, &src.topic);
        for line in batch.lines() {
            let rec = Record {
                value: line.bytes,
                topic: &src.topic,
                partition: NOT_FROM_KAFKA,
                offset: -1,
                timestamp_ms: Some(batch.read_ms),
                origin: Some(Origin {
                    host: self.host.as_bytes(),
                    path: src.path.as_bytes(),
                    offset: line.offset,
                    fid: src.fid_text.as_bytes(),
                    cut: line.cut,
                    journal: None,
                }),
            };
            batcher.push(
                &rec,
                batch.read_ms,
                batch.read_ms,
                mode,
                |built| self.send(built),
                |slots| same_batch_or_new(slots, &src.topic, &batch.ack),
            );
        }
    }

    /// Waits while every worker is busy: backpressure to the readers.
    fn send(&self, built: Built<Slot>) {
        let req = Request { body: built.body, docs: built.docs, slots: built.slots, read_ms: built.read_ms };
        let _ = self.workers.tx.blocking_send(req);
    }
}

/// The slot of the batch `ack` belongs to: the last one if it is that
/// batch's (a batch's lines come in a row), else a new one.
fn same_batch_or_new(slots: &mut Vec<Slot>, topic: &Arc<str>, ack: &Arc<BatchAck>) -> usize {
    if !slots.last().is_some_and(|s| Arc::ptr_eq(&s.ack, ack)) {
        slots.push(Slot { topic: topic.clone(), partition: NOT_FROM_KAFKA, ack: ack.clone() });
    }
    slots.len() - 1
}
