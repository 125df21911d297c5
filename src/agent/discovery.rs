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
//! read twice by any change of the list. Positions belong to files, not to
//! entries: each scan expands every glob first, so a new reader knows which
//! topics still cover its file, and a file that left one topic for another
//! continues in the new one where the old one's reader stopped, at once:
//! the old topic's lines in flight are still delivered there, and hold the
//! new topic's checkpoint back until they are (see [`Checkpoints::acquire`]).
//!
//! [`Checkpoints::acquire`]: crate::agent::checkpoint::Checkpoints::acquire
//!
//! Per-entry options ([`EntryOptions`]) give each entry's readers their own
//! settings (a [`TailCtx`] per entry): `read_from`, `max_line_bytes`,
//! `long_lines`, `parse_json`; `exclude` and `follow_symlinks` are applied
//! here, through [`guard`], which checks and opens every new file (entries
//! outside `[agent] allowed_paths` are refused as a list arrives).
//!
//! Bounds: at most `max_open_files` readers; past it files wait (counted
//! in `files_waiting`) and the idlest readers are closed to make room. A
//! reader that closed its file (inactive for `close_inactive_ms`, or to
//! make room) is remembered with the offset it reached, and its file is
//! opened again, from its checkpoint, once a scan sees its size change.
//! Messages about files are rate-limited and bounded ([`Reported`]).
//!
//! Files that leave the glob with unread bytes: a file renamed to a name
//! no entry matches (`app.log` to `app.log.1` under `*.log`) while the
//! agent was down, or while lines of it were in flight when it stopped,
//! still has a saved position short of its end. Each scan looks such
//! positions up once, by identity (device, inode and the hash of its first
//! line), in the file's directory, and gives the file found there a reader
//! under its old path: it reads to the end and lets go, as a reader does
//! when its file is rotated away ([`Discovery::finish_left`]). Where the
//! file is no longer there (deleted, replaced, truncated), the bytes
//! between the position and how far the file was seen are lost: logged
//! with the path and offsets and counted (`logcollect_lost_bytes_total`,
//! per path, and on `/api/status`), never silent.
//!
//! [`EntryOptions`]: crate::config::EntryOptions

use crate::agent::checkpoint::SavedPosition;
use crate::agent::guard;
use crate::agent::identity::FileId;
use crate::agent::tail::{self, ReaderHandle, Start, TailCtx};
use crate::config::allowed::fixed_prefix;
use crate::config::{absolute_text, AllowedPaths, CollectEntry};
use crossbeam_channel::Receiver;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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
    /// Problems already reported, so a broken path is logged once in a
    /// while, not per scan; bounded.
    reported: Reported,
    topics: HashMap<String, Arc<str>>,
    /// Entries of the process itself (the host metrics file): part of
    /// every collect list, whatever etcd says.
    pinned: Vec<CollectEntry>,
    /// Files whose reader closed them (inactive, or evicted to make room),
    /// with the offset read to and the file's identity: opened again only
    /// once their size differs; meanwhile each scan that finds one keeps its
    /// checkpoint from expiring. Only files the last scan found are kept.
    closed: HashMap<ReaderKey, (u64, Option<FileId>)>,
    /// Keys of the files found in the current scan (to prune `closed`).
    found: HashSet<ReaderKey>,
    /// Files of the current scan that found no free reader.
    waiting: u64,
    /// Saved positions already looked for outside the globs (each once
    /// per process).
    looked: HashSet<(FileId, Arc<str>)>,
}

/// A regular file of a directory: its path, device and inode.
type Listed = (PathBuf, u64, u64);
/// What an entry covers: its topic, its glob and its exclude patterns.
type Covering = (Arc<str>, glob::Pattern, Vec<glob::Pattern>);

/// Most saved positions [`Discovery::finish_left`] looks for per scan.
const LEFT_LOOKUPS_PER_SCAN: usize = 256;
/// Most directory entries it reads per directory.
const LEFT_DIR_ENTRIES_MAX: usize = 100_000;

/// A file one scan found, before its reader starts.
struct Hit {
    /// Index in `entries` of the entry whose glob found it.
    entry: usize,
    path: PathBuf,
    found: guard::Candidate,
    start: Start,
}

/// A reader idle at least this long may be closed to make room for a file
/// waiting under `max_open_files`.
const EVICT_IDLE_MS: i64 = 1_000;

impl Discovery {
    pub fn new(ctx: Arc<TailCtx>, entries: Vec<CollectEntry>) -> Self {
        let mut d = Discovery {
            base: ctx,
            entries: Vec::new(),
            contexts: HashMap::new(),
            scanned: HashSet::new(),
            readers: HashMap::new(),
            reported: Reported::default(),
            topics: HashMap::new(),
            pinned: Vec::new(),
            closed: HashMap::new(),
            found: HashSet::new(),
            waiting: 0,
            looked: HashSet::new(),
        };
        d.entries = d.admitted(entries);
        d
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
        let entries = self.admitted(entries);
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
    ///
    /// Every glob is expanded before any reader starts: a new reader must
    /// know which topics still collect its file, since a file that no
    /// longer goes to a topic continues in the new one from where the old
    /// one's acknowledgements reached ([`Checkpoints::acquire`]).
    ///
    /// [`Checkpoints::acquire`]: crate::agent::checkpoint::Checkpoints::acquire
    pub fn scan(&mut self) {
        self.reap();
        self.found.clear();
        self.waiting = 0;
        let mut hits: Vec<Hit> = Vec::new();
        // (device, inode) -> topics of the entries that cover the file.
        let mut collecting: HashMap<(u64, u64), Vec<Arc<str>>> = HashMap::new();
        for (i, entry) in self.entries.clone().iter().enumerate() {
            let key = entry_key(entry);
            let start = if self.scanned.contains(&key) { Start::New } else { Start::Present };
            let paths = match glob::glob(&entry.path) {
                Ok(p) => p,
                Err(e) => {
                    self.report(format!("bad glob {:?} for topic {}: {e}", entry.path, entry.topic));
                    continue;
                }
            };
            let topic = self.topic(&entry.topic);
            let follow = self.context(entry).cfg.follow_symlinks;
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
                // Records name the file by its absolute path, whatever the glob was.
                let path = std::path::absolute(&path).unwrap_or(path);
                let found = match guard::identify(&path, follow) {
                    Ok(c) => c,
                    Err(r) => {
                        self.refused(r);
                        continue;
                    }
                };
                if !guard::excluded(&entry.options.exclude, &path) {
                    collecting.entry((found.dev, found.ino)).or_default().push(topic.clone());
                }
                hits.push(Hit { entry: i, path, found, start });
            }
            if matched == 0 {
                self.report(format!("no file matches {:?} (topic {}) yet", entry.path, entry.topic));
            }
            self.scanned.insert(key);
        }
        for hit in hits {
            let entry = self.entries[hit.entry].clone();
            let topics = collecting.get(&(hit.found.dev, hit.found.ino)).map_or(&[][..], Vec::as_slice);
            self.consider(&entry, hit.path, hit.found, hit.start, topics);
        }
        self.finish_left();
        let found = std::mem::take(&mut self.found);
        self.closed.retain(|k, _| found.contains(k));
        self.found = found;
        self.base.stats.files_waiting.store(self.waiting, Ordering::Relaxed);
        if self.waiting > 0 {
            self.make_room();
        }
    }

    /// The shared name of a topic.
    fn topic(&mut self, name: &str) -> Arc<str> {
        self.topics.entry(name.to_string()).or_insert_with(|| Arc::from(name)).clone()
    }

    /// Drops the readers that ended, remembering where the ones that closed
    /// an idle file stopped.
    fn reap(&mut self) {
        let done: Vec<ReaderKey> =
            self.readers.iter().filter(|(_, r)| r.handle.is_finished()).map(|(k, _)| k.clone()).collect();
        for key in done {
            if let Some(r) = self.readers.remove(&key) {
                if let Some(at) = r.handle.closed_inactive_at() {
                    self.base.stats.files_closed_idle.fetch_add(1, Ordering::Relaxed);
                    self.closed.insert(key, (at, r.handle.file_id()));
                }
                r.handle.join();
            }
        }
    }

    /// `max_open_files` readers run and files wait: closes the idlest
    /// readers (idle at least [`EVICT_IDLE_MS`]), one per waiting file;
    /// their files reopen from their checkpoints when they grow, the
    /// waiting ones get the readers at the next scan. Busy readers are
    /// never closed: while every reader is busy, files wait (counted in
    /// `logcollect_files_waiting`, and logged).
    fn make_room(&mut self) {
        let now = crate::common::clock::now_ms();
        let mut idle: Vec<(i64, &ReaderKey)> = self
            .readers
            .iter()
            .filter(|(_, r)| !r.handle.is_stopping())
            .map(|(k, r)| (r.handle.last_data_ms(), k))
            .filter(|(t, _)| now - t >= EVICT_IDLE_MS)
            .collect();
        idle.sort();
        for (_, key) in idle.into_iter().take(self.waiting as usize) {
            let r = &self.readers[key];
            tracing::debug!(path = %r.handle.path, "closing an idle file to make room for a waiting one (max_open_files)");
            r.handle.evict();
        }
        let cap = self.base.max_open_files;
        self.report(format!(
            "max_open_files ({cap}) reached: files wait for a reader (the idlest open files are closed to make room; see logcollect_files_waiting)"
        ));
    }

    /// Starts a reader for a file a scan found (`found`, at `path`) through
    /// `entry`, unless it has one; `collecting`: the topics whose entries
    /// cover the file in this scan.
    fn consider(
        &mut self,
        entry: &CollectEntry,
        path: PathBuf,
        found: guard::Candidate,
        start: Start,
        collecting: &[Arc<str>],
    ) {
        let ctx = self.context(entry);
        let follow = ctx.cfg.follow_symlinks;
        let topic = self.topic(&entry.topic);
        let key = (found.dev, found.ino, topic.clone());
        self.found.insert(key.clone());
        if self.readers.contains_key(&key) {
            return;
        }
        // Closed while idle: not worth a reader until it changes. Its
        // position is a saved one now, which expires unless refreshed: the
        // file is still here, so it must not be read again from the start.
        if let Some(&(at, fid)) = self.closed.get(&key) {
            if at == found.size {
                if let Some(fid) = fid {
                    self.base.checkpoints.touch(fid, &topic);
                }
                return;
            }
        }
        let cap = self.base.max_open_files;
        if cap > 0 && self.readers.len() >= cap {
            self.waiting += 1;
            return;
        }
        self.closed.remove(&key);
        // The process's own entries (the host metrics file in data_dir)
        // are not the collect list's: allowed_paths does not bound them.
        let none = AllowedPaths::default();
        let pinned = self.pinned.contains(entry);
        let fixed = fixed_prefix(&absolute_text(&entry.path));
        let glob = absolute_text(&entry.path);
        let rules = guard::Rules {
            follow_symlinks: follow,
            allowed: if pinned { &none } else { &ctx.cfg.allowed_paths },
            glob: &glob,
            fixed: &fixed,
            exclude: &entry.options.exclude,
        };
        let file = match guard::admit(&path, &found, rules) {
            Ok(f) => f,
            Err(r) => return self.refused(r),
        };
        match tail::spawn(ctx, file, path.clone(), topic, start, collecting) {
            Ok(Some(handle)) => {
                self.reported.forget_about(&handle.path);
                self.readers.insert(key, Running { handle, entry: entry.clone() });
            }
            // Moving here from a topic whose reader has not stopped yet: the
            // next scan tries again (the file stays unread meanwhile).
            Ok(None) => {
                tracing::debug!(path = %path.display(), topic = %entry.topic, "waiting for the old topic's reader to stop before moving the file")
            }
            // Unreadable: say so, keep the other files going, try again next scan.
            Err(e) => self.report(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Finishes files that left their glob with unread bytes, and counts
    /// what can no longer be read (see the module doc). Looks at saved
    /// positions this scan did not find whose topic's entry still covers
    /// their path (an entry that is gone takes its files with it), each
    /// once per process and at most [`LEFT_LOOKUPS_PER_SCAN`] a scan, with
    /// one listing of each directory.
    fn finish_left(&mut self) {
        let mut budget = LEFT_LOOKUPS_PER_SCAN;
        let mut listings: HashMap<PathBuf, io::Result<Vec<Listed>>> = HashMap::new();
        let mut covering: Option<Vec<Covering>> = None;
        let mut live: Option<HashSet<(FileId, Arc<str>)>> = None;
        for s in self.base.checkpoints.saved() {
            let key = (s.fid.dev, s.fid.ino, s.topic.clone());
            if self.looked.contains(&(s.fid, s.topic.clone())) {
                continue;
            }
            // Its inode is read under this topic: by this identity (closed
            // while inactive, not read yet), or by another one with a new
            // first line, which replaced it (truncated and written again,
            // or the inode reused): then it is gone.
            let replaced = (self.found.contains(&key) || self.readers.contains_key(&key)) && {
                let live = live.get_or_insert_with(|| {
                    self.base.checkpoints.live().iter().map(|l| (l.fid, l.topic.clone())).collect()
                });
                live.iter()
                    .any(|(f, t)| *t == s.topic && (f.dev, f.ino) == (s.fid.dev, s.fid.ino) && f.head != s.fid.head)
            };
            if replaced {
                self.looked.insert((s.fid, s.topic.clone()));
                self.gone(&s);
                continue;
            }
            // Even a position at its `end` is looked for: `end` is how far
            // the file was seen, and a busy file may have grown unseen.
            if self.found.contains(&key) || self.readers.contains_key(&key) {
                continue;
            }
            let entries = covering.get_or_insert_with(|| {
                self.entries
                    .iter()
                    .filter_map(|e| {
                        let p = glob::Pattern::new(&absolute_text(&e.path)).ok()?;
                        Some((Arc::from(e.topic.as_str()), p, e.options.exclude.clone()))
                    })
                    .collect()
            });
            let path = Path::new(&s.path);
            let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
            let covered = entries
                .iter()
                .any(|(t, p, ex)| *t == s.topic && p.matches_path_with(path, opts) && !guard::excluded(ex, path));
            if !covered {
                continue;
            }
            let cap = self.base.max_open_files;
            if budget == 0 || (cap > 0 && self.readers.len() >= cap) {
                break;
            }
            budget -= 1;
            self.looked.insert((s.fid, s.topic.clone()));
            let Some(dir) = path.parent() else { continue };
            let listing = listings.entry(dir.to_path_buf()).or_insert_with(|| list_dir(dir));
            let at = match listing {
                Ok(l) => l.iter().find(|(_, dev, ino)| (*dev, *ino) == (s.fid.dev, s.fid.ino)).map(|(p, ..)| p.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    self.report(format!(
                        "cannot look for {} (renamed out of its glob?) in {}: {e}",
                        s.path,
                        dir.display()
                    ));
                    continue;
                }
            };
            match at.and_then(|at| self.open_left(&s, &at).map(|f| (at, f))) {
                Some((at, file)) => self.start_left(s, at, file),
                None => self.gone(&s),
            }
        }
    }

    /// The file of `s` is gone: what it had not acknowledged of what was
    /// seen of it is lost, logged and counted. Where how far it was seen is
    /// not known (an older checkpoint) there is nothing to count, and the
    /// position expires as any other.
    fn gone(&self, s: &SavedPosition) {
        if s.end <= s.offset {
            return;
        }
        tracing::error!(
            path = %s.path, topic = %s.topic, from = s.offset, to = s.end, bytes = s.end - s.offset,
            "file gone (deleted, replaced or truncated) before it was read to its end: these bytes are lost"
        );
        self.base.stats.lost(&s.path, s.end - s.offset);
        self.base.checkpoints.drop_saved(s.fid, &s.topic);
    }

    /// Opens `at` if it is the file `s` was saved for (same identity) and
    /// may be read (a regular file, not a symlink, inside `allowed_paths`).
    fn open_left(&mut self, s: &SavedPosition, at: &Path) -> Option<File> {
        if !self.base.cfg.allowed_paths.allows(at) {
            return None;
        }
        let file = guard::open_regular(at, false).ok()?;
        let same = match FileId::of(&file) {
            Ok(Some(fid)) => fid == s.fid,
            Ok(None) => FileId::of_partial(&file).is_ok_and(|fid| fid == s.fid),
            Err(_) => false,
        };
        same.then_some(file)
    }

    /// Reads the file `s` was saved for, found renamed to `at`, from its
    /// saved offset to its end, under its old path and the saved topic.
    fn start_left(&mut self, s: SavedPosition, at: PathBuf, file: File) {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size <= s.offset {
            return;
        }
        let Some(entry) = self.entries.iter().find(|e| *e.topic == *s.topic).cloned() else { return };
        let ctx = self.context(&entry);
        let topic = self.topic(&s.topic);
        tracing::info!(
            path = %s.path, now_at = %at.display(), topic = %s.topic, from = s.offset, size,
            "file renamed out of its glob with unread bytes: reading it to its end"
        );
        let key = (s.fid.dev, s.fid.ino, topic.clone());
        match tail::spawn(ctx, file, PathBuf::from(&s.path), topic.clone(), Start::Present, &[topic]) {
            Ok(Some(handle)) => {
                self.base.stats.files_finished.fetch_add(1, Ordering::Relaxed);
                self.readers.insert(key, Running { handle, entry });
            }
            Ok(None) => {}
            Err(e) => self.report(format!("cannot read {}: {e}", at.display())),
        }
    }

    fn refused(&mut self, r: guard::Refused) {
        if let guard::Refused::Report(m) = r {
            if self.reported.report(m) {
                self.base.stats.files_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The entries of `entries` inside `[agent] allowed_paths`; the others
    /// are refused with an error naming them (the pinned ones are the
    /// process's own and always kept).
    fn admitted(&self, entries: Vec<CollectEntry>) -> Vec<CollectEntry> {
        let allowed = &self.base.cfg.allowed_paths;
        entries
            .into_iter()
            .filter(|e| {
                if self.pinned.contains(e) {
                    return true;
                }
                match allowed.check_entry(&absolute_text(&e.path)) {
                    Ok(()) => true,
                    Err(m) => {
                        tracing::error!(path = %e.path, topic = %e.topic, "collect entry {:?} -> {} refused: {m}", e.path, e.topic);
                        false
                    }
                }
            })
            .collect()
    }

    /// The entry's reader settings: `[agent]`'s with the entry's options over them.
    fn context(&mut self, entry: &CollectEntry) -> Arc<TailCtx> {
        if !self.contexts.contains_key(entry) {
            let o = &entry.options;
            let cfg = tail::entry_config(&self.base.cfg, entry);
            let ctx = if o == &Default::default() { self.base.clone() } else { Arc::new(self.base.with_cfg(cfg)) };
            self.contexts.insert(entry.clone(), ctx);
        }
        self.contexts[entry].clone()
    }

    fn report(&mut self, msg: String) {
        self.reported.report(msg);
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

/// The regular files of `dir` (not following symlinks) with their device
/// and inode; at most [`LEFT_DIR_ENTRIES_MAX`] entries are read.
fn list_dir(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)?.take(LEFT_DIR_ENTRIES_MAX) {
        let Ok(item) = item else { continue };
        if let Ok(m) = item.metadata() {
            if m.is_file() {
                out.push((item.path(), m.dev(), m.ino()));
            }
        }
    }
    Ok(out)
}

/// Most distinct messages [`Reported`] remembers.
const REPORTED_MAX: usize = 1024;
/// A message still true is logged again after this long.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(600);
/// At most this many messages are logged per [`BURST_WINDOW`]; the rest
/// are counted and summed up in one line.
const BURST_MAX: u32 = 100;
const BURST_WINDOW: Duration = Duration::from_secs(60);

/// Messages about files (a broken path, a refused symlink) logged at most
/// once per [`REPORT_AGAIN_AFTER`] each, at most [`BURST_MAX`] a minute in
/// all, remembering at most [`REPORTED_MAX`] of them (the oldest is
/// forgotten first, and may be logged again): a directory of 100 k refused
/// files costs a bounded set and a bounded log, not one line per file per
/// scan.
#[derive(Default)]
struct Reported {
    /// Message -> when it was last logged.
    at: HashMap<String, Instant>,
    /// Messages in the order first remembered, for forgetting the oldest.
    order: std::collections::VecDeque<String>,
    /// Start of the current burst window and messages logged in it.
    window: Option<(Instant, u32)>,
    /// Messages not logged in the current window (over the burst).
    suppressed: u64,
}

impl Reported {
    /// Logs `msg` unless it was logged within [`REPORT_AGAIN_AFTER`] or the
    /// burst is spent; returns whether it was new to report (logged or
    /// counted as suppressed).
    fn report(&mut self, msg: String) -> bool {
        let now = Instant::now();
        if let Some(t) = self.at.get(&msg) {
            if now.duration_since(*t) < REPORT_AGAIN_AFTER {
                return false;
            }
        } else {
            while self.at.len() >= REPORTED_MAX {
                match self.order.pop_front() {
                    Some(old) => {
                        self.at.remove(&old);
                    }
                    None => break,
                }
            }
            self.order.push_back(msg.clone());
        }
        let (start, n) = self.window.get_or_insert((now, 0));
        if now.duration_since(*start) >= BURST_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!("{} more messages about files were not logged in the last minute", self.suppressed);
            }
            (*start, *n, self.suppressed) = (now, 0, 0);
        }
        if *n < BURST_MAX {
            *n += 1;
            tracing::warn!("{msg}");
        } else {
            self.suppressed += 1;
        }
        self.at.insert(msg, now);
        true
    }

    /// A file is read now: what was said about it no longer holds.
    fn forget_about(&mut self, path: &str) {
        self.at.retain(|m, _| !m.contains(path));
        let at = &self.at;
        self.order.retain(|m| at.contains_key(m));
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
    use crate::agent::checkpoint::{Acquired, Checkpoints};
    use crate::agent::stats::Stats;
    use crate::agent::tail::tests::{append, context, lines};

    /// A temp dir with `logs/` (made) and `data/` (not yet) under it.
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (logs, data) = (dir.path().join("logs"), dir.path().join("data"));
        fs::create_dir(&logs).unwrap();
        (dir, logs, data)
    }

    /// Leaves a saved position of `path` in `topic` in `data`'s checkpoint
    /// file: acknowledged to `offset`, the file seen to `end`.
    fn save_position(data: &Path, path: &Path, offset: u64, end: u64) -> FileId {
        let fid = FileId::of(&File::open(path).unwrap()).unwrap().unwrap();
        let cps = Checkpoints::open(data).unwrap();
        let Acquired::Ready(src, at) = cps.acquire(fid, &"t".into(), &path.to_string_lossy().into(), offset, &[])
        else {
            panic!("no position yet")
        };
        assert_eq!(at, offset);
        src.stats.size.store(end, Ordering::Relaxed);
        cps.release(&src, offset, false);
        assert!(cps.save().unwrap());
        fid
    }

    #[test]
    fn a_file_renamed_out_of_the_glob_while_down_is_read_to_its_end() {
        let (_dir, logs, data) = dirs();
        let app = logs.join("app.log");
        append(&app, b"one\ntwo\nthree\n");
        // "one" was acknowledged, "two" read and in flight at the stop.
        save_position(&data, &app, 4, 8);
        // Rotated while the agent was down: out of the `*.log` glob.
        fs::rename(&app, logs.join("app.log.1")).unwrap();
        append(&app, b"new\n");
        let (ctx, rx) = context(&data);
        let stats = ctx.stats.clone();
        let entry = CollectEntry::new(format!("{}/*.log", logs.display()), "t");
        let mut disc = Discovery::new(ctx, vec![entry]);
        disc.scan();
        let mut got = lines(&rx, 3, Duration::from_millis(300));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let texts: Vec<(&str, u64)> = got.iter().map(|(t, o, _)| (t.as_str(), *o)).collect();
        assert_eq!(texts, vec![("new", 0), ("three", 8), ("two", 4)]);
        assert_eq!(Stats::get(&stats.files_finished), 1);
        assert_eq!(Stats::get(&stats.lost_bytes), 0);
        // Looked for once: later scans leave it alone.
        disc.scan();
        disc.scan();
        assert_eq!(Stats::get(&stats.files_finished), 1);
        disc.stop_all();
    }

    #[test]
    fn a_file_deleted_with_unread_bytes_is_counted_as_lost_by_path() {
        let (_dir, logs, data) = dirs();
        let app = logs.join("app.log");
        append(&app, b"one\ntwo\nthree\n");
        let fid = save_position(&data, &app, 4, 14);
        fs::remove_file(&app).unwrap();
        // Another file with the same name (and maybe the inode) is not it.
        append(&app, b"other\n");
        let (ctx, rx) = context(&data);
        let (stats, cps) = (ctx.stats.clone(), ctx.checkpoints.clone());
        let entry = CollectEntry::new(format!("{}/*.log", logs.display()), "t");
        let mut disc = Discovery::new(ctx, vec![entry]);
        disc.scan();
        let got = lines(&rx, 1, Duration::from_millis(300));
        assert_eq!(got.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(), vec!["other"]);
        assert_eq!(Stats::get(&stats.lost_bytes), 10);
        assert_eq!(stats.lost_paths(), vec![(app.to_string_lossy().into_owned(), 10)]);
        assert!(cps.saved().iter().all(|s| s.fid != fid), "the position is dropped once counted");
        disc.scan();
        assert_eq!(Stats::get(&stats.lost_bytes), 10, "counted once");
        disc.stop_all();
    }

    #[test]
    fn a_saved_position_whose_entry_is_gone_is_left_alone() {
        let (_dir, logs, data) = dirs();
        let app = logs.join("app.log");
        append(&app, b"one\ntwo\n");
        save_position(&data, &app, 4, 8);
        fs::remove_file(&app).unwrap();
        let (ctx, _rx) = context(&data);
        let stats = ctx.stats.clone();
        // Another topic's entry: the position is not its to finish or count.
        let entry = CollectEntry::new(format!("{}/*.log", logs.display()), "other");
        let mut disc = Discovery::new(ctx, vec![entry]);
        disc.scan();
        assert_eq!((Stats::get(&stats.lost_bytes), Stats::get(&stats.files_finished)), (0, 0));
        disc.stop_all();
    }

    #[test]
    fn reported_messages_are_rate_limited_and_bounded() {
        let mut r = Reported::default();
        assert!(r.report("refusing /a".into()));
        assert!(!r.report("refusing /a".into()), "said once per window");
        for i in 0..REPORTED_MAX * 3 {
            r.report(format!("refusing /many/{i}"));
        }
        assert_eq!((r.at.len(), r.order.len()), (REPORTED_MAX, REPORTED_MAX), "bounded");
        assert_eq!(r.suppressed as usize, REPORTED_MAX * 3 + 1 - BURST_MAX as usize, "past the burst: counted");
        r.forget_about("/many/");
        assert!(r.at.is_empty() && r.order.is_empty());
        assert!(r.report("refusing /a".into()), "forgotten: said again");
    }
}
