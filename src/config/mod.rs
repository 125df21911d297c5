//! Configuration: `config.ini` parsed into validated runtime types.
//!
//! Two layers. The raw layer is the INI file as sections of string keys
//! (rust-ini). [`Config::from_ini_str`] turns it into typed values, checking
//! every key: unknown sections and keys, bad numbers, bad enums and bad topic
//! names are errors that name `section.key` and the value. Defaults live in
//! one place: the `DEFAULT_*` constants, and `Default` of the sections other
//! modules build settings from without a file ([`AgentConfig`],
//! [`IndexSection`]); the section functions read them too. Section and key names are the seed's where it had them, so an old
//! config.ini keeps working.
//!
//! - `raw`: INI text to sections; typed access to a key; the unknown-key
//!   check, against the keys the section functions asked for.
//! - `expand`: `${NAME}` and `${NAME:-default}` in values, from the
//!   environment, before any value is read.
//! - `sections`: one function per section, each naming its keys once.
//! - `values`: sizes, lists, topic names, and the enums written as words.
//! - [`index_pattern`]: `[es] index`, validated with the rest of the file.
//!
//! This module is a leaf: it imports nothing else of the crate. The stages
//! import their settings types from here.

pub mod allowed;
mod expand;
pub mod index_pattern;
mod journald;
pub mod multiline;
mod raw;
mod secret;
mod sections;
mod values;

pub use allowed::AllowedPaths;
pub use index_pattern::{IndexPattern, PatternError};
pub use journald::{JournalEnabled, JournaldConfig, DEFAULT_JOURNAL_TOPIC};
pub use secret::Secret;
pub use values::{check_topic, parse_bytes, split_list, LongLines, NotOneOf, ReadFrom, Words};

use raw::{parse_raw, Raw, Sections};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[kafka] chan_max_size` and `[es] chan_max_size` when not set: lines in flight.
pub const DEFAULT_CHAN_MAX_SIZE: usize = 100_000;
/// `max_line_bytes` when not set: 960 KiB, so a part of a long line with
/// its key and headers fits under Kafka's default `message.max.bytes`
/// (1,048,588) even when lz4 cannot shrink it (review finding 9).
pub const DEFAULT_MAX_LINE_BYTES: usize = 960 << 10;
/// `[etcd] collect_log_key` when not set; `%s` is the host.
pub const DEFAULT_COLLECT_LOG_KEY: &str = "/logagent/%s/collect_config";
/// `[etcd] timeout` when not set.
pub const DEFAULT_ETCD_TIMEOUT_SECS: u64 = 5;
/// Largest `max_line_bytes`, in `[agent]` and in collect entries.
pub const MAX_LINE_BYTES_LIMIT: usize = 1 << 30;

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `section.key`, `section`, or the file.
    pub key: String,
    /// What is wrong with it.
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

/// A collect entry's glob made absolute against the working directory, as
/// discovery expands it (`./logs/*.log` from `/srv` is `/srv/./logs/*.log`
/// without the `./`), for [`AllowedPaths::check_entry`].
pub fn absolute_text(glob: &str) -> String {
    let g = glob.strip_prefix("./").unwrap_or(glob);
    match std::path::absolute(g) {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(_) => glob.to_string(),
    }
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
    /// Per-entry options; unset ones take `[agent]`'s.
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
    /// Compiled once, by the collect list's parser; they compare, hash and
    /// sort as the text they were written as.
    pub exclude: Vec<glob::Pattern>,
    /// At least 1, at most [`MAX_LINE_BYTES_LIMIT`].
    pub max_line_bytes: Option<usize>,
    /// Overrides `[agent] long_lines`.
    pub long_lines: Option<LongLines>,
    /// Records carry the header `json: 1`: the transfer merges the fields of
    /// JSON-object lines into the document (as `[es] parse_json` does per topic).
    pub parse_json: bool,
    /// Overrides `[agent] follow_symlinks` (targets stay bound by
    /// `allowed_paths`, which no entry can change).
    pub follow_symlinks: Option<bool>,
    /// Lines grouped into events (`multiline` and its `multiline_*` fields);
    /// `None`: one line, one record.
    pub multiline: Option<multiline::Multiline>,
}

/// `[kafka]` and its pass-through subsections. `Debug` redacts passwords,
/// also those written as raw properties (see [`redact_property`]).
#[derive(Clone, PartialEq)]
pub struct KafkaConfig {
    /// Brokers, `host:port`, at least one.
    pub brokers: Vec<String>,
    /// Topics the transfer consumes.
    pub topics: Vec<String>,
    /// The transfer's consumer group.
    pub group_id: String,
    /// librdkafka producer properties, as written.
    pub producer: Vec<(String, String)>,
    /// librdkafka consumer properties, as written.
    pub consumer: Vec<(String, String)>,
    /// TLS and SASL for every Kafka client of the process.
    pub security: KafkaSecurity,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props = |p: &[(String, String)]| -> Vec<(String, String)> {
            p.iter().map(|(k, v)| (k.clone(), redact_property(k, v).to_string())).collect()
        };
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("producer", &props(&self.producer))
            .field("consumer", &props(&self.consumer))
            .field("security", &self.security)
            .finish()
    }
}

/// `value`, or `<redacted>` when the librdkafka property `key` holds a
/// secret (`sasl.password`, `ssl.key.password`, `ssl.keystore.password`,
/// `sasl.oauthbearer.client.secret`, PEM key material...): for every place
/// raw properties are printed.
pub fn redact_property<'a>(key: &str, value: &'a str) -> &'a str {
    let k = key.to_ascii_lowercase();
    let secret = k.contains("password") || k.contains("secret") || k == "ssl.key.pem" || k.ends_with("private.key");
    if secret {
        "<redacted>"
    } else {
        value
    }
}

/// `[kafka] security_protocol`: librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (librdkafka's default).
    #[default]
    Plaintext,
    /// TLS, no SASL.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The librdkafka value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the protocol authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    /// Whether the protocol uses TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// `[kafka]` TLS and SASL keys, applied to every Kafka client (producers
/// and consumers alike), below the raw `[kafka.producer]`/`[kafka.consumer]`
/// properties, which override them. Validated: a SASL protocol has a
/// mechanism, a username and a password; every file named can be read.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KafkaSecurity {
    /// `security_protocol`; `None` when not set (librdkafka's default,
    /// or what the raw properties say).
    pub protocol: Option<SecurityProtocol>,
    /// `sasl_mechanism`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`
    /// (librdkafka's spelling); set exactly when the protocol is SASL.
    pub sasl_mechanism: Option<String>,
    /// `sasl_username`; set exactly when the protocol is SASL.
    pub sasl_username: Option<String>,
    /// `sasl_password` or the first line of `sasl_password_file`.
    pub sasl_password: Option<Secret>,
    /// `ssl_ca_file`: PEM CA bundle that verifies the brokers (replaces the
    /// system roots for librdkafka).
    pub ssl_ca_file: Option<PathBuf>,
    /// `ssl_cert_file`: the client certificate (PEM), with `ssl_key_file`.
    pub ssl_cert_file: Option<PathBuf>,
    /// `ssl_key_file`: the client key (PEM), with `ssl_cert_file`.
    pub ssl_key_file: Option<PathBuf>,
    /// `ssl_key_password` or `ssl_key_password_file`: the key's passphrase.
    pub ssl_key_password: Option<Secret>,
}

impl KafkaSecurity {
    /// The librdkafka properties these settings stand for (secrets
    /// exposed: only for the client library, never for a log).
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(p) = self.protocol {
            out.push(("security.protocol", p.as_librdkafka().to_string()));
        }
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        put("sasl.mechanism", self.sasl_mechanism.clone());
        put("sasl.username", self.sasl_username.clone());
        put("sasl.password", self.sasl_password.as_ref().map(|s| s.expose().to_string()));
        put("ssl.ca.location", path(&self.ssl_ca_file));
        put("ssl.certificate.location", path(&self.ssl_cert_file));
        put("ssl.key.location", path(&self.ssl_key_file));
        put("ssl.key.password", self.ssl_key_password.as_ref().map(|s| s.expose().to_string()));
        out
    }
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
    /// Goes with `username`.
    pub password: Option<Secret>,
    /// TLS: the CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and its key: both or neither (checked).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key; goes with `cert_file`.
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
    /// Checkpoints, caches, the embedded index.
    pub data_dir: PathBuf,
    /// The host name records carry; `None`: detect the outbound IP.
    pub host: Option<String>,
    /// Where files present at start and never seen are read from.
    pub read_from: ReadFrom,
    /// At least 1, at most 1 GiB.
    pub max_line_bytes: usize,
    /// What happens to lines over `max_line_bytes`.
    pub long_lines: LongLines,
    /// Ship an unfinished last line after this long without new data; 0: never.
    pub partial_line_flush_ms: u64,
    /// How often globs are expanded for new files.
    pub scan_interval_ms: u64,
    /// How long a renamed-away file is still watched for late writes.
    pub rotate_wait_ms: u64,
    /// Longest sleep of an idle reader between checks.
    pub poll_max_ms: u64,
    /// How often checkpoints are written.
    pub checkpoint_interval_ms: u64,
    /// How long shutdown may wait for Kafka to acknowledge.
    pub shutdown_timeout_ms: u64,
    /// Bytes one read asks for; also the chunk size of the line buffer.
    pub read_chunk_bytes: usize,
    /// Follow symlinks found by the globs (off: a symlink is refused and
    /// reported). On, the resolved target must also pass `exclude` and
    /// `allowed_paths` (or, unset, match the entry's glob).
    pub follow_symlinks: bool,
    /// Where readers may read (local only: etcd cannot widen it); empty:
    /// everywhere.
    pub allowed_paths: AllowedPaths,
    /// Most files read at once; more wait (counted, logged) until a reader
    /// closes; 0: no cap.
    pub max_open_files: usize,
    /// Close a file after this long without new data, reopening it from its
    /// checkpoint once it grows; 0: never.
    pub close_inactive_ms: u64,
}

impl Default for AgentConfig {
    /// An empty `[agent]`.
    fn default() -> Self {
        AgentConfig {
            data_dir: PathBuf::from("./data"),
            host: None,
            read_from: ReadFrom::End,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            long_lines: LongLines::Split,
            partial_line_flush_ms: 5_000,
            scan_interval_ms: 500,
            rotate_wait_ms: 5_000,
            poll_max_ms: 250,
            checkpoint_interval_ms: 1_000,
            shutdown_timeout_ms: 5_000,
            read_chunk_bytes: 128 << 10,
            follow_symlinks: false,
            allowed_paths: AllowedPaths::default(),
            max_open_files: 4096,
            close_inactive_ms: 300_000,
        }
    }
}

/// Where documents Elasticsearch refuses for good go.
#[derive(Clone, Debug, PartialEq)]
pub enum DeadLetter {
    /// A Kafka topic per source topic: `<topic>.dlq`, the error in a header;
    /// a document Kafka does not take within a bounded time goes to the
    /// file (`dead_letter_path`) instead, so a refused dead letter never
    /// stalls the transfer.
    Kafka(PathBuf),
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
    /// Index name pattern (`{topic}`, `%Y.%m.%d`).
    pub index: IndexPattern,
    /// Largest `_bulk` body.
    pub bulk_max_bytes: usize,
    /// Most documents in one `_bulk` request.
    pub bulk_max_docs: usize,
    /// Longest a document waits for its request to fill.
    pub bulk_max_wait_ms: u64,
    /// How `_bulk` and template requests authenticate.
    pub auth: EsAuth,
    /// How searches (the page over Elasticsearch) authenticate; `None`:
    /// with [`EsConfig::auth`].
    pub search_auth: Option<EsAuth>,
    /// A PEM CA bundle that replaces the built-in roots when set.
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain); always set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key; set with `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `[es] search_index`: the indices searched, overriding the ones
    /// derived from the known topics; each entry validated (no bare `*`).
    pub search_index: Vec<String>,
    /// `*_file` keys that were read, `(key, path)`: their permissions are
    /// checked at start ([`EsConfig::warnings`]).
    pub secret_files: Vec<(String, PathBuf)>,
    /// Where documents refused for good go.
    pub dead_letter: DeadLetter,
    /// `dead_letter_max_bytes`: the dead-letter file is rotated to `.1`
    /// past this size (the older `.1` dropped).
    pub dead_letter_max_bytes: u64,
    /// Topics whose JSON-object lines are merged into the document; `*`: all.
    pub parse_json: Vec<String>,
    /// Longest pause between retries while Elasticsearch refuses.
    pub retry_max_backoff_ms: u64,
    /// Install an index template mapping our fields for each topic's indices.
    pub manage_template: bool,
    /// Dated indices (`index` has `%Y`) whose whole time range is older
    /// than this many days are deleted by the transfer; 0 keeps them.
    pub retention_days: u64,
    /// How often the transfer looks for indices past `retention_days`.
    pub retention_check_ms: u64,
}

/// How logcollect authenticates to Elasticsearch.
#[derive(Clone, Debug, PartialEq)]
pub enum EsAuth {
    /// No credentials.
    None,
    /// `Authorization: Basic …`.
    Basic {
        /// `[es] username` (or `search_username`).
        username: String,
        /// From `password` or `password_file`.
        password: Secret,
    },
    /// `Authorization: ApiKey …` (the base64 `id:key` Elasticsearch hands out).
    ApiKey(Secret),
}

impl EsAuth {
    /// Whether requests carry credentials.
    pub fn is_set(&self) -> bool {
        !matches!(self, EsAuth::None)
    }
}

impl EsConfig {
    /// What to warn about at start: credentials over plain `http://`, and
    /// secret files that others may read. Pure, so it is tested; the
    /// caller logs each line once.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let creds = self.auth.is_set() || self.search_auth.as_ref().is_some_and(EsAuth::is_set);
        if creds {
            for n in self.nodes.iter().filter(|n| n.starts_with("http://")) {
                out.push(format!(
                    "es.address: credentials are sent to {n} over plain http (anyone on the path can read them); use https://"
                ));
            }
        }
        for (key, path) in &self.secret_files {
            if let Some(mode) = Secret::loose_mode(path) {
                out.push(format!(
                    "{key}: {} is readable by its group or others (mode {mode:03o}); chmod 600 it",
                    path.display()
                ));
            }
        }
        out
    }
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

impl Default for IndexSection {
    /// An empty `[index]`.
    fn default() -> Self {
        IndexSection {
            retention_days: 0,
            retention_bytes: 0,
            retention_check_ms: 60_000,
            commit_interval_ms: 1_000,
            writer_threads: 1,
            writer_memory_bytes: 64 << 20,
        }
    }
}

/// `[http]`: the search page and API of `logcollect run`.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSection {
    /// Where to listen; `None`: `listen = off`.
    pub listen: Option<std::net::SocketAddr>,
    /// `users` / `users_file`: name and argon2id PHC string (checked to parse).
    pub users: Vec<(String, String)>,
    /// `tokens` / `tokens_file`: SHA-256 of each accepted bearer token.
    pub tokens: Vec<[u8; 32]>,
    /// `auth_health`: `/health/*` asks for credentials too.
    pub auth_health: bool,
    /// `insecure`: serve beyond loopback without authentication.
    pub insecure: bool,
    /// `header_timeout_ms`: a request's headers must arrive within this.
    pub header_timeout: std::time::Duration,
    /// `idle_timeout_ms`: a connection with no bytes either way this long is closed.
    pub idle_timeout: std::time::Duration,
    /// `request_timeout_ms`: an `/api/` request answering later gets a 503.
    pub request_timeout: std::time::Duration,
    /// `max_connections`: connections served at once (≥ 1); the next ones wait in the backlog.
    pub max_connections: usize,
    /// `tls_cert` and `tls_key` (PEM), both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `allowed_hosts`: `Host` names accepted besides the loopback ones.
    pub allowed_hosts: Vec<String>,
    /// `max_searches`: searches (and histograms) running at once.
    pub max_searches: usize,
    /// `max_live`: live views open at once.
    pub max_live: usize,
    /// `message_max_bytes`: longer messages are cut in answers (`"truncated": true`).
    pub message_max_bytes: usize,
}

impl HttpSection {
    /// Whether any credential is configured.
    pub fn has_auth(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: Some(DEFAULT_HTTP_LISTEN.parse().expect("default listen")),
            users: Vec::new(),
            tokens: Vec::new(),
            auth_health: false,
            insecure: false,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(60),
            request_timeout: std::time::Duration::from_secs(30),
            max_connections: 256,
            tls: None,
            allowed_hosts: Vec::new(),
            max_searches: 4,
            max_live: 8,
            message_max_bytes: 64 << 10,
        }
    }
}

/// `[http] listen` when not set.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";

/// `[log]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// A tracing filter (`info`, `logcollect=debug`, …).
    pub level: String,
}

/// `[metrics]`: host metrics (`crate::observe::host_metrics`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostMetricsConfig {
    /// How often host metrics are sampled.
    pub interval: Duration,
    /// Topic the samples are shipped to; `None`: only exposed on `/metrics`.
    pub topic: Option<String>,
}

/// The whole validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `None`: no `[kafka] address` (single-host mode).
    pub kafka: Option<KafkaConfig>,
    /// Bound on lines buffered between stages.
    pub chan_max_size: usize,
    /// `[etcd]`: the collect list from etcd, when an address is set.
    pub etcd: Option<EtcdConfig>,
    /// `None`: no `[es] address`.
    pub es: Option<EsConfig>,
    /// `[agent]`.
    pub agent: AgentConfig,
    /// The static collect list: used when etcd is not configured, and when
    /// etcd is unreachable at start with no cached list.
    pub collect: Vec<CollectEntry>,
    /// `[log]`.
    pub log: LogConfig,
    /// `[index]`: the embedded index.
    pub index: IndexSection,
    /// `[http]`.
    pub http: HttpSection,
    /// `[metrics]`: host metrics; `None` when not enabled.
    pub metrics: Option<HostMetricsConfig>,
    /// `[journald]`: the systemd journal source; `None` without the
    /// section or with `enabled = false`.
    pub journald: Option<JournaldConfig>,
}

impl Config {
    /// Reads and validates a config file; `${NAME}` in its values comes
    /// from the process environment.
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

    /// Parses and validates INI text, `${NAME}` in values taken from the
    /// process environment (see `expand`).
    pub fn from_ini_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_ini_str_with(text, &|name| std::env::var(name))
    }

    /// [`Config::from_ini_str`] with the variables from `lookup`.
    fn from_ini_str_with(text: &str, lookup: expand::Lookup<'_>) -> Result<Config, ConfigError> {
        let mut raw = parse_raw(text)?;
        let expanded = expand::expand_raw(&mut raw, lookup);
        Config::from_raw(&raw, expanded)
    }

    /// `expanded`: how the expansion of `${…}` went; its error is reported
    /// after an unknown section or key (a misspelt key may be why its
    /// variable was never set) and before any value's.
    fn from_raw(raw: &Raw, expanded: Result<(), ConfigError>) -> Result<Config, ConfigError> {
        let s = Sections::new(raw);
        // Every section is read before any error is returned, so the keys
        // asked for are complete and an unknown section or key (a typo, and
        // maybe the cause of the other errors) is what gets reported. The
        // order of reading is the order the unknown-section message lists.
        let kafka = sections::kafka(&s);
        let etcd = sections::etcd(&s);
        let agent = sections::agent(&s);
        let log = sections::log(&s);
        // If [kafka] or [agent] failed, their error is returned before es's,
        // so what es makes of these stand-ins does not matter.
        let has_kafka = matches!(kafka, Ok((Some(_), _)));
        let es = sections::es(&s, has_kafka, agent.as_ref().map_or(Path::new(""), |a| &a.data_dir));
        let http = sections::http(&s);
        let metrics = sections::metrics(&s);
        let index = sections::index(&s);
        let collect = sections::collect(&s);
        let journald = journald::journald(&s);
        s.check_unknown()?;
        expanded?;
        let (kafka, chan_max_size) = kafka?;
        // Fields are evaluated in the order written: the first error wins.
        let config = Config {
            kafka,
            chan_max_size,
            etcd: etcd?,
            agent: agent?,
            collect: collect?,
            es: es?,
            log,
            index: index?,
            http: http?,
            metrics: metrics?,
            journald: journald?,
        };
        // A static entry outside allowed_paths stops the start, naming it.
        for e in &config.collect {
            let at = || format!("collect.{}", e.topic);
            config.agent.allowed_paths.check_entry(&absolute_text(&e.path)).map_err(|m| err(at(), m))?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests;
