//! etcd: this host's collect list, read at start and watched live (the
//! agent's config-watch stage), and the operator's `logcollect config`
//! commands.
//!
//! The key is `[etcd] collect_log_key` with `%s` replaced by the host (the
//! `[agent] host` setting, else the detected IP); its value is a JSON collect
//! list ([`crate::control::collect`]).
//!
//! [`follow`] is the one loop both the agent and `config watch` run: get the
//! key, then watch it from the revision after that get, so no change between
//! the two is missed. When the watch breaks (etcd restarted, network gone)
//! it reconnects with backoff and resumes from the last revision it saw,
//! so changes made meanwhile arrive in order; when that revision has been
//! compacted away it gets the key again.
//!
//! The agent's stage ([`spawn`]) validates each value: a good one goes to
//! discovery's `updates` channel and into a cache under `data_dir` (written
//! atomically); a bad one is logged with the key, the revision and what is
//! wrong, and the running list stays. A delete means "collect nothing". At
//! start, when etcd does not answer within `[etcd] timeout`, the agent
//! collects the cached list, or, with no cache, the static `[collect]` list,
//! and says so; it keeps trying and applies etcd's list once it answers.

use crate::common::atomic_file::{tmp_path, write_atomic};
use crate::common::backoff::Backoff;
use crate::config::{split_list, CollectEntry, Config, ConfigError, EtcdConfig};
use crate::control::collect::{self, CollectError};
use crossbeam_channel::Sender;
use etcd_client::{Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, TlsOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// First wait before reconnecting; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the watch connection, so a vanished server is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// The last applied collect list, under `data_dir`.
pub const CACHE_FILE: &str = "etcd_collect.json";

/// Failing to talk to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {endpoints}: {message}")]
    Client { endpoints: String, message: String },
    #[error("etcd {endpoints}: no answer within {secs} s")]
    Timeout { endpoints: String, secs: u64 },
    /// A TLS file that cannot be read.
    #[error("config {key}: {path}: {message}")]
    File { key: &'static str, path: PathBuf, message: String },
}

/// Checks that the TLS files can be read, so that a wrong path stops the
/// start (exit 2) instead of looking like an unreachable etcd.
pub fn check_files(cfg: &EtcdConfig) -> Result<(), ConfigError> {
    let files = [("etcd.ca_file", &cfg.ca_file), ("etcd.cert_file", &cfg.cert_file), ("etcd.key_file", &cfg.key_file)];
    for (key, path) in files {
        if let Some(p) = path {
            std::fs::read(p)
                .map_err(|e| ConfigError { key: key.to_string(), message: format!("{}: {e}", p.display()) })?;
        }
    }
    Ok(())
}

/// A client for the configured endpoints, with the dial timeout, HTTP/2
/// keepalive, TLS (`ca_file`, `cert_file` + `key_file`: endpoints without a
/// scheme then use https) and user/password when configured.
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(KEEPALIVE, timeout)
        .with_keep_alive_while_idle(true);
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        opts = opts.with_user(user, password);
    }
    if cfg.ca_file.is_some() || cfg.cert_file.is_some() {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| EtcdError::File { key, path: path.to_path_buf(), message: e.to_string() })
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read("etcd.ca_file", ca)?));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(read("etcd.cert_file", cert)?, read("etcd.key_file", key)?));
        }
        opts = opts.with_tls(tls);
    }
    // Connecting is lazy, except that a user is authenticated at once.
    bounded(cfg, Client::connect(&cfg.endpoints, Some(opts))).await
}

/// Runs an etcd call with the configured timeout.
async fn bounded<T>(
    cfg: &EtcdConfig,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    let endpoints = || cfg.endpoints.join(";");
    match tokio::time::timeout(Duration::from_secs(cfg.timeout_secs), call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EtcdError::Client { endpoints: endpoints(), message: describe(&e) }),
        Err(_) => Err(EtcdError::Timeout { endpoints: endpoints(), secs: cfg.timeout_secs }),
    }
}

/// An etcd client error in one line: a gRPC status as its message and code
/// (the default rendering adds empty details and metadata).
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{} (gRPC {:?})", s.message(), s.code()),
        other => other.to_string(),
    }
}

/// What [`follow`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key's value as of `revision`; `None`: the key does not exist
    /// (never put, or deleted).
    Value { revision: i64, value: Option<Vec<u8>> },
    /// etcd could not be reached or the watch broke; the next attempt comes
    /// after `retry_in`. `outage` counts failures in a row, from 1.
    Unreachable { error: String, retry_in: Duration, outage: u32 },
    /// A watch is in place (at first, and again after an outage or a
    /// compaction), for changes after `revision`.
    Watching { revision: i64 },
    /// The revision to resume from was compacted: the key is read again.
    Compacted { revision: i64 },
}

/// Follows `key` until `stop` completes: its value first, then every change,
/// each once and in order, across watch breaks and etcd restarts.
pub async fn follow(cfg: &EtcdConfig, key: &str, stop: impl Future<Output = ()>, mut on: impl FnMut(Event)) {
    tokio::pin!(stop);
    // The last revision reported; `None`: get the key before watching.
    let mut seen: Option<i64> = None;
    let mut outage = 0u32;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let result = tokio::select! {
            _ = &mut stop => return,
            r = session(cfg, key, &mut seen, &mut on, &mut outage) => r,
        };
        if let Err(e) = result {
            outage += 1;
            let wait = backoff.next_wait();
            on(Event::Unreachable { error: e.to_string(), retry_in: wait, outage });
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
        } else {
            backoff.reset();
        }
    }
}

/// One connection: get (if needed), watch, report events. Returns `Ok` to
/// start over at once (compaction), `Err` to retry after a pause.
async fn session(
    cfg: &EtcdConfig,
    key: &str,
    seen: &mut Option<i64>,
    on: &mut impl FnMut(Event),
    outage: &mut u32,
) -> Result<(), EtcdError> {
    let err = |message: String| EtcdError::Client { endpoints: cfg.endpoints.join(";"), message };
    let mut client = connect(cfg).await?;
    let from = match *seen {
        Some(rev) => rev,
        None => {
            let resp = bounded(cfg, client.get(key, None)).await?;
            let revision =
                resp.header().map(|h| h.revision()).ok_or_else(|| err("get answered without a header".into()))?;
            let value = resp.kvs().first().map(|kv| kv.value().to_vec());
            on(Event::Value { revision, value });
            *seen = Some(revision);
            revision
        }
    };
    let opts = WatchOptions::new().with_start_revision(from + 1);
    let (_watcher, mut stream) = bounded(cfg, client.watch(key, Some(opts))).await?;
    on(Event::Watching { revision: from });
    *outage = 0;
    loop {
        let Some(resp) = stream.message().await.map_err(|e| err(format!("watch: {}", describe(&e))))? else {
            return Err(err("the watch stream ended".into()));
        };
        if resp.compact_revision() > 0 {
            // Changes after `seen` are gone: read the key as it is now.
            on(Event::Compacted { revision: resp.compact_revision() });
            *seen = None;
            return Ok(());
        }
        if resp.canceled() {
            return Err(err(format!("watch canceled: {}", resp.cancel_reason())));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let value = match ev.event_type() {
                EventType::Put => Some(kv.value().to_vec()),
                EventType::Delete => None,
            };
            on(Event::Value { revision: kv.mod_revision(), value });
            *seen = Some(kv.mod_revision());
        }
    }
}

/// The cache file: the last collect list the agent applied from etcd.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CacheV1 {
    version: u32,
    /// The key it was read from: a cache of another host's key is not used.
    key: String,
    revision: i64,
    /// The value as etcd held it; `None`: the key did not exist.
    value: Option<String>,
}

/// A collect list read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub revision: i64,
    pub entries: Vec<CollectEntry>,
}

/// Writes the cache atomically (temp file, fsync, rename).
fn write_cache(path: &Path, key: &str, revision: i64, value: Option<&[u8]>) -> io::Result<()> {
    let c = CacheV1 {
        version: 1,
        key: key.to_string(),
        revision,
        value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
    };
    write_atomic(path, &serde_json::to_vec_pretty(&c).map_err(io::Error::other)?)
}

/// The cached list for `key`, if there is a usable one. The temp file is
/// tried first (a write whose rename was interrupted is the newer one).
pub fn read_cache(path: &Path, key: &str) -> Option<Cached> {
    for p in [tmp_path(path), path.to_path_buf()] {
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let c: CacheV1 = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %p.display(), "ignoring the etcd cache: {e}");
                continue;
            }
        };
        if c.version != 1 {
            tracing::warn!(path = %p.display(), version = c.version, "ignoring the etcd cache: unknown version");
            continue;
        }
        if c.key != key {
            tracing::warn!(path = %p.display(), cached = %c.key, key, "ignoring the etcd cache: it is another key's");
            return None;
        }
        let entries = match c.value.as_deref().map(|v| collect::parse(v.as_bytes())) {
            None => Vec::new(),
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(path = %p.display(), "ignoring the etcd cache: {e}");
                continue;
            }
        };
        return Some(Cached { revision: c.revision, entries });
    }
    None
}

/// The running config-watch stage.
pub struct Stage {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Stage {
    /// Stops watching and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Applies values as the agent's stage: validates, sends, caches, logs.
struct Applier {
    key: String,
    endpoints: String,
    cache: PathBuf,
    /// The list in force; `None` until the first one is chosen.
    current: Option<Vec<CollectEntry>>,
    /// The static `[collect]` list, for a start without etcd or cache.
    fallback: Vec<CollectEntry>,
    updates: Sender<Vec<CollectEntry>>,
    /// Where the first list goes (the agent waits for it).
    initial: Option<std::sync::mpsc::Sender<Vec<CollectEntry>>>,
}

impl Applier {
    fn on(&mut self, ev: Event) {
        match ev {
            Event::Value { revision, value } => self.value(revision, value),
            Event::Unreachable { error, retry_in, outage } => {
                if self.initial.is_some() {
                    self.start_without_etcd(&error);
                }
                // One warning per outage; the retries are debug lines.
                if outage == 1 {
                    tracing::warn!(key = %self.key, "{error}; keeping the running collect list, retrying with backoff");
                } else {
                    tracing::debug!(key = %self.key, ?retry_in, outage, "{error}");
                }
            }
            Event::Watching { revision } => {
                tracing::info!(key = %self.key, endpoints = %self.endpoints, revision, "watching the collect list")
            }
            Event::Compacted { revision } => {
                tracing::info!(key = %self.key, compacted = revision, "missed changes were compacted: reading the key again")
            }
        }
    }

    fn value(&mut self, revision: i64, value: Option<Vec<u8>>) {
        let entries = match value.as_deref().map(collect::parse) {
            None => Vec::new(),
            Some(Ok(entries)) => entries,
            Some(Err(e)) => return self.invalid(revision, &e),
        };
        if let Err(e) = write_cache(&self.cache, &self.key, revision, value.as_deref()) {
            tracing::error!(path = %self.cache.display(), "writing the etcd cache: {e}");
        }
        if self.current.as_ref() == Some(&entries) {
            tracing::debug!(key = %self.key, revision, "collect list unchanged");
            return;
        }
        match &value {
            None => {
                tracing::info!(key = %self.key, revision, "no collect list in etcd (key absent or deleted): collecting nothing")
            }
            Some(_) => tracing::info!(key = %self.key, revision, entries = entries.len(), "collect list from etcd"),
        }
        self.apply(entries);
    }

    fn invalid(&mut self, revision: i64, e: &CollectError) {
        tracing::error!(key = %self.key, revision, "invalid collect list in etcd: {e}; keeping the running collect list");
        if self.initial.is_some() {
            self.start_without_etcd("its value is invalid");
        }
    }

    /// No list from etcd at start: the cache, else the static list.
    fn start_without_etcd(&mut self, why: &str) {
        let list = match read_cache(&self.cache, &self.key) {
            Some(c) => {
                tracing::warn!(key = %self.key, cache = %self.cache.display(), revision = c.revision, entries = c.entries.len(), "no collect list from etcd at start ({why}): collecting the cached list until etcd answers");
                c.entries
            }
            None => {
                tracing::warn!(key = %self.key, entries = self.fallback.len(), "no collect list from etcd at start ({why}) and none cached: collecting the static [collect] list until etcd answers");
                self.fallback.clone()
            }
        };
        self.apply(list);
    }

    fn apply(&mut self, entries: Vec<CollectEntry>) {
        self.current = Some(entries.clone());
        // The first list goes to the agent waiting to start; if it gave up
        // waiting, this one is an update like any other.
        let entries = match self.initial.take() {
            Some(first) => match first.send(entries) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(entries)) => entries,
            },
            None => entries,
        };
        let _ = self.updates.send(entries);
    }
}

/// Starts the config-watch stage for `key` on a thread of its own (a small
/// tokio runtime). Returns once the first collect list is known — etcd's, or
/// within about twice `[etcd] timeout` the cached or the `fallback` one —
/// with that list; later lists go to `updates`.
pub fn spawn(
    cfg: &EtcdConfig,
    key: String,
    data_dir: &Path,
    fallback: Vec<CollectEntry>,
    updates: Sender<Vec<CollectEntry>>,
) -> io::Result<(Vec<CollectEntry>, Stage)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut applier = Applier {
        key: key.clone(),
        endpoints: cfg.endpoints.join(";"),
        cache: data_dir.join(CACHE_FILE),
        current: None,
        fallback: fallback.clone(),
        updates,
        initial: Some(first_tx),
    };
    let cfg = cfg.clone();
    let wait = Duration::from_secs(cfg.timeout_secs * 2 + 1);
    let thread = thread::Builder::new().name("etcd".into()).spawn(move || {
        rt.block_on(follow(
            &cfg,
            &key,
            async move {
                let _ = stop_rx.await;
            },
            |ev| applier.on(ev),
        ))
    })?;
    let stage = Stage { stop: Some(stop_tx), thread: Some(thread) };
    // The stage answers within its timeouts; this bound is a safety net.
    let first = first_rx.recv_timeout(wait).unwrap_or_else(|_| {
        tracing::warn!("etcd stage gave no collect list in {wait:?}: collecting the static [collect] list");
        fallback
    });
    Ok((first, stage))
}

// ----- operator commands ------------------------------------------------------

/// A `logcollect config` command.
#[derive(Debug, Clone)]
pub enum Command {
    /// Validate `value` as a collect list and write it to the host's key.
    Put { host: String, value: Vec<u8> },
    /// Print the host's collect list.
    Get { host: String },
    /// Print the host's collect list, then every change, until Ctrl-C.
    Watch { host: String },
    /// Remove the host's collect list (its agent then collects nothing from etcd).
    Delete { host: String },
    /// List the hosts that have a collect list.
    Hosts,
}

/// Why a command failed; [`CommandError::exit_code`] is the process status.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The value given to `put` is not a valid collect list (exit 2).
    #[error("{key}: not written: {error}")]
    Invalid { key: String, error: CollectError },
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    #[error("{key}: no collect list")]
    NotFound { key: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Invalid { .. } => 2,
            CommandError::Etcd(EtcdError::File { .. }) => 2,
            _ => 1,
        }
    }
}

/// The `[etcd]` settings of an operator command: from `config` (without
/// it, `config.ini` when there is one), with `--etcd` endpoints over the
/// address.
pub fn command_config(config: Option<&Path>, etcd: Option<&str>) -> Result<EtcdConfig, ConfigError> {
    let path = config.unwrap_or(Path::new("config.ini"));
    let from_file = if config.is_some() || path.exists() { Config::load(path)?.etcd } else { None };
    let endpoints = etcd.map(split_list).filter(|e| !e.is_empty());
    match (from_file, endpoints) {
        (Some(e), Some(endpoints)) => Ok(EtcdConfig { endpoints, ..e }),
        (Some(e), None) => Ok(e),
        (None, Some(endpoints)) => Ok(EtcdConfig::new(endpoints)),
        (None, None) => Err(ConfigError {
            key: "etcd.address".into(),
            message: format!("no etcd address: set it in {} or pass --etcd", path.display()),
        }),
    }
}

/// Runs an operator command, writing its output to `out`.
pub fn run_command(cfg: &EtcdConfig, cmd: Command, out: &mut dyn Write) -> Result<(), CommandError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(command(cfg, cmd, out))
}

async fn command(cfg: &EtcdConfig, cmd: Command, out: &mut dyn Write) -> Result<(), CommandError> {
    match cmd {
        Command::Put { host, value } => {
            let key = cfg.key_for(&host);
            // Validate before anything is written: an agent would refuse it anyway.
            let entries = collect::parse(&value).map_err(|error| CommandError::Invalid { key: key.clone(), error })?;
            let mut client = connect(cfg).await?;
            let resp = bounded(cfg, client.put(key.as_bytes(), value, None)).await?;
            let revision = resp.header().map_or(0, |h| h.revision());
            writeln!(out, "{key}: {} entries written (revision {revision})", entries.len())?;
        }
        Command::Get { host } => {
            let key = cfg.key_for(&host);
            let mut client = connect(cfg).await?;
            let resp = bounded(cfg, client.get(key.as_bytes(), None)).await?;
            let Some(kv) = resp.kvs().first() else {
                return Err(CommandError::NotFound { key });
            };
            out.write_all(kv.value())?;
            if !kv.value().ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            if let Err(e) = collect::parse(kv.value()) {
                tracing::warn!("{key} (revision {}): invalid collect list: {e}", kv.mod_revision());
            }
        }
        Command::Delete { host } => {
            let key = cfg.key_for(&host);
            let mut client = connect(cfg).await?;
            let resp = bounded(cfg, client.delete(key.as_bytes(), None)).await?;
            if resp.deleted() == 0 {
                return Err(CommandError::NotFound { key });
            }
            writeln!(out, "{key}: deleted")?;
        }
        Command::Hosts => {
            let mut client = connect(cfg).await?;
            let opts = GetOptions::new().with_prefix().with_keys_only();
            let resp = bounded(cfg, client.get(cfg.key_prefix(), Some(opts))).await?;
            let mut hosts: Vec<String> = resp
                .kvs()
                .iter()
                .filter_map(|kv| std::str::from_utf8(kv.key()).ok())
                .filter_map(|k| cfg.host_of(k))
                .map(str::to_string)
                .collect();
            hosts.sort();
            hosts.dedup();
            for h in hosts {
                writeln!(out, "{h}")?;
            }
        }
        Command::Watch { host } => {
            let key = cfg.key_for(&host);
            let mut failed = None;
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            follow(cfg, &key, stop, |ev| {
                if failed.is_some() {
                    return;
                }
                if let Err(e) = print_event(out, &key, &ev) {
                    failed = Some(e);
                }
            })
            .await;
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// One line per value (`revision N: <value>`), for `config watch`.
fn print_event(out: &mut dyn Write, key: &str, ev: &Event) -> io::Result<()> {
    match ev {
        Event::Value { revision, value: None } => writeln!(out, "revision {revision}: (no collect list)")?,
        Event::Value { revision, value: Some(v) } => {
            let text = String::from_utf8_lossy(v);
            writeln!(out, "revision {revision}: {}", text.trim_end())?;
            if let Err(e) = collect::parse(v) {
                writeln!(out, "revision {revision}: invalid, agents keep their running list: {e}")?;
            }
        }
        Event::Unreachable { error, retry_in, .. } => eprintln!("{key}: {error}; retrying in {retry_in:?}"),
        Event::Watching { revision } => eprintln!("{key}: watching from revision {revision}"),
        Event::Compacted { revision } => {
            eprintln!("{key}: changes compacted (to revision {revision}); reading it again")
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> CollectEntry {
        CollectEntry::new(path, "t")
    }

    fn applier(dir: &Path, fallback: Vec<CollectEntry>) -> (Applier, crossbeam_channel::Receiver<Vec<CollectEntry>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let a = Applier {
            key: "/logagent/h/collect_config".into(),
            endpoints: "e:1".into(),
            cache: dir.join(CACHE_FILE),
            current: None,
            fallback,
            updates: tx,
            initial: None,
        };
        (a, rx)
    }

    fn value(revision: i64, v: &str) -> Event {
        Event::Value { revision, value: Some(v.as_bytes().to_vec()) }
    }

    #[test]
    fn the_first_list_comes_from_etcd_then_the_cache_then_the_static_list() {
        let dir = tempfile::tempdir().unwrap();
        let stat = vec![entry("/static")];
        // (events before the first list, the first list)
        let lists = [r#"[{"path":"/etcd","topic":"t"}]"#];
        let unreachable = || Event::Unreachable { error: "down".into(), retry_in: BACKOFF_MIN, outage: 1 };
        let cases: Vec<(Vec<Event>, Vec<CollectEntry>)> = vec![
            // No cache yet: etcd down means the static list.
            (vec![unreachable()], stat.clone()),
            (vec![value(1, "{bad")], stat.clone()),
            // etcd answers: its list, cached.
            (vec![value(5, lists[0])], vec![entry("/etcd")]),
            // From now on the cache stands in for etcd.
            (vec![unreachable()], vec![entry("/etcd")]),
            (vec![value(6, "[7]")], vec![entry("/etcd")]),
            // A deleted key is cached as "nothing".
            (vec![Event::Value { revision: 7, value: None }], vec![]),
            (vec![unreachable()], vec![]),
        ];
        for (i, (events, want)) in cases.into_iter().enumerate() {
            let (mut a, _rx) = applier(dir.path(), stat.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            a.initial = Some(tx);
            for ev in events {
                a.on(ev);
            }
            assert_eq!(rx.try_recv().unwrap(), want, "case {i}");
        }
    }

    #[test]
    fn running_lists_change_only_on_valid_new_values() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, rx) = applier(dir.path(), vec![]);
        a.current = Some(vec![entry("/a")]);
        a.on(value(2, r#"[{"path":"/a","topic":"t"}]"#));
        assert!(rx.try_recv().is_err(), "unchanged: nothing sent");
        a.on(value(3, r#"[{"path":"/b","topic":"t"}]"#));
        assert_eq!(rx.try_recv().unwrap(), vec![entry("/b")]);
        a.on(value(4, r#"[{"path":"","topic":"t"}]"#));
        a.on(value(5, "not json"));
        assert!(rx.try_recv().is_err(), "invalid: the running list stays");
        assert_eq!(read_cache(&dir.path().join(CACHE_FILE), &a.key).unwrap().revision, 3, "nor is it cached");
        a.on(Event::Value { revision: 6, value: None });
        assert_eq!(rx.try_recv().unwrap(), vec![]);
        a.on(Event::Unreachable { error: "gone".into(), retry_in: BACKOFF_MIN, outage: 1 });
        assert!(rx.try_recv().is_err(), "etcd away while running: nothing changes");
    }

    #[test]
    fn a_first_list_nobody_waits_for_any_more_is_an_update() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, rx) = applier(dir.path(), vec![]);
        let (tx, first) = std::sync::mpsc::channel();
        a.initial = Some(tx);
        drop(first);
        a.on(value(3, r#"[{"path":"/late","topic":"t"}]"#));
        assert_eq!(rx.try_recv().unwrap(), vec![entry("/late")]);
    }

    #[test]
    fn the_cache_is_per_key_and_a_torn_write_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CACHE_FILE);
        write_cache(&path, "/k/a", 9, Some(br#"[{"path":"/x","topic":"t"}]"#)).unwrap();
        assert_eq!(read_cache(&path, "/k/a"), Some(Cached { revision: 9, entries: vec![entry("/x")] }));
        assert_eq!(read_cache(&path, "/k/b"), None, "another host's key");
        std::fs::write(tmp_path(&path), b"{\"version\":1,\"ke").unwrap();
        assert_eq!(read_cache(&path, "/k/a").unwrap().revision, 9);
        write_cache(&path, "/k/a", 10, None).unwrap();
        assert_eq!(read_cache(&path, "/k/a"), Some(Cached { revision: 10, entries: vec![] }));
        assert!(!tmp_path(&path).exists());
        assert_eq!(read_cache(&dir.path().join("none"), "/k/a"), None);
    }

    #[test]
    fn exit_codes() {
        let invalid = CommandError::Invalid { key: "k".into(), error: collect::parse(b"x").unwrap_err() };
        assert_eq!(invalid.exit_code(), 2);
        assert!(invalid.to_string().starts_with("k: not written: invalid JSON"), "{invalid}");
        assert_eq!(CommandError::NotFound { key: "k".into() }.exit_code(), 1);
        let down = CommandError::Etcd(EtcdError::Timeout { endpoints: "e:1".into(), secs: 5 });
        assert_eq!(down.exit_code(), 1);
    }
}
