//! Discovery: expands the collect list's globs and keeps one reader running
//! per matching file.
//!
//! Every `scan_interval` the globs are expanded; a regular file that has no
//! reader (keyed by device, inode and topic, so a renamed file is not taken
//! for a new one) gets one. Readers that ended (file deleted, rotated away)
//! are reaped. A new collect list (from etcd) stops the readers of entries
//! that are gone and starts the new entries' files at once.

use crate::config::CollectEntry;
use crate::tail::{self, ReaderHandle, Start, TailCtx};
use crossbeam_channel::Receiver;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// One reader per (device, inode, topic).
type ReaderKey = (u64, u64, Arc<str>);

struct Running {
    handle: ReaderHandle,
    /// The entry that found the file.
    entry: CollectEntry,
}

/// The set of running readers and the entries they serve.
pub struct Discovery {
    ctx: Arc<TailCtx>,
    entries: Vec<CollectEntry>,
    /// Entries scanned at least once: files they find later are new files.
    scanned: HashSet<CollectEntry>,
    readers: HashMap<ReaderKey, Running>,
    /// Problems already reported, so a broken path is logged once, not per scan.
    reported: HashSet<String>,
    topics: HashMap<String, Arc<str>>,
}

impl Discovery {
    pub fn new(ctx: Arc<TailCtx>, entries: Vec<CollectEntry>) -> Self {
        Discovery {
            ctx,
            entries,
            scanned: HashSet::new(),
            readers: HashMap::new(),
            reported: HashSet::new(),
            topics: HashMap::new(),
        }
    }

    /// Replaces the collect list. Readers of entries that are gone stop
    /// (after handing on what they read; their checkpoints stay).
    pub fn set_entries(&mut self, entries: Vec<CollectEntry>) {
        let keep: HashSet<&CollectEntry> = entries.iter().collect();
        let gone: Vec<ReaderKey> =
            self.readers.iter().filter(|(_, r)| !keep.contains(&r.entry)).map(|(k, _)| k.clone()).collect();
        for key in gone {
            if let Some(r) = self.readers.remove(&key) {
                tracing::info!(path = %r.handle.path, topic = %r.entry.topic, "collect entry removed: stopping reader");
                r.handle.join();
            }
        }
        self.scanned.retain(|e| keep.contains(e));
        self.entries = entries;
        self.scan();
    }

    /// Expands every glob once, starting readers for new files.
    pub fn scan(&mut self) {
        self.readers.retain(|_, r| !r.handle.is_finished());
        for entry in self.entries.clone() {
            let start = if self.scanned.contains(&entry) { Start::New } else { Start::Present };
            let paths = match glob::glob(&entry.path) {
                Ok(p) => p,
                Err(e) => {
                    self.report(format!("bad glob {:?} for topic {}: {e}", entry.path, entry.topic));
                    continue;
                }
            };
            let mut matched = 0;
            for item in paths {
                let path = match item {
                    Ok(p) => p,
                    Err(e) => {
                        self.report(format!("cannot read {}: {}", e.path().display(), e.error()));
                        continue;
                    }
                };
                matched += 1;
                self.consider(&entry, path, start);
            }
            if matched == 0 {
                self.report(format!("no file matches {:?} (topic {}) yet", entry.path, entry.topic));
            }
            self.scanned.insert(entry);
        }
    }

    fn consider(&mut self, entry: &CollectEntry, path: PathBuf, start: Start) {
        // Records name the file by its absolute path, whatever the glob was.
        let path = std::path::absolute(&path).unwrap_or(path);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return self.report(format!("cannot stat {}: {e}", path.display())),
        };
        if !meta.is_file() {
            return;
        }
        let topic = self.topics.entry(entry.topic.clone()).or_insert_with(|| Arc::from(entry.topic.as_str())).clone();
        let key = (meta.dev(), meta.ino(), topic.clone());
        if self.readers.contains_key(&key) {
            return;
        }
        match tail::spawn(self.ctx.clone(), path.clone(), topic, start) {
            Ok(handle) => {
                self.reported.retain(|m| !m.contains(&*handle.path));
                self.readers.insert(key, Running { handle, entry: entry.clone() });
            }
            // Vanished between glob and open, or unreadable: say so once, keep
            // the other files going, try again next scan.
            Err(e) => self.report(format!("cannot open {}: {e}", path.display())),
        }
    }

    fn report(&mut self, msg: String) {
        if self.reported.insert(msg.clone()) {
            tracing::warn!("{msg}");
        }
    }

    /// Readers running now.
    pub fn reader_count(&self) -> usize {
        self.readers.len()
    }

    /// Stops and joins every reader.
    pub fn stop_all(&mut self) {
        for r in self.readers.values() {
            r.handle.stop();
        }
        for (_, r) in self.readers.drain() {
            r.handle.join();
        }
    }
}

/// Runs discovery on its own thread: a scan every `interval`, a new collect
/// list whenever one arrives on `updates`; stops every reader and returns
/// when `shutdown` is dropped or signalled.
pub fn spawn(
    mut disc: Discovery,
    interval: Duration,
    mut updates: Receiver<Vec<CollectEntry>>,
    shutdown: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("discovery".into()).spawn(move || {
        disc.scan();
        loop {
            crossbeam_channel::select! {
                recv(updates) -> msg => match msg {
                    Ok(entries) => disc.set_entries(entries),
                    // No more updates will come: keep the list in force.
                    Err(_) => updates = crossbeam_channel::never(),
                },
                recv(shutdown) -> _ => break,
                default(interval) => disc.scan(),
            }
        }
        disc.stop_all();
    })
}
