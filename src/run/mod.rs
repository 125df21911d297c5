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

use crate::agent;
use crate::agent::batch::Batch;
use crate::agent::checkpoint::Checkpoints;
use crate::agent::discovery::{self, Discovery};
use crate::agent::stats::Stats;
use crate::agent::tail::TailCtx;
use crate::common::backoff::Backoff;
use crate::common::shutdown;
use crate::common::write_health::WriteHealth;
use crate::config::{Config, ConfigError, EsConfig, KafkaConfig};
use crate::control::reload::Reload;
use crate::elastic::client::{EsClient, Purpose};
use crate::embedded::index::{IndexConfig, IndexError, Payload, Store, Writer};
use crate::embedded::ingest;
use crate::error::RunError;
use crate::observe::server::{self, Server};
use crate::observe::{self, Observed};
use crate::search::backend::{Backend, EsSearch};
use crate::search::http::{self, AppState};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Runs with the config loaded from `path` until SIGTERM or SIGINT;
/// SIGHUP reloads `path` ([`crate::control::reload`]).
pub fn run(cfg: Config, path: &std::path::Path) -> Result<(), RunError> {
    agent::private_data_dir(&cfg)?;
    let term = shutdown::term_flag()?;
    let reload = crate::control::reload::on_sighup(path, &cfg, "run", cfg.etcd.is_none())?;
    run_until(cfg, &term, Some(&reload))
}

/// Runs until `stop` is set (or a part fails); new collect lists of
/// `reload` apply live.
pub fn run_until(cfg: Config, stop: &AtomicBool, reload: Option<&Reload>) -> Result<(), RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("http").enable_all().build()?;
    // Metrics and health beside the page: every part running adds its view.
    let obs = Arc::new(Observed::new("run"));
    if let Some(r) = reload {
        obs.set_reloader(r.reloader());
    }
    let ctx = Ctx { cfg: &cfg, rt: &rt, stop, obs: &obs, reload };
    match (cfg.kafka.clone(), cfg.es.clone()) {
        (None, None) => embedded_direct(&ctx),
        (Some(kafka), None) => embedded_from_kafka(&ctx, &kafka),
        (None, Some(es)) => es_direct::es_direct(&ctx, &es),
        (Some(_), Some(es)) => agent_and_transfer(&ctx, &es),
    }
}

/// What every way of running gets: the config, the runtime the HTTP server
/// (and Elasticsearch's workers) run on, the stop flag, the observed parts.
struct Ctx<'a> {
    cfg: &'a Config,
    rt: &'a tokio::runtime::Runtime,
    stop: &'a AtomicBool,
    obs: &'a Arc<Observed>,
    /// Collect lists a SIGHUP reloaded.
    reload: Option<&'a Reload>,
}

impl Ctx<'_> {
    /// Runs `f` while `[http] listen` serves the page and API over
    /// `backend`, and `/metrics` and health (an address in use is a start
    /// error naming the key).
    fn serving<T>(&self, backend: Backend, f: impl FnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
        let server = match self.cfg.http.listen {
            Some(addr) => {
                let listener = server::bind(addr)
                    .map_err(|e| ConfigError { key: "http.listen".into(), message: format!("{addr}: {e}") })?;
                let live_interval = match backend {
                    Backend::Embedded(_) => Duration::from_millis(500),
                    Backend::Elasticsearch(_) => Duration::from_secs(1),
                };
                let state = AppState::new(backend, live_interval, &self.cfg.http);
                let router = http::router(state).merge(observe::router(self.obs.clone()));
                tracing::info!("search page: http://{addr}/");
                Some(Server::spawn(self.rt.handle(), listener, router, &self.cfg.http))
            }
            None => None,
        };
        let result = f();
        if let Some(s) = server {
            s.stop(self.rt.handle());
        }
        result
    }

    /// Readers and discovery feeding `tx`; returns the discovery thread and
    /// the handle that stops it.
    fn start_readers(
        &self,
        checkpoints: Arc<Checkpoints>,
        tx: crossbeam_channel::Sender<Batch>,
        stats: Arc<Stats>,
    ) -> Result<(thread::JoinHandle<()>, crossbeam_channel::Sender<()>), RunError> {
        let cfg = self.cfg;
        // Readers started again (after a failed commit) take the list in
        // force, reloaded or not.
        let (collect, updates) = match self.reload {
            Some(r) => (r.current(), r.updates.clone()),
            None => (cfg.collect.clone(), crossbeam_channel::never()),
        };
        if collect.is_empty() {
            tracing::warn!("nothing to collect: [collect] is empty");
        }
        crate::agent::journal::say_not_collected_by_run(cfg);
        let host = crate::control::host::detect(cfg.agent.host.as_deref());
        let pinned: Vec<_> = observe::host_metrics::start(cfg, &host, self.obs).into_iter().collect();
        let ctx = Arc::new(TailCtx::new(&cfg.agent, checkpoints, tx, stats));
        let (stop_discovery, discovery_stopped) = crossbeam_channel::bounded::<()>(0);
        let disc = discovery::spawn(
            Discovery::new(ctx, collect).with_pinned(pinned),
            Duration::from_millis(cfg.agent.scan_interval_ms),
            updates,
            discovery_stopped,
        )?;
        Ok((disc, stop_discovery))
    }
}

/// The embedded index under `data_dir/index`, its writer and the payload of
/// its last commit.
fn open_index(cfg: &Config) -> Result<(Arc<Store>, Writer, Payload, IndexConfig), RunError> {
    let dir = cfg.agent.data_dir.join("index");
    let (store, payload) = Store::open(&dir)?;
    let icfg = IndexConfig::new(dir, &cfg.index);
    let store = Arc::new(store);
    let writer = store.writer(&icfg, &payload)?;
    Ok((store, writer, payload, icfg))
}

/// No Kafka, no Elasticsearch: readers -> channel -> embedded index.
///
/// A failed commit (a full disk, an I/O error) does not end the process: the
/// search page keeps serving the last commit while the readers and the
/// writer are stopped, the uncommitted documents dropped with the writer,
/// and after a backoff both start again from the last commit's checkpoints
/// (so no line is lost or indexed twice). Meanwhile `/health/ready` fails
/// and `logcollect_checkpoint_write_errors_total` counts the failures.
fn embedded_direct(ctx: &Ctx<'_>) -> Result<(), RunError> {
    let cfg = ctx.cfg;
    let (store, writer, payload, icfg) = open_index(cfg)?;
    let host: Arc<str> = crate::control::host::detect(cfg.agent.host.as_deref()).into();
    let stats = Arc::new(Stats::default());
    let health: Arc<WriteHealth> = Arc::default();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    ctx.serving(Backend::Embedded(store.clone()), || {
        let mut next = Some((writer, payload));
        loop {
            let (writer, payload) = match next.take() {
                Some(w) => w,
                None => match store.last_payload().and_then(|p| store.writer(&icfg, &p).map(|w| (w, p))) {
                    Ok(w) => w,
                    Err(e) => {
                        health.failed(e.to_string());
                        tracing::error!("reopening the index writer: {e}; retrying in {:?}", backoff.peek());
                        if wait_or_stop(ctx.stop, backoff.next_wait()) {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            match embedded_generation(ctx, &store, writer, payload, &icfg, &host, &stats, &health)? {
                Generation::Stopped => return Ok(()),
                Generation::Failed { error: e, ran } => {
                    // A long run in between: the trouble is new, start the backoff over.
                    if ran > Duration::from_secs(60) {
                        backoff.reset();
                    }
                    tracing::error!(
                        "the index cannot commit ({e}): readers stopped, the last commit stays searchable; \
                         starting again from its checkpoints in {:?}",
                        backoff.peek()
                    );
                    if wait_or_stop(ctx.stop, backoff.next_wait()) {
                        return Ok(());
                    }
                }
            }
        }
    })
}

/// How one run of the readers and the writer ended.
enum Generation {
    /// Asked to stop; everything committed.
    Stopped,
    /// A commit (or an add) failed after running for `ran`.
    Failed { error: IndexError, ran: Duration },
}

/// Readers and the writer from the last commit's checkpoints until `stop`
/// or a commit fails.
#[allow(clippy::too_many_arguments)]
fn embedded_generation(
    ctx: &Ctx<'_>,
    store: &Arc<Store>,
    writer: Writer,
    payload: Payload,
    icfg: &IndexConfig,
    host: &Arc<str>,
    stats: &Arc<Stats>,
    health: &Arc<WriteHealth>,
) -> Result<Generation, RunError> {
    let cfg = ctx.cfg;
    // The index's last commit holds the checkpoints: it is the source of truth.
    let checkpoints =
        Arc::new(Checkpoints::restore(&cfg.agent.data_dir, payload.checkpoints).with_health(health.clone()));
    let (tx, rx) = agent::batch_channel(cfg);
    // Lines count as acknowledged once a commit made them searchable.
    ctx.obs.add_agent(observe::agent_view(stats.clone(), checkpoints.clone(), &rx));
    let errors_before = health.errors_total();
    let started = std::time::Instant::now();
    let indexer = {
        let (checkpoints, stats, section, host) = (checkpoints.clone(), stats.clone(), cfg.index.clone(), host.clone());
        thread::Builder::new()
            .name("index".into())
            .spawn(move || ingest::index_batches(rx, writer, checkpoints, host, &section, stats))?
    };
    let (disc, stop_discovery) = ctx.start_readers(checkpoints, tx, stats.clone())?;
    tracing::info!(index = %icfg.dir.display(), docs = store.num_docs(), files = cfg.collect.len(), "run started: collecting into the embedded index");
    shutdown::wait(ctx.stop, || indexer.is_finished(), || {});
    tracing::info!("stopping: finishing reads, committing the index");
    drop(stop_discovery);
    let _ = disc.join();
    let result = indexer
        .join()
        .unwrap_or(Err(IndexError::Open { dir: icfg.dir.display().to_string(), message: "indexer panicked".into() }));
    tracing::info!(
        lines_read = Stats::get(&stats.lines_read),
        lines_indexed = Stats::get(&stats.lines_acked),
        docs = store.num_docs(),
        "run totals"
    );
    Ok(match result {
        Ok(()) => Generation::Stopped,
        Err(e) => {
            // An add or retention failing is the same disk trouble.
            if health.errors_total() == errors_before {
                health.failed(e.to_string());
            }
            Generation::Failed { error: e, ran: started.elapsed() }
        }
    })
}

/// Sleeps `d` unless `stop` is set first; returns whether it was.
fn wait_or_stop(stop: &AtomicBool, d: Duration) -> bool {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.load(std::sync::atomic::Ordering::Acquire)
}

/// One part of the process, run on a thread of its own until its flag is set.
type Part<'a> = Box<dyn FnOnce(&AtomicBool) -> Result<(), RunError> + Send + 'a>;

/// Runs `parts` on threads until `stop` is set or one of them returns;
/// then stops the others and returns the first error.
fn run_parts(stop: &AtomicBool, parts: Vec<Part<'_>>) -> Result<(), RunError> {
    let inner = AtomicBool::new(false);
    thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|p| s.spawn(|| p(&inner))).collect();
        shutdown::wait(stop, || handles.iter().any(|h| h.is_finished()), || {});
        inner.store(true, std::sync::atomic::Ordering::Release);
        let mut result = Ok(());
        for h in handles {
            let r = h.join().unwrap_or(Err(RunError::Panicked("run")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Kafka, no Elasticsearch: the agent ships to Kafka, a consumer group
/// indexes into the embedded index.
fn embedded_from_kafka(ctx: &Ctx<'_>, kafka: &KafkaConfig) -> Result<(), RunError> {
    let cfg = ctx.cfg;
    let (store, writer, _, _) = open_index(cfg)?;
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
    ctx.serving(Backend::Embedded(store), || {
        run_parts(
            ctx.stop,
            vec![
                Box::new(|s: &AtomicBool| agent::run_observed(cfg.clone(), s, ctx.obs, ctx.reload)),
                Box::new(move |s: &AtomicBool| ingest::index_records(kafka, &topics, writer, &cfg.index, s)),
            ],
        )
    })
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

/// The search page over Elasticsearch: the search credentials, and only
/// logcollect's indices (`[es] search_index`, else those of `topics`).
fn es_backend(cfg: &Config, es: &EsConfig, topics: &[String]) -> Result<Backend, RunError> {
    // Without a page nothing is searched, so nothing needs to be known.
    let indices = if cfg.http.listen.is_some() { search_indices(es, topics)? } else { String::new() };
    let client = EsClient::new(es, Purpose::Search).map_err(ConfigError::from)?;
    tracing::info!(indices = %indices, "search page: searching Elasticsearch");
    Ok(Backend::Elasticsearch(EsSearch { client, indices }))
}

/// The indices the search page reads: `[es] search_index` when set, else
/// the index pattern with `*` for the date of each known topic
/// (`app-*,web-*`), never every index; with neither, an error naming both
/// keys (a page that silently searched something else would mislead).
fn search_indices(es: &EsConfig, topics: &[String]) -> Result<String, ConfigError> {
    if !es.search_index.is_empty() {
        return Ok(es.search_index.join(","));
    }
    if topics.is_empty() {
        return Err(ConfigError {
            key: "es.search_index".into(),
            message: "the search page does not know which indices are logcollect's (no [kafka] topic, no \
                      [collect] entry): set es.search_index (e.g. app-*,web-*), or [http] listen = off"
                .into(),
        });
    }
    let mut names: Vec<String> = topics.iter().map(|t| es.index.wildcard(t)).collect();
    names.sort();
    names.dedup();
    Ok(names.join(","))
}

/// Kafka and Elasticsearch: the agent and the transfer in one process.
fn agent_and_transfer(ctx: &Ctx<'_>, es: &EsConfig) -> Result<(), RunError> {
    let cfg = ctx.cfg;
    let mut topics = collected_topics(cfg);
    topics.extend(cfg.kafka.iter().flat_map(|k| k.topics.iter().cloned()));
    ctx.serving(es_backend(cfg, es, &topics)?, || {
        run_parts(
            ctx.stop,
            vec![
                Box::new(|s: &AtomicBool| agent::run_observed(cfg.clone(), s, ctx.obs, ctx.reload)),
                Box::new(|s: &AtomicBool| crate::transfer::run_observed(cfg.clone(), s, ctx.obs)),
            ],
        )
    })
}
