//! Observe: what a running process shows about itself, on `[http] listen`.
//!
//! | route               | answers                                                  |
//! |---------------------|----------------------------------------------------------|
//! | `GET /metrics`      | Prometheus metrics (OpenMetrics text)                    |
//! | `GET /health/live`  | 200 while the process runs                               |
//! | `GET /health/ready` | 200 when destinations are reachable and lines move, else 503 with the reasons |
//! | `GET /api/status`   | [`Status`]: per-file and per-partition rows, totals      |
//!
//! Every figure is read at request time from the counters the stages keep
//! anyway (the stages' counters ([`crate::agent::stats`], [`crate::elastic::stats`]), the checkpoint registry, librdkafka's
//! statistics): serving metrics costs the hot path nothing, however often
//! Prometheus scrapes.
//!
//! Names follow Prometheus conventions: `logcollect_` prefix, base units in
//! the name (`_seconds`, `_bytes`), counters end in `_total`. The process
//! metrics use the standard `process_` names.

pub mod auth;
pub mod host_metrics;
mod prometheus;
pub mod server;
pub mod status;

use crate::agent::stats::Stats;
use crate::common::sync::lock;
use crate::elastic::stats::TransferStats;
use crate::kafka::stats::{KafkaStats, KAFKA_STATS_INTERVAL};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use server::Server;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the pipeline may hold unacknowledged lines without any being
/// acknowledged before `/health/ready` says it is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// One collected file (all identities found under one path, summed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileRow {
    pub path: String,
    pub topic: String,
    pub read_bytes: u64,
    /// Lines the next stage acknowledged.
    pub shipped_lines: u64,
    /// File size minus the checkpoint: what a restart would read again.
    pub behind_bytes: u64,
    /// Seconds since data was last read (`None`: not since the start).
    pub idle_seconds: Option<f64>,
    pub rotations: u64,
    /// Unacknowledged bytes of this path's identities that were rotated
    /// away (lost if deleted before they are read).
    #[serde(default)]
    pub at_risk_bytes: u64,
}

/// One consumed partition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: i32,
    /// Records between the committed offset and the end of the partition.
    pub lag: i64,
    pub committed_offset: i64,
    pub high_watermark: i64,
}

/// What `/api/status` answers and `logcollect status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub role: String,
    pub version: String,
    pub uptime_seconds: f64,
    pub files: Vec<FileRow>,
    pub partitions: Vec<PartitionRow>,
    /// Monotonic totals by name (`lines_read`, `docs_indexed`, ...).
    pub totals: BTreeMap<String, u64>,
    /// Bytes that can no longer be read, by path (files deleted, truncated
    /// or replaced before they were read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lost_bytes: BTreeMap<String, u64>,
    pub ready: bool,
    /// Why not ready; empty when ready.
    pub problems: Vec<String>,
}

/// Rows of the agent's files, computed at request time.
pub type FileRows = Box<dyn Fn() -> Vec<FileRow> + Send + Sync>;
/// A readiness check: `Err(reason)` when not ready.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The agent's side.
pub struct AgentView {
    pub stats: Arc<Stats>,
    pub files: FileRows,
    /// Batches waiting in the reader -> shipper channel, and its capacity.
    pub channel: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
    /// Whether the checkpoints can be written (the file, or the index
    /// commits that carry them).
    pub checkpoints: Arc<crate::common::write_health::WriteHealth>,
}

/// Everything one process shows. Created at start and shared; each stage
/// adds its view when it starts (`logcollect run` starts several).
pub struct Observed {
    role: String,
    started: Instant,
    started_unix: f64,
    parts: Mutex<Parts>,
    /// Last acknowledged total seen by the readiness check, and since when.
    progress: Mutex<(u64, Instant)>,
    process: Mutex<sysinfo::System>,
    /// What `POST /api/reload` runs, once the role has one.
    reloader: Mutex<Option<Arc<crate::control::reload::Reloader>>>,
}

/// The views of the stages running, cheap to clone (all shared).
#[derive(Clone, Default)]
struct Parts {
    agent: Option<Arc<AgentView>>,
    transfer: Option<Arc<TransferStats>>,
    /// (client role, stats): `producer`, `consumer`.
    kafka: Vec<(&'static str, Arc<KafkaStats>)>,
    host: Option<Arc<crate::observe::host_metrics::HostStats>>,
    checks: Vec<(String, Check)>,
    journal: Option<Arc<crate::agent::journal::JournalStats>>,
}

impl Observed {
    pub fn new(role: &str) -> Observed {
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Observed {
            role: role.to_string(),
            started: Instant::now(),
            started_unix,
            parts: Mutex::new(Parts::default()),
            progress: Mutex::new((0, Instant::now())),
            process: Mutex::new(sysinfo::System::new()),
            reloader: Mutex::new(None),
        }
    }

    /// The views as they are now (the lock is not held while they are read).
    fn parts(&self) -> Parts {
        lock(&self.parts).clone()
    }

    /// Exposes the agent's readers, and makes `/health/ready` fail while
    /// their checkpoints cannot be written (a restart would read lines
    /// again, or with `read_from = end` skip the ones written meanwhile).
    pub fn add_agent(&self, view: AgentView) {
        let h = view.checkpoints.clone();
        self.add_check(
            "checkpoints",
            Arc::new(move || match h.failing() {
                Some(e) => Err(format!("cannot be written: {e}")),
                None => Ok(()),
            }),
        );
        lock(&self.parts).agent = Some(Arc::new(view));
    }

    /// Lets `POST /api/reload` reload the config as SIGHUP does.
    pub fn set_reloader(&self, reloader: Arc<crate::control::reload::Reloader>) {
        *lock(&self.reloader) = Some(reloader);
    }

    pub fn add_transfer(&self, stats: Arc<TransferStats>) {
        let s = stats.clone();
        self.add_check(
            "elasticsearch",
            Arc::new(move || match s.es_problem() {
                Some(why) => Err(why),
                None => Ok(()),
            }),
        );
        lock(&self.parts).transfer = Some(stats);
    }

    /// Exposes a Kafka client's statistics, and makes `/health/ready`
    /// require one of its brokers to be up.
    pub fn add_kafka(&self, client: &'static str, stats: Arc<KafkaStats>) {
        let s = stats.clone();
        self.add_check(
            &format!("kafka {client}"),
            Arc::new(move || match s.fresh(KAFKA_STATS_INTERVAL) {
                None => Err("no statistics from librdkafka yet".into()),
                Some(st) if st.brokers.values().any(|b| b.state == "UP") => Ok(()),
                Some(st) => {
                    let states: Vec<String> = st.brokers.values().map(|b| format!("{} {}", b.name, b.state)).collect();
                    Err(format!("no broker up ({})", states.join(", ")))
                }
            }),
        );
        lock(&self.parts).kafka.push((client, stats));
    }

    /// Exposes the journal source's counters.
    pub fn add_journal(&self, stats: Arc<crate::agent::journal::JournalStats>) {
        lock(&self.parts).journal = Some(stats);
    }

    pub fn add_host(&self, host: Arc<crate::observe::host_metrics::HostStats>) {
        lock(&self.parts).host = Some(host);
    }

    /// Adds a readiness check, replacing one of the same name (a part
    /// that restarts adds its checks again).
    pub fn add_check(&self, name: &str, check: Check) {
        let mut p = lock(&self.parts);
        p.checks.retain(|(n, _)| n != name);
        p.checks.push((name.to_string(), check));
    }

    /// Lines (or documents) taken in, and acknowledged, so far.
    fn flow(p: &Parts) -> (u64, u64) {
        let mut taken = 0;
        let mut done = 0;
        if let Some(a) = &p.agent {
            taken += Stats::get(&a.stats.lines_read);
            done += Stats::get(&a.stats.lines_acked) + Stats::get(&a.stats.lines_failed);
        }
        if let Some(t) = &p.transfer {
            let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            taken += g(&t.records);
            done += g(&t.docs_indexed) + g(&t.docs_duplicate) + g(&t.docs_dead_lettered);
        }
        (taken, done)
    }

    /// Every readiness problem; empty when ready. The pipeline counts as
    /// stuck when lines wait and none was acknowledged for [`STALL_AFTER`].
    pub fn problems(&self) -> Vec<String> {
        let parts = self.parts();
        let mut out: Vec<String> =
            parts.checks.iter().filter_map(|(name, c)| c().err().map(|e| format!("{name}: {e}"))).collect();
        let (taken, done) = Self::flow(&parts);
        let mut p = lock(&self.progress);
        if done != p.0 {
            *p = (done, Instant::now());
        }
        if taken > done && p.1.elapsed() >= STALL_AFTER {
            out.push(format!(
                "pipeline: {} lines waiting, none acknowledged for {} s",
                taken - done,
                p.1.elapsed().as_secs()
            ));
        }
        out
    }

    pub fn status(&self) -> Status {
        let parts = self.parts();
        let mut totals = BTreeMap::new();
        if let Some(a) = &parts.agent {
            for (k, c) in a.stats.totals() {
                totals.insert(k.to_string(), c);
            }
        }
        if let Some(t) = &parts.transfer {
            for (k, c) in t.totals() {
                totals.insert(k.to_string(), c);
            }
        }
        let problems = self.problems();
        Status {
            role: self.role.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            files: parts.agent.as_ref().map(|a| (a.files)()).unwrap_or_default(),
            partitions: partitions(&parts),
            totals,
            lost_bytes: parts.agent.as_ref().map(|a| a.stats.lost_paths().into_iter().collect()).unwrap_or_default(),
            ready: problems.is_empty(),
            problems,
        }
    }
}

/// Consumer partitions from the consumer's librdkafka statistics.
fn partitions(parts: &Parts) -> Vec<PartitionRow> {
    let mut rows = Vec::new();
    for (client, stats) in &parts.kafka {
        if *client != "consumer" {
            continue;
        }
        let Some(st) = stats.fresh(KAFKA_STATS_INTERVAL) else { continue };
        for (topic, t) in &st.topics {
            for p in t.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition.
                if p.partition < 0 || p.fetch_state == "none" {
                    continue;
                }
                rows.push(PartitionRow {
                    topic: topic.clone(),
                    partition: p.partition,
                    lag: p.consumer_lag.max(0),
                    committed_offset: p.committed_offset,
                    high_watermark: p.hi_offset,
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    rows
}

/// One row per (path, topic) from the checkpoint registry's sources: every
/// identity a path had (a rotated file and its successor) summed.
pub fn file_rows(sources: &[Arc<crate::agent::batch::Source>]) -> Vec<FileRow> {
    let now = crate::common::clock::now_ms();
    let mut rows: BTreeMap<(&str, &str), FileRow> = BTreeMap::new();
    for src in sources {
        let st = &src.stats;
        let row = rows.entry((&src.path, &src.topic)).or_insert_with(|| FileRow {
            path: src.path.to_string(),
            topic: src.topic.to_string(),
            ..FileRow::default()
        });
        row.read_bytes += st.read_bytes.load(Ordering::Relaxed);
        row.shipped_lines += src.progress.done_lines();
        let behind = st.behind(src.progress.committed());
        row.behind_bytes += behind;
        let rotations = st.rotations.load(Ordering::Relaxed);
        row.rotations += rotations;
        if rotations > 0 {
            row.at_risk_bytes += behind;
        }
        let last = st.last_read_ms.load(Ordering::Relaxed);
        if last > 0 {
            let idle = (now - last).max(0) as f64 / 1000.0;
            row.idle_seconds = Some(row.idle_seconds.map_or(idle, |i: f64| i.min(idle)));
        }
    }
    rows.into_values().collect()
}

/// The agent's view over its checkpoint registry and channel. The channel
/// is watched through a receiver (a sender would keep it open at shutdown).
pub fn agent_view<T: Send + 'static>(
    stats: Arc<Stats>,
    checkpoints: Arc<crate::agent::checkpoint::Checkpoints>,
    rx: &crossbeam_channel::Receiver<T>,
) -> AgentView {
    let rx = rx.clone();
    AgentView {
        stats,
        checkpoints: checkpoints.health().clone(),
        files: Box::new(move || file_rows(&checkpoints.live())),
        channel: Box::new(move || (rx.len(), rx.capacity().unwrap_or(0))),
    }
}

/// The metrics and health server of a process whose data path needs no
/// HTTP (the agent, the transfer), on a thread of its own. An address that
/// cannot be bound is logged, not fatal: the lines keep moving either way.
pub fn serve(http: &crate::config::HttpSection, observed: Arc<Observed>) -> Option<Server> {
    let addr = http.listen?;
    let listener = match server::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("http.listen: cannot listen on {addr} ({e}): no /metrics or /health from this process");
            return None;
        }
    };
    match Server::spawn_thread(listener, router(observed), http) {
        Ok(s) => {
            tracing::info!("metrics and health: http://{addr}/metrics, /health/ready, /api/status");
            Some(s)
        }
        Err(e) => {
            tracing::error!("http: no thread for /metrics and /health ({e})");
            None
        }
    }
}

/// `/metrics`, `/health/live`, `/health/ready`, `/api/status`, and
/// `POST /api/reload` (behind the server's authentication like all `/api/`).
pub fn router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { (StatusCode::OK, Json(serde_json::json!({"live": true}))) }))
        .route("/health/ready", get(ready))
        .route("/api/status", get(status))
        .route("/api/reload", axum::routing::post(reload))
        .with_state(observed)
}

/// 200 with what applied, 400 with the reason a config was refused, 404
/// when this process has nothing to reload (started without a file).
async fn reload(State(o): State<Arc<Observed>>) -> axum::response::Response {
    let Some(r) = lock(&o.reloader).clone() else {
        let body = Json(serde_json::json!({"error": "this process was not started from a config file"}));
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    match tokio::task::spawn_blocking(move || r.reload("POST /api/reload")).await {
        Ok(Ok(applied)) => (StatusCode::OK, Json(serde_json::json!(applied))).into_response(),
        Ok(Err(reason)) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": reason}))).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn metrics(State(o): State<Arc<Observed>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || o.render()).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

async fn ready(State(o): State<Arc<Observed>>) -> impl IntoResponse {
    let problems = o.problems();
    let code = if problems.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({"ready": problems.is_empty(), "problems": problems})))
}

async fn status(State(o): State<Arc<Observed>>) -> Json<Status> {
    Json(tokio::task::spawn_blocking(move || o.status()).await.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An agent view with one file whose path needs escaping.
    pub(crate) fn agent_view(stats: Arc<Stats>) -> AgentView {
        AgentView {
            stats,
            files: Box::new(|| {
                vec![FileRow {
                    path: "/var/log/a \"b\"\\.log".into(),
                    topic: "app".into(),
                    read_bytes: 10,
                    shipped_lines: 2,
                    behind_bytes: 0,
                    idle_seconds: Some(1.5),
                    rotations: 1,
                    at_risk_bytes: 0,
                }]
            }),
            channel: Box::new(|| (3, 195)),
            checkpoints: Arc::default(),
        }
    }

    #[test]
    fn file_rows_sum_every_identity_of_a_path() {
        use crate::agent::batch::Source;
        use crate::agent::identity::FileId;
        use crate::common::ack::BatchAck;
        let src = |ino: u64, path: &str, read: u64, size: u64, acked_lines: usize, end: u64, last_ms: i64| {
            let s = Arc::new(Source::new("app".into(), path.into(), FileId { dev: 1, ino, head: 0 }, 0));
            s.stats.read_bytes.store(read, Ordering::Relaxed);
            s.stats.read_offset.store(read, Ordering::Relaxed);
            s.stats.size.store(size, Ordering::Relaxed);
            s.stats.last_read_ms.store(last_ms, Ordering::Relaxed);
            let ack = Arc::new(BatchAck::new(acked_lines));
            s.progress.push(ack.clone(), end);
            for _ in 0..acked_lines {
                ack.ack();
            }
            s.progress.advance();
            s
        };
        let now = crate::common::clock::now_ms();
        // a.log rotated: the old identity (fully shipped) and the new one.
        let rows = file_rows(&[
            src(1, "/l/a.log", 100, 100, 10, 100, now - 60_000),
            src(2, "/l/a.log", 30, 50, 2, 20, now - 2_000),
            src(3, "/l/b.log", 0, 0, 0, 0, 0),
        ]);
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!((a.path.as_str(), a.read_bytes, a.shipped_lines, a.behind_bytes), ("/l/a.log", 130, 12, 30));
        let idle = a.idle_seconds.unwrap();
        assert!((1.5..10.0).contains(&idle), "the newest read counts: {idle}");
        assert_eq!((rows[1].path.as_str(), rows[1].idle_seconds), ("/l/b.log", None));
    }

    #[test]
    fn a_stalled_pipeline_is_not_ready_and_says_why() {
        let stats = Arc::new(Stats::default());
        let o = Observed::new("agent");
        o.add_agent(agent_view(stats.clone()));
        assert!(o.problems().is_empty());
        stats.lines_read.store(10, Ordering::Relaxed);
        // Ten lines wait, none acknowledged: stuck once STALL_AFTER passed.
        lock(&o.progress).1 = Instant::now() - STALL_AFTER;
        let p = o.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("10 lines waiting"), "{p:?}");
        stats.lines_acked.store(10, Ordering::Relaxed);
        assert!(o.problems().is_empty());
        let failing = Observed::new("x");
        let t = Arc::new(TransferStats::default());
        failing.add_transfer(t.clone());
        assert!(failing.problems().is_empty(), "nothing sent yet");
        t.es_answered(false);
        assert_eq!(failing.problems(), vec!["elasticsearch: no answer to the last request".to_string()]);
        assert!(!failing.status().ready);
        t.es_answered(true);
        assert!(failing.problems().is_empty());
    }
}
