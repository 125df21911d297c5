//! Discovery: expands the collect list's globs and keeps one reader running
//! per matching file.
//!
//! Every `scan_interval` the globs are expanded; a regular file that has no
//! reader (keyed by device, inode and topic, so a renamed file is not taken
//! for a new one) gets one, unless the entry excludes it. Readers that ended
//! (file deleted, rotated away) are reaped.
//!
//! A new collect list (from etcd) is reconciled by (path, topic): an entry
//! that is new starts readers at once; one that is gone stops its readers
//! after they hand on what they read (their checkpoints stay, so adding the
//! entry back resumes where it stopped); one whose options changed restarts
//! its readers from where they were with the new options. An entry that did
//! not change keeps its readers untouched: no line of its files is lost or
//! read twice by any change of the list.
//!
//! Per-entry options ([`EntryOptions`]) give each entry's readers their own
//! settings (a [`TailCtx`] per entry): `read_from`, `max_line_bytes`,
//! `long_lines`, `parse_json`; `exclude` is applied here.
//!
//! [`EntryOptions`]: crate::config::EntryOptions

use crate::agent::tail::{self, ReaderHandle, Start, TailCtx};
use crate::config::CollectEntry;
use crossbeam_channel::Receiver;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// One reader per (device, inode, topic).
type ReaderKey = (u64, u64, Arc<str>);

/// What identifies an entry across lists: (path, topic).
type EntryKey = (String, String);

fn entry_key(e: &CollectEntry) -> EntryKey {
    (e.path.clone(), e.topic.clone())
}

struct Running {
    handle: ReaderHandle,
    /// The entry that found the file.
    entry: CollectEntry,
}

/// The set of running readers and the entries they serve.
pub struct Discovery {
    /// Settings from `[agent]`; entries without options share it.
    base: Arc<TailCtx>,
    entries: Vec<CollectEntry>,
    /// The readers' settings per entry of `entries`, built on first use.
    contexts: HashMap<CollectEntry, Arc<TailCtx>>,
    /// Entries (by key) scanned at least once: files they find later are
    /// new files. A changed entry stays scanned.
    scanned: HashSet<EntryKey>,
    readers: HashMap<ReaderKey, Running>,
    /// Problems already reported, so a broken path is logged once, not per scan.
    reported: HashSet<String>,
    topics: HashMap<String, Arc<str>>,
    /// Entries of the process itself (the host metrics file): part of
    /// every collect list, whatever etcd says.
    pinned: Vec<CollectEntry>,
}

impl Discovery {
    pub fn new(ctx: Arc<TailCtx>, entries: Vec<CollectEntry>) -> Self {
        Discovery {
            base: ctx,
            entries,
            contexts: HashMap::new(),
            scanned: HashSet::new(),
            readers: HashMap::new(),
            reported: HashSet::new(),
            topics: HashMap::new(),
            pinned: Vec::new(),
        }
    }

    /// Adds `pinned` to this and every later collect list.
    pub fn with_pinned(mut self, pinned: Vec<CollectEntry>) -> Self {
        self.pinned = pinned;
        let entries = std::mem::take(&mut self.entries);
        self.entries = self.and_pinned(entries);
        self
    }

    fn and_pinned(&self, mut entries: Vec<CollectEntry>) -> Vec<CollectEntry> {
        for p in &self.pinned {
            if !entries.iter().any(|e| entry_key(e) == entry_key(p)) {
                entries.push(p.clone());
            }
        }
        entries
    }

    /// Replaces the collect list, reconciling by (path, topic) (see the
    /// module doc). Readers that stop hand on what they read first.
    pub fn set_entries(&mut self, entries: Vec<CollectEntry>) {
        let entries = self.and_pinned(entries);
        let old: HashMap<EntryKey, &CollectEntry> = self.entries.iter().map(|e| (entry_key(e), e)).collect();
        let new: HashMap<EntryKey, &CollectEntry> = entries.iter().map(|e| (entry_key(e), e)).collect();
        for e in &entries {
            match old.get(&entry_key(e)) {
                None => tracing::info!(path = %e.path, topic = %e.topic, "collect entry added"),
                Some(o) if *o != e => {
                    tracing::info!(path = %e.path, topic = %e.topic, "collect entry changed: restarting its readers")
                }
                Some(_) => {}
            }
        }
        for (k, o) in &old {
            if !new.contains_key(k) {
                tracing::info!(path = %o.path, topic = %o.topic, "collect entry removed: stopping its readers");
            }
        }
        // Readers of entries that are gone or changed: ask them all to stop,
        // then wait for each (they stop in parallel).
        let keep: HashSet<&CollectEntry> = entries.iter().collect();
        let gone: Vec<ReaderKey> =
            self.readers.iter().filter(|(_, r)| !keep.contains(&r.entry)).map(|(k, _)| k.clone()).collect();
        for key in &gone {
            self.readers[key].handle.stop();
        }
        for key in gone {
            if let Some(r) = self.readers.remove(&key) {
                tracing::debug!(path = %r.handle.path, topic = %r.entry.topic, "reader stopped by a collect list change");
                r.handle.join();
            }
        }
        self.scanned.retain(|k| new.contains_key(k));
        self.contexts.retain(|e, _| keep.contains(e));
        drop((old, new, keep));
        self.entries = entries;
        self.scan();
    }

    /// Expands every glob once, starting readers for new files.
    pub fn scan(&mut self) {
        self.readers.retain(|_, r| !r.handle.is_finished());
        for entry in self.entries.clone() {
            let key = entry_key(&entry);
            let start = if self.scanned.contains(&key) { Start::New } else { Start::Present };
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
            self.scanned.insert(key);
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
        let ctx = self.context(entry);
        if excluded(&entry.options.exclude, &path) {
            return;
        }
        match tail::spawn(ctx, path.clone(), topic, start) {
            Ok(handle) => {
                self.reported.retain(|m| !m.contains(&*handle.path));
                self.readers.insert(key, Running { handle, entry: entry.clone() });
            }
            // Vanished between glob and open, or unreadable: say so once, keep
            // the other files going, try again next scan.
            Err(e) => self.report(format!("cannot open {}: {e}", path.display())),
        }
    }

    /// The entry's reader settings: `[agent]`'s with the entry's options over them.
    fn context(&mut self, entry: &CollectEntry) -> Arc<TailCtx> {
        if !self.contexts.contains_key(entry) {
            let o = &entry.options;
            let mut cfg = self.base.cfg.clone();
            if let Some(r) = o.read_from {
                cfg.read_from = r;
            }
            if let Some(l) = o.long_lines {
                cfg.split.long_lines = l;
            }
            if let Some(m) = o.max_line_bytes {
                // The producer is sized for [agent] max_line_bytes: a longer
                // record would be refused for good.
                let limit = self.base.cfg.split.max_line_bytes;
                if m > limit {
                    tracing::warn!(path = %entry.path, topic = %entry.topic, max_line_bytes = m, limit, "the entry's max_line_bytes is above [agent] max_line_bytes (the producer's record size): using the limit");
                }
                cfg.split.max_line_bytes = m.min(limit);
            }
            cfg.parse_json = o.parse_json;
            let ctx = if o == &Default::default() { self.base.clone() } else { Arc::new(self.base.with_cfg(cfg)) };
            self.contexts.insert(entry.clone(), ctx);
        }
        self.contexts[entry].clone()
    }

    fn report(&mut self, msg: String) {
        if self.reported.insert(msg.clone()) {
            tracing::warn!("{msg}");
        }
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

/// Whether an exclude pattern matches `path`: patterns with a `/` against the
/// whole path, the others against the file name. `*` never crosses a `/`.
fn excluded(patterns: &[glob::Pattern], path: &Path) -> bool {
    let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let name = path.file_name().map(Path::new);
    patterns.iter().any(|p| {
        if p.as_str().contains('/') {
            p.matches_path_with(path, opts)
        } else {
            name.is_some_and(|n| p.matches_path_with(n, opts))
        }
    })
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
                    Ok(mut entries) => {
                        // Only the newest list matters: skip the ones it replaces.
                        while let Ok(newer) = updates.try_recv() {
                            entries = newer;
                        }
                        disc.set_entries(entries)
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_patterns_match_names_or_whole_paths() {
        // (patterns, path, excluded)
        let table: &[(&[&str], &str, bool)] = &[
            (&[], "/var/log/a.log", false),
            (&["*.gz"], "/var/log/a.log.gz", true),
            (&["*.gz"], "/var/log/a.log", false),
            (&["a.log"], "/var/log/a.log", true),
            (&["a.log"], "/var/log/ba.log", false),
            // With a '/': the whole path, and '*' stays within one directory.
            (&["/var/log/debug-*"], "/var/log/debug-1.log", true),
            (&["/var/log/*"], "/var/log/sub/x.log", false),
            (&["/var/log/**/x.log"], "/var/log/sub/x.log", true),
            (&["debug-*", "*.gz"], "/srv/debug-2.log", true),
            (&["[ab].log"], "/srv/b.log", true),
        ];
        for &(patterns, path, want) in table {
            let compiled: Vec<glob::Pattern> = patterns.iter().map(|p| glob::Pattern::new(p).unwrap()).collect();
            assert_eq!(excluded(&compiled, Path::new(path)), want, "{patterns:?} {path}");
        }
    }
}
