//! End-to-end scenarios for the transfer: files -> agent -> Tansu ->
//! transfer -> Elasticsearch (noida-db), with exact `_count`s and document
//! content read back.

mod common;

use common::es::{Fault, FaultProxy, Noida};
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

/// A broker, an Elasticsearch, an agent and the files it tails.
struct Pipeline {
    kafka: Tansu,
    es: Noida,
    dir: tempfile::TempDir,
    logs: PathBuf,
    agent: Agent,
}

impl Pipeline {
    /// `topics`: each gets 3 partitions and collects `logs/<topic>-*.log`.
    fn start(topics: &[&str]) -> Pipeline {
        let kafka = Tansu::start();
        for t in topics {
            kafka.create_topic(t, 3);
        }
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let es = Noida::start(dir.path());
        let collect: String = topics.iter().map(|t| format!("{t} = {}/{t}-*.log\n", logs.display())).collect();
        let agent = Agent::start(dir.path(), &agent_config(&kafka.brokers(), dir.path(), "", &collect));
        Pipeline { kafka, es, dir, logs, agent }
    }

    fn file(&self, topic: &str, n: usize) -> PathBuf {
        self.logs.join(format!("{topic}-{n}.log"))
    }

    /// A transfer config consuming `topics` into `es_url`, plus `extra_es` lines in `[es]`.
    fn transfer_config(&self, topics: &[&str], es_url: &str, extra_es: &str) -> String {
        format!(
            "[kafka]\naddress = {}\ntopic = {}\ngroup_id = logtransfer\n\
             [kafka.consumer]\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 500\n\
             [agent]\ndata_dir = {}\nshutdown_timeout_ms = 20000\n\
             [es]\naddress = {es_url}\nworkers = 2\nbulk_max_docs = 2000\nbulk_max_wait_ms = 100\n\
             retry_max_backoff_ms = 1000\n{extra_es}\n",
            self.kafka.brokers(),
            topics.join(";"),
            self.dir.path().join("tdata").display()
        )
    }

    fn transfer(&self, name: &str, topics: &[&str], extra_es: &str) -> Agent {
        Agent::transfer(self.dir.path(), name, &self.transfer_config(topics, &self.es.url(), extra_es))
    }
}

impl Drop for Pipeline {
    /// A failed test shows the tail of every process's log.
    fn drop(&mut self) {
        if thread::panicking() {
            dump_logs(self.dir.path());
        }
    }
}

/// Writes lines `from..to` of file number `f` to `path`, in steps with pauses,
/// so they arrive while everything runs.
fn write_slowly(
    path: PathBuf,
    f: usize,
    from: usize,
    to: usize,
    steps: usize,
    pause: Duration,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let step = (to - from).div_ceil(steps);
        let mut i = from;
        while i < to {
            let end = (i + step).min(to);
            append_lines(&path, f, i, end);
            i = end;
            thread::sleep(pause);
        }
    })
}

/// Checks that the documents are exactly the lines written: one per line,
/// content and origin fields identical. `files`: (topic, file number, path, lines).
fn assert_documents_are_the_lines(es: &Noida, files: &[(&str, usize, PathBuf, usize)]) {
    let mut want: HashMap<(String, u64), (String, &str)> = HashMap::new();
    for (topic, f, path, lines) in files {
        let mut offset = 0u64;
        for i in 0..*lines {
            let l = line(*f, i);
            want.insert((path.to_str().unwrap().to_string(), offset), (l.clone(), topic));
            offset += l.len() as u64 + 1;
        }
    }
    let topics: HashSet<&str> = files.iter().map(|f| f.0).collect();
    let mut ids = HashSet::new();
    let mut seen = 0usize;
    for topic in topics {
        for doc in es.dump(topic) {
            seen += 1;
            let path = doc["log"]["file"]["path"].as_str().unwrap().to_string();
            let offset = doc["log"]["offset"].as_u64().unwrap();
            let (text, t) = want.get(&(path.clone(), offset)).unwrap_or_else(|| panic!("unexpected document {doc}"));
            assert_eq!(doc["message"].as_str().unwrap(), text, "{path}@{offset}");
            assert_eq!(doc["topic"].as_str().unwrap(), *t);
            assert_eq!(doc["host"]["name"], "test-host");
            let ts = doc["@timestamp"].as_str().unwrap();
            assert!(ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "@timestamp {ts}");
            assert!(ids.insert(doc["_id"].as_str().unwrap().to_string()), "duplicate _id {}", doc["_id"]);
        }
    }
    assert_eq!(seen, want.len(), "one document per line");
}

fn total(es: &Noida, topics: &[&str]) -> u64 {
    topics.iter().map(|t| es.count(t)).sum()
}

/// Polls until the indices hold `want` documents in all, then watches
/// `quiet` longer for extras.
fn wait_total(es: &Noida, topics: &[&str], want: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut n = total(es, topics);
    while n < want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        n = total(es, topics);
    }
    thread::sleep(Duration::from_secs(2));
    total(es, topics)
}

fn log_has(a: &Agent, text: &str) -> bool {
    a.log_text().contains(text)
}

/// The last `transfer totals` line's value of `field`.
fn totals_field(a: &Agent, field: &str) -> u64 {
    let log = a.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("transfer totals"))
        .unwrap_or_else(|| panic!("no totals in {}", a.log.display()));
    line.split(&format!("{field}=")).nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn fifty_thousand_lines_over_files_and_topics_become_exactly_fifty_thousand_documents() {
    let topics = ["web", "app"];
    let p = Pipeline::start(&topics);
    p.kafka.create_topic("other", 3);
    let mut transfer = p.transfer("transfer", &["web", "app", "other"], "");
    let files: Vec<(&str, usize, PathBuf, usize)> =
        (0..4).map(|f| (topics[f % 2], f, p.file(topics[f % 2], f), 12_500)).collect();
    let writers: Vec<_> = files
        .iter()
        .map(|(_, f, path, n)| write_slowly(path.clone(), *f, 0, *n, 10, Duration::from_millis(100)))
        .collect();
    // Records of another producer: no agent headers.
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", p.kafka.brokers()).create().unwrap();
    for i in 0..1000 {
        let v = format!("foreign record {i} \"quoted\" \t tab");
        producer.send(BaseRecord::<(), _>::to("other").payload(&v)).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    for w in writers {
        w.join().unwrap();
    }
    let t = Instant::now();
    let n = wait_total(&p.es, &topics, 50_000, Duration::from_secs(120));
    eprintln!("50,000 lines indexed {n} documents ({:?} after the last write)", t.elapsed());
    assert_eq!(n, 50_000);
    assert_documents_are_the_lines(&p.es, &files);
    // Foreign records: Kafka-coordinate ids, the value as the message.
    assert_eq!(p.es.wait_count("other", 1000, Duration::from_millis(500), Duration::from_secs(60)), 1000);
    let v = p.es.search("other", json!({"query": {"match_phrase": {"message": "foreign record 7"}}}));
    let src = &v["hits"]["hits"][0]["_source"];
    assert_eq!(src["message"], "foreign record 7 \"quoted\" \t tab", "{v}");
    assert!(src.get("host").is_none() && src.get("log").is_none(), "{src}");
    let (code, took) = transfer.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert_eq!(totals_field(&transfer, "indexed"), 51_000);
    // Offsets were committed: a restart in the same group reads nothing again.
    transfer.restart();
    thread::sleep(Duration::from_secs(8));
    assert_eq!(transfer.terminate().0, Some(0));
    assert_eq!(totals_field(&transfer, "records"), 0, "records consumed again after a clean restart");
}

#[test]
fn kill_9_of_the_transfer_mid_stream_leaves_exactly_one_document_per_line() {
    let topics = ["app"];
    let p = Pipeline::start(&topics);
    let mut transfer = p.transfer("transfer", &topics, "");
    let files: Vec<_> = (0..2).map(|f| ("app", f, p.file("app", f), 15_000)).collect();
    let writers: Vec<_> = files
        .iter()
        .map(|(_, f, path, n)| write_slowly(path.clone(), *f, 0, *n, 30, Duration::from_millis(150)))
        .collect();
    assert!(wait_until(Duration::from_secs(60), || p.es.count("app") >= 5_000), "nothing indexed");
    transfer.kill9();
    let at_kill = p.es.count("app");
    thread::sleep(Duration::from_millis(500));
    transfer.restart();
    for w in writers {
        w.join().unwrap();
    }
    let n = wait_total(&p.es, &topics, 30_000, Duration::from_secs(120));
    eprintln!("killed at {at_kill} documents; after restart {n}; duplicates refused: {}", {
        transfer.terminate();
        totals_field(&transfer, "duplicate")
    });
    assert_eq!(n, 30_000);
    assert_documents_are_the_lines(&p.es, &files);
}

#[test]
fn kill_9_of_the_agent_mid_stream_leaves_exactly_one_document_per_line() {
    let topics = ["app"];
    let mut p = Pipeline::start(&topics);
    let _transfer = p.transfer("transfer", &topics, "");
    let files: Vec<_> = (0..2).map(|f| ("app", f, p.file("app", f), 15_000)).collect();
    let writers: Vec<_> = files
        .iter()
        .map(|(_, f, path, n)| write_slowly(path.clone(), *f, 0, *n, 30, Duration::from_millis(100)))
        .collect();
    thread::sleep(Duration::from_millis(1200));
    p.agent.kill9();
    thread::sleep(Duration::from_millis(500));
    p.agent.restart();
    for w in writers {
        w.join().unwrap();
    }
    let n = wait_total(&p.es, &topics, 30_000, Duration::from_secs(120));
    let records = consume(&p.kafka.brokers(), "app", 30_000, Duration::from_secs(2), Duration::from_secs(60)).len();
    eprintln!("Kafka holds {records} records for 30,000 lines; Elasticsearch {n} documents");
    assert!(records >= 30_000);
    assert_eq!(n, 30_000);
    assert_documents_are_the_lines(&p.es, &files);
}

#[test]
fn elasticsearch_down_for_15_s_loses_nothing_and_memory_stays_bounded() {
    let topics = ["app"];
    let mut p = Pipeline::start(&topics);
    // Down through a proxy that drops every connection: noida-db itself
    // loses documents it acknowledged just before a kill, which real
    // Elasticsearch (translog fsync before the answer) does not.
    let proxy = FaultProxy::start(p.es.port);
    let mut transfer =
        Agent::transfer(p.dir.path(), "transfer", &p.transfer_config(&topics, &proxy.url(), "chan_max_size = 10000"));
    let files: Vec<_> = (0..2).map(|f| ("app", f, p.file("app", f), 20_000)).collect();
    let writers: Vec<_> = files
        .iter()
        .map(|(_, f, path, n)| write_slowly(path.clone(), *f, 0, *n, 20, Duration::from_millis(200)))
        .collect();
    assert!(wait_until(Duration::from_secs(60), || p.es.count("app") >= 2_000), "nothing indexed");
    proxy.set(Fault::Down);
    let down = Instant::now();
    let rss_before = proc_status_kb(transfer.pid(), "VmRSS:");
    thread::sleep(Duration::from_secs(15));
    let rss_down = transfer.peak_rss() / 1024;
    assert!(transfer.is_running(), "the transfer exited while Elasticsearch was down");
    proxy.set(Fault::None);
    eprintln!("Elasticsearch down {:?}; transfer RSS {rss_before} kB before, peak {rss_down} kB", down.elapsed());
    for w in writers {
        w.join().unwrap();
    }
    let n = wait_total(&p.es, &topics, 40_000, Duration::from_secs(120));
    assert_eq!(n, 40_000);
    assert_documents_are_the_lines(&p.es, &files);
    assert!(log_has(&transfer, "Elasticsearch unreachable"), "the outage was not logged");
    assert!(rss_down < 200 * 1024, "peak RSS {rss_down} kB while Elasticsearch was down");
    let _ = &mut p.agent;
}

#[test]
fn a_document_refused_over_its_merged_fields_is_stored_plain_and_one_refused_for_good_is_dead_lettered() {
    let topics = ["app"];
    let p = Pipeline::start(&topics);
    p.kafka.create_topic("app.dlq", 1);
    // Bodies over 20 kB get a 413: a single document that large is refused
    // for good and goes to the dead letter with its error.
    let proxy = FaultProxy::start(p.es.port);
    proxy.set(Fault::MaxBody(20_000));
    let cfg = p.transfer_config(&topics, &proxy.url(), "parse_json = app\nbulk_max_bytes = 16000");
    let transfer = Agent::transfer(p.dir.path(), "transfer", &cfg);
    // `level` is mapped as a number by the first line; line 500's text
    // cannot be indexed into it (review finding 12): it is stored with its
    // line in `message` only, marked, instead of being refused.
    let path = p.file("app", 0);
    let mut text = String::new();
    for i in 0..1000 {
        match i {
            500 => text.push_str("{\"level\": \"not a number\", \"seq\": 500}\n"),
            700 => text.push_str(&format!("{{\"level\": 1, \"seq\": 700, \"msg\": \"{}\"}}\n", "y".repeat(30_000))),
            _ => text.push_str(&format!("{{\"level\": {}, \"seq\": {i}, \"msg\": \"ok\"}}\n", i % 7)),
        }
    }
    std::fs::write(&path, &text).unwrap();
    let n = p.es.wait_count("app", 999, Duration::from_secs(3), Duration::from_secs(90));
    assert_eq!(n, 999, "every document but the one too large");
    let dlq = consume(&p.kafka.brokers(), "app.dlq", 1, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(dlq.len(), 1, "one dead letter");
    let doc: Value = serde_json::from_slice(&dlq[0].value).unwrap();
    assert_eq!(doc["seq"], 700, "{}", &doc.to_string()[..200]);
    assert_eq!(dlq[0].header("status"), "413");
    // The conflicting line: whole in `message`, no `level`, marked.
    let v = p.es.search("app", json!({"query": {"term": {"log.offset": text.find("{\"level\": \"not").unwrap()}}}));
    let plain = &v["hits"]["hits"][0]["_source"];
    assert_eq!(plain["message"], "{\"level\": \"not a number\", \"seq\": 500}", "{v}");
    assert!(plain.get("level").is_none() && plain.get("seq").is_none(), "{plain}");
    assert_eq!(plain["log"]["flags"], json!(["json_unmerged"]), "{plain}");
    assert!(log_has(&transfer, "refused over a field merged from its JSON line"), "the retry is logged");
    // Merged fields are searchable.
    let v = p.es.search("app", json!({"query": {"term": {"seq": 42}}}));
    assert_eq!(v["hits"]["hits"][0]["_source"]["level"], 0, "{v}");
}

#[test]
fn two_transfers_share_the_partitions_and_one_leaving_mid_stream_loses_nothing() {
    let topics = ["app"];
    let p = Pipeline::start(&topics);
    let mut a = p.transfer("transfer-a", &topics, "");
    let mut b = p.transfer("transfer-b", &topics, "");
    // A file's lines go to the partition of its identity's hash: twelve
    // files leave a partition without any with a chance of (2/3)^12 < 1 %.
    let files: Vec<_> = (0..12).map(|f| ("app", f, p.file("app", f), 2_500)).collect();
    let writers: Vec<_> = files
        .iter()
        .map(|(_, f, path, n)| write_slowly(path.clone(), *f, 0, *n, 60, Duration::from_millis(150)))
        .collect();
    // b leaves while its partitions still have records to come.
    let b_records = || {
        let text = b.get("/metrics").1;
        text.lines().find_map(|l| l.strip_prefix("logcollect_records_total ")).and_then(|v| v.parse::<f64>().ok())
    };
    assert!(wait_until(Duration::from_secs(60), || b_records().unwrap_or(0.0) >= 500.0), "b consumed nothing");
    let (code, _) = b.terminate();
    assert_eq!(code, Some(0));
    let b_indexed = totals_field(&b, "indexed");
    for w in writers {
        w.join().unwrap();
    }
    let n = wait_total(&p.es, &topics, 30_000, Duration::from_secs(120));
    a.terminate();
    let a_indexed = totals_field(&a, "indexed");
    eprintln!("transfer a indexed {a_indexed}, b indexed {b_indexed} before leaving; total {n}");
    assert!(b_indexed > 0 && a_indexed > 0, "both members should have had partitions");
    assert!(b_indexed < 10_000, "b left before its share was complete");
    assert!(a.log_text().matches("partitions assigned").count() >= 2, "a took over b's partitions");
    assert_eq!(n, 30_000);
    assert_documents_are_the_lines(&p.es, &files);
}

#[test]
fn refused_requests_are_retried_and_oversized_ones_split() {
    let topics = ["app"];
    let p = Pipeline::start(&topics);
    let proxy = FaultProxy::start(p.es.port);
    // 503 for every request at first: nothing may be lost or committed.
    proxy.set(Fault::Status(503));
    let mut transfer =
        Agent::transfer(p.dir.path(), "transfer", &p.transfer_config(&topics, &proxy.url(), "bulk_max_bytes = 400000"));
    let files: Vec<_> = vec![("app", 0, p.file("app", 0), 6_000)];
    append_lines(&files[0].2, 0, 0, 3_000);
    assert!(wait_until(Duration::from_secs(30), || proxy.faulted.load(std::sync::atomic::Ordering::Relaxed) >= 3));
    assert_eq!(p.es.count("app"), 0);
    // Then 413 for bodies over 100 kB: requests are split until they pass.
    proxy.set(Fault::MaxBody(100_000));
    assert_eq!(p.es.wait_count("app", 3_000, Duration::from_millis(500), Duration::from_secs(60)), 3_000);
    assert!(proxy.largest_forwarded.load(std::sync::atomic::Ordering::Relaxed) <= 100_000);
    // Per-item 429s from the server itself: the index blocked read-only.
    proxy.set(Fault::None);
    p.es.put_settings("app", json!({"index.blocks.read_only_allow_delete": true}));
    append_lines(&files[0].2, 0, 3_000, 6_000);
    thread::sleep(Duration::from_secs(3));
    assert_eq!(p.es.count("app"), 3_000, "documents stored through the block");
    p.es.put_settings("app", json!({"index.blocks.read_only_allow_delete": null}));
    let n = p.es.wait_count("app", 6_000, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(n, 6_000);
    assert_documents_are_the_lines(&p.es, &files);
    transfer.terminate();
    assert!(totals_field(&transfer, "retried") > 0);
    assert!(log_has(&transfer, "413"), "the split was not logged");
    assert!(log_has(&transfer, "429"), "the per-item refusals were not logged");
}

#[test]
fn dated_indices_past_retention_days_are_deleted_and_nothing_else() {
    let topics = ["app"];
    let p = Pipeline::start(&topics);
    let http = reqwest::blocking::Client::new();
    let exists = |index: &str| http.head(format!("{}/{index}", p.es.url())).send().unwrap().status().as_u16() == 200;
    // Old dated indices of this topic; others that only look alike.
    let old = ["app-2020.01.01", "app-2020.01.02"];
    let kept = ["app-notes", "db-2020.01.01", "app-x-2020.01.01"];
    for index in old.iter().chain(&kept) {
        let status = http.put(format!("{}/{index}", p.es.url())).send().unwrap().status();
        assert!(status.is_success(), "PUT /{index}: {status}");
        assert!(exists(index));
    }
    let config = p.transfer_config(&topics, &p.es.url(), "index = {topic}-%Y.%m.%d\nretention_days = 7");
    let mut transfer = Agent::transfer(p.dir.path(), "transfer", &config);
    append_lines(&p.file("app", 0), 0, 0, 500);
    assert_eq!(p.es.wait_count("app-*", 500, Duration::from_millis(500), Duration::from_secs(60)), 500);
    assert!(wait_until(Duration::from_secs(20), || old.iter().all(|i| !exists(i))), "{}", transfer.log_text());
    for index in kept {
        assert!(exists(index), "{index} was deleted");
    }
    assert_eq!(p.es.count("app-2*"), 500, "today's index is kept");
    for index in old {
        assert!(log_has(&transfer, index), "the deletion of {index} is logged");
    }
    transfer.terminate();
    assert_eq!(totals_field(&transfer, "es_indices_deleted"), 2);
}
