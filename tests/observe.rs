//! End-to-end scenarios for observability: a real Prometheus (Debian's
//! `prometheus`) scraping a running agent, checked against the known
//! counts; readiness following the broker and Elasticsearch; the
//! transfer's figures; host metrics shipped as log lines; `logcollect
//! status` rendering in a real terminal (tmux).

mod common;

use common::es::Noida;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One sample of a text exposition: its labels and value.
type Labels = BTreeMap<String, String>;

/// The samples named `name` in a Prometheus/OpenMetrics text exposition.
fn samples(text: &str, name: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = r.rfind('}').expect("closing brace");
                (parse_labels(&r[..end]), r[end + 1..].trim())
            }
            None if rest.starts_with(' ') => (Labels::new(), rest.trim()),
            None => continue, // a longer name with this prefix
        };
        let v = value.split(' ').next().unwrap();
        out.push((labels, if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap() }));
    }
    out
}

fn parse_labels(s: &str) -> Labels {
    let mut out = Labels::new();
    let mut rest = s;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim_start_matches(',').to_string();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(match chars.next().map(|x| x.1) {
                    Some('n') => '\n',
                    Some(c) => c,
                    None => break,
                }),
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &rest[end..];
    }
    out
}

/// The value of `name` with exactly `labels` among its labels (summed when
/// several series match).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let m: Vec<f64> = samples(text, name)
        .into_iter()
        .filter(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, v)| v)
        .collect();
    (!m.is_empty()).then(|| m.iter().sum())
}

#[test]
fn the_exposition_parser_of_these_tests_reads_labels_and_escapes() {
    let text = "# TYPE x counter\nx_total{path=\"/a \\\"b\\\"\\\\c\",topic=\"t\"} 7\nx_total_more 1\ny 2.5\n";
    assert_eq!(metric(text, "x_total", &[("path", "/a \"b\"\\c")]), Some(7.0));
    assert_eq!(metric(text, "y", &[]), Some(2.5));
    assert_eq!(metric(text, "x_total", &[("topic", "u")]), None);
}

/// A real Prometheus server scraping `targets` every second.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, targets: &[&str]) -> Prometheus {
        let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let port = free_port();
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: logcollect\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (Debian package prometheus): {e}"));
        let p = Prometheus { child, port };
        assert!(
            wait_until(Duration::from_secs(60), || http_get(&format!("{}/-/ready", p.url())).0 == 200),
            "prometheus did not become ready: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query: (labels, value) per series.
    fn query(&self, q: &str) -> Vec<(Value, f64)> {
        let client = reqwest::blocking::Client::new();
        let v: Value =
            client.get(format!("{}/api/v1/query", self.url())).query(&[("query", q)]).send().unwrap().json().unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap()))
            .collect()
    }

    /// The single value of `q`, once it equals `want` (or the last seen).
    fn wait_value(&self, q: &str, want: f64, timeout: Duration) -> Option<f64> {
        let mut last = None;
        wait_until(timeout, || {
            last = self.query(q).first().map(|r| r.1);
            last == Some(want)
        });
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_lines(path: &Path, f: usize, n: usize) -> u64 {
    append_lines(path, f, 0, n);
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn prometheus_scraping_the_agent_sees_the_known_counts_host_metrics_ship_and_readiness_follows_the_broker() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    kafka.create_topic("hostm", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    const N: usize = 20_000;
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let bytes = write_lines(&a, 0, N) + write_lines(&b, 1, N);
    let config = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log\n", logs.display()))
        + "[metrics]\ninterval_ms = 500\ntopic = hostm\n";
    let agent = Agent::start(dir.path(), &config);
    let addr = agent.http.clone().unwrap();
    let prom = Prometheus::start(dir.path(), &[&addr]);

    let recs = consume(&kafka.brokers(), "app", 2 * N, Duration::from_millis(500), Duration::from_secs(120));
    assert_eq!(recs.len(), 2 * N);

    // Prometheus's own view, from its scrapes of the agent.
    let t = Duration::from_secs(30);
    for (path, want) in [(&a, N), (&b, N)] {
        let q = format!("logcollect_file_shipped_lines_total{{path=\"{}\",topic=\"app\"}}", path.display());
        assert_eq!(prom.wait_value(&q, want as f64, t), Some(want as f64), "{q}");
    }
    let q = "sum(logcollect_file_read_bytes_total{topic=\"app\"})";
    assert_eq!(prom.wait_value(q, bytes as f64, t), Some(bytes as f64), "{q}");
    let q = "sum(logcollect_file_behind_bytes{topic=\"app\"})";
    assert_eq!(prom.wait_value(q, 0.0, t), Some(0.0), "{q}");
    assert_eq!(prom.wait_value("logcollect_lines_failed_total", 0.0, t), Some(0.0));
    assert_eq!(prom.wait_value("logcollect_kafka_broker_up{client=\"producer\"}", 1.0, t), Some(1.0));
    assert_eq!(prom.wait_value("logcollect_ready", 1.0, t), Some(1.0));
    let latency = prom.query("logcollect_delivery_latency_seconds_count");
    assert!(latency.first().is_some_and(|r| r.1 > 0.0), "{latency:?}");
    let memory = prom.query("logcollect_host_memory_total_bytes");
    assert!(memory.first().is_some_and(|r| r.1 > 0.0), "host metrics on /metrics: {memory:?}");
    let rss = prom.query("process_resident_memory_bytes");
    assert!(rss.first().is_some_and(|r| r.1 > 1e6), "{rss:?}");
    let targets: Value = reqwest::blocking::get(format!("{}/api/v1/targets", prom.url())).unwrap().json().unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    // The status API agrees.
    let (code, body) = agent.get("/api/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let files: Vec<&Value> = status["files"].as_array().unwrap().iter().filter(|f| f["topic"] == "app").collect();
    assert_eq!(files.len(), 2, "{body}");
    assert!(files.iter().all(|f| f["shipped_lines"] == N as u64 && f["behind_bytes"] == 0), "{body}");

    // Host metrics arrive in their topic as JSON lines, like any log.
    let host = consume(&kafka.brokers(), "hostm", 2, Duration::from_millis(200), Duration::from_secs(30));
    assert!(host.len() >= 2, "host metrics records: {}", host.len());
    let sample: Value = serde_json::from_slice(&host[0].value).unwrap();
    assert!(sample["memory"]["total_bytes"].as_u64().unwrap() > 0, "{sample}");
    assert!(sample["cpu"]["cores"].as_u64().unwrap() > 0, "{sample}");
    assert_eq!(host[0].header("json"), "1", "merged into the document by the transfer");

    // Ready follows the broker: gone, then not ready within ~2 statistics intervals.
    assert_eq!(agent.get("/health/ready").0, 200);
    drop(kafka);
    let mut last = (0, String::new());
    let went = wait_until(Duration::from_secs(40), || {
        last = agent.get("/health/ready");
        last.0 == 503
    });
    assert!(went, "still ready with the broker gone: {last:?}");
    assert!(last.1.contains("kafka producer"), "{}", last.1);
    assert_eq!(agent.get("/health/live").0, 200);
}

#[test]
fn the_transfer_shows_its_documents_lag_and_latency_and_readiness_follows_elasticsearch() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut es = Noida::start(dir.path());
    let file = logs.join("app.log");
    const N: usize = 3_000;
    write_lines(&file, 0, N);
    let _agent = Agent::start(
        dir.path(),
        &agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}\n", file.display())),
    );
    let transfer = Agent::transfer(
        dir.path(),
        "transfer",
        &format!(
            "[kafka]\naddress = {}\ntopic = app\n[kafka.consumer]\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 500\n\
             [agent]\ndata_dir = {}\n[es]\naddress = {}\nbulk_max_docs = 1000\nbulk_max_wait_ms = 100\nretry_max_backoff_ms = 500\n",
            kafka.brokers(),
            dir.path().join("tdata").display(),
            es.url()
        ),
    );
    let scrape = || transfer.get("/metrics").1;
    let mut text = String::new();
    let done = wait_until(Duration::from_secs(90), || {
        text = scrape();
        metric(&text, "logcollect_docs_indexed_total", &[]) == Some(N as f64)
    });
    assert!(done, "documents indexed: {:?}", metric(&text, "logcollect_docs_indexed_total", &[]));
    assert_eq!(metric(&text, "logcollect_records_total", &[]), Some(N as f64));
    assert_eq!(metric(&text, "logcollect_e2e_latency_seconds_count", &[]), Some(N as f64));
    assert_eq!(metric(&text, "logcollect_e2e_latency_seconds_bucket", &[("le", "+Inf")]), Some(N as f64));
    assert!(metric(&text, "logcollect_bulk_requests_total", &[]).unwrap() >= 3.0, "1000 documents per request at most");
    assert!(metric(&text, "logcollect_bulk_bytes_total", &[]).unwrap() > 0.0);
    assert_eq!(metric(&text, "logcollect_docs_dead_lettered_total", &[]), Some(0.0));
    // Lag per partition, from librdkafka's statistics (every 5 s), reaches 0
    // once offsets are committed.
    let lag_zero = wait_until(Duration::from_secs(30), || {
        text = scrape();
        let lag = samples(&text, "logcollect_consumer_lag_messages");
        lag.len() == 3 && lag.iter().all(|(_, v)| *v == 0.0)
    });
    assert!(lag_zero, "lag: {:?}", samples(&text, "logcollect_consumer_lag_messages"));
    assert_eq!(transfer.get("/health/ready").0, 200);

    // Elasticsearch gone: errors by status 0 (no answer), not ready, naming it.
    es.kill();
    append_lines(&file, 0, N, N + 100);
    let mut ready = (0, String::new());
    let went = wait_until(Duration::from_secs(60), || {
        ready = transfer.get("/health/ready");
        ready.0 == 503
    });
    assert!(went, "still ready with Elasticsearch down: {ready:?}");
    assert!(ready.1.contains("elasticsearch"), "{}", ready.1);
    assert!(metric(&scrape(), "logcollect_es_errors_by_status_total", &[("status", "0")]).unwrap_or(0.0) >= 1.0);

    // Back: everything arrives, ready again.
    es.restart();
    let back = wait_until(Duration::from_secs(90), || {
        metric(&scrape(), "logcollect_docs_indexed_total", &[]) == Some((N + 100) as f64)
            && transfer.get("/health/ready").0 == 200
    });
    assert!(
        back,
        "after Elasticsearch came back: {:?} {:?}",
        metric(&scrape(), "logcollect_docs_indexed_total", &[]),
        transfer.get("/health/ready")
    );
}

fn logcollect() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_logcollect"))
}

/// A tmux session running `cmd` in a 150x40 terminal; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let name = format!("logcollect-test-{}-{}", std::process::id(), free_port());
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name, "-x", "150", "-y", "40", cmd])
            .status()
            .expect("run tmux (Debian package tmux)")
            .success();
        assert!(ok, "tmux new-session failed");
        Tmux { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).status();
    }
}

#[test]
fn run_serves_metrics_beside_the_page_and_status_draws_its_table_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let file = logs.join("app.log");
    const N: usize = 5_000;
    write_lines(&file, 0, N);
    let port = free_port();
    let config = format!(
        "[agent]\ndata_dir = {}\nhost = test-host\nread_from = beginning\nscan_interval_ms = 200\n\
         [index]\ncommit_interval_ms = 200\n[http]\nlisten = 127.0.0.1:{port}\n[collect]\napp = {}\n",
        dir.path().join("data").display(),
        file.display()
    );
    let run = Agent::start_as(dir.path(), "run", "run.ini", &config);
    let mut text = String::new();
    let indexed = wait_until(Duration::from_secs(60), || {
        text = run.get("/metrics").1;
        metric(&text, "logcollect_lines_acked_total", &[]) == Some(N as f64)
    });
    assert!(indexed, "lines indexed: {:?}", metric(&text, "logcollect_lines_acked_total", &[]));
    assert!(text.contains("logcollect_build_info{"), "{text}");
    assert_eq!(metric(&text, "logcollect_file_shipped_lines_total", &[("topic", "app")]), Some(N as f64));
    // The page and its API are still on the same port.
    assert_eq!(run.get("/").0, 200);
    assert_eq!(run.get("/api/search?q=*&from=0&size=1").0, 200);
    assert_eq!(run.get("/health/ready").0, 200);

    // `status --once`: a plain table.
    let out = Command::new(logcollect())
        .args(["status", "--once", "--interval", "0.3", "--addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table} {}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("logcollect run") && table.contains("ready"), "{table}");
    assert!(table.contains("PATH") && table.contains("app.log") && table.contains("lines_acked 5000"), "{table}");

    // Live, in a real terminal, refreshing in place: new lines show up.
    let tmux = Tmux::start(&format!("{} status --interval 0.5 --addr 127.0.0.1:{port}", logcollect().display()));
    let mut screen = String::new();
    let drawn = wait_until(Duration::from_secs(15), || {
        screen = tmux.screen();
        screen.contains("app.log") && screen.contains("lines_acked 5000")
    });
    assert!(drawn, "screen:\n{screen}");
    append_lines(&file, 0, N, N + 20_000);
    let refreshed = wait_until(Duration::from_secs(60), || {
        screen = tmux.screen();
        screen.contains("lines_acked 25.0k")
    });
    assert!(refreshed, "screen:\n{screen}");
    assert_eq!(screen.matches("PATH").count(), 1, "drawn in place, not scrolled:\n{screen}");
    assert!(screen.lines().count() <= 40);

    // A process that is not there: a clear error, exit 1.
    let out = Command::new(logcollect())
        .args(["status", "--once", "--addr", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/api/status"), "{}", String::from_utf8_lossy(&out.stderr));
}
