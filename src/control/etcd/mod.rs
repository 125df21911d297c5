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
//! compacted away it gets the key again. Calls go over etcd's JSON gateway
//! ([`gateway`]: HTTP, no gRPC, so no `protoc` to build).
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
pub mod gateway;
pub mod stage;

use crate::common::backoff::Backoff;
use crate::config::{ConfigError, EtcdConfig};
use gateway::{Client, EventKind, Next};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// First wait before reconnecting; it doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A watch that sends nothing for this long is checked (see [`session`]):
/// etcd's own progress notifications come only every 10 minutes by
/// default, too seldom to notice a server gone quiet.
const WATCH_IDLE: Duration = Duration::from_secs(10);

/// Failing to talk to etcd. `endpoint` is the URL of the call that failed
/// (`http://host:port/v3/kv/range`), or "N endpoints" when each was tried.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No answer (cannot connect, TLS, a broken stream), or one that cannot be read.
    #[error("etcd {endpoint}: {message}")]
    Client { endpoint: String, message: String },
    #[error("etcd {endpoint}: no answer within {secs} s")]
    Timeout { endpoint: String, secs: u64 },
    /// etcd answered with an error: its message, with the gRPC code.
    #[error("etcd {endpoint}: {message} (HTTP {status})")]
    Refused { endpoint: String, status: u16, message: String },
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

/// A client for the configured endpoints over etcd's JSON gateway, with
/// the timeout on connecting and on each call, TLS (`ca_file`, `cert_file`
/// and `key_file`: endpoints without a scheme then use https) and
/// user/password when configured (authenticated at once).
pub async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    Client::connect(cfg).await
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

/// The last value [`follow`] reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    revision: i64,
    /// Whether the key existed then.
    exists: bool,
}

/// Follows `key` until `stop` completes: its value first, then every change,
/// each once and in order, across watch breaks and etcd restarts.
pub async fn follow(cfg: &EtcdConfig, key: &str, stop: impl Future<Output = ()>, on: impl FnMut(Event)) {
    follow_with(cfg, key, WATCH_IDLE, stop, on).await
}

/// [`follow`], a watch being checked after `idle` without a message.
async fn follow_with(
    cfg: &EtcdConfig,
    key: &str,
    idle: Duration,
    stop: impl Future<Output = ()>,
    mut on: impl FnMut(Event),
) {
    tokio::pin!(stop);
    // The last value reported; `None`: get the key before watching.
    let mut seen: Option<Seen> = None;
    let mut outage = 0u32;
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let result = tokio::select! {
            _ = &mut stop => return,
            r = session(cfg, key, idle, &mut seen, &mut on, &mut outage) => r,
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
///
/// A watch that sends nothing for `idle` is checked with a read of the key
/// (its own connection, within the timeout): a read that fails means etcd
/// is gone; a key changed since the last event reported means this watch's
/// connection is dead even though etcd is not; either way the session ends
/// and the next one resumes from the last revision seen. (HTTP/1.1 has no
/// pings, and TCP keepalive does not notice a server that is hung.)
async fn session(
    cfg: &EtcdConfig,
    key: &str,
    idle: Duration,
    seen: &mut Option<Seen>,
    on: &mut impl FnMut(Event),
    outage: &mut u32,
) -> Result<(), EtcdError> {
    let mut client = connect(cfg).await?;
    let from = match *seen {
        Some(s) => s.revision,
        None => {
            let resp = client.range(key.as_bytes(), false, false).await?;
            let Some(revision) = resp.header.map(|h| h.revision) else {
                return Err(EtcdError::Client {
                    endpoint: cfg.endpoints.join(";"),
                    message: "get answered without a header".into(),
                });
            };
            let value = resp.kvs.into_iter().next().map(|kv| kv.value);
            *seen = Some(Seen { revision, exists: value.is_some() });
            on(Event::Value { revision, value });
            revision
        }
    };
    let mut watch = client.watch(key.as_bytes(), from + 1).await?;
    on(Event::Watching { revision: from });
    *outage = 0;
    loop {
        let resp = match watch.next(idle).await? {
            Next::Message(m) => m,
            Next::Idle => {
                let last = seen.expect("set before watching");
                let now = client.range(key.as_bytes(), false, true).await.map_err(|e| {
                    watch.error(format!("no message for {} s, and reading the key failed: {e}", idle.as_secs_f32()))
                })?;
                let changed = match now.kvs.first() {
                    Some(kv) => kv.mod_revision > last.revision,
                    None => last.exists,
                };
                if changed {
                    return Err(watch.error(format!(
                        "no message for {} s while the key changed after revision {}: the watch is dead",
                        idle.as_secs_f32(),
                        last.revision
                    )));
                }
                continue;
            }
        };
        if resp.compact_revision > 0 {
            // Changes after `seen` are gone: read the key as it is now.
            on(Event::Compacted { revision: resp.compact_revision });
            *seen = None;
            return Ok(());
        }
        if resp.canceled {
            return Err(watch.error(format!("watch canceled: {}", resp.cancel_reason)));
        }
        for ev in resp.events {
            let Some(kv) = ev.kv else { continue };
            let value = match ev.kind {
                EventKind::Put => Some(kv.value),
                EventKind::Delete => None,
            };
            *seen = Some(Seen { revision: kv.mod_revision, exists: value.is_some() });
            on(Event::Value { revision: kv.mod_revision, value });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};

    /// A fake etcd gateway: `/v3/kv/range` answers the key at revision
    /// `mod_revision` (or, with `hang`, never); `/v3/watch` confirms the
    /// watch, then sends nothing more, the way a dead connection would.
    #[derive(Default)]
    struct Fake {
        mod_revision: AtomicI64,
        hang: AtomicBool,
        /// The watch's first message reports a compaction instead.
        compacted: AtomicBool,
    }

    fn serve(fake: Arc<Fake>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let fake = fake.clone();
                std::thread::spawn(move || answer(conn, &fake));
            }
        });
        addr
    }

    /// Answers the requests of one connection until it closes.
    fn answer(conn: TcpStream, fake: &Fake) {
        let mut out = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        loop {
            let (mut line, mut length) = (String::new(), 0);
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            r.read_exact(&mut vec![0; length]).unwrap();
            let hold = |mut r: BufReader<TcpStream>| while r.read(&mut [0; 64]).unwrap_or(0) > 0 {};
            match path.as_str() {
                "/v3/kv/range" if fake.hang.load(Ordering::Acquire) => return hold(r),
                "/v3/kv/range" => {
                    let rev = fake.mod_revision.load(Ordering::Acquire);
                    let body = format!(
                        r#"{{"header":{{"revision":"{rev}"}},"kvs":[{{"key":"L2s=","value":"W10=","mod_revision":"{rev}"}}]}}"#
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    out.write_all(format!("{head}{body}").as_bytes()).unwrap();
                }
                "/v3/watch" => {
                    let msg = if fake.compacted.load(Ordering::Acquire) {
                        "{\"result\":{\"canceled\":true,\"compact_revision\":\"4\"}}\n"
                    } else {
                        "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n"
                    };
                    let head =
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                    out.write_all(format!("{head}{:x}\r\n{msg}\r\n", msg.len()).as_bytes()).unwrap();
                    return hold(r);
                }
                other => panic!("unexpected request for {other}"),
            }
        }
    }

    /// Follows `/k` at the fake until `step` says so for the events so far
    /// (10 s at most); returns them.
    fn follow_fake(addr: &str, mut step: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        let cfg = EtcdConfig { timeout_secs: 1, ..EtcdConfig::new(vec![addr.to_string()]) };
        let events = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut done_tx = Some(done_tx);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let seen = events.clone();
        let stop = async move {
            let _ = done_rx.await;
        };
        let run = follow_with(&cfg, "/k", Duration::from_millis(300), stop, move |ev| {
            let mut all = seen.lock().unwrap();
            all.push(ev);
            if step(&all) {
                done_tx.take();
            }
        });
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), run).await }).expect("in time");
        Arc::try_unwrap(events).unwrap().into_inner().unwrap()
    }

    fn unreachable(ev: &Event) -> Option<&str> {
        match ev {
            Event::Unreachable { error, .. } => Some(error),
            _ => None,
        }
    }

    #[test]
    fn a_silent_watch_while_the_key_changed_is_dead_and_resumes_from_the_last_revision() {
        let fake = Arc::new(Fake::default());
        fake.mod_revision.store(5, Ordering::Release);
        let addr = serve(fake.clone());
        let f = fake.clone();
        let events = follow_fake(&addr, move |all| {
            // Unchanged: silence alone is no failure. Then the key moves on.
            // (3 checks of the 300 ms idle watch pass first.)
            if all.len() == 2 {
                let f = f.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1000));
                    f.mod_revision.store(6, Ordering::Release);
                });
            }
            all.iter().filter(|e| matches!(e, Event::Watching { .. })).count() == 2
        });
        assert_eq!(events[0], Event::Value { revision: 5, value: Some(b"[]".to_vec()) });
        assert_eq!(events[1], Event::Watching { revision: 5 });
        let error = unreachable(&events[2]).expect("the dead watch is reported");
        assert!(error.contains(&format!("http://{addr}/v3/watch")) && error.contains("the watch is dead"), "{error}");
        assert_eq!(events[3], Event::Watching { revision: 5 }, "resumed after the last revision seen");
        assert_eq!(events.len(), 4, "{events:?}");
    }

    #[test]
    fn a_silent_watch_with_etcd_not_answering_is_dead() {
        let fake = Arc::new(Fake::default());
        fake.mod_revision.store(5, Ordering::Release);
        let addr = serve(fake.clone());
        let f = fake.clone();
        let events = follow_fake(&addr, move |all| {
            f.hang.store(true, Ordering::Release);
            all.iter().any(|e| unreachable(e).is_some())
        });
        let error = unreachable(events.last().unwrap()).unwrap();
        assert!(error.contains("reading the key failed") && error.contains("no answer within 1 s"), "{error}");
        assert!(error.contains(&format!("http://{addr}/v3/kv/range")), "names the call that failed: {error}");
    }

    #[test]
    fn a_watch_that_answers_with_a_compaction_at_once_reads_the_key_again() {
        let fake = Arc::new(Fake::default());
        fake.mod_revision.store(5, Ordering::Release);
        fake.compacted.store(true, Ordering::Release);
        let addr = serve(fake.clone());
        let f = fake.clone();
        let events = follow_fake(&addr, move |all| {
            let compactions = all.iter().filter(|e| matches!(e, Event::Compacted { .. })).count();
            if compactions == 1 {
                f.compacted.store(false, Ordering::Release);
            }
            all.iter().filter(|e| matches!(e, Event::Watching { .. })).count() == 2
        });
        // The same events as etcd 3.4's confirmation, then the compaction.
        let value = Event::Value { revision: 5, value: Some(b"[]".to_vec()) };
        let watching = Event::Watching { revision: 5 };
        let want = vec![value.clone(), watching.clone(), Event::Compacted { revision: 4 }, value, watching];
        assert_eq!(events, want);
    }
}
