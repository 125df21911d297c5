//! Configuration: `config.ini` parsed into validated runtime types.
//!
//! Two layers. The raw layer is the INI file as sections of string keys
//! (rust-ini). [`Config::from_ini_str`] turns it into typed values, checking
//! every key: unknown sections and keys, bad numbers, bad enums and bad topic
//! names are errors that name `section.key` and the value. Defaults live in
//! one place, the `DEFAULT_*` constants and [`Config::default`]'s callers.
//! Section and key names are the seed's where it had them, so an old
//! config.ini keeps working.

use crate::agent::split::LongLines;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CHAN_MAX_SIZE: usize = 100_000;
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
pub const DEFAULT_COLLECT_LOG_KEY: &str = "/logagent/%s/collect_config";
pub const DEFAULT_ETCD_TIMEOUT_SECS: u64 = 5;
/// Largest `max_line_bytes`, in `[agent]` and in collect entries.
pub const MAX_LINE_BYTES_LIMIT: usize = 1 << 30;

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `section.key`, `section`, or the file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

/// Where a reader starts in a file that has no checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadFrom {
    Beginning,
    End,
}

/// One collect entry: files matching `path` (a glob) go to `topic`.
///
/// An entry is known by its (`path`, `topic`) pair ([`CollectEntry::key`]);
/// two entries with the same key and different options are the same entry,
/// changed. The static `[collect]` list gives default options; the etcd JSON
/// ([`crate::control::collect`]) may set them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectEntry {
    /// A glob; never empty.
    pub path: String,
    /// A valid Kafka topic name.
    pub topic: String,
    pub options: EntryOptions,
}

impl CollectEntry {
    /// An entry with default options.
    pub fn new(path: impl Into<String>, topic: impl Into<String>) -> Self {
        CollectEntry { path: path.into(), topic: topic.into(), options: EntryOptions::default() }
    }

    /// What identifies the entry across config changes.
    pub fn key(&self) -> (&str, &str) {
        (&self.path, &self.topic)
    }
}

/// Per-entry settings; `None` means the `[agent]` value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryOptions {
    /// Where files present when the entry is first seen start.
    pub read_from: Option<ReadFrom>,
    /// Globs of files the entry skips: a pattern with a `/` is matched
    /// against the whole (absolute) path, one without against the file name.
    /// Each is a valid glob.
    pub exclude: Vec<String>,
    /// At least 1, at most [`MAX_LINE_BYTES_LIMIT`].
    pub max_line_bytes: Option<usize>,
    pub long_lines: Option<LongLines>,
    /// Records carry the header `json: 1`: the transfer merges the fields of
    /// JSON-object lines into the document (as `[es] parse_json` does per topic).
    pub parse_json: bool,
}

/// `[kafka]` and its pass-through subsections.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaConfig {
    /// Brokers, `host:port`, at least one.
    pub brokers: Vec<String>,
    /// Topics the transfer consumes.
    pub topics: Vec<String>,
    pub group_id: String,
    /// librdkafka producer properties, as written.
    pub producer: Vec<(String, String)>,
    /// librdkafka consumer properties, as written.
    pub consumer: Vec<(String, String)>,
}

/// `[etcd]`.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdConfig {
    /// `host:port` or `http(s)://host:port`, at least one.
    pub endpoints: Vec<String>,
    /// Dial timeout, and the bound on each request.
    pub timeout_secs: u64,
    /// Key of this host's collect list; `%s` (exactly once) is the host's IP.
    pub collect_log_key: String,
    /// Both or neither (checked).
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS: the CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and its key: both or neither (checked).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl EtcdConfig {
    /// Default settings for `endpoints` (the CLI's `--etcd` without a config file).
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            timeout_secs: DEFAULT_ETCD_TIMEOUT_SECS,
            collect_log_key: DEFAULT_COLLECT_LOG_KEY.to_string(),
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    /// The collect list key of `host`.
    pub fn key_for(&self, host: &str) -> String {
        self.collect_log_key.replacen("%s", host, 1)
    }

    /// The host a key belongs to, if the key has the shape of
    /// `collect_log_key` (the host part is not empty and has no `/`).
    pub fn host_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let (prefix, suffix) = self.collect_log_key.split_once("%s")?;
        let host = key.strip_prefix(prefix)?.strip_suffix(suffix)?;
        (!host.is_empty() && !host.contains('/')).then_some(host)
    }

    /// What every host's key starts with.
    pub fn key_prefix(&self) -> &str {
        self.collect_log_key.split_once("%s").map_or(&self.collect_log_key, |(p, _)| p)
    }
}

/// `[agent]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// The host name records carry; `None`: detect the outbound IP.
    pub host: Option<String>,
    pub read_from: ReadFrom,
    /// At least 1, at most 1 GiB.
    pub max_line_bytes: usize,
    pub long_lines: LongLines,
    /// Ship an unfinished last line after this long without new data; 0: never.
    pub partial_line_flush_ms: u64,
    /// How often globs are expanded for new files.
    pub scan_interval_ms: u64,
    /// How long a renamed-away file is still watched for late writes.
    pub rotate_wait_ms: u64,
    /// Longest sleep of an idle reader between checks.
    pub poll_max_ms: u64,
    pub checkpoint_interval_ms: u64,
    /// How long shutdown may wait for Kafka to acknowledge.
    pub shutdown_timeout_ms: u64,
    /// Bytes one read asks for; also the chunk size of the line buffer.
    pub read_chunk_bytes: usize,
}

/// Where documents Elasticsearch refuses for good go.
#[derive(Clone, Debug, PartialEq)]
pub enum DeadLetter {
    /// A Kafka topic per source topic: `<topic>.dlq`, the error in a header.
    Kafka,
    /// One NDJSON file: `{"topic":…,"error":…,"doc":…}` per line.
    File(PathBuf),
}

/// `[es]`: the transfer's Elasticsearch side.
#[derive(Clone, Debug, PartialEq)]
pub struct EsConfig {
    /// Node base URLs (`http://host:9200`), at least one; requests rotate over them.
    pub nodes: Vec<String>,
    /// `_bulk` requests in flight at once; at least 1.
    pub workers: usize,
    /// Bound on records held in memory between Kafka and Elasticsearch.
    pub chan_max_size: usize,
    pub index: crate::elastic::index_name::IndexPattern,
    pub bulk_max_bytes: usize,
    pub bulk_max_docs: usize,
    pub bulk_max_wait_ms: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub api_key: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub dead_letter: DeadLetter,
    /// Topics whose JSON-object lines are merged into the document; `*`: all.
    pub parse_json: Vec<String>,
    /// Longest pause between retries while Elasticsearch refuses.
    pub retry_max_backoff_ms: u64,
    /// Install an index template mapping our fields for each topic's indices.
    pub manage_template: bool,
}

/// `[index]`: the embedded index of `logcollect run` (used when `[es]` has
/// no address).
#[derive(Clone, Debug, PartialEq)]
pub struct IndexSection {
    /// Documents older than this many days are deleted; 0: kept forever.
    pub retention_days: u64,
    /// The oldest documents are deleted while the index is larger; 0: no limit.
    pub retention_bytes: u64,
    /// How often retention is checked.
    pub retention_check_ms: u64,
    /// How often new lines are committed (and become searchable).
    pub commit_interval_ms: u64,
    /// Indexing threads.
    pub writer_threads: usize,
    /// Memory each indexing thread fills before it writes a segment.
    pub writer_memory_bytes: usize,
}

/// `[http]`: the search page and API of `logcollect run`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSection {
    /// Where to listen; `None`: `listen = off`.
    pub listen: Option<std::net::SocketAddr>,
}

pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

/// `[log]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `logcollect=debug`, …).
    pub level: String,
}

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `None`: no `[kafka] address` (single-host mode).
    pub kafka: Option<KafkaConfig>,
    /// Bound on lines buffered between stages.
    pub chan_max_size: usize,
    pub etcd: Option<EtcdConfig>,
    /// `None`: no `[es] address`.
    pub es: Option<EsConfig>,
    pub agent: AgentConfig,
    /// The static collect list: used when etcd is not configured, and when
    /// etcd is unreachable at start with no cached list.
    pub collect: Vec<CollectEntry>,
    pub log: LogConfig,
    pub index: IndexSection,
    pub http: HttpSection,
    /// `[metrics]`: host metrics; `None` when not enabled.
    pub metrics: Option<crate::observe::host_metrics::HostMetricsConfig>,
}

/// Known keys of the plain sections; `kafka.producer`, `kafka.consumer` and
/// `collect` take any key.
const KNOWN: &[(&str, &[&str])] = &[
    ("kafka", &["address", "chan_max_size", "topic", "group_id"]),
    ("etcd", &["address", "timeout", "collect_log_key", "username", "password", "ca_file", "cert_file", "key_file"]),
    (
        "agent",
        &[
            "data_dir",
            "host",
            "read_from",
            "max_line_bytes",
            "long_lines",
            "partial_line_flush_ms",
            "scan_interval_ms",
            "rotate_wait_ms",
            "poll_max_ms",
            "checkpoint_interval_ms",
            "shutdown_timeout_ms",
            "read_chunk_bytes",
        ],
    ),
    ("log", &["level"]),
    (
        "es",
        &[
            "address",
            "workers",
            "chan_max_size",
            "index",
            "bulk_max_bytes",
            "bulk_max_docs",
            "bulk_max_wait_ms",
            "username",
            "password",
            "api_key",
            "ca_file",
            "dead_letter",
            "dead_letter_path",
            "parse_json",
            "retry_max_backoff_ms",
            "manage_template",
        ],
    ),
    ("http", &["listen"]),
    ("metrics", &["interval_ms", "topic", "enabled"]),
    (
        "index",
        &[
            "retention_days",
            "retention_bytes",
            "retention_check_ms",
            "commit_interval_ms",
            "writer_threads",
            "writer_memory_bytes",
        ],
    ),
];
const OPEN_SECTIONS: &[&str] = &["kafka.producer", "kafka.consumer", "collect"];

/// The raw layer: section -> key -> value, as written.
type Raw = BTreeMap<String, BTreeMap<String, String>>;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), e.to_string()))?;
        Config::from_ini_str(&text).map_err(|e| {
            if e.key.is_empty() {
                err(path.display().to_string(), e.message)
            } else {
                e
            }
        })
    }

    /// Parses and validates INI text.
    pub fn from_ini_str(text: &str) -> Result<Config, ConfigError> {
        let raw = parse_raw(text)?;
        Config::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Config, ConfigError> {
        for (section, keys) in &raw {
            if OPEN_SECTIONS.contains(&section.as_str()) {
                continue;
            }
            let known = KNOWN.iter().find(|(s, _)| s == section).map(|(_, k)| *k).ok_or_else(|| {
                let all: Vec<&str> = KNOWN.iter().map(|(s, _)| *s).chain(OPEN_SECTIONS.iter().copied()).collect();
                err(format!("[{section}]"), format!("unknown section (known: {})", all.join(", ")))
            })?;
            for key in keys.keys() {
                if !known.contains(&key.as_str()) {
                    return Err(err(
                        format!("{section}.{key}"),
                        format!("unknown key (known in [{section}]: {})", known.join(", ")),
                    ));
                }
            }
        }
        let s = Sections { raw: &raw };
        let brokers = s.list("kafka", "address");
        let chan_max_size = s.num("kafka", "chan_max_size", DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?;
        let topics = s.list("kafka", "topic");
        for t in &topics {
            check_topic(t).map_err(|m| err("kafka.topic", m))?;
        }
        let kafka = if brokers.is_empty() {
            None
        } else {
            Some(KafkaConfig {
                brokers,
                topics,
                group_id: s.str("kafka", "group_id").unwrap_or("logtransfer").to_string(),
                producer: s.pairs("kafka.producer"),
                consumer: s.pairs("kafka.consumer"),
            })
        };

        let endpoints = s.list("etcd", "address");
        let etcd = if endpoints.is_empty() {
            // Settings for an etcd that is not there are a mistake (a
            // commented-out address), not something to ignore.
            if let Some(k) = raw.get("etcd").into_iter().flatten().find(|(_, v)| !v.trim().is_empty()).map(|(k, _)| k) {
                return Err(err(
                    format!("etcd.{k}"),
                    "set, but [etcd] address is not: set the address too, or neither",
                ));
            }
            None
        } else {
            let key = s.str("etcd", "collect_log_key").unwrap_or(DEFAULT_COLLECT_LOG_KEY).to_string();
            if key.matches("%s").count() != 1 {
                return Err(err("etcd.collect_log_key", format!("{key:?} must contain %s exactly once (the host IP)")));
            }
            let (username, password) = (s.opt("etcd", "username"), s.opt("etcd", "password"));
            if username.is_some() != password.is_some() {
                return Err(err("etcd.username", "username and password go together"));
            }
            let (cert_file, key_file) = (s.opt("etcd", "cert_file"), s.opt("etcd", "key_file"));
            if cert_file.is_some() != key_file.is_some() {
                return Err(err("etcd.cert_file", "cert_file and key_file go together (the client certificate)"));
            }
            Some(EtcdConfig {
                endpoints,
                timeout_secs: s.num("etcd", "timeout", DEFAULT_ETCD_TIMEOUT_SECS, 1, 3600)?,
                collect_log_key: key,
                username,
                password,
                ca_file: s.opt("etcd", "ca_file").map(PathBuf::from),
                cert_file: cert_file.map(PathBuf::from),
                key_file: key_file.map(PathBuf::from),
            })
        };

        let read_from = match s.str("agent", "read_from").unwrap_or("end") {
            "end" => ReadFrom::End,
            "beginning" => ReadFrom::Beginning,
            other => return Err(err("agent.read_from", format!("{other:?} is not one of: end, beginning"))),
        };
        let long_lines = match s.str("agent", "long_lines").unwrap_or("split") {
            "split" => LongLines::Split,
            "truncate" => LongLines::Truncate,
            other => return Err(err("agent.long_lines", format!("{other:?} is not one of: split, truncate"))),
        };
        let agent = AgentConfig {
            data_dir: PathBuf::from(s.str("agent", "data_dir").unwrap_or("./data")),
            host: s.opt("agent", "host"),
            read_from,
            max_line_bytes: s.num("agent", "max_line_bytes", DEFAULT_MAX_LINE_BYTES, 1, MAX_LINE_BYTES_LIMIT)?,
            long_lines,
            partial_line_flush_ms: s.num("agent", "partial_line_flush_ms", 5_000, 0, u64::MAX >> 2)?,
            scan_interval_ms: s.num("agent", "scan_interval_ms", 500, 10, 3_600_000)?,
            rotate_wait_ms: s.num("agent", "rotate_wait_ms", 5_000, 0, 3_600_000)?,
            poll_max_ms: s.num("agent", "poll_max_ms", 250, 1, 60_000)?,
            checkpoint_interval_ms: s.num("agent", "checkpoint_interval_ms", 1_000, 10, 3_600_000)?,
            shutdown_timeout_ms: s.num("agent", "shutdown_timeout_ms", 5_000, 0, 3_600_000)?,
            read_chunk_bytes: s.num("agent", "read_chunk_bytes", 128 << 10, 16 << 10, 64 << 20)?,
        };

        let mut collect = Vec::new();
        for (topic, paths) in raw.get("collect").into_iter().flatten() {
            check_topic(topic).map_err(|m| err(format!("collect.{topic}"), m))?;
            for path in split_list(paths) {
                if let Err(e) = glob::Pattern::new(&path) {
                    return Err(err(format!("collect.{topic}"), format!("bad glob {path:?}: {e}")));
                }
                collect.push(CollectEntry::new(path, topic.clone()));
            }
        }

        let es_nodes = s.list("es", "address");
        let es = if es_nodes.is_empty() {
            None
        } else {
            let nodes = es_nodes
                .into_iter()
                .map(|n| if n.contains("://") { n } else { format!("http://{n}") })
                .map(|n| n.trim_end_matches('/').to_string())
                .collect();
            let index = crate::elastic::index_name::IndexPattern::parse(s.str("es", "index").unwrap_or("{topic}"))
                .map_err(|e| err("es.index", e.to_string()))?;
            // Without Kafka (single host writing straight to Elasticsearch) a file.
            let default_dead_letter = if kafka.is_some() { "kafka" } else { "file" };
            let dead_letter = match s.str("es", "dead_letter").unwrap_or(default_dead_letter) {
                "kafka" if kafka.is_none() => {
                    return Err(err("es.dead_letter", "kafka needs a [kafka] address; use dead_letter = file"))
                }
                "kafka" => DeadLetter::Kafka,
                "file" => DeadLetter::File(
                    s.str("es", "dead_letter_path")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| agent.data_dir.join("dead_letter.ndjson")),
                ),
                other => return Err(err("es.dead_letter", format!("{other:?} is not one of: kafka, file"))),
            };
            let (username, password) = (s.opt("es", "username"), s.opt("es", "password"));
            if username.is_some() != password.is_some() {
                return Err(err("es.username", "username and password go together"));
            }
            Some(EsConfig {
                nodes,
                workers: s.num("es", "workers", 4, 1, 256)?,
                chan_max_size: s.num("es", "chan_max_size", DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?,
                index,
                bulk_max_bytes: s.num("es", "bulk_max_bytes", 5 << 20, 1 << 10, 100 << 20)?,
                bulk_max_docs: s.num("es", "bulk_max_docs", 5000, 1, 1_000_000)?,
                bulk_max_wait_ms: s.num("es", "bulk_max_wait_ms", 200, 0, 3_600_000)?,
                username,
                password,
                api_key: s.opt("es", "api_key"),
                ca_file: s.opt("es", "ca_file").map(PathBuf::from),
                dead_letter,
                parse_json: s.list("es", "parse_json"),
                retry_max_backoff_ms: s.num("es", "retry_max_backoff_ms", 30_000, 10, 3_600_000)?,
                manage_template: s.flag("es", "manage_template", true)?,
            })
        };

        let log = LogConfig { level: s.str("log", "level").unwrap_or("info").to_string() };
        let index = IndexSection {
            retention_days: s.num("index", "retention_days", 0, 0, 365_000)?,
            retention_bytes: s.bytes("index", "retention_bytes", 0)?,
            retention_check_ms: s.num("index", "retention_check_ms", 60_000, 100, 86_400_000)?,
            commit_interval_ms: s.num("index", "commit_interval_ms", 1_000, 10, 3_600_000)?,
            writer_threads: s.num("index", "writer_threads", 1, 1, 64)?,
            writer_memory_bytes: s.bytes("index", "writer_memory_bytes", 64 << 20)?.try_into().unwrap_or(usize::MAX),
        };
        if index.writer_memory_bytes < 16 << 20 {
            return Err(err(
                "index.writer_memory_bytes",
                format!("{} is below the 16MiB tantivy needs", index.writer_memory_bytes),
            ));
        }
        let listen = match s.str("http", "listen").unwrap_or(DEFAULT_HTTP_LISTEN) {
            "off" => None,
            v => Some(
                v.parse()
                    .map_err(|_| err("http.listen", format!("{v:?} is not an address like 127.0.0.1:8080 (or off)")))?,
            ),
        };
        let http = HttpSection { listen };
        // A [metrics] section with settings means host metrics are wanted.
        let has_metrics = raw.get("metrics").is_some_and(|m| m.values().any(|v| !v.trim().is_empty()));
        let metrics = if s.flag("metrics", "enabled", has_metrics)? {
            let topic = s.opt("metrics", "topic");
            if let Some(t) = &topic {
                check_topic(t).map_err(|m| err("metrics.topic", m))?;
            }
            Some(crate::observe::host_metrics::HostMetricsConfig {
                interval: Duration::from_millis(s.num("metrics", "interval_ms", 10_000, 100, 86_400_000)?),
                topic,
            })
        } else {
            None
        };
        Ok(Config { kafka, chan_max_size, etcd, es, agent, collect, log, index, http, metrics })
    }
}

/// Typed access to the raw sections, with errors naming the key.
struct Sections<'a> {
    raw: &'a Raw,
}

impl<'a> Sections<'a> {
    /// A value, `None` when missing or empty (an empty value means default).
    fn str(&self, section: &str, key: &str) -> Option<&'a str> {
        self.raw.get(section)?.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn opt(&self, section: &str, key: &str) -> Option<String> {
        self.str(section, key).map(str::to_string)
    }

    fn list(&self, section: &str, key: &str) -> Vec<String> {
        self.str(section, key).map(split_list).unwrap_or_default()
    }

    fn pairs(&self, section: &str) -> Vec<(String, String)> {
        self.raw
            .get(section)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect())
            .unwrap_or_default()
    }

    /// `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    fn flag(&self, section: &str, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.str(section, key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "on" | "1") => Ok(true),
            Some("false" | "no" | "off" | "0") => Ok(false),
            Some(other) => Err(err(format!("{section}.{key}"), format!("{other:?} is not one of: true, false"))),
        }
    }

    fn num<T>(&self, section: &str, key: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(v) = self.str(section, key) else {
            return Ok(default);
        };
        let n: T = v
            .replace('_', "")
            .parse()
            .map_err(|_| err(format!("{section}.{key}"), format!("{v:?} is not a whole number")))?;
        if n < min || n > max {
            return Err(err(format!("{section}.{key}"), format!("{n} is out of range {min}..={max}")));
        }
        Ok(n)
    }
}

impl Sections<'_> {
    /// A size in bytes: a whole number, optionally with a unit (`KB`, `MB`,
    /// `GB`, `TB` are powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` of 1024).
    fn bytes(&self, section: &str, key: &str, default: u64) -> Result<u64, ConfigError> {
        match self.str(section, key) {
            None => Ok(default),
            Some(v) => parse_bytes(v).map_err(|m| err(format!("{section}.{key}"), m)),
        }
    }
}

/// `10GiB` -> 10737418240; see `Sections::bytes`.
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let t = v.trim().replace('_', "");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 =
        n.parse().map_err(|_| format!("{v:?} is not a size (a whole number, optionally with KB, MiB, GiB, …)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => return Err(format!("{v:?}: unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{v:?} is too large"))
}

/// `a;b; c` -> [a, b, c] (the seed's separator; commas are accepted too).
pub fn split_list(v: &str) -> Vec<String> {
    v.split([';', ',']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Kafka's rule for topic names.
pub fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 249 {
        return Err(format!("topic {t:?} must be 1 to 249 characters"));
    }
    if t == "." || t == ".." {
        return Err(format!("topic {t:?} is not allowed"));
    }
    if let Some(c) = t.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic {t:?} has {c:?}; topics use only a-z A-Z 0-9 . _ -"));
    }
    Ok(())
}

/// INI text to raw sections. Values may carry `;` or `#` comments after
/// white space; keys outside any section are an error.
fn parse_raw(text: &str) -> Result<Raw, ConfigError> {
    let opts = ini::ParseOption { enabled_quote: true, enabled_escape: false, ..Default::default() };
    let ini = ini::Ini::load_from_str_opt(text, opts).map_err(|e| err("", e.to_string()))?;
    let mut raw = Raw::new();
    for (section, props) in ini.iter() {
        let Some(section) = section else {
            if let Some((k, _)) = props.iter().next() {
                return Err(err(k, "key outside any [section]"));
            }
            continue;
        };
        let sec = raw.entry(section.trim().to_string()).or_default();
        for (k, v) in props.iter() {
            // `key =   ; comment`: the parser keeps a comment that follows an
            // empty value; it is still a comment.
            let v = if v.starts_with([';', '#']) { "" } else { v };
            if sec.insert(k.trim().to_string(), v.to_string()).is_some() {
                return Err(err(format!("{section}.{k}"), "given twice"));
            }
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
[kafka]
address = 127.0.0.1:9092        ; brokers, ';' separated (the seed's key)
chan_max_size = 100000          ; channel capacity in lines (the seed's key)
[kafka.producer]                ; any librdkafka producer property, passed as-is
compression.type = lz4
[kafka.consumer]                ; any librdkafka consumer property (used by the transfer)
[etcd]
address = 127.0.0.1:2379        ; used once the etcd issue lands
timeout = 5
collect_log_key = /logagent/%s/collect_config
[agent]
data_dir = ./data
host =                          ; empty: detect the outbound IP as the seed does
read_from = end                 ; or beginning
max_line_bytes = 1048576
[collect]                       ; static collect list, used when no etcd is configured
web_log = ./logs/*.log          ; topic = path or glob, several separated by ';'
"#;

    #[test]
    fn the_seed_layout_parses() {
        let c = Config::from_ini_str(SEED).unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.brokers, vec!["127.0.0.1:9092"]);
        assert_eq!(k.producer, vec![("compression.type".to_string(), "lz4".to_string())]);
        assert!(k.consumer.is_empty());
        assert_eq!(c.chan_max_size, 100_000);
        assert_eq!(c.agent.host, None);
        assert_eq!(c.agent.read_from, ReadFrom::End);
        assert_eq!(c.agent.max_line_bytes, 1 << 20);
        assert_eq!(c.collect, vec![CollectEntry::new("./logs/*.log", "web_log")]);
        let e = c.etcd.unwrap();
        assert_eq!(e.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!(e.timeout_secs, 5);
    }

    #[test]
    fn empty_config_means_single_host_defaults() {
        let c = Config::from_ini_str("").unwrap();
        assert!(c.kafka.is_none() && c.etcd.is_none() && c.collect.is_empty());
        assert_eq!(c.agent.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn es_section() {
        let c = Config::from_ini_str(
            "[kafka]\naddress = k:1\n[es]\naddress = 127.0.0.1:9200; https://b:9200/\nindex = {topic}-%Y.%m.%d\n",
        )
        .unwrap();
        let es = c.es.unwrap();
        assert_eq!(es.nodes, vec!["http://127.0.0.1:9200", "https://b:9200"]);
        assert_eq!((es.workers, es.bulk_max_docs, es.bulk_max_bytes), (4, 5000, 5 << 20));
        assert_eq!(es.dead_letter, DeadLetter::Kafka);
        // Without Kafka the dead letter is a file under data_dir.
        let es = Config::from_ini_str("[es]\naddress = e:9200\n").unwrap().es.unwrap();
        assert_eq!(es.dead_letter, DeadLetter::File(PathBuf::from("./data/dead_letter.ndjson")));
        let e = Config::from_ini_str("[es]\naddress = e:9200\ndead_letter = kafka\n").unwrap_err();
        assert_eq!(e.key, "es.dead_letter");
        assert!(es.manage_template);
        let e = Config::from_ini_str("[es]\naddress = x\nmanage_template = maybe\n").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.message.as_str()),
            ("es.manage_template", "\"maybe\" is not one of: true, false")
        );
        let e = Config::from_ini_str("[es]\naddress = x\nindex = Bad*Name\n").unwrap_err();
        assert_eq!(e.key, "es.index");
        let e = Config::from_ini_str("[es]\naddress = x\nusername = u\n").unwrap_err();
        assert_eq!(e.key, "es.username");
    }

    #[test]
    fn lists_split_on_semicolons() {
        let c = Config::from_ini_str("[kafka]\naddress = a:1;b:2\n[collect]\nt = /x/*.log; /y.log\n").unwrap();
        assert_eq!(c.kafka.unwrap().brokers, vec!["a:1", "b:2"]);
        assert_eq!(c.collect.len(), 2);
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        // (config, key named in the error, words the message must contain)
        let table: &[(&str, &str, &str)] = &[
            ("[kafka]\nadress = x\n", "kafka.adress", "unknown key"),
            ("[kafak]\n", "[kafak]", "unknown section"),
            ("[agent]\nmax_line_bytes = lots\n", "agent.max_line_bytes", "\"lots\""),
            ("[agent]\nmax_line_bytes = 0\n", "agent.max_line_bytes", "out of range"),
            ("[agent]\nread_from = middle\n", "agent.read_from", "middle"),
            ("[agent]\nlong_lines = fold\n", "agent.long_lines", "fold"),
            ("[collect]\nbad/topic = /x.log\n", "collect.bad/topic", "a-z"),
            ("[collect]\nt = /x/[.log\n", "collect.t", "bad glob"),
            ("[etcd]\naddress = e:1\ncollect_log_key = /k\n", "etcd.collect_log_key", "%s"),
            ("[etcd]\naddress = e:1\ncollect_log_key = /%s/%s\n", "etcd.collect_log_key", "exactly once"),
            ("[etcd]\naddress = e:1\nusername = u\n", "etcd.username", "together"),
            ("[etcd]\naddress = e:1\nkey_file = k.pem\n", "etcd.cert_file", "together"),
            ("[etcd]\naddress = e:1\ntimeout = 0\n", "etcd.timeout", "out of range"),
            ("[etcd]\ntimeout = 3\n", "etcd.timeout", "address is not"),
            ("[kafka]\naddress = a\naddress = b\n", "kafka.address", "twice"),
            ("stray = 1\n", "stray", "outside"),
        ];
        for &(text, key, words) in table {
            let e = Config::from_ini_str(text).unwrap_err();
            assert_eq!(e.key, key, "{text:?}: {e}");
            assert!(e.to_string().contains(words), "{text:?}: {e}");
        }
    }

    #[test]
    fn etcd_keys_per_host() {
        let c = Config::from_ini_str("[etcd]\naddress = a:1; http://b:2\n").unwrap();
        let e = c.etcd.unwrap();
        assert_eq!(e.endpoints, vec!["a:1", "http://b:2"]);
        assert_eq!(e.key_for("10.0.0.5"), "/logagent/10.0.0.5/collect_config");
        assert_eq!(e.key_prefix(), "/logagent/");
        // (key, host it belongs to)
        let table: &[(&str, Option<&str>)] = &[
            ("/logagent/10.0.0.5/collect_config", Some("10.0.0.5")),
            ("/logagent/web-1/collect_config", Some("web-1")),
            ("/logagent//collect_config", None),
            ("/logagent/a/b/collect_config", None),
            ("/logagent/10.0.0.5/other", None),
            ("/other/10.0.0.5/collect_config", None),
        ];
        for &(key, host) in table {
            assert_eq!(e.host_of(key), host, "{key}");
        }
        let tail = EtcdConfig { collect_log_key: "/hosts/%s".into(), ..EtcdConfig::new(vec![]) };
        assert_eq!(tail.host_of("/hosts/h1"), Some("h1"));
        assert_eq!(tail.key_prefix(), "/hosts/");
    }

    #[test]
    fn metrics_section_enables_host_metrics() {
        // (ini, enabled, interval ms, topic)
        let cases: &[(&str, bool, u64, Option<&str>)] = &[
            ("", false, 0, None),
            ("[metrics]\n", false, 0, None),
            ("[metrics]\nenabled = true\n", true, 10_000, None),
            ("[metrics]\ninterval_ms = 500\ntopic = hostm\n", true, 500, Some("hostm")),
            ("[metrics]\nenabled = false\ntopic = hostm\n", false, 0, None),
        ];
        for &(ini, enabled, ms, topic) in cases {
            let m = Config::from_ini_str(ini).unwrap().metrics;
            assert_eq!(m.is_some(), enabled, "{ini}");
            if let Some(m) = m {
                assert_eq!((m.interval.as_millis() as u64, m.topic.as_deref()), (ms, topic), "{ini}");
            }
        }
        for (ini, key) in [
            ("[metrics]\ninterval_ms = 5\n", "metrics.interval_ms"),
            ("[metrics]\ntopic = a b\n", "metrics.topic"),
            ("[metrics]\nenabled = maybe\n", "metrics.enabled"),
        ] {
            let e = Config::from_ini_str(ini).unwrap_err();
            assert_eq!(e.key, key, "{ini}: {e}");
        }
    }

    #[test]
    fn index_and_http_sections() {
        let c = Config::from_ini_str("").unwrap();
        assert_eq!(c.index.retention_days, 0);
        assert_eq!(c.index.commit_interval_ms, 1_000);
        assert_eq!(c.http.listen, Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
        let c = Config::from_ini_str("[index]\nretention_days = 7\nretention_bytes = 10GiB\n[http]\nlisten = off\n")
            .unwrap();
        assert_eq!((c.index.retention_days, c.index.retention_bytes), (7, 10 << 30));
        assert_eq!(c.http.listen, None);
        // (config, key named in the error, words the message must contain)
        let table: &[(&str, &str, &str)] = &[
            ("[index]\nretention_bytes = 5 parsecs\n", "index.retention_bytes", "unknown unit"),
            ("[index]\nretention_days = -1\n", "index.retention_days", "whole number"),
            ("[index]\nwriter_memory_bytes = 1MiB\n", "index.writer_memory_bytes", "16MiB"),
            ("[index]\nretention = 1\n", "index.retention", "unknown key"),
            ("[http]\nlisten = localhost\n", "http.listen", "127.0.0.1:8080"),
        ];
        for &(text, key, words) in table {
            let e = Config::from_ini_str(text).unwrap_err();
            assert_eq!(e.key, key, "{text:?}: {e}");
            assert!(e.to_string().contains(words), "{text:?}: {e}");
        }
        for (v, n) in
            [("0", 0), ("512", 512), ("1_000", 1000), ("2KB", 2000), ("3 MiB", 3 << 20), ("1TB", 1_000_000_000_000)]
        {
            assert_eq!(parse_bytes(v), Ok(n), "{v}");
        }
        for bad in ["", "MiB", "1.5GiB", "99999999999999999999", "20000000TiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shipped_config_is_a_single_host_setup() {
        let c = Config::from_ini_str(include_str!("../../config.ini")).unwrap();
        assert!(c.kafka.is_none() && c.es.is_none() && c.etcd.is_none(), "no servers needed out of the box");
        assert_eq!(c.http.listen, Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
        assert!(c.collect.iter().any(|e| e.path == "./logs/*.log"));
        assert!(c.index.retention_days > 0 && c.index.retention_bytes > 0);
    }

    #[test]
    fn topic_names() {
        for ok in ["web_log", "a.b-c", "X1"] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
    }
}
