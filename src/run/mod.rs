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
//! [`crate::embedded::ingest`]); into Elasticsearch it is at-least-once with the
//! transfer's deterministic ids, checkpoints on disk as the agent keeps them.

mod es_direct;

use crate::agent::batch::Batch;
use crate::agent::checkpoint::Checkpoints;
use crate::agent::discovery::{self, Discovery};
use crate::agent::stats::Stats;
use crate::agent::tail::TailCtx;
use crate::agent::{self, AgentError};
use crate::common::shutdown;
use crate::config::{Config, ConfigError, EsConfig};
use crate::elastic::client::EsClient;
use crate::embedded::index::{IndexConfig, IndexError, Store};
use crate::embedded::ingest;
use crate::observe::server::{self, Server};
use crate::observe::{self, Observed};
use crate::search::backend::{Backend, EsSearch};
use crate::search::http::{self, AppState};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Runs until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<(), AgentError> {
    let term = shutdown::term_flag()?;
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
        (None, Some(es)) => es_direct::es_direct(&cfg, &es, &rt, stop, &obs),
        (Some(_), Some(es)) => agent_and_transfer(&cfg, &es, &rt, stop, &obs),
    }
}

fn index_error(e: IndexError) -> AgentError {
    match e {
        IndexError::Feed { key, message } => ConfigError { key, message }.into(),
        e => AgentError::Io(std::io::Error::other(e.to_string())),
    }
}

fn open_index(cfg: &Config) -> Result<(Arc<Store>, crate::embedded::index::Payload, IndexConfig), AgentError> {
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

/// Binds `[http] listen` (an address in use is a start error naming the key)
/// and serves the page and API over `backend`, and `/metrics` and health.
fn start_http(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    backend: Backend,
    obs: &Arc<Observed>,
) -> Result<Option<Server>, AgentError> {
    let Some(addr) = cfg.http.listen else { return Ok(None) };
    let listener =
        server::bind(addr).map_err(|e| ConfigError { key: "http.listen".into(), message: format!("{addr}: {e}") })?;
    let live_interval = match backend {
        Backend::Embedded(_) => Duration::from_millis(500),
        Backend::Elasticsearch(_) => Duration::from_secs(1),
    };
    let state = AppState { backend: Arc::new(backend), live_interval };
    let router = http::router(state).merge(observe::router(obs.clone()));
    tracing::info!("search page: http://{addr}/");
    Ok(Some(Server::spawn(rt.handle(), listener, router)))
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
    let host = crate::control::host::detect(cfg.agent.host.as_deref());
    let pinned: Vec<_> = observe::start_host_metrics(cfg, &host, obs).into_iter().collect();
    let ctx = Arc::new(TailCtx {
        cfg: agent::tail_config(cfg),
        checkpoints,
        tx,
        stats,
        wake: crate::agent::wake::Wake::start(),
    });
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
    let host: Arc<str> = crate::control::host::detect(cfg.agent.host.as_deref()).into();
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
    shutdown::wait(stop, || indexer.is_finished(), || {});
    tracing::info!("stopping: finishing reads, committing the index");
    drop(stop_discovery);
    let _ = disc.join();
    let result = indexer.join().unwrap_or_else(|_| {
        Err(IndexError::Open { dir: icfg.dir.display().to_string(), message: "indexer panicked".into() })
    });
    if let Some(h) = http {
        h.stop(rt.handle());
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
        shutdown::wait(stop, || handles.iter().any(|h| h.is_finished()), || {});
        inner.store(true, std::sync::atomic::Ordering::Release);
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
        h.stop(rt.handle());
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
    let client = EsClient::new(es).map_err(ConfigError::from)?;
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
        h.stop(rt.handle());
    }
    result
}
