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
//! A position belongs to the file (its [`FileId`]), with one offset per topic
//! the file is collected into: two entries that send one file to two topics
//! on purpose each keep their own. When a topic stops collecting a file and
//! another starts (a topic change, an entry replaced by another, a config
//! changed while the agent was down), the new topic continues where the old
//! topic's reader stopped instead of at `read_from`: the position moves, so
//! the file goes on with nothing lost or repeated ([`Checkpoints::acquire`]).
//! The move does not wait for the old topic's lines in flight: until they
//! are acknowledged the new topic's saved offset stays at the old topic's
//! acknowledged one (a [`Handed`] record), so a crash in between re-sends
//! rather than loses.
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
use serde::{Deserialize, Deserializer, Serialize};
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
/// Topics that stopped collecting a file within this long of each other
/// stopped together (one list change stops its readers within
/// milliseconds; at a restart they share the last save's time): a new topic
/// of the file takes over all of them.
const STOPPED_TOGETHER_MS: i64 = 5_000;
/// The version [`Checkpoints::save`] writes.
const VERSION: u32 = 2;

/// On-disk format, version 2: one record per file identity, holding the
/// position of every topic the file is collected into.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct DiskV2 {
    version: u32,
    /// When this file was written (ms since the epoch).
    saved_ms: i64,
    /// Sorted by identity; never a file without topics.
    files: Vec<FileV2>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct FileV2 {
    #[serde(flatten)]
    fid: FileId,
    /// The path the file was found under (of its first topic, when two
    /// topics found it under two links).
    path: String,
    /// Sorted by topic; a topic appears once.
    topics: Vec<TopicV2>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct TopicV2 {
    topic: String,
    /// Every line before this file offset was acknowledged in `topic`.
    offset: u64,
    /// How far the file was seen (its size, or the offset read to, if
    /// larger): `end - offset` bytes were not acknowledged yet, and are
    /// counted as lost if the file is gone before they are read. 0 (and
    /// left out): not known (written by an older build).
    #[serde(default, skip_serializing_if = "is_zero")]
    end: u64,
    /// Last time the offset was confirmed live (ms since the epoch).
    seen_ms: i64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// On-disk format, version 1 (before 2026-12): one row per (file, topic).
/// Still read; the next save writes version 2.
#[derive(Deserialize)]
struct DiskV1 {
    saved_ms: i64,
    files: Vec<Row>,
}

/// One topic's position of one file: a version 1 entry, and how positions
/// are compared and sorted in memory.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Row {
    #[serde(flatten)]
    fid: FileId,
    topic: String,
    path: String,
    /// Every line before this file offset was acknowledged.
    offset: u64,
    /// See [`TopicV2::end`] (not in version 1).
    #[serde(default, skip)]
    end: u64,
    /// Last time the offset was confirmed live (ms since the epoch).
    seen_ms: i64,
}

impl DiskV2 {
    /// Groups `rows` (sorted by [`row_order`]) by file.
    fn from_rows(saved_ms: i64, rows: &[Row]) -> DiskV2 {
        let mut files: Vec<FileV2> = Vec::new();
        for r in rows {
            let topic = TopicV2 { topic: r.topic.clone(), offset: r.offset, end: r.end, seen_ms: r.seen_ms };
            match files.last_mut() {
                Some(f) if f.fid == r.fid => f.topics.push(topic),
                _ => files.push(FileV2 { fid: r.fid, path: r.path.clone(), topics: vec![topic] }),
            }
        }
        DiskV2 { version: VERSION, saved_ms, files }
    }

    /// One row per (file, topic), sorted.
    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .files
            .iter()
            .flat_map(|f| {
                f.topics.iter().map(|t| Row {
                    fid: f.fid,
                    topic: t.topic.clone(),
                    path: f.path.clone(),
                    offset: t.offset,
                    end: t.end,
                    seen_ms: t.seen_ms,
                })
            })
            .collect();
        rows.sort_by(row_order);
        rows
    }
}

/// A persisted position.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub path: String,
    pub offset: u64,
    /// See [`TopicV2::end`].
    pub end: u64,
    seen_ms: i64,
}

/// A saved position (of a file no reader has open), as
/// [`Checkpoints::saved`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPosition {
    pub fid: FileId,
    pub topic: Arc<str>,
    pub path: String,
    pub offset: u64,
    /// See [`TopicV2::end`].
    pub end: u64,
}

/// Every checkpoint at one moment, as [`Checkpoints::save`] writes it: for a
/// store that keeps the checkpoints itself (see [`Checkpoints::restore`]).
/// Serialized as the current version; any version this build reads
/// deserializes (an index committed by an older build keeps its positions).
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(transparent)]
pub struct Snapshot(DiskV2);

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        parse_value(value).map(Snapshot).map_err(serde::de::Error::custom)
    }
}

impl Snapshot {
    /// Committed offset of every file, by path (several identities may share
    /// a path).
    #[cfg(test)]
    pub fn offsets(&self) -> Vec<(String, u64)> {
        self.0.rows().into_iter().map(|e| (e.path, e.offset)).collect()
    }
}

/// What [`Checkpoints::acquire`] gives a reader.
#[derive(Debug)]
pub enum Acquired {
    /// Read from the offset on, under the source.
    Ready(Arc<Source>, u64),
    /// The file moves to this topic from one that no longer collects it,
    /// and the old topic's reader has not stopped yet: where the new topic
    /// starts is only known once it has. Ask again later.
    Handover,
}

/// One topic's position of a file.
#[derive(Debug)]
enum Slot {
    /// Read by this process; the source may outlive its reader.
    Live(Arc<Source>),
    /// Loaded from disk, or left by a released source once it drained.
    Saved(Saved),
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

/// A source whose reader stopped.
struct Released {
    src: Arc<Source>,
    /// When the reader stopped (ms since the epoch): the position's
    /// `seen_ms` once it drained, which tells the topics that stopped
    /// collecting a file together from ones that stopped earlier.
    at_ms: i64,
}

#[derive(Default)]
struct State {
    /// Every file known, by identity: each topic's position. A file's map is
    /// never empty.
    files: HashMap<FileId, HashMap<Arc<str>, Slot>>,
    /// Released sources whose file is gone: dropped once drained.
    forget: Vec<Arc<Source>>,
    /// Released sources whose file lives on (rotated away, closed while
    /// inactive, stopped): once drained they become saved positions, so
    /// their `seen_ms` stops moving and the expiry applies; a reader that
    /// opens the file again takes them back, and a topic the file moves to
    /// takes their offset.
    released: Vec<Released>,
    /// What was last written, to skip writes when nothing changed.
    last_written: Vec<Row>,
    /// Files that moved to a topic while lines of the topics they left were
    /// in flight.
    handed: Vec<Handed>,
}

/// A file moved to `to`'s topic while lines read under the topics it left
/// (`from`) were still in flight: `to` read on from where they stopped, but
/// its saved offset may not pass what `from` acknowledged until they have
/// nothing in flight, or a crash meanwhile would lose what they had not
/// delivered. A source of `from` with a line rejected for good holds it
/// there for as long as `to` lives, as it held its own.
struct Handed {
    to: Arc<Source>,
    /// Only sources still in flight or holding.
    from: Vec<Arc<Source>>,
}

impl Handed {
    /// The lowest acknowledged offset of `from`; `None` once nothing holds.
    fn cap(&self) -> Option<u64> {
        self.from.iter().map(|f| f.progress.committed()).min()
    }
}

/// The offset `src` may be saved at, given its own acknowledged `offset`.
fn capped(handed: &[Handed], src: &Arc<Source>, offset: u64) -> u64 {
    handed.iter().filter(|h| Arc::ptr_eq(&h.to, src)).filter_map(Handed::cap).fold(offset, u64::min)
}

/// Whether a source still has lines in flight or a line rejected for good.
fn holding(src: &Source) -> bool {
    src.progress.advance();
    src.progress.in_flight() > 0 || src.progress.is_held()
}

impl State {
    fn slot(&self, fid: FileId, topic: &Arc<str>) -> Option<&Slot> {
        self.files.get(&fid).and_then(|t| t.get(topic))
    }

    /// Where another topic takes a source's position over, and when its
    /// reader stopped: its acknowledged offset once drained (a line
    /// rejected for good is read again in the new topic), else where the
    /// reader stopped (what is in flight stays the old topic's to deliver);
    /// `None` while its reader runs.
    fn stopped(&self, src: &Arc<Source>) -> Option<(u64, i64)> {
        let at_ms = self.released.iter().find(|r| Arc::ptr_eq(&r.src, src))?.at_ms;
        let offset = src.progress.advance();
        let offset = if src.progress.in_flight() == 0 { offset } else { src.progress.resume() };
        Some((offset, at_ms))
    }

    fn unrelease(&mut self, src: &Arc<Source>) {
        self.released.retain(|r| !Arc::ptr_eq(&r.src, src));
    }
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

    fn from_disk(dir: &Path, loaded: Option<DiskV2>) -> Self {
        let mut state = State::default();
        let previous_saved_ms = loaded.as_ref().map(|d| d.saved_ms);
        if let Some(d) = loaded {
            state.last_written = d.rows();
            for r in &state.last_written {
                let saved = Saved { path: r.path.clone(), offset: r.offset, end: r.end, seen_ms: r.seen_ms };
                state.files.entry(r.fid).or_default().insert(Arc::from(r.topic.as_str()), Slot::Saved(saved));
            }
        }
        Checkpoints { dir: dir.to_path_buf(), state: Mutex::new(state), previous_saved_ms, health: Arc::default() }
    }

    pub fn previous_saved_ms(&self) -> Option<i64> {
        self.previous_saved_ms
    }

    /// The saved position of a file, if any (live sources included).
    #[cfg(test)]
    pub fn lookup(&self, fid: FileId, topic: &Arc<str>) -> Option<u64> {
        match self.lock().slot(fid, topic)? {
            Slot::Live(src) => Some(src.progress.resume()),
            Slot::Saved(s) => Some(s.offset),
        }
    }

    /// The source for file `fid` under `topic`, continuing where this
    /// process or a previous one left it. `collecting` names the topics
    /// whose entries cover the file now (`topic` among them or not);
    /// `start` is used when the file was never read.
    ///
    /// With no position of its own, `topic` takes over the positions of the
    /// file's other topics that are not in `collecting` (they stopped
    /// collecting it: the file moves here) and stopped last (within
    /// [`STOPPED_TOGETHER_MS`] of each other), at the lowest of their
    /// offsets, and they are gone: moving back later moves the position
    /// back. With none, `start` (`read_from`) applies. The offset is where
    /// the old topic's reader stopped (its acknowledged offset once it has
    /// nothing in flight), so the move waits only for that reader to stop
    /// ([`Acquired::Handover`]), not for the broker: its lines in flight
    /// are still delivered to the old topic, and hold the new topic's saved
    /// offset back until they are ([`Handed`]).
    pub fn acquire(
        &self,
        fid: FileId,
        topic: &Arc<str>,
        path: &Arc<str>,
        start: u64,
        collecting: &[Arc<str>],
    ) -> Acquired {
        self.acquire_from(fid, topic, path, start, Some(collecting))
    }

    /// Like [`Checkpoints::acquire`], but never takes another topic's
    /// position: for a file that had no identity yet when its reader
    /// started (no first line), which no other topic can have read lines of.
    pub fn acquire_own(&self, fid: FileId, topic: &Arc<str>, path: &Arc<str>, start: u64) -> (Arc<Source>, u64) {
        match self.acquire_from(fid, topic, path, start, None) {
            Acquired::Ready(src, offset) => (src, offset),
            Acquired::Handover => unreachable!("no handover without collecting topics"),
        }
    }

    /// `collecting`: `None` takes over no other topic's position.
    fn acquire_from(
        &self,
        fid: FileId,
        topic: &Arc<str>,
        path: &Arc<str>,
        start: u64,
        collecting: Option<&[Arc<str>]>,
    ) -> Acquired {
        let mut st = self.lock();
        match st.slot(fid, topic) {
            Some(Slot::Live(src)) => {
                let src = src.clone();
                st.unrelease(&src);
                st.forget.retain(|r| !Arc::ptr_eq(r, &src));
                let resume = src.progress.resume();
                return Acquired::Ready(src, resume);
            }
            Some(Slot::Saved(s)) => {
                let (offset, end) = (s.offset, s.end);
                let src = self.insert_live(&mut st, fid, topic, path, offset);
                // How far the file was seen stays known until the reader looks.
                src.stats.size.store(end, std::sync::atomic::Ordering::Relaxed);
                return Acquired::Ready(src, offset);
            }
            None => {}
        }
        // Positions the file left behind in topics that no longer collect
        // it: (topic, offset, when that topic stopped collecting it).
        let mut left: Vec<(Arc<str>, u64, i64)> = Vec::new();
        if let (Some(collecting), Some(topics)) = (collecting, st.files.get(&fid)) {
            for (t, slot) in topics.iter().filter(|(t, _)| !collecting.contains(t)) {
                match slot {
                    // Its file identity ended (deleted, truncated): nothing to continue.
                    Slot::Live(src) if st.forget.iter().any(|f| Arc::ptr_eq(f, src)) => {}
                    Slot::Live(src) => match st.stopped(src) {
                        Some((offset, at_ms)) => left.push((t.clone(), offset, at_ms)),
                        None => return Acquired::Handover,
                    },
                    Slot::Saved(s) => left.push((t.clone(), s.offset, s.seen_ms)),
                }
            }
        }
        // Only the topics that stopped last move here: one removed long ago
        // (a second topic dropped on purpose) keeps its position for its
        // own return.
        let last = left.iter().map(|l| l.2).max().unwrap_or(0);
        let moving: Vec<(Arc<str>, u64)> =
            left.into_iter().filter(|l| last - l.2 <= STOPPED_TOGETHER_MS).map(|l| (l.0, l.1)).collect();
        let Some(offset) = moving.iter().map(|(_, o)| *o).min() else {
            return Acquired::Ready(self.insert_live(&mut st, fid, topic, path, start), start);
        };
        let st = &mut *st;
        // `left` came from this file's positions, under the same lock.
        let Some(topics) = st.files.get_mut(&fid) else {
            return Acquired::Ready(self.insert_live(st, fid, topic, path, start), start);
        };
        // What holds the new topic's saved offset back: the old topics'
        // sources still in flight, and what held them back in turn.
        let mut holds: Vec<Arc<Source>> = Vec::new();
        for (t, _) in &moving {
            if let Some(Slot::Live(src)) = topics.remove(t) {
                st.released.retain(|r| !Arc::ptr_eq(&r.src, &src));
                for h in st.handed.iter().filter(|h| Arc::ptr_eq(&h.to, &src)) {
                    holds.extend(h.from.iter().cloned());
                }
                holds.push(src);
            }
        }
        holds.retain(|s| holding(s));
        let from: Vec<String> = moving.iter().map(|(t, o)| format!("{t} at {o}")).collect();
        let held = holds.len();
        tracing::info!(%path, %topic, offset, from = %from.join(", "), in_flight_in = held, "file moves to another topic: continuing where the old topic's reader stopped");
        let src = self.insert_live(st, fid, topic, path, offset);
        if !holds.is_empty() {
            st.handed.push(Handed { to: src.clone(), from: holds });
        }
        Acquired::Ready(src, offset)
    }

    fn insert_live(&self, st: &mut State, fid: FileId, topic: &Arc<str>, path: &Arc<str>, offset: u64) -> Arc<Source> {
        let src = Arc::new(Source::new(topic.clone(), path.clone(), fid, offset));
        st.files.entry(fid).or_default().insert(topic.clone(), Slot::Live(src.clone()));
        src
    }

    /// The file `fid` still exists although no reader has it open (closed
    /// while inactive): its saved position must not expire.
    pub fn touch(&self, fid: FileId, topic: &Arc<str>) {
        if let Some(Slot::Saved(s)) = self.lock().files.get_mut(&fid).and_then(|t| t.get_mut(topic)) {
            s.seen_ms = now_ms();
        }
    }

    /// Every saved position: files no reader of this process has open
    /// (read before, rotated away, closed while inactive, or whose entry
    /// is gone).
    pub fn saved(&self) -> Vec<SavedPosition> {
        let st = self.lock();
        let mut out = Vec::new();
        for (fid, topics) in &st.files {
            for (topic, slot) in topics {
                if let Slot::Saved(s) = slot {
                    let (path, offset, end) = (s.path.clone(), s.offset, s.end);
                    out.push(SavedPosition { fid: *fid, topic: topic.clone(), path, offset, end });
                }
            }
        }
        out
    }

    /// Forgets the saved position of `fid` in `topic` (its file is gone:
    /// what it had not read is counted as lost by the caller).
    pub fn drop_saved(&self, fid: FileId, topic: &Arc<str>) {
        let mut st = self.lock();
        if let Some(topics) = st.files.get_mut(&fid) {
            if matches!(topics.get(topic), Some(Slot::Saved(_))) {
                topics.remove(topic);
            }
            if topics.is_empty() {
                st.files.remove(&fid);
            }
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
            st.released.push(Released { src: src.clone(), at_ms: now_ms() });
        }
    }

    /// Advances every source, and writes the checkpoint file if anything
    /// changed. Returns whether it wrote.
    pub fn save(&self) -> io::Result<bool> {
        let now = now_ms();
        let rows = {
            let mut st = self.lock();
            let rows = collect(&mut st, now);
            // `seen_ms` alone changing is not worth a write.
            let same = rows.len() == st.last_written.len()
                && rows.iter().zip(&st.last_written).all(|(a, b)| {
                    a.fid == b.fid && a.topic == b.topic && a.offset == b.offset && a.end == b.end && a.path == b.path
                });
            if same && self.health.failing().is_none() {
                return Ok(false);
            }
            rows
        };
        let disk = DiskV2::from_rows(now, &rows);
        let path = self.dir.join(FILE_NAME);
        // Compact: the file is rewritten whole on every change.
        let written = serde_json::to_vec(&disk).map_err(io::Error::other).and_then(|b| write_atomic(&path, &b));
        match written {
            Ok(()) => {
                self.health.ok();
                // Only what reached the disk counts as written: after a
                // failure the next save tries again even if nothing moved.
                self.lock().last_written = rows;
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
        let rows = collect(&mut self.lock(), now);
        Snapshot(DiskV2::from_rows(now, &rows))
    }

    /// Committed offset of every live source (for status and tests).
    pub fn live(&self) -> Vec<Arc<Source>> {
        let st = self.lock();
        st.files
            .values()
            .flat_map(|t| t.values())
            .filter_map(|s| match s {
                Slot::Live(src) => Some(src.clone()),
                Slot::Saved(_) => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `slot` holds `src` itself.
fn holds(slot: Option<&Slot>, src: &Arc<Source>) -> bool {
    matches!(slot, Some(Slot::Live(l)) if Arc::ptr_eq(l, src))
}

/// Advances every source, drops drained forgotten ones and stale entries,
/// and lists every position, sorted.
fn collect(st: &mut State, now: i64) -> Vec<Row> {
    // Sources that are gone leave once drained.
    let forget = std::mem::take(&mut st.forget);
    for src in forget {
        src.progress.advance();
        if src.progress.in_flight() > 0 {
            st.forget.push(src);
        } else if let Some(topics) = st.files.get_mut(&src.fid) {
            if holds(topics.get(&src.topic), &src) {
                topics.remove(&src.topic);
            }
        }
    }
    // Handovers hold only while the old topics' lines are in flight.
    for h in &mut st.handed {
        h.from.retain(|f| holding(f));
    }
    st.handed.retain(|h| !h.from.is_empty());
    // Released sources that are drained become saved positions: no longer
    // confirmed live, so they expire after FORGET_AFTER_MS like any other.
    // One a handover still holds back waits until that settles too.
    let released = std::mem::take(&mut st.released);
    for r in released {
        let src = &r.src;
        let offset = src.progress.advance();
        let waiting =
            st.handed.iter().any(|h| Arc::ptr_eq(&h.to, src) && h.from.iter().any(|f| f.progress.in_flight() > 0));
        if src.progress.in_flight() > 0 || waiting {
            st.released.push(r);
            continue;
        }
        let offset = capped(&st.handed, src, offset);
        if let Some(topics) = st.files.get_mut(&src.fid) {
            if holds(topics.get(&src.topic), src) {
                let saved = Saved { path: src.path.to_string(), offset, end: seen_end(src), seen_ms: r.at_ms };
                topics.insert(src.topic.clone(), Slot::Saved(saved));
            }
        }
    }
    let mut rows = Vec::new();
    let handed = std::mem::take(&mut st.handed);
    st.files.retain(|fid, topics| {
        topics.retain(|_, slot| match slot {
            Slot::Live(_) => true,
            Slot::Saved(s) => now - s.seen_ms < FORGET_AFTER_MS,
        });
        for (topic, slot) in topics.iter() {
            let (path, offset, end, seen_ms) = match slot {
                Slot::Live(src) => {
                    (src.path.to_string(), capped(&handed, src, src.progress.advance()), seen_end(src), now)
                }
                Slot::Saved(s) => (s.path.clone(), s.offset, s.end, s.seen_ms),
            };
            rows.push(Row { fid: *fid, topic: topic.to_string(), path, offset, end, seen_ms });
        }
        !topics.is_empty()
    });
    // A handover whose new source left its slot (moved on, saved, gone)
    // holds nothing any more: what it held went into the next handover or
    // the saved offset.
    st.handed = handed;
    let files = &st.files;
    st.handed.retain(|h| holds(files.get(&h.to.fid).and_then(|t| t.get(&h.to.topic)), &h.to));
    rows.sort_by(row_order);
    rows
}

/// How far a source's file was seen: its size at the last look, or the
/// offset read to if larger.
fn seen_end(src: &Source) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    src.stats.size.load(Relaxed).max(src.stats.read_offset.load(Relaxed))
}

fn row_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    (a.fid.dev, a.fid.ino, a.fid.head, &a.topic).cmp(&(b.fid.dev, b.fid.ino, b.fid.head, &b.topic))
}

fn parse(bytes: &[u8]) -> Result<DiskV2, String> {
    parse_value(serde_json::from_slice(bytes).map_err(|e| e.to_string())?)
}

/// Any version this build reads, as version 2.
fn parse_value(value: serde_json::Value) -> Result<DiskV2, String> {
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    match version {
        Some(1) => {
            let v1: DiskV1 = serde_json::from_value(value).map_err(|e| e.to_string())?;
            let mut rows = v1.files;
            rows.sort_by(row_order);
            Ok(DiskV2::from_rows(v1.saved_ms, &rows))
        }
        Some(2) => serde_json::from_value(value).map_err(|e| e.to_string()),
        Some(other) => Err(format!("unsupported checkpoint version {other} (this build reads versions 1 and 2)")),
        None => Err("no \"version\" number".into()),
    }
}

#[cfg(test)]
mod tests;
