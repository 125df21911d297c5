//! `logcollect run`: collecting, indexing and the search page in one
//! process. What `config.ini` sets decides the way lines go:
//!
//! | `[kafka] address` | `[es] address` | lines go                                              | the page searches |
//! |-------------------|----------------|-------------------------------------------------------|-------------------|
//! | no                | no             | readers ─► channel ─► embedded index                  | embedded index    |
//! | yes               | no             | agent ─► Kafka ─► consumer group ─► embedded index    | embedded index    |
//! | no                | yes            | readers ─► channel ─► `_bulk` ─► Elasticsearch        | Elasticsearch     |
//! | yes               | yes            | agent ─► Kafka ─► transfer ─► Elasticsearch           | Elasticsearch     |
//!
//! Without Kafka the readers hand their batches to the indexer through the
//! same bounded channel the agent's shipper reads (same zero-copy lines, same
//! backpressure). Into the embedded index that path is exactly-once (see
//! [`crate::ingest`]); into Elasticsearch it is at-least-once with the
//! transfer's deterministic ids, checkpoints on disk as the agent keeps them.

use crate::agent::{self, AgentError};
use crate::batch::Batch;
use crate::bulk::{BulkBody, IndexNames, MessageMode, Origin, PushOutcome, Record, NOT_FROM_KAFKA};
use crate::checkpoint::Checkpoints;
use crate::config::{Config, ConfigError, EsConfig};
use crate::discovery::{self, Discovery};
use crate::es::{DeadLetterSink, EsClient, Request, Slot, Worker};
use crate::http::{self, AppState};
use crate::index::{IndexConfig, IndexError, Store};
use crate::ingest;
use crate::metrics::{Stats, TransferStats};
use crate::observe::{self, Observed};
use crate::search::{Backend, EsSearch};
use crate::tail::TailCtx;
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), AgentError> {
    let term = agent::term_flag()?;
    run_until(cfg, &term)
}

/// Runs until `stop` is set (or a part fails).
pub fn run_until(cfg: Config, stop: &AtomicBool) -> Result<(), AgentError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("http").enable_all().build()?;
    // Metrics and health beside the page: every part running adds its view.
    let obs = Arc::new(Observed::new("run"));
    match (cfg.kafka.clone(), cfg.es.clone()) {
        (None, None) => embedded_direct(&cfg, &rt, stop, &obs),
        (Some(kafka), None) => embedded_from_kafka(&cfg, &kafka, &rt, stop, &obs),
        (None, Some(es)) => es_direct(&cfg, &es, &rt, stop, &obs),
        (Some(_), Some(es)) => agent_and_transfer(&cfg, &es, &rt, stop, &obs),
    }
}

fn index_error(e: IndexError) -> AgentError {
    match e {
        IndexError::Feed { key, message } => ConfigError { key, message }.into(),
        e => AgentError::Io(std::io::Error::other(e.to_string())),
    }
}

fn open_index(cfg: &Config) -> Result<(Arc<Store>, crate::index::Payload, IndexConfig), AgentError> {
    let dir = cfg.agent.data_dir.join("index");
    let (store, payload) = Store::open(&dir).map_err(index_error)?;
    let s = &cfg.index;
    let icfg = IndexConfig {
        dir,
        retention_days: s.retention_days,
        retention_bytes: s.retention_bytes,
        retention_check_ms: s.retention_check_ms,
        commit_interval_ms: s.commit_interval_ms,
        writer_threads: s.writer_threads,
        writer_memory_bytes: s.writer_memory_bytes,
    };
    Ok((Arc::new(store), payload, icfg))
}

/// The HTTP server, stopped with `stop`.
struct HttpServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        // Live views never end by themselves: give the rest a moment only.
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), &mut self.task).await });
        self.task.abort();
    }
}

/// Binds `[http] listen` (an address in use is a start error naming the key)
/// and serves the page and API over `backend`, and `/metrics` and health.
fn start_http(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    backend: Backend,
    obs: &Arc<Observed>,
) -> Result<Option<HttpServer>, AgentError> {
    let Some(addr) = cfg.http.listen else { return Ok(None) };
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| ConfigError { key: "http.listen".into(), message: format!("{addr}: {e}") })?;
    std_listener.set_nonblocking(true)?;
    let live_interval = match backend {
        Backend::Embedded(_) => Duration::from_millis(500),
        Backend::Elasticsearch(_) => Duration::from_secs(1),
    };
    let state = AppState { backend: Arc::new(backend), live_interval };
    let obs = obs.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        http::serve(listener, http::router(state).merge(observe::router(obs)), async {
            let _ = rx.await;
        })
        .await
    });
    tracing::info!("search page: http://{addr}/");
    Ok(Some(HttpServer { shutdown: Some(tx), task }))
}

/// Readers and discovery feeding `tx`; returns the discovery thread and the
/// handle that stops it.
fn start_readers(
    cfg: &Config,
    checkpoints: Arc<Checkpoints>,
    tx: crossbeam_channel::Sender<Batch>,
    stats: Arc<Stats>,
    obs: &Observed,
) -> Result<(thread::JoinHandle<()>, crossbeam_channel::Sender<()>), AgentError> {
    if cfg.collect.is_empty() {
        tracing::warn!("nothing to collect: [collect] is empty");
    }
    let host = crate::host::detect(cfg.agent.host.as_deref());
    let pinned: Vec<_> = observe::start_host_metrics(cfg, &host, obs).into_iter().collect();
    let ctx =
        Arc::new(TailCtx { cfg: agent::tail_config(cfg), checkpoints, tx, stats, wake: crate::wake::Wake::start() });
    let (stop_discovery, discovery_stopped) = crossbeam_channel::bounded::<()>(0);
    let disc = discovery::spawn(
        Discovery::new(ctx, cfg.collect.clone()).with_pinned(pinned),
        Duration::from_millis(cfg.agent.scan_interval_ms),
        crossbeam_channel::never(),
        discovery_stopped,
    )?;
    Ok((disc, stop_discovery))
}

/// No Kafka, no Elasticsearch: readers -> channel -> embedded index.
fn embedded_direct(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    obs: &Arc<Observed>,
) -> Result<(), AgentError> {
    let (store, payload, icfg) = open_index(cfg)?;
    let writer = store.writer(&icfg, &payload).map_err(index_error)?;
    // The index's last commit holds the checkpoints: it is the source of truth.
    let checkpoints = Arc::new(Checkpoints::restore(&cfg.agent.data_dir, payload.checkpoints));
    let http = start_http(cfg, rt, Backend::Embedded(store.clone()), obs)?;
    let host: Arc<str> = crate::host::detect(cfg.agent.host.as_deref()).into();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = agent::batch_channel(cfg);
    // Lines count as acknowledged once a commit made them searchable.
    obs.add_agent(observe::agent_view(stats.clone(), checkpoints.clone(), &rx));
    let indexer = {
        let (checkpoints, stats, section) = (checkpoints.clone(), stats.clone(), cfg.index.clone());
        thread::Builder::new()
            .name("index".into())
            .spawn(move || ingest::index_batches(rx, writer, checkpoints, host, &section, stats))?
    };
    let (disc, stop_discovery) = start_readers(cfg, checkpoints, tx, stats.clone(), obs)?;
    tracing::info!(index = %icfg.dir.display(), docs = store.num_docs(), files = cfg.collect.len(), "run started: collecting into the embedded index");
    while !stop.load(Ordering::Acquire) && !indexer.is_finished() {
        thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping: finishing reads, committing the index");
    drop(stop_discovery);
    let _ = disc.join();
    let result = indexer.join().unwrap_or_else(|_| {
        Err(IndexError::Open { dir: icfg.dir.display().to_string(), message: "indexer panicked".into() })
    });
    if let Some(h) = http {
        h.stop(rt);
    }
    tracing::info!(
        lines_read = Stats::get(&stats.lines_read),
        lines_indexed = Stats::get(&stats.lines_acked),
        docs = store.num_docs(),
        "run totals"
    );
    result.map_err(index_error)
}

/// One part of the process, run on a thread of its own until its flag is set.
type Part<'a> = Box<dyn FnOnce(&AtomicBool) -> Result<(), AgentError> + Send + 'a>;

/// Runs `parts` on threads until `stop` is set or one of them returns;
/// then stops the others and returns the first error.
fn run_parts(stop: &AtomicBool, parts: Vec<Part<'_>>) -> Result<(), AgentError> {
    let inner = AtomicBool::new(false);
    thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|p| s.spawn(|| p(&inner))).collect();
        while !stop.load(Ordering::Acquire) && !handles.iter().any(|h| h.is_finished()) {
            thread::sleep(Duration::from_millis(50));
        }
        inner.store(true, Ordering::Release);
        let mut result = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| Err(AgentError::Io(std::io::Error::other("a part panicked"))));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Kafka, no Elasticsearch: the agent ships to Kafka, a consumer group
/// indexes into the embedded index.
fn embedded_from_kafka(
    cfg: &Config,
    kafka: &crate::config::KafkaConfig,
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    obs: &Arc<Observed>,
) -> Result<(), AgentError> {
    let (store, payload, icfg) = open_index(cfg)?;
    let writer = store.writer(&icfg, &payload).map_err(index_error)?;
    let mut topics = kafka.topics.clone();
    if topics.is_empty() {
        topics = collected_topics(cfg);
    }
    if topics.is_empty() {
        return Err(ConfigError {
            key: "kafka.topic".into(),
            message: "no topic to index: set [kafka] topic or [collect]".into(),
        }
        .into());
    }
    let http = start_http(cfg, rt, Backend::Embedded(store), obs)?;
    let result = run_parts(
        stop,
        vec![
            Box::new(|s: &AtomicBool| agent::run_observed(cfg.clone(), s, obs)),
            Box::new(move |s: &AtomicBool| {
                ingest::index_records(kafka, &topics, writer, &cfg.index, s).map_err(index_error)
            }),
        ],
    );
    if let Some(h) = http {
        h.stop(rt);
    }
    result
}

/// Every topic this process collects into: the static list's and the host
/// metrics', sorted, each once.
fn collected_topics(cfg: &Config) -> Vec<String> {
    let mut topics: Vec<String> = cfg.collect.iter().map(|c| c.topic.clone()).collect();
    topics.extend(cfg.metrics.as_ref().and_then(|m| m.topic.clone()));
    topics.sort();
    topics.dedup();
    topics
}

fn es_backend(es: &EsConfig) -> Result<Backend, AgentError> {
    let client = EsClient::new(es).map_err(|m| ConfigError { key: "es".into(), message: m })?;
    // Every topic's indices: the pattern with `*` for the topic.
    Ok(Backend::Elasticsearch(EsSearch { client, indices: es.index.wildcard("*") }))
}

/// Kafka and Elasticsearch: the agent and the transfer in one process.
fn agent_and_transfer(
    cfg: &Config,
    es: &EsConfig,
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    obs: &Arc<Observed>,
) -> Result<(), AgentError> {
    let http = start_http(cfg, rt, es_backend(es)?, obs)?;
    let result = run_parts(
        stop,
        vec![
            Box::new(|s: &AtomicBool| agent::run_observed(cfg.clone(), s, obs)),
            Box::new(|s: &AtomicBool| crate::transfer::run_observed(cfg.clone(), s, obs)),
        ],
    );
    if let Some(h) = http {
        h.stop(rt);
    }
    result
}

/// Elasticsearch, no Kafka: readers -> channel -> `_bulk`, checkpoints on
/// disk behind Elasticsearch's acknowledgements.
fn es_direct(
    cfg: &Config,
    es: &EsConfig,
    rt: &tokio::runtime::Runtime,
    stop: &AtomicBool,
    obs: &Arc<Observed>,
) -> Result<(), AgentError> {
    let checkpoints = Arc::new(Checkpoints::open(&cfg.agent.data_dir)?);
    let http = start_http(cfg, rt, es_backend(es)?, obs)?;
    let host = crate::host::detect(cfg.agent.host.as_deref());
    let stats = Arc::new(Stats::default());
    let (tx, rx) = agent::batch_channel(cfg);
    obs.add_agent(observe::agent_view(stats.clone(), checkpoints.clone(), &rx));
    let es_stats = Arc::new(TransferStats::default());
    obs.add_transfer(es_stats.clone());
    let sink = EsSink::start(es, rt, host, &collected_topics(cfg), stop, es_stats)?;
    let shutdown_timeout = Duration::from_millis(cfg.agent.shutdown_timeout_ms);
    let sink_thread = thread::Builder::new().name("es".into()).spawn(move || sink.run(rx, shutdown_timeout))?;
    let (disc, stop_discovery) = start_readers(cfg, checkpoints.clone(), tx, stats.clone(), obs)?;
    tracing::info!(es = %es.nodes.join(","), files = cfg.collect.len(), "run started: collecting into Elasticsearch");
    let every = Duration::from_millis(cfg.agent.checkpoint_interval_ms);
    let mut next_save = Instant::now() + every;
    while !stop.load(Ordering::Acquire) && !sink_thread.is_finished() {
        thread::sleep(Duration::from_millis(50));
        if Instant::now() >= next_save {
            if let Err(e) = checkpoints.save() {
                tracing::error!("writing checkpoints in {}: {e}", cfg.agent.data_dir.display());
            }
            next_save = Instant::now() + every;
        }
    }
    drop(stop_discovery);
    let _ = disc.join();
    let _ = sink_thread.join();
    checkpoints.save()?;
    if let Some(h) = http {
        h.stop(rt);
    }
    Ok(())
}

/// Batches to `_bulk` requests for the transfer's Elasticsearch workers.
struct EsSink {
    es: EsConfig,
    host: String,
    tx: Option<tokio::sync::mpsc::Sender<Request>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    rt: tokio::runtime::Handle,
}

impl EsSink {
    fn start(
        es: &EsConfig,
        rt: &tokio::runtime::Runtime,
        host: String,
        topics: &[String],
        stop: &AtomicBool,
        stats: Arc<TransferStats>,
    ) -> Result<EsSink, AgentError> {
        let need = |key: &str, m: String| ConfigError { key: key.into(), message: m };
        let client = EsClient::new(es).map_err(|m| need("es", m))?;
        let dead_letter =
            rt.block_on(DeadLetterSink::open(&es.dead_letter, &[])).map_err(|m| need("es.dead_letter", m))?;
        let worker = Arc::new(Worker {
            client,
            dead_letter,
            stats,
            max_backoff: Duration::from_millis(es.retry_max_backoff_ms),
        });
        if es.manage_template {
            rt.block_on(crate::transfer::install_templates(&worker.client, es, topics, stop));
        }
        let (tx, workers) = crate::es::spawn_workers(rt.handle(), &worker, es.workers, es.workers);
        Ok(EsSink { es: es.clone(), host, tx: Some(tx), workers, rt: rt.handle().clone() })
    }

    /// Until every reader is gone: batches into requests; then waits for
    /// the requests in flight (up to `timeout`).
    fn run(mut self, rx: Receiver<Batch>, timeout: Duration) {
        let mut body = BulkBody::new(self.es.bulk_max_bytes);
        let mut names = IndexNames::new(self.es.index.clone());
        let mut slots: Vec<Slot> = Vec::new();
        let mut docs: Vec<u16> = Vec::new();
        let mut read_ms: Vec<i64> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let wait = Duration::from_millis(self.es.bulk_max_wait_ms);
        let host = self.host.clone();
        loop {
            let left = first_at.map(|f| wait.saturating_sub(f.elapsed())).unwrap_or(Duration::from_millis(100));
            match rx.recv_timeout(left) {
                Ok(batch) => {
                    let src = &batch.source;
                    let json = self.es.parse_json.iter().any(|t| t == "*" || **t == *src.topic);
                    let mode = if json { MessageMode::ParseJson } else { MessageMode::Plain };
                    let mut slot = None;
                    for line in batch.lines() {
                        let rec = Record {
                            value: line.bytes,
                            topic: &src.topic,
                            partition: NOT_FROM_KAFKA,
                            offset: -1,
                            timestamp_ms: Some(batch.read_ms),
                            origin: Some(Origin {
                                host: host.as_bytes(),
                                path: src.path.as_bytes(),
                                offset: line.offset,
                                fid: src.fid_text.as_bytes(),
                                cut: line.cut,
                            }),
                        };
                        loop {
                            let index = match names.name(&src.topic, batch.read_ms) {
                                Ok(i) => i,
                                Err(e) => {
                                    tracing::error!("{e}: the line goes to index logcollect-unroutable");
                                    "logcollect-unroutable"
                                }
                            };
                            match body.push(&rec, index, mode) {
                                PushOutcome::Added { .. } => break,
                                PushOutcome::Full => {
                                    self.flush(&mut body, &mut slots, &mut docs, &mut read_ms);
                                    slot = None;
                                }
                            }
                        }
                        let i = *slot.get_or_insert_with(|| {
                            slots.push(Slot {
                                topic: src.topic.clone(),
                                partition: NOT_FROM_KAFKA,
                                ack: batch.ack.clone(),
                            });
                            slots.len() - 1
                        });
                        docs.push(i as u16);
                        read_ms.push(batch.read_ms);
                        first_at.get_or_insert_with(Instant::now);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let due = first_at.is_some_and(|f| f.elapsed() >= wait);
            if !docs.is_empty() && (docs.len() >= self.es.bulk_max_docs || due || slots.len() >= u16::MAX as usize) {
                self.flush(&mut body, &mut slots, &mut docs, &mut read_ms);
                first_at = None;
            }
        }
        if !docs.is_empty() {
            self.flush(&mut body, &mut slots, &mut docs, &mut read_ms);
        }
        drop(self.tx.take());
        let workers = std::mem::take(&mut self.workers);
        let done = self.rt.block_on(async {
            tokio::time::timeout(timeout, async {
                for w in workers {
                    let _ = w.await;
                }
            })
            .await
            .is_ok()
        });
        if !done {
            tracing::warn!("Elasticsearch did not answer everything within {timeout:?}: those lines are read again at the next start");
        }
    }

    fn flush(&mut self, body: &mut BulkBody, slots: &mut Vec<Slot>, docs: &mut Vec<u16>, read_ms: &mut Vec<i64>) {
        let req = Request {
            body: Bytes::copy_from_slice(body.as_bytes()),
            docs: std::mem::take(docs),
            slots: std::mem::take(slots),
            read_ms: std::mem::take(read_ms),
        };
        body.clear();
        if let Some(tx) = &self.tx {
            // Waits while every worker is busy: backpressure to the readers.
            let _ = tx.blocking_send(req);
        }
    }
}
