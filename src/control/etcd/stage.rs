//! The agent's config-watch stage: follows this host's key, validates each
//! value, hands good lists to discovery and caches them.

use super::cache::{read_cache, write_cache, CACHE_FILE};
use super::{follow, Event};
use crate::config::{CollectEntry, EtcdConfig};
use crate::control::collect::{self, CollectError};
use crossbeam_channel::Sender;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
        let unreachable =
            || Event::Unreachable { error: "down".into(), retry_in: crate::control::etcd::BACKOFF_MIN, outage: 1 };
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
        a.on(Event::Unreachable { error: "gone".into(), retry_in: crate::control::etcd::BACKOFF_MIN, outage: 1 });
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
}
