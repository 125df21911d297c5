//! `logcollect validate`: is this `config.ini` ready to run, and do its
//! destinations answer?
//!
//! Two steps, like `vector validate`:
//!
//! 1. Local checks, each the one the start itself makes, reused: the file
//!    (keys, globs, `allowed_paths`, the TLS and secret files of `[kafka]`
//!    and the `*_file` keys: [`Config::load`], the caller's), librdkafka's
//!    view of the client properties, the TLS files of `[etcd]`, `[es]` and
//!    `[http]`, and `data_dir` (prepared and probed as the agent's start
//!    does). A failure is a [`ConfigError`] (exit 2).
//! 2. Unless `--no-connect`, one [`Row`] per configured destination: Kafka
//!    (metadata with the agent's producer configuration, and the
//!    transfer's consumer configuration for its topics), etcd (this host's
//!    key and how many entries its collect list holds) and Elasticsearch
//!    (`GET /` on every node, and the index templates, installed as the
//!    transfer installs them at start). A destination that does not answer
//!    is [`Status::Failed`] (exit 1); an etcd collect list that does not
//!    parse is [`Status::Invalid`], a config error (exit 2).
//!
//! [`render`] draws the table; it is pure, and tested.

use crate::common::text::printable;
use crate::config::{absolute_text, Config, ConfigError, EsConfig, EtcdConfig, KafkaConfig};
use crate::control::{collect, etcd};
use crate::elastic::client::{EsClient, Purpose};
use crate::elastic::template::topic_template;
use crate::error::RunError;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How `validate` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Contact the destinations (off: `--no-connect`).
    pub connect: bool,
    /// Bound on each Kafka and Elasticsearch check (etcd's is `[etcd] timeout`).
    pub timeout: Duration,
}

/// How a destination answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It answered as the roles need.
    Ok,
    /// It did not answer, or refused (exit 1).
    Failed,
    /// It answered with configuration that does not parse (exit 2).
    Invalid,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Invalid => "INVALID",
        }
    }
}

/// One destination's line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `kafka`, `etcd` or `elasticsearch`.
    pub destination: &'static str,
    /// Where, as configured: brokers, endpoints or nodes, `,` separated.
    pub address: String,
    /// How it answered.
    pub status: Status,
    /// What answered, or why it did not.
    pub detail: String,
}

/// What `validate` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What the local checks covered, one line.
    pub checked: String,
    /// One row per destination; `None` with `--no-connect`.
    pub rows: Option<Vec<Row>>,
}

impl Report {
    /// 0 when every destination is ok, 2 when one holds an invalid
    /// configuration, 1 when one failed.
    pub fn exit_code(&self) -> u8 {
        let rows = self.rows.as_deref().unwrap_or_default();
        if rows.iter().any(|r| r.status == Status::Invalid) {
            2
        } else if rows.iter().any(|r| r.status == Status::Failed) {
            1
        } else {
            0
        }
    }

    /// One line per destination that is not ok: its name, address and reason.
    pub fn problems(&self) -> Vec<String> {
        let rows = self.rows.as_deref().unwrap_or_default();
        rows.iter()
            .filter(|r| r.status != Status::Ok)
            .map(|r| format!("{} {}: {}", r.destination, r.address, printable(&r.detail, false)))
            .collect()
    }

    /// The report as printed: the local checks, then the table.
    pub fn render(&self) -> String {
        let mut out = format!("{}\n", self.checked);
        match &self.rows {
            None => out.push_str("destinations not contacted (--no-connect)\n"),
            Some(rows) if rows.is_empty() => out.push_str("no destination configured\n"),
            Some(rows) => out.push_str(&render(rows)),
        }
        out
    }
}

/// The table: a header, then one line per row, columns aligned, text from
/// servers with its control characters escaped.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = std::iter::once(["DESTINATION", "ADDRESS", "STATUS", "DETAIL"].map(String::from))
        .chain(rows.iter().map(|r| {
            [
                r.destination.to_string(),
                printable(&r.address, false).into_owned(),
                r.status.word().to_string(),
                printable(&r.detail, false).into_owned(),
            ]
        }))
        .collect();
    let mut width = [0usize; 4];
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, w) in row.iter().zip(width) {
            let _ = write!(line, "{c:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Checks `cfg` (already loaded and validated by [`Config::load`]) and,
/// with `opts.connect`, its destinations.
pub fn run(cfg: &Config, opts: &Options) -> Result<Report, ConfigError> {
    let checked = check_local(cfg)?;
    let rows = if opts.connect { Some(connect(cfg, opts.timeout)?) } else { None };
    Ok(Report { checked, rows })
}

/// The checks the start makes before it contacts anything; what they
/// covered, as one line.
fn check_local(cfg: &Config) -> Result<String, ConfigError> {
    if let Some(k) = &cfg.kafka {
        // librdkafka refuses unknown or malformed properties only when a
        // client is made: make their configurations now, without a client.
        let configs = [
            ("kafka.producer", crate::kafka::producer(k, cfg.agent.max_line_bytes)),
            ("kafka.producer", crate::kafka::dead_letter_producer(k)),
            ("kafka.consumer", crate::kafka::consumer(k)),
        ];
        for (key, c) in configs {
            c.create_native_config().map_err(|e| ConfigError { key: key.into(), message: e.to_string() })?;
        }
    }
    if let Some(e) = &cfg.etcd {
        etcd::check_files(e)?;
        // Reads and parses the PEM files, as the agent's first call does.
        etcd::gateway::Client::new(e).map_err(|e| match e {
            etcd::EtcdError::File { key, path, message } => {
                ConfigError { key: key.into(), message: format!("{}: {message}", path.display()) }
            }
            other => ConfigError { key: "etcd".into(), message: other.to_string() },
        })?;
    }
    if let Some(es) = &cfg.es {
        EsClient::new(es, Purpose::Write)?;
        if es.search_auth.is_some() {
            EsClient::new(es, Purpose::Search)?;
        }
    }
    if let Some((cert, key)) = &cfg.http.tls {
        crate::observe::server::tls_acceptor(cert, key).map_err(|e| {
            // The message starts with the key (`http.tls_cert: <path>: …`).
            let text = e.to_string();
            let (key, message) = text.split_once(": ").unwrap_or(("http", &text));
            ConfigError { key: key.into(), message: message.into() }
        })?;
    }
    crate::agent::private_data_dir(cfg).map_err(|e| match e {
        RunError::Config(e) => e,
        other => ConfigError { key: "agent.data_dir".into(), message: other.to_string() },
    })?;
    Ok(format!(
        "config ok: {} in [collect], data_dir {} writable",
        count(cfg.collect.len(), "entry", "entries"),
        cfg.agent.data_dir.display()
    ))
}

/// One row per configured destination, in the order Kafka, etcd,
/// Elasticsearch; Kafka is checked on its own thread meanwhile.
fn connect(cfg: &Config, timeout: Duration) -> Result<Vec<Row>, ConfigError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConfigError { key: "validate".into(), message: format!("a runtime: {e}") })?;
    let host = crate::control::host::detect(cfg.agent.host.as_deref());
    std::thread::scope(|s| {
        let kafka = cfg.kafka.as_ref().map(|k| s.spawn(move || kafka_row(k, cfg.agent.max_line_bytes, timeout)));
        let mut rows = Vec::new();
        let mut etcd_topics = Vec::new();
        if let Some(e) = &cfg.etcd {
            let (row, entries) = rt.block_on(etcd_row(cfg, e, &host));
            rows.push(row);
            etcd_topics.extend(entries.into_iter().map(|e| e.topic));
        }
        if let Some(es) = &cfg.es {
            // The topics whose templates the start installs: the transfer's
            // with Kafka; without, those of the collect lists.
            let mut topics: Vec<String> = match &cfg.kafka {
                Some(k) => k.topics.clone(),
                None => cfg
                    .collect
                    .iter()
                    .map(|c| c.topic.clone())
                    .chain(etcd_topics)
                    .chain(cfg.metrics.as_ref().and_then(|m| m.topic.clone()))
                    .collect(),
            };
            topics.sort();
            topics.dedup();
            rows.push(rt.block_on(es_row(es, &topics, timeout)));
        }
        if let Some(k) = kafka {
            let row = k.join().unwrap_or_else(|_| Row {
                destination: "kafka",
                address: String::new(),
                status: Status::Failed,
                detail: "the check panicked".into(),
            });
            rows.insert(0, row);
        }
        Ok(rows)
    })
}

fn row(destination: &'static str, address: String, result: Result<String, String>) -> Row {
    match result {
        Ok(detail) => Row { destination, address, status: Status::Ok, detail },
        Err(detail) => Row { destination, address, status: Status::Failed, detail },
    }
}

/// `n` and the word for one or for several.
fn count(n: usize, one: &str, several: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { several })
}

/// Kafka with the clients' own configurations: metadata with the agent's
/// producer's, then, for the transfer's topics, with its consumer's.
fn kafka_row(k: &KafkaConfig, max_line_bytes: usize, timeout: Duration) -> Row {
    row("kafka", k.brokers.join(","), kafka_check(k, max_line_bytes, timeout))
}

fn kafka_check(k: &KafkaConfig, max_line_bytes: usize, timeout: Duration) -> Result<String, String> {
    let mut pc = crate::kafka::producer(k, max_line_bytes);
    pc.set("statistics.interval.ms", "0"); // nobody reads them here
    let producer: BaseProducer<Seen> = pc.create_with_context(Seen::default()).map_err(|e| format!("producer: {e}"))?;
    let md = fetch(producer.client(), timeout, || producer.poll(Duration::ZERO))?;
    let mut detail = format!(
        "{} answered, {}",
        count(md.brokers().len(), "broker", "brokers"),
        count(md.topics().len(), "topic", "topics")
    );
    if k.topics.is_empty() {
        return Ok(detail);
    }
    let consumer: BaseConsumer<Seen> =
        crate::kafka::consumer(k).create_with_context(Seen::default()).map_err(|e| format!("consumer: {e}"))?;
    let md = fetch(consumer.client(), timeout, || {
        // Not subscribed: a poll only serves the client's errors, which
        // come back as its result.
        if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
            consumer.context().error(e, "");
        }
    })
    .map_err(|e| format!("consumer: {e}"))?;
    let exists = |t: &str| md.topics().iter().any(|m| m.name() == t && m.error().is_none());
    let missing: Vec<&str> = k.topics.iter().map(String::as_str).filter(|t| !exists(t)).collect();
    if !missing.is_empty() {
        return Err(format!("{detail}; the transfer's topic {} does not exist", missing.join(", ")));
    }
    let (noun, verb) = if k.topics.len() == 1 { ("topic", "exists") } else { ("topics", "exist") };
    let _ = write!(detail, "; {noun} {} {verb}", k.topics.join(", "));
    Ok(detail)
}

/// The client-level errors a Kafka client reported during a check.
#[derive(Default)]
struct Seen {
    /// Their reasons, each once, in order.
    reasons: Mutex<Vec<String>>,
    /// Set by an error no wait mends: every broker down, TLS or SASL refused.
    give_up: AtomicBool,
}

impl ClientContext for Seen {
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let kind = crate::kafka::classify_client_error(&error, reason);
        let all_down = error.rdkafka_error_code() == Some(C::AllBrokersDown);
        if all_down || kind != crate::kafka::ClientErrorKind::Other {
            self.give_up.store(true, Ordering::Relaxed);
        }
        let text = if reason.is_empty() { error.to_string() } else { reason.to_string() };
        let mut reasons = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        if !reasons.contains(&text) {
            reasons.push(text);
        }
    }
}

/// Nothing is produced or consumed: the contexts only collect errors.
impl rdkafka::producer::ProducerContext for Seen {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

impl rdkafka::consumer::ConsumerContext for Seen {}

/// Metadata of every topic, asked for in short rounds until `timeout`, so
/// that an error no wait mends (see [`Seen`]) ends the check at once;
/// `serve` hands the client's errors to its context between rounds.
fn fetch(client: &rdkafka::client::Client<Seen>, timeout: Duration, serve: impl Fn()) -> Result<Metadata, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let round = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
        let error = match client.fetch_metadata(None, round) {
            Ok(md) => return Ok(md),
            Err(e) => e,
        };
        serve();
        let seen = client.context();
        if seen.give_up.load(Ordering::Relaxed) || Instant::now() >= deadline {
            let reasons = seen.reasons.lock().unwrap_or_else(|p| p.into_inner());
            return Err(if reasons.is_empty() {
                format!("no metadata within {timeout:?}: {error}")
            } else {
                reasons.join("; ")
            });
        }
    }
}

/// This host's key: how many entries its collect list holds (each checked
/// as the agent checks them), or that there is none. Also returns the
/// entries, whose topics get index templates without Kafka.
async fn etcd_row(cfg: &Config, e: &EtcdConfig, host: &str) -> (Row, Vec<crate::config::CollectEntry>) {
    let address = e.endpoints.join(",");
    let key = e.key_for(host);
    let answer = async {
        let mut client = etcd::connect(e).await?;
        client.range(key.as_bytes(), false, false).await
    };
    let resp = match answer.await {
        Ok(r) => r,
        Err(err) => return (row("etcd", address, Err(err.to_string())), Vec::new()),
    };
    let Some(kv) = resp.kvs.first() else {
        return (row("etcd", address, Ok(format!("{key}: no key"))), Vec::new());
    };
    let invalid =
        |detail: String| Row { destination: "etcd", address: address.clone(), status: Status::Invalid, detail };
    let at = format!("{key} (revision {})", kv.mod_revision);
    let entries = match collect::parse(&kv.value) {
        Ok(entries) => entries,
        Err(err) => return (invalid(format!("{at}: invalid collect list: {err}")), Vec::new()),
    };
    // Discovery refuses an entry outside allowed_paths (etcd cannot widen it).
    for entry in &entries {
        if let Err(m) = cfg.agent.allowed_paths.check_entry(&absolute_text(&entry.path)) {
            return (invalid(format!("{at}: entry {} ({}): {m}", entry.path, entry.topic)), Vec::new());
        }
    }
    let detail = format!("{at}: {}", count(entries.len(), "entry", "entries"));
    (row("etcd", address, Ok(detail)), entries)
}

/// `GET /` on every node, then the index template of each of `topics`.
async fn es_row(es: &EsConfig, topics: &[String], timeout: Duration) -> Row {
    row("elasticsearch", es.nodes.join(","), es_check(es, topics, timeout).await)
}

async fn es_check(es: &EsConfig, topics: &[String], timeout: Duration) -> Result<String, String> {
    let client = EsClient::new(es, Purpose::Write).map_err(|e| e.to_string())?;
    let mut versions: Vec<String> = Vec::new();
    // The client rotates over the nodes: one request each.
    for node in &es.nodes {
        let v = within(timeout, client.version()).await;
        let v = v.ok_or_else(|| format!("{node}: no answer within {timeout:?}"))?.map_err(|e| e.to_string())?;
        if !versions.contains(&v) {
            versions.push(v);
        }
    }
    let mut detail = format!("version {}", versions.join(", "));
    if !es.manage_template {
        detail.push_str("; templates not managed (es.manage_template = false)");
        return Ok(detail);
    }
    if topics.is_empty() {
        detail.push_str("; no topic, no template");
        return Ok(detail);
    }
    let mut names = Vec::new();
    for topic in topics {
        let (name, body) = topic_template(es, topic);
        let put = within(timeout, client.put_template(&name, body)).await;
        match put {
            Some(Ok(())) => names.push(name),
            Some(Err(e)) => return Err(format!("{detail}; template {name} refused: {e}")),
            None => return Err(format!("{detail}; template {name}: no answer within {timeout:?}")),
        }
    }
    let _ = write!(detail, "; template{} {} installed", if names.len() == 1 { "" } else { "s" }, names.join(", "));
    Ok(detail)
}

/// `f`'s output, or `None` after `timeout`.
async fn within<T>(timeout: Duration, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(timeout, f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(destination: &'static str, address: &str, status: Status, detail: &str) -> Row {
        Row { destination, address: address.into(), status, detail: detail.into() }
    }

    #[test]
    fn the_table_aligns_every_column() {
        let rows = [
            r("kafka", "127.0.0.1:9092", Status::Ok, "1 broker answered, 2 topics"),
            r("etcd", "127.0.0.1:2379", Status::Ok, "/logagent/h/collect_config (revision 3): 2 entries"),
            r("elasticsearch", "http://127.0.0.1:9200", Status::Failed, "cannot connect"),
        ];
        let want = "\
DESTINATION    ADDRESS                STATUS  DETAIL
kafka          127.0.0.1:9092         ok      1 broker answered, 2 topics
etcd           127.0.0.1:2379         ok      /logagent/h/collect_config (revision 3): 2 entries
elasticsearch  http://127.0.0.1:9200  FAILED  cannot connect
";
        assert_eq!(render(&rows), want);
    }

    #[test]
    fn table_edge_cases() {
        // (rows, table)
        let table: &[(&[Row], &str)] = &[
            (&[], "DESTINATION  ADDRESS  STATUS  DETAIL\n"),
            (
                &[r("etcd", "", Status::Invalid, "")],
                "DESTINATION  ADDRESS  STATUS   DETAIL\netcd                  INVALID\n",
            ),
            // Text from a server cannot drive the terminal; wide characters count once.
            (
                &[r("etcd", "é:1", Status::Ok, "a\x1b[2Jb\nc")],
                "DESTINATION  ADDRESS  STATUS  DETAIL\netcd         é:1      ok      a\\u{1b}[2Jb\\u{a}c\n",
            ),
        ];
        for (rows, want) in table {
            assert_eq!(render(rows), *want, "{rows:?}");
        }
    }

    #[test]
    fn exit_codes_and_problems() {
        let ok = r("kafka", "k:1", Status::Ok, "fine");
        let failed = r("elasticsearch", "http://e:1", Status::Failed, "cannot connect");
        let invalid = r("etcd", "e:1", Status::Invalid, "invalid collect list");
        // (rows, exit code)
        let table: &[(Option<Vec<Row>>, u8)] = &[
            (None, 0),
            (Some(vec![]), 0),
            (Some(vec![ok.clone()]), 0),
            (Some(vec![ok.clone(), failed.clone()]), 1),
            (Some(vec![failed.clone(), invalid.clone()]), 2),
        ];
        for (rows, code) in table {
            let report = Report { checked: "config ok".into(), rows: rows.clone() };
            assert_eq!(report.exit_code(), *code, "{rows:?}");
        }
        let report = Report { checked: "config ok".into(), rows: Some(vec![ok, failed]) };
        assert_eq!(report.problems(), ["elasticsearch http://e:1: cannot connect"]);
        assert!(report.render().starts_with("config ok\nDESTINATION"), "{}", report.render());
        let skipped = Report { checked: "config ok".into(), rows: None };
        assert_eq!(skipped.render(), "config ok\ndestinations not contacted (--no-connect)\n");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1, "entry", "entries"), "1 entry");
        assert_eq!(count(0, "entry", "entries"), "0 entries");
        assert_eq!(count(3, "topic", "topics"), "3 topics");
    }
}
