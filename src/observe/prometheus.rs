//! The Prometheus exposition of [`Observed`]: OpenMetrics text written
//! at scrape time from the stages' counters.

use super::{partitions, AgentView, FileRow, Observed, PartitionRow};
use crate::agent::stats::Stats;
use crate::common::histogram::Histogram;
use crate::common::sync::lock;
use crate::elastic::stats::TransferStats;
use crate::kafka::stats::{KafkaStats, KAFKA_STATS_INTERVAL};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::Arc;

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
/// prometheus-client writes label values as they are, and a path, a topic,
/// a broker, a mount point or an interface name may hold any of them.
fn label(v: &str) -> String {
    if !v.contains(['\\', '"', '\n']) {
        return v.to_string();
    }
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every label value of a row escaped: the one place values are escaped,
/// so no family can forget (host metrics did: a mount point could inject
/// samples).
fn escaped(labels: &Labels<'_>) -> Labels<'static> {
    labels.iter().map(|(k, v)| (*k, label(v))).collect()
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
            ConstCounter::new(*v).encode(m.encode_family(&escaped(labels))?)?;
        }
        Ok(())
    }

    fn gauges(&mut self, name: &str, help: &str, rows: &[(Labels<'_>, f64)]) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in rows {
            ConstGauge::new(*v).encode(m.encode_family(&escaped(labels))?)?;
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
        if let Some(j) = &p.journal {
            journal_metrics(j, &mut out)?;
        }
        let parts = partitions(&p);
        for (client, stats) in &p.kafka {
            kafka_metrics(client, stats, &parts, &mut out)?;
        }
        if !p.kafka.is_empty() {
            let e = &crate::kafka::CLIENT_ERRORS;
            let g = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            let rows: Vec<(Labels<'_>, u64)> = vec![
                (vec![("kind", "authentication".into())], g(&e.authentication)),
                (vec![("kind", "tls".into())], g(&e.tls)),
                (vec![("kind", "other".into())], g(&e.other)),
            ];
            out.counters(
                "logcollect_kafka_client_errors",
                "librdkafka client errors (SASL, TLS, other) of every Kafka client",
                &rows,
            )?;
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

fn journal_metrics(j: &crate::agent::journal::JournalStats, out: &mut Out<'_, '_>) -> std::fmt::Result {
    let g = Stats::get;
    out.counter("logcollect_journal_entries_read", "Journal entries handed to the next stage", g(&j.entries_read))?;
    out.counter("logcollect_journal_read_bytes", "MESSAGE bytes of the journal entries handed on", g(&j.bytes_read))?;
    out.counter(
        "logcollect_journal_gaps",
        "Starts whose checkpoint cursor was no longer in the journal (vacuumed): read from the oldest entry",
        g(&j.gaps),
    )?;
    out.counter(
        "logcollect_journal_gap_entries",
        "Journal entries lost in those gaps, where sequence numbers tell",
        g(&j.gap_entries),
    )?;
    out.counter("logcollect_journal_restarts", "Times journalctl ended and was started again", g(&j.restarts))?;
    out.counter(
        "logcollect_journal_bad_entries",
        "Journal entries without a usable cursor, and journalctl outputs that were not the export format",
        g(&j.bad_entries),
    )?;
    out.gauge("logcollect_journal_up", "1 while journalctl runs", g(&j.running) as f64)
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
        "logcollect_records_recut",
        "Records Kafka refused for their size, cut in two and sent again",
        Stats::get(&s.records_recut),
    )?;
    out.counter(
        "logcollect_lines_partial",
        "Unfinished last lines shipped after the idle timeout",
        Stats::get(&s.lines_partial),
    )?;
    out.counter(
        "logcollect_multiline_events",
        "Multiline events of more than one line shipped (whole or in parts)",
        Stats::get(&s.multiline_events),
    )?;
    out.counter(
        "logcollect_multiline_parts",
        "Records that are a part of a multiline event cut at multiline_max_lines or multiline_max_bytes",
        Stats::get(&s.multiline_parts),
    )?;
    out.counter("logcollect_rotations", "Files rotated away (renamed or deleted)", Stats::get(&s.rotations))?;
    out.counter("logcollect_truncations", "Files truncated and read again from the start", Stats::get(&s.truncations))?;
    out.gauge("logcollect_files_open", "Files being read now", Stats::get(&s.files_open) as f64)?;
    out.gauge(
        "logcollect_files_waiting",
        "Files found that wait for a reader (max_open_files readers run)",
        Stats::get(&s.files_waiting) as f64,
    )?;
    out.counter(
        "logcollect_files_closed_idle",
        "Files closed after close_inactive_ms without data, or to make room for a waiting one",
        Stats::get(&s.files_closed_idle),
    )?;
    out.counter(
        "logcollect_files_finished_outside_glob",
        "Files renamed out of their glob with unread bytes, found again by identity and read to their end",
        Stats::get(&s.files_finished),
    )?;
    out.counter(
        "logcollect_lost_bytes",
        "Bytes that can no longer be read: their file was deleted, truncated or replaced before they were",
        Stats::get(&s.lost_bytes),
    )?;
    let lost: Vec<_> = s.lost_paths().into_iter().map(|(p, n)| (vec![("path", p)], n)).collect();
    out.counters("logcollect_file_lost_bytes", "Bytes that can no longer be read, per path", &lost)?;
    out.counter(
        "logcollect_files_refused",
        "Files found by a glob and refused (symlink, not a regular file, outside allowed_paths), as reported",
        Stats::get(&s.files_refused),
    )?;
    out.counter(
        "logcollect_checkpoint_write_errors",
        "Failed checkpoint writes (the checkpoint file, or the index commits that carry them)",
        a.checkpoints.errors_total(),
    )?;
    let (depth, cap) = (a.channel)();
    out.gauge("logcollect_channel_depth_batches", "Batches waiting between readers and the sink", depth as f64)?;
    out.gauge("logcollect_channel_capacity_batches", "Capacity of the reader -> sink channel", cap as f64)?;
    out.histogram(
        "logcollect_delivery_latency_seconds",
        "From a batch being read to its last line acknowledged by the sink",
        &s.delivery_latency,
    )?;
    let files = (a.files)();
    let labels = |f: &FileRow| vec![("path", f.path.clone()), ("topic", f.topic.clone())];
    let rows = |v: fn(&FileRow) -> u64| files.iter().map(|f| (labels(f), v(f))).collect::<Vec<_>>();
    out.counters("logcollect_file_read_bytes", "Bytes read, per file", &rows(|f| f.read_bytes))?;
    out.counters("logcollect_file_shipped_lines", "Lines acknowledged, per file", &rows(|f| f.shipped_lines))?;
    out.counters("logcollect_file_rotations", "Rotations seen, per file", &rows(|f| f.rotations))?;
    let behind: Vec<_> = files.iter().map(|f| (labels(f), f.behind_bytes as f64)).collect();
    out.gauges("logcollect_file_behind_bytes", "File size minus the checkpoint, per file", &behind)?;
    let at_risk: u64 = files.iter().map(|f| f.at_risk_bytes).sum();
    out.gauge(
        "logcollect_bytes_at_risk",
        "Unacknowledged bytes of files already rotated away: lost if they are deleted before being read",
        at_risk as f64,
    )?;
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
        (
            "docs_dead_letter_fallback",
            "Dead letters the Kafka dead-letter topic did not take in time, written to the dead-letter file",
        ),
        ("docs_lossy", "Documents whose bytes were not UTF-8 (replaced by U+FFFD)"),
        (
            "docs_time_clamped",
            "Records timestamped over 30 days ago or over a day ahead: indexed by the window's nearest end",
        ),
        ("docs_unmerged", "parse_json records indexed as plain text: not a JSON object, past the key limits, or refused over a merged field"),
        ("bulk_requests", "_bulk requests sent"),
        ("bulk_bytes", "_bulk request bytes sent"),
        ("es_errors", "Whole _bulk requests that failed (no answer, 429, 5xx, other)"),
        ("consumer_paused_milliseconds", "Time consuming was paused because every Elasticsearch worker was busy"),
        ("es_indices_deleted", "Dated indices deleted past es.retention_days"),
    ];
    for ((name, v), (_, help)) in t.totals().iter().zip(helps) {
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
        let l = vec![("client", client.to_string()), ("broker", b.name.clone())];
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
            .map(|p| (vec![("topic", p.topic.clone()), ("partition", p.partition.to_string())], p.lag as f64))
            .collect();
        out.gauges("logcollect_consumer_lag_messages", "Records not yet committed, per partition", &lag)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::tests::agent_view;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

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
    fn host_metric_labels_are_escaped_so_a_mount_point_cannot_inject_samples() {
        use crate::observe::host_metrics::{Disk, HostStats, Network, Sample};
        let host = Arc::new(HostStats::default());
        host.set_latest(Sample {
            disks: vec![Disk { mount: "/m\"} 1\nlogcollect_ready 1\n".into(), total_bytes: 1, available_bytes: 1 }],
            networks: vec![Network { interface: "e\\th\"0".into(), received_bytes: 2, transmitted_bytes: 3 }],
            ..Sample::default()
        });
        let o = Arc::new(Observed::new("agent"));
        o.add_host(host);
        let text = o.render();
        assert!(text.contains(r#"mount="/m\"} 1\nlogcollect_ready 1\n""#), "{text}");
        assert!(text.contains(r#"interface="e\\th\"0""#), "{text}");
        assert_eq!(text.matches("\nlogcollect_ready ").count(), 1, "one logcollect_ready sample: {text}");
    }
}
