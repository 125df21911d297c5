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
//! The agent's stage ([`stage::spawn`]) validates each value: a good one goes to
//! discovery's `updates` channel and into a cache under `data_dir` (written
//! atomically); a bad one is logged with the key, the revision and what is
//! wrong, and the running list stays. A delete means "collect nothing". At
//! start, when etcd does not answer within `[etcd] timeout`, the agent
//! collects the cached list, or, with no cache, the static `[collect]` list,
//! and says so; it keeps trying and applies etcd's list once it answers.

pub mod cache;
pub mod cli;
pub mod stage;

use crate::common::backoff::Backoff;
use crate::config::{ConfigError, EtcdConfig};
use etcd_client::{Certificate, Client, ConnectOptions, EventType, Identity, TlsOptions, WatchOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// First wait before reconnecting; it doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the watch connection, so a vanished server is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

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
        opts = opts.with_user(user, password.expose());
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
