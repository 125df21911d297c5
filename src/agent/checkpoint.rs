//! Checkpoints: how far each file has been acknowledged, kept on disk.
//!
//! [`Checkpoints`] is the registry of every [`Source`] the process reads and
//! the persisted offsets of files it read before. [`Checkpoints::save`] asks
//! each source's [`Progress`] for its committed offset (the end of its
//! acknowledged prefix) and writes the whole set when it changed:
//! versioned JSON, written to a temp file, fsync'd, renamed over the old one,
//! and the directory fsync'd. On open the temp file is tried first, in case
//! the process died between the fsync and the rename.
//!
//! Where the checkpoints must move together with what they describe (the
//! embedded index commits them in the same commit as the documents),
//! [`Checkpoints::snapshot`] hands out what `save` would write, and
//! [`Checkpoints::restore`] starts from such a snapshot instead of the file.
//!
//! [`Progress`]: crate::common::ack::Progress

use crate::agent::batch::Source;
use crate::agent::identity::FileId;
use crate::common::atomic_file::write_atomic;
use crate::common::clock::now_ms;
use crate::common::write_health::WriteHealth;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const FILE_NAME: &str = "checkpoints.json";
/// What [`crate::common::atomic_file::tmp_path`] gives for [`FILE_NAME`].
const TMP_NAME: &str = "checkpoints.json.tmp";
/// Entries of files not seen for this long are forgotten.
const FORGET_AFTER_MS: i64 = 14 * 24 * 3600 * 1000;

/// The key of a checkpoint: one file under one topic.
pub type Key = (FileId, Arc<str>);

/// On-disk format, version 1.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct DiskV1 {
    version: u32,
    /// When this file was written (ms since the epoch).
    saved_ms: i64,
    files: Vec<EntryV1>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct EntryV1 {
    #[serde(flatten)]
    fid: FileId,
    topic: String,
    path: String,
    /// Every line before this file offset was acknowledged.
    offset: u64,
    /// Last time the offset was confirmed live (ms since the epoch).
    seen_ms: i64,
}

/// A persisted position.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub path: String,
    pub offset: u64,
    seen_ms: i64,
}

/// Every checkpoint at one moment, as [`Checkpoints::save`] writes it: for a
/// store that keeps the checkpoints itself (see [`Checkpoints::restore`]).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(transparent)]
pub struct Snapshot(DiskV1);

impl Snapshot {
    /// Committed offset of every file, by path (several identities may share
    /// a path).
    #[cfg(test)]
    pub fn offsets(&self) -> Vec<(String, u64)> {
        self.0.files.iter().map(|e| (e.path.clone(), e.offset)).collect()
    }
}

/// The registry of sources and their saved positions.
pub struct Checkpoints {
    dir: PathBuf,
    state: Mutex<State>,
    /// When the previous run last saved, if there was one: files created after
    /// it appeared while the agent was down and are read from the beginning.
    previous_saved_ms: Option<i64>,
    /// Whether saves work (for `/metrics` and `/health/ready`); where the
    /// index commits the checkpoints, its commits report here.
    health: Arc<WriteHealth>,
}

#[derive(Default)]
struct State {
    /// Positions loaded from disk or taken from sources that were released.
    saved: HashMap<Key, Saved>,
    /// Sources read by this process; each may outlive its reader.
    live: HashMap<Key, Arc<Source>>,
    /// Released sources whose file is gone: dropped once drained.
    forget: Vec<Arc<Source>>,
    /// Released sources whose file lives on (rotated away, closed while
    /// inactive, stopped): once drained they leave `live` for `saved`, so
    /// their `seen_ms` stops moving and the expiry applies; a reader that
    /// opens the file again takes them back.
    released: Vec<Arc<Source>>,
    /// What was last written, to skip writes when nothing changed.
    last_written: Vec<EntryV1>,
}

impl Checkpoints {
    /// Opens (and creates) `dir`, loading the newest readable checkpoint file.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io::Error::new(e.kind(), format!("data_dir {}: {e}", dir.display())))?;
        let mut loaded = None;
        for name in [TMP_NAME, FILE_NAME] {
            let p = dir.join(name);
            match fs::read(&p) {
                Ok(bytes) => match parse(&bytes) {
                    Ok(d) => {
                        loaded = Some(d);
                        break;
                    }
                    // An interrupted temp file is expected; a bad main file is not.
                    Err(e) if name == TMP_NAME => {
                        tracing::debug!(path = %p.display(), "ignoring temp checkpoint: {e}")
                    }
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
            }
        }
        Ok(Checkpoints::from_disk(dir, loaded))
    }

    /// Starts from `snapshot` (taken by [`Checkpoints::snapshot`], possibly
    /// in an earlier process) instead of the checkpoint file; `None`: no
    /// file was ever read. Such a registry is saved by its owner through
    /// `snapshot`, not by [`Checkpoints::save`].
    pub fn restore(dir: &Path, snapshot: Option<Snapshot>) -> Self {
        Checkpoints::from_disk(dir, snapshot.map(|s| s.0))
    }

    /// The same registry reporting its writes to `health` (shared by the
    /// registries a restarting pipeline makes one after the other).
    pub fn with_health(mut self, health: Arc<WriteHealth>) -> Self {
        self.health = health;
        self
    }

    fn from_disk(dir: &Path, loaded: Option<DiskV1>) -> Self {
        let mut state = State::default();
        let previous_saved_ms = loaded.as_ref().map(|d| d.saved_ms);
        if let Some(d) = loaded {
            for e in d.files {
                state.saved.insert(
                    (e.fid, Arc::from(e.topic.as_str())),
                    Saved { path: e.path.clone(), offset: e.offset, seen_ms: e.seen_ms },
                );
                state.last_written.push(e);
            }
            state.last_written.sort_by(entry_order);
        }
        Checkpoints { dir: dir.to_path_buf(), state: Mutex::new(state), previous_saved_ms, health: Arc::default() }
    }

    pub fn previous_saved_ms(&self) -> Option<i64> {
        self.previous_saved_ms
    }

    /// The saved position of a file, if any (live sources included).
    #[cfg(test)]
    pub fn lookup(&self, fid: FileId, topic: &Arc<str>) -> Option<u64> {
        let st = self.lock();
        let key = (fid, topic.clone());
        if let Some(src) = st.live.get(&key) {
            return Some(src.progress.resume());
        }
        st.saved.get(&key).map(|s| s.offset)
    }

    /// The source for a file, continuing where this process or a previous
    /// one left it; `start` is used when there is no record of the file.
    /// Returns the source and the offset to read from.
    pub fn acquire(&self, fid: FileId, topic: &Arc<str>, path: &Arc<str>, start: u64) -> (Arc<Source>, u64) {
        let mut st = self.lock();
        let key = (fid, topic.clone());
        if let Some(src) = st.live.get(&key).cloned() {
            st.released.retain(|r| !Arc::ptr_eq(r, &src));
            st.forget.retain(|r| !Arc::ptr_eq(r, &src));
            let resume = src.progress.resume();
            return (src, resume);
        }
        let offset = st.saved.get(&key).map(|s| s.offset).unwrap_or(start);
        let src = Arc::new(Source::new(topic.clone(), path.clone(), fid, offset));
        st.live.insert(key, src.clone());
        (src, offset)
    }

    /// The file `fid` still exists although no reader has it open (closed
    /// while inactive): its saved position must not expire.
    pub fn touch(&self, fid: FileId, topic: &Arc<str>) {
        if let Some(s) = self.lock().saved.get_mut(&(fid, topic.clone())) {
            s.seen_ms = now_ms();
        }
    }

    /// A reader stopped at `resume`. With `forget` (the file is gone, or was
    /// truncated and lives on as a new identity) the entry is dropped once
    /// everything read from it was acknowledged.
    pub fn release(&self, src: &Arc<Source>, resume: u64, forget: bool) {
        src.progress.set_resume(resume);
        let mut st = self.lock();
        if forget {
            st.forget.push(src.clone());
        } else {
            st.released.push(src.clone());
        }
    }

    /// Advances every source, and writes the checkpoint file if anything
    /// changed. Returns whether it wrote.
    pub fn save(&self) -> io::Result<bool> {
        let now = now_ms();
        let entries = {
            let mut st = self.lock();
            let entries = collect(&mut st, now);
            // `seen_ms` alone changing is not worth a write.
            let same = entries.len() == st.last_written.len()
                && entries
                    .iter()
                    .zip(&st.last_written)
                    .all(|(a, b)| a.fid == b.fid && a.topic == b.topic && a.offset == b.offset && a.path == b.path);
            if same && self.health.failing().is_none() {
                return Ok(false);
            }
            entries
        };
        let disk = DiskV1 { version: 1, saved_ms: now, files: entries };
        let path = self.dir.join(FILE_NAME);
        // Compact: the file is rewritten whole on every change.
        let written = serde_json::to_vec(&disk).map_err(io::Error::other).and_then(|b| write_atomic(&path, &b));
        match written {
            Ok(()) => {
                self.health.ok();
                // Only what reached the disk counts as written: after a
                // failure the next save tries again even if nothing moved.
                self.lock().last_written = disk.files;
                Ok(true)
            }
            Err(e) => {
                let e = io::Error::new(e.kind(), format!("{}: {e}", path.display()));
                self.health.failed(e.to_string());
                Err(e)
            }
        }
    }

    /// Whether saves (or, for a restored registry, the commits that carry
    /// it) work.
    pub fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }

    /// Advances every source and returns what [`Checkpoints::save`] would
    /// write, without writing it.
    pub fn snapshot(&self) -> Snapshot {
        let now = now_ms();
        let files = collect(&mut self.lock(), now);
        Snapshot(DiskV1 { version: 1, saved_ms: now, files })
    }

    /// Committed offset of every live source (for status and tests).
    pub fn live(&self) -> Vec<Arc<Source>> {
        self.lock().live.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Advances every source, drops drained forgotten ones and stale entries,
/// and lists every position, sorted.
fn collect(st: &mut State, now: i64) -> Vec<EntryV1> {
    // Sources that are gone move out of the live set once drained.
    let forget = std::mem::take(&mut st.forget);
    for src in forget {
        src.progress.advance();
        let key = (src.fid, src.topic.clone());
        if src.progress.in_flight() == 0 {
            st.live.remove(&key);
            st.saved.remove(&key);
        } else {
            st.forget.push(src);
        }
    }
    // Released sources that are drained become saved positions: no longer
    // confirmed live, so they expire after FORGET_AFTER_MS like any other.
    let released = std::mem::take(&mut st.released);
    for src in released {
        let offset = src.progress.advance();
        let key = (src.fid, src.topic.clone());
        if src.progress.in_flight() == 0 {
            if st.live.get(&key).is_some_and(|l| Arc::ptr_eq(l, &src)) {
                st.live.remove(&key);
                st.saved.insert(key, Saved { path: src.path.to_string(), offset, seen_ms: now });
            }
        } else {
            st.released.push(src);
        }
    }
    let mut entries = Vec::with_capacity(st.live.len() + st.saved.len());
    for (key, src) in &st.live {
        let offset = src.progress.advance();
        entries.push(EntryV1 {
            fid: key.0,
            topic: key.1.to_string(),
            path: src.path.to_string(),
            offset,
            seen_ms: now,
        });
    }
    st.saved.retain(|k, s| !st.live.contains_key(k) && now - s.seen_ms < FORGET_AFTER_MS);
    for (key, s) in &st.saved {
        entries.push(EntryV1 {
            fid: key.0,
            topic: key.1.to_string(),
            path: s.path.clone(),
            offset: s.offset,
            seen_ms: s.seen_ms,
        });
    }
    entries.sort_by(entry_order);
    entries
}

fn entry_order(a: &EntryV1, b: &EntryV1) -> std::cmp::Ordering {
    (a.fid.dev, a.fid.ino, a.fid.head, &a.topic).cmp(&(b.fid.dev, b.fid.ino, b.fid.head, &b.topic))
}

fn parse(bytes: &[u8]) -> Result<DiskV1, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match v.version {
        1 => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        other => Err(format!("unsupported checkpoint version {other} (this build reads version 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::ack::BatchAck;

    fn fid(ino: u64) -> FileId {
        FileId { dev: 1, ino, head: 42 }
    }

    /// A registry in a fresh directory with source `/p` of topic `t`
    /// holding one batch of one line up to offset 10, not yet acknowledged.
    fn one_batch_in_flight() -> (tempfile::TempDir, Arc<str>, Checkpoints, Arc<Source>, Arc<BatchAck>) {
        let dir = tempfile::tempdir().unwrap();
        let topic: Arc<str> = "t".into();
        let cp = Checkpoints::open(dir.path()).unwrap();
        let (src, _) = cp.acquire(fid(1), &topic, &"/p".into(), 0);
        let a = Arc::new(BatchAck::new(1));
        src.progress.push(a.clone(), 10);
        (dir, topic, cp, src, a)
    }

    #[test]
    fn saves_only_acknowledged_offsets_and_reloads_them() {
        let dir = tempfile::tempdir().unwrap();
        let topic: Arc<str> = "t".into();
        let path: Arc<str> = "/x.log".into();
        {
            let cp = Checkpoints::open(dir.path()).unwrap();
            assert_eq!(cp.previous_saved_ms(), None);
            let (src, off) = cp.acquire(fid(1), &topic, &path, 0);
            assert_eq!(off, 0);
            let a = Arc::new(BatchAck::new(1));
            let b = Arc::new(BatchAck::new(1));
            src.progress.push(a.clone(), 10);
            src.progress.push(b.clone(), 20);
            b.ack();
            assert!(cp.save().unwrap());
            assert!(!cp.save().unwrap(), "unchanged: no write");
            a.ack();
            assert!(cp.save().unwrap());
        }
        let cp = Checkpoints::open(dir.path()).unwrap();
        assert!(cp.previous_saved_ms().is_some());
        assert_eq!(cp.lookup(fid(1), &topic), Some(20));
        assert_eq!(cp.lookup(fid(2), &topic), None);
        let (_, off) = cp.acquire(fid(1), &topic, &path, 0);
        assert_eq!(off, 20);
    }

    #[test]
    fn an_interrupted_temp_file_is_ignored_and_a_complete_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let topic: Arc<str> = "t".into();
        let cp = Checkpoints::open(dir.path()).unwrap();
        let (src, _) = cp.acquire(fid(1), &topic, &"/p".into(), 5);
        src.progress.advance();
        cp.save().unwrap();
        fs::write(dir.path().join(TMP_NAME), b"{\"version\":1,\"saved").unwrap();
        assert_eq!(Checkpoints::open(dir.path()).unwrap().lookup(fid(1), &topic), Some(5));
        let full = fs::read(dir.path().join(FILE_NAME)).unwrap();
        let newer = String::from_utf8(full).unwrap().replace("\"offset\":5", "\"offset\":9");
        fs::write(dir.path().join(TMP_NAME), newer).unwrap();
        assert_eq!(Checkpoints::open(dir.path()).unwrap().lookup(fid(1), &topic), Some(9));
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"version\":7,\"saved_ms\":0,\"files\":[]}").unwrap();
        let e = Checkpoints::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("version 7") && e.contains(FILE_NAME), "{e}");
        fs::write(dir.path().join(FILE_NAME), b"garbage").unwrap();
        assert!(Checkpoints::open(dir.path()).is_err());
    }

    #[test]
    fn a_snapshot_restores_like_the_file_and_writes_nothing() {
        let (dir, topic, cp, src, a) = one_batch_in_flight();
        src.progress.push(Arc::new(BatchAck::new(1)), 20);
        a.ack();
        let snap = cp.snapshot();
        assert_eq!(snap.offsets(), vec![("/p".to_string(), 10)], "only the acknowledged prefix");
        assert!(!dir.path().join(FILE_NAME).exists(), "a snapshot is not a save");
        // Through its serialized form, as a store keeps it.
        let text = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        let restored = Checkpoints::restore(dir.path(), Some(back));
        assert_eq!(restored.lookup(fid(1), &topic), Some(10));
        assert!(restored.previous_saved_ms().is_some());
        let fresh = Checkpoints::restore(dir.path(), None);
        assert_eq!((fresh.lookup(fid(1), &topic), fresh.previous_saved_ms()), (None, None));
    }

    #[test]
    fn released_sources_become_saved_once_drained_and_can_be_taken_back() {
        let (dir, topic, cp, src, a) = one_batch_in_flight();
        cp.release(&src, 10, false);
        cp.save().unwrap();
        assert_eq!(cp.live().len(), 1, "kept live while in flight");
        a.ack();
        cp.save().unwrap();
        assert!(cp.live().is_empty(), "drained: out of the live set");
        assert_eq!(cp.lookup(fid(1), &topic), Some(10), "its position stays");
        // Its seen_ms no longer moves: it expires like a position loaded from disk.
        let seen = cp.lock().saved[&(fid(1), topic.clone())].seen_ms;
        std::thread::sleep(std::time::Duration::from_millis(5));
        cp.save().unwrap();
        assert_eq!(cp.lock().saved[&(fid(1), topic.clone())].seen_ms, seen);
        // Unless discovery still finds the (closed) file: then it is fresh.
        cp.touch(fid(1), &topic);
        assert!(cp.lock().saved[&(fid(1), topic.clone())].seen_ms > seen);
        cp.touch(fid(2), &topic); // nothing saved for it: nothing happens
        assert_eq!(Checkpoints::open(dir.path()).unwrap().lookup(fid(1), &topic), Some(10));
        // Opened again: continues from there, live again.
        let (again, off) = cp.acquire(fid(1), &topic, &"/p".into(), 0);
        assert_eq!(off, 10);
        assert_eq!(cp.live().len(), 1);
        // Released and re-acquired before it drained: stays the one live source.
        let b = Arc::new(BatchAck::new(1));
        again.progress.push(b.clone(), 20);
        cp.release(&again, 20, false);
        let (same, off) = cp.acquire(fid(1), &topic, &"/p".into(), 0);
        assert!(Arc::ptr_eq(&same, &again) && off == 20);
        b.ack();
        cp.save().unwrap();
        assert_eq!(cp.live().len(), 1, "held by a reader again: not moved out");
    }

    #[test]
    fn forgotten_sources_leave_once_drained() {
        let (dir, topic, cp, src, a) = one_batch_in_flight();
        cp.release(&src, 10, true);
        cp.save().unwrap();
        assert_eq!(cp.live().len(), 1, "kept while in flight");
        a.ack();
        cp.save().unwrap();
        assert!(cp.live().is_empty());
        assert_eq!(Checkpoints::open(dir.path()).unwrap().lookup(fid(1), &topic), None);
    }
}
