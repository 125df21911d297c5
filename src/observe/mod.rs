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

pub mod host_metrics;
pub mod server;
pub mod status;

use crate::agent::stats::Stats;
use crate::common::histogram::Histogram;
use crate::common::sync::lock;
use crate::elastic::stats::TransferStats;
use crate::kafka::stats::{KafkaStats, KAFKA_STATS_INTERVAL};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
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
        }
    }

    /// The views as they are now (the lock is not held while they are read).
    fn parts(&self) -> Parts {
        lock(&self.parts).clone()
    }

    pub fn add_agent(&self, view: AgentView) {
        lock(&self.parts).agent = Some(Arc::new(view));
    }

    pub fn add_transfer(&self, stats: Arc<TransferStats>) {
        let s = stats.clone();
        self.add_check(
            "elasticsearch",
            Arc::new(move || match s.es_reachable() {
                Some(false) => Err("no answer to the last request".into()),
                _ => Ok(()),
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

    pub fn add_host(&self, host: Arc<crate::observe::host_metrics::HostStats>) {
        lock(&self.parts).host = Some(host);
    }

    /// Adds a readiness check.
    pub fn add_check(&self, name: &str, check: Check) {
        lock(&self.parts).checks.push((name.to_string(), check));
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
            let s = &a.stats;
            for (k, c) in [
                ("bytes_read", &s.bytes_read),
                ("lines_read", &s.lines_read),
                ("lines_acked", &s.lines_acked),
                ("lines_failed", &s.lines_failed),
                ("lines_cut", &s.lines_cut),
                ("files_open", &s.files_open),
            ] {
                totals.insert(k.to_string(), Stats::get(c));
            }
        }
        if let Some(t) = &parts.transfer {
            for (k, c) in transfer_counters(t) {
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

impl Observed {
    /// The Prometheus exposition (OpenMetrics text).
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Exposition(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

fn transfer_counters(t: &TransferStats) -> [(&'static str, u64); 10] {
    let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    [
        ("records", g(&t.records)),
        ("docs_indexed", g(&t.docs_indexed)),
        ("docs_duplicate", g(&t.docs_duplicate)),
        ("docs_retried", g(&t.docs_retried)),
        ("docs_dead_lettered", g(&t.docs_dead_lettered)),
        ("docs_lossy", g(&t.docs_lossy)),
        ("bulk_requests", g(&t.bulk_requests)),
        ("bulk_bytes", g(&t.bulk_bytes)),
        ("es_errors", g(&t.es_errors)),
        ("consumer_paused_milliseconds", g(&t.paused_ms)),
    ]
}

/// Adapts [`Observed`] to prometheus-client's collector interface.
#[derive(Clone)]
struct Exposition(Arc<Observed>);

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

type Labels<'a> = Vec<(&'static str, String)>;

/// A label value escaped for the text format (`\`, `"`, newline):
/// prometheus-client writes label values as they are, and a path may hold
/// any of them.
fn label(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_string();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Small writers over the encoder, so the list of metrics below reads as a list.
struct Out<'e, 'w> {
    enc: &'e mut DescriptorEncoder<'w>,
}

impl Out<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, v: u64) -> std::fmt::Result {
        ConstCounter::new(v).encode(self.enc.encode_descriptor(name, help, None, MetricType::Counter)?)
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) -> std::fmt::Result {
        ConstGauge::new(v).encode(self.enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
    }

    fn counters(&mut self, name: &str, help: &str, rows: &[(Labels<'_>, u64)]) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in rows {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn gauges(&mut self, name: &str, help: &str, rows: &[(Labels<'_>, f64)]) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in rows {
            ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
        let (sum, count, buckets) = h.snapshot();
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }
}

impl prometheus_client::collector::Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let o = &*self.0;
        let p = o.parts();
        let mut out = Out { enc: &mut enc };
        process_metrics(o, &mut out)?;
        if let Some(a) = &p.agent {
            agent_metrics(a, &mut out)?;
        }
        if let Some(t) = &p.transfer {
            transfer_metrics(t, &mut out)?;
        }
        let parts = partitions(&p);
        for (client, stats) in &p.kafka {
            kafka_metrics(client, stats, &parts, &mut out)?;
        }
        if let Some(h) = &p.host {
            for f in h.families() {
                if f.counter {
                    let rows: Vec<_> = f.rows.into_iter().map(|(l, v)| (l, v as u64)).collect();
                    out.counters(f.name, f.help, &rows)?;
                } else {
                    out.gauges(f.name, f.help, &f.rows)?;
                }
            }
        }
        let ready = o.problems().is_empty();
        out.gauge("logcollect_ready", "1 when /health/ready would answer 200", if ready { 1.0 } else { 0.0 })
    }
}

fn process_metrics(o: &Observed, out: &mut Out<'_, '_>) -> std::fmt::Result {
    let mut sys = lock(&o.process);
    if let Ok(pid) = sysinfo::get_current_pid() {
        sys.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            false,
            sysinfo::ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        if let Some(p) = sys.process(pid) {
            out.counter("process_cpu_seconds", "CPU time used (user + system)", p.accumulated_cpu_time() / 1000)?;
            out.gauge("process_resident_memory_bytes", "Resident memory", p.memory() as f64)?;
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.gauge("process_open_fds", "Open file descriptors", fds.count() as f64)?;
    }
    out.gauge("process_start_time_seconds", "Start time, seconds since the Unix epoch", o.started_unix)?;
    out.gauge("logcollect_uptime_seconds", "Seconds since the process started", o.started.elapsed().as_secs_f64())?;
    let mut info = out.enc.encode_descriptor("logcollect_build", "Build information", None, MetricType::Info)?;
    info.encode_info(&vec![("version", env!("CARGO_PKG_VERSION").to_string()), ("role", o.role.clone())])
}

fn agent_metrics(a: &AgentView, out: &mut Out<'_, '_>) -> std::fmt::Result {
    let s = &a.stats;
    out.counter("logcollect_read_bytes", "Bytes read from files", Stats::get(&s.bytes_read))?;
    out.counter("logcollect_lines_read", "Lines handed to the next stage", Stats::get(&s.lines_read))?;
    out.counter("logcollect_lines_acked", "Lines the next stage acknowledged", Stats::get(&s.lines_acked))?;
    out.counter("logcollect_lines_failed", "Lines the next stage rejected for good", Stats::get(&s.lines_failed))?;
    out.counter(
        "logcollect_lines_cut",
        "Parts of lines longer than max_line_bytes (split or truncated)",
        Stats::get(&s.lines_cut),
    )?;
    out.counter(
        "logcollect_lines_partial",
        "Unfinished last lines shipped after the idle timeout",
        Stats::get(&s.lines_partial),
    )?;
    out.counter("logcollect_rotations", "Files rotated away (renamed or deleted)", Stats::get(&s.rotations))?;
    out.counter("logcollect_truncations", "Files truncated and read again from the start", Stats::get(&s.truncations))?;
    out.gauge("logcollect_files_open", "Files being read now", Stats::get(&s.files_open) as f64)?;
    let (depth, cap) = (a.channel)();
    out.gauge("logcollect_channel_depth_batches", "Batches waiting between readers and the sink", depth as f64)?;
    out.gauge("logcollect_channel_capacity_batches", "Capacity of the reader -> sink channel", cap as f64)?;
    out.histogram(
        "logcollect_delivery_latency_seconds",
        "From a batch being read to its last line acknowledged by the sink",
        &s.delivery_latency,
    )?;
    let files = (a.files)();
    let labels = |f: &FileRow| vec![("path", label(&f.path)), ("topic", label(&f.topic))];
    let rows = |v: fn(&FileRow) -> u64| files.iter().map(|f| (labels(f), v(f))).collect::<Vec<_>>();
    out.counters("logcollect_file_read_bytes", "Bytes read, per file", &rows(|f| f.read_bytes))?;
    out.counters("logcollect_file_shipped_lines", "Lines acknowledged, per file", &rows(|f| f.shipped_lines))?;
    out.counters("logcollect_file_rotations", "Rotations seen, per file", &rows(|f| f.rotations))?;
    let behind: Vec<_> = files.iter().map(|f| (labels(f), f.behind_bytes as f64)).collect();
    out.gauges("logcollect_file_behind_bytes", "File size minus the checkpoint, per file", &behind)?;
    let idle: Vec<_> = files.iter().filter_map(|f| f.idle_seconds.map(|s| (labels(f), s))).collect();
    out.gauges("logcollect_file_last_read_age_seconds", "Seconds since data was last read, per file", &idle)
}

fn transfer_metrics(t: &TransferStats, out: &mut Out<'_, '_>) -> std::fmt::Result {
    let helps = [
        ("records", "Records consumed from Kafka"),
        ("docs_indexed", "Documents Elasticsearch stored"),
        ("docs_duplicate", "Documents already there (409 on create: a redelivery)"),
        ("docs_retried", "Document sends repeated after a 429/5xx or no answer"),
        ("docs_dead_lettered", "Documents refused for good and written to the dead letter"),
        ("docs_lossy", "Documents whose bytes were not UTF-8 (replaced by U+FFFD)"),
        ("bulk_requests", "_bulk requests sent"),
        ("bulk_bytes", "_bulk request bytes sent"),
        ("es_errors", "Whole _bulk requests that failed (no answer, 429, 5xx, other)"),
        ("consumer_paused_milliseconds", "Time consuming was paused because every Elasticsearch worker was busy"),
    ];
    for ((name, v), (_, help)) in transfer_counters(t).iter().zip(helps) {
        out.counter(&format!("logcollect_{name}"), help, *v)?;
    }
    let by_status: Vec<_> =
        lock(&t.es_errors_by_status).iter().map(|(status, n)| (vec![("status", status.to_string())], *n)).collect();
    out.counters(
        "logcollect_es_errors_by_status",
        "Elasticsearch errors by HTTP status (0: no answer), requests and items",
        &by_status,
    )?;
    out.histogram("logcollect_bulk_latency_seconds", "_bulk request latency", &t.bulk_latency)?;
    out.histogram(
        "logcollect_e2e_latency_seconds",
        "From a line being read to its document acknowledged by the index",
        &t.e2e_latency,
    )
}

fn kafka_metrics(client: &str, stats: &KafkaStats, parts: &[PartitionRow], out: &mut Out<'_, '_>) -> std::fmt::Result {
    let Some(st) = stats.fresh(KAFKA_STATS_INTERVAL) else { return Ok(()) };
    let c = || vec![("client", client.to_string())];
    out.gauges("logcollect_kafka_queue_messages", "Messages in librdkafka's queues", &[(c(), st.msg_cnt as f64)])?;
    out.gauges("logcollect_kafka_queue_bytes", "Bytes in librdkafka's queues", &[(c(), st.msg_size as f64)])?;
    out.counters("logcollect_kafka_tx_messages", "Messages sent to brokers", &[(c(), st.txmsgs.max(0) as u64)])?;
    out.counters("logcollect_kafka_rx_messages", "Messages received from brokers", &[(c(), st.rxmsgs.max(0) as u64)])?;
    let mut up = Vec::new();
    let mut rtt = Vec::new();
    for b in st.brokers.values() {
        // librdkafka's bootstrap pseudo-brokers have no node id.
        if b.nodeid < 0 {
            continue;
        }
        let l = vec![("client", client.to_string()), ("broker", label(&b.name))];
        up.push((l.clone(), if b.state == "UP" { 1.0 } else { 0.0 }));
        if let Some(w) = &b.rtt {
            rtt.push((l, w.avg as f64 / 1e6));
        }
    }
    out.gauges("logcollect_kafka_broker_up", "1 when the connection to the broker is up", &up)?;
    out.gauges("logcollect_kafka_broker_rtt_seconds", "Average broker round-trip time", &rtt)?;
    if client == "consumer" {
        let lag: Vec<_> = parts
            .iter()
            .map(|p| (vec![("topic", label(&p.topic)), ("partition", p.partition.to_string())], p.lag as f64))
            .collect();
        out.gauges("logcollect_consumer_lag_messages", "Records not yet committed, per partition", &lag)?;
    }
    Ok(())
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
        row.behind_bytes += st.behind(src.progress.committed());
        row.rotations += st.rotations.load(Ordering::Relaxed);
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
        files: Box::new(move || file_rows(&checkpoints.live())),
        channel: Box::new(move || (rx.len(), rx.capacity().unwrap_or(0))),
    }
}

/// Starts host metrics when `[metrics]` is enabled: exposed on `/metrics`,
/// and with a topic written to a file under `data_dir`, which the returned
/// collect entry ships like any log (JSON lines, read from the beginning).
pub fn start_host_metrics(
    cfg: &crate::config::Config,
    host: &str,
    observed: &Observed,
) -> Option<crate::config::CollectEntry> {
    let m = cfg.metrics.clone()?;
    let stats = Arc::new(crate::observe::host_metrics::HostStats::default());
    let file = crate::observe::host_metrics::metrics_file(&cfg.agent.data_dir);
    let topic = m.topic.clone();
    if let Err(e) = crate::observe::host_metrics::spawn(m, host.to_string(), file.clone(), stats.clone()) {
        tracing::error!(path = %file.display(), "host metrics not started: {e}");
        return None;
    }
    observed.add_host(stats);
    let topic = topic?;
    let mut entry = crate::config::CollectEntry::new(file.display().to_string(), topic);
    entry.options.read_from = Some(crate::config::ReadFrom::Beginning);
    entry.options.parse_json = true;
    Some(entry)
}

/// The metrics and health server of a process whose data path needs no
/// HTTP (the agent, the transfer), on a thread of its own. An address that
/// cannot be bound is logged, not fatal: the lines keep moving either way.
pub fn serve(addr: Option<std::net::SocketAddr>, observed: Arc<Observed>) -> Option<Server> {
    let addr = addr?;
    let listener = match server::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("http.listen: cannot listen on {addr} ({e}): no /metrics or /health from this process");
            return None;
        }
    };
    match Server::spawn_thread(listener, router(observed)) {
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

/// `/metrics`, `/health/live`, `/health/ready`, `/api/status`.
pub fn router(observed: Arc<Observed>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { (StatusCode::OK, Json(serde_json::json!({"live": true}))) }))
        .route("/health/ready", get(ready))
        .route("/api/status", get(status))
        .with_state(observed)
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
mod tests {
    use super::*;

    fn agent_view(stats: Arc<Stats>) -> AgentView {
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
                }]
            }),
            channel: Box::new(|| (3, 195)),
        }
    }

    #[test]
    fn exposition_names_values_and_labels() {
        let stats = Arc::new(Stats::default());
        stats.lines_read.store(7, Ordering::Relaxed);
        stats.lines_acked.store(5, Ordering::Relaxed);
        stats.delivery_latency.observe(Duration::from_millis(3));
        let t = Arc::new(TransferStats::default());
        t.docs_indexed.store(42, Ordering::Relaxed);
        t.es_error(429, 3);
        let o = Arc::new(Observed::new("agent"));
        o.add_agent(agent_view(stats));
        o.add_transfer(t);
        let text = o.render();
        for want in [
            "logcollect_lines_read_total 7\n",
            "logcollect_lines_acked_total 5\n",
            "logcollect_docs_indexed_total 42\n",
            "logcollect_es_errors_by_status_total{status=\"429\"} 3\n",
            "logcollect_file_read_bytes_total{path=\"/var/log/a \\\"b\\\"\\\\.log\",topic=\"app\"} 10\n",
            "logcollect_file_last_read_age_seconds{path=\"/var/log/a \\\"b\\\"\\\\.log\",topic=\"app\"} 1.5\n",
            "logcollect_channel_depth_batches 3.0\n",
            "logcollect_delivery_latency_seconds_bucket{le=\"0.0025\"} 0\n",
            "logcollect_delivery_latency_seconds_bucket{le=\"0.005\"} 1\n",
            "logcollect_delivery_latency_seconds_bucket{le=\"+Inf\"} 1\n",
            "logcollect_delivery_latency_seconds_count 1\n",
            "# TYPE process_resident_memory_bytes gauge\n",
            "logcollect_build_info{version=",
            "# EOF\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
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
