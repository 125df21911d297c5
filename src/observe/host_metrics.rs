//! Host metrics: the seed's gopsutil section. With `[metrics] enabled`,
//! every `interval_ms` the host's CPU, memory, disk and network usage is
//! sampled; the latest sample is exposed on `/metrics`
//! (`logcollect_host_*`) and, with `[metrics] topic` set, written as one
//! JSON line to `<data_dir>/host-metrics/host-metrics.log`.
//!
//! That file is collected like any log (the agent adds it to its collect
//! list under `topic`), so host metrics reach Kafka, Elasticsearch or the
//! embedded index with the same guarantees as log lines: checkpointed,
//! at-least-once, deduplicated by document id. The file is rotated by
//! rename at [`ROTATE_BYTES`], keeping one old file, so it never grows
//! without bound.

use crate::config::HostMetricsConfig;
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use sysinfo::{Disks, Networks, System};

/// The metrics file is renamed to `.1` (replacing the previous one) past this size.
pub const ROTATE_BYTES: u64 = 16 << 20;

/// One sample of the host.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Sample {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub host: String,
    pub cpu: Cpu,
    pub memory: Memory,
    pub disks: Vec<Disk>,
    pub networks: Vec<Network>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Cpu {
    /// All cores together, 0 to 1.
    pub usage_ratio: f64,
    pub cores: usize,
    pub load_1m: f64,
    pub load_5m: f64,
    pub load_15m: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Disk {
    pub mount: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Network {
    pub interface: String,
    /// Since the interface came up.
    pub received_bytes: u64,
    pub transmitted_bytes: u64,
}

/// A metric family for the exposition: gauges, or counters.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub counter: bool,
    pub rows: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The latest sample, shared with `/metrics`.
#[derive(Default)]
pub struct HostStats {
    latest: Mutex<Option<Sample>>,
}

impl HostStats {
    /// Sets the latest sample (tests of what is exposed).
    #[cfg(test)]
    pub(crate) fn set_latest(&self, s: Sample) {
        *self.latest.lock().unwrap() = Some(s);
    }

    pub fn latest(&self) -> Option<Sample> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest sample as metric families (none before the first sample).
    pub fn families(&self) -> Vec<Family> {
        let Some(s) = self.latest() else { return Vec::new() };
        let one = |v: f64| vec![(Vec::new(), v)];
        let gauge = |name, help, rows| Family { name, help, counter: false, rows };
        let disks =
            |f: fn(&Disk) -> u64| s.disks.iter().map(|d| (vec![("mount", d.mount.clone())], f(d) as f64)).collect();
        let nets = |f: fn(&Network) -> u64| {
            s.networks.iter().map(|n| (vec![("interface", n.interface.clone())], f(n) as f64)).collect()
        };
        vec![
            gauge("logcollect_host_cpu_usage_ratio", "Host CPU usage, all cores, 0 to 1", one(s.cpu.usage_ratio)),
            gauge(
                "logcollect_host_load_average",
                "Host load average",
                vec![
                    (vec![("period", "1m".into())], s.cpu.load_1m),
                    (vec![("period", "5m".into())], s.cpu.load_5m),
                    (vec![("period", "15m".into())], s.cpu.load_15m),
                ],
            ),
            gauge("logcollect_host_memory_total_bytes", "Host memory", one(s.memory.total_bytes as f64)),
            gauge("logcollect_host_memory_used_bytes", "Host memory in use", one(s.memory.used_bytes as f64)),
            gauge(
                "logcollect_host_memory_available_bytes",
                "Host memory available",
                one(s.memory.available_bytes as f64),
            ),
            gauge("logcollect_host_swap_used_bytes", "Host swap in use", one(s.memory.swap_used_bytes as f64)),
            gauge("logcollect_host_disk_total_bytes", "Size of each mounted file system", disks(|d| d.total_bytes)),
            gauge(
                "logcollect_host_disk_available_bytes",
                "Free space of each mounted file system",
                disks(|d| d.available_bytes),
            ),
            Family {
                name: "logcollect_host_network_received_bytes",
                help: "Bytes received per interface",
                counter: true,
                rows: nets(|n| n.received_bytes),
            },
            Family {
                name: "logcollect_host_network_transmitted_bytes",
                help: "Bytes sent per interface",
                counter: true,
                rows: nets(|n| n.transmitted_bytes),
            },
        ]
    }
}

/// The file the samples are written to, under `data_dir`.
pub fn metrics_file(data_dir: &Path) -> PathBuf {
    data_dir.join("host-metrics").join("host-metrics.log")
}

/// Samples the host every `cfg.interval` on a thread of its own, storing
/// each sample in `stats` and, with a topic, appending it to `file`.
pub fn spawn(cfg: HostMetricsConfig, host: String, file: PathBuf, stats: Arc<HostStats>) -> std::io::Result<()> {
    if cfg.topic.is_some() {
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
    }
    thread::Builder::new().name("hostmetrics".into()).spawn(move || {
        let mut sampler = Sampler::new();
        let mut warned = false;
        loop {
            thread::sleep(cfg.interval);
            let sample = sampler.sample(&host);
            if cfg.topic.is_some() {
                if let Err(e) = append(&file, &sample) {
                    if !warned {
                        tracing::warn!(path = %file.display(), "cannot write host metrics: {e}");
                        warned = true;
                    }
                } else {
                    warned = false;
                }
            }
            *stats.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
        }
    })?;
    Ok(())
}

/// Appends one JSON line, rotating the file by rename past [`ROTATE_BYTES`].
fn append(file: &Path, sample: &Sample) -> std::io::Result<()> {
    if fs::metadata(file).is_ok_and(|m| m.len() >= ROTATE_BYTES) {
        let mut old = file.as_os_str().to_owned();
        old.push(".1");
        fs::rename(file, old)?;
    }
    let mut line = serde_json::to_vec(sample).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write of a whole line: a reader never sees half of it.
    OpenOptions::new().create(true).append(true).open(file)?.write_all(&line)
}

struct Sampler {
    sys: System,
    disks: Disks,
    networks: Networks,
}

impl Sampler {
    fn new() -> Sampler {
        let mut sys = System::new();
        // CPU usage is a difference between two refreshes: take the first now.
        sys.refresh_cpu_usage();
        Sampler { sys, disks: Disks::new_with_refreshed_list(), networks: Networks::new_with_refreshed_list() }
    }

    fn sample(&mut self, host: &str) -> Sample {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        let load = System::load_average();
        let mut disks: Vec<Disk> = self
            .disks
            .list()
            .iter()
            .map(|d| Disk {
                mount: d.mount_point().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            })
            .collect();
        disks.sort_by(|a, b| a.mount.cmp(&b.mount));
        disks.dedup_by(|a, b| a.mount == b.mount);
        let mut networks: Vec<Network> = self
            .networks
            .list()
            .iter()
            .map(|(name, n)| Network {
                interface: name.clone(),
                received_bytes: n.total_received(),
                transmitted_bytes: n.total_transmitted(),
            })
            .collect();
        networks.sort_by(|a, b| a.interface.cmp(&b.interface));
        Sample {
            timestamp: rfc3339_now(),
            host: host.to_string(),
            cpu: Cpu {
                usage_ratio: f64::from(self.sys.global_cpu_usage()) / 100.0,
                cores: self.sys.cpus().len(),
                load_1m: load.one,
                load_5m: load.five,
                load_15m: load.fifteen,
            },
            memory: Memory {
                total_bytes: self.sys.total_memory(),
                used_bytes: self.sys.used_memory(),
                available_bytes: self.sys.available_memory(),
                swap_total_bytes: self.sys.total_swap(),
                swap_used_bytes: self.sys.used_swap(),
            },
            disks,
            networks,
        }
    }
}

fn rfc3339_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Starts host metrics when `[metrics]` is enabled: exposed on `/metrics`,
/// and with a topic written to a file under `data_dir`, which the returned
/// collect entry ships like any log (JSON lines, read from the beginning).
pub fn start(
    cfg: &crate::config::Config,
    host: &str,
    observed: &crate::observe::Observed,
) -> Option<crate::config::CollectEntry> {
    let m = cfg.metrics.clone()?;
    let stats = Arc::new(HostStats::default());
    let file = metrics_file(&cfg.agent.data_dir);
    let topic = m.topic.clone();
    if let Err(e) = spawn(m, host.to_string(), file.clone(), stats.clone()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sample_of_this_machine_is_plausible_and_one_json_line() {
        let mut s = Sampler::new();
        thread::sleep(Duration::from_millis(300));
        let sample = s.sample("h1");
        assert!(sample.memory.total_bytes > 0 && sample.memory.used_bytes <= sample.memory.total_bytes);
        assert!((0.0..=1.0).contains(&sample.cpu.usage_ratio), "{}", sample.cpu.usage_ratio);
        assert!(sample.cpu.cores >= 1);
        assert!(sample.networks.iter().any(|n| n.interface == "lo"), "{:?}", sample.networks);
        let dir = tempfile::tempdir().unwrap();
        let file = metrics_file(dir.path());
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        append(&file, &sample).unwrap();
        append(&file, &sample).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["host"], "h1");
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0);
    }

    #[test]
    fn families_expose_the_latest_sample() {
        let stats = HostStats::default();
        assert!(stats.families().is_empty());
        *stats.latest.lock().unwrap() = Some(Sample {
            disks: vec![Disk { mount: "/".into(), total_bytes: 100, available_bytes: 40 }],
            ..Sample::default()
        });
        let f = stats.families();
        let disk = f.iter().find(|f| f.name == "logcollect_host_disk_available_bytes").unwrap();
        assert_eq!(disk.rows, vec![(vec![("mount", "/".to_string())], 40.0)]);
    }
}
