//! The per-file reader: one thread follows one file through appends,
//! truncation, rotation and deletion, and hands its lines on in batches.
//!
//! States, checked each time the reader reaches the end of the file:
//! - **growing**: read, split, send; repeat until EOF.
//! - **truncated** (size below what was read: `copytruncate` or `> file`):
//!   the identity ends, reading restarts at offset 0 as a new identity.
//! - **deleted** (no links left): the rest is read, the unfinished line is
//!   shipped, the descriptor is closed and the checkpoint entry dropped.
//! - **moved** (the path now leads elsewhere, or nowhere: rename rotation):
//!   the old file is read to its end and watched for late writes for
//!   `rotate_wait`; then it is let go (its checkpoint stays). The new file at
//!   the path is found by discovery as a file of its own.
//! - **idle**: the reader parks. With inotify ([`crate::agent::wake`]) it sleeps
//!   until its file changes (checking every [`WATCHED_IDLE`] as a safety
//!   net); without, it polls, sleeping longer each time up to `poll_max`.
//!   After [`RELEASE_AFTER`] without data its chunk memory is given back.
//!   So a thousand quiet files cost next to nothing; `stop` unparks it.
//!
//! A batch is registered with the file's progress only once it is in the
//! channel, so a batch dropped at shutdown is simply read again later.
//!
//! With `multiline` (an entry option) the lines go through the file's
//! [`Aggregator`] and a batch holds whole events, joined into a reused
//! buffer; it is registered up to the first line of the event still open
//! ([`Aggregator::boundary`]), so a checkpoint never splits an event. The
//! open event ends after `multiline_timeout_ms` of quiet (a parked reader
//! wakes for it), at truncation, deletion, rotation and stop. Without
//! `multiline` none of this runs: lines ship as slices of the read chunk.

use crate::agent::batch::{Batch, Source};
use crate::agent::checkpoint::{Acquired, Checkpoints};
use crate::agent::identity::FileId;
use crate::agent::multiline::{Aggregator, Event};
use crate::agent::split::{Block, LineBuffer, Span, SplitConfig};
use crate::agent::stats::Stats;
use crate::agent::wake::{Registration, Wake};
use crate::common::ack::BatchAck;
use crate::common::clock::now_ms;
use crate::config::multiline::Multiline;
use crate::config::{AgentConfig, ReadFrom};
use bytes::BytesMut;
use crossbeam_channel::{SendTimeoutError, Sender};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Longest sleep of an idle reader whose file inotify watches: changes wake
/// it at once; this only bounds how late a change inotify missed is seen.
pub const WATCHED_IDLE: Duration = Duration::from_secs(5);
/// An idle reader gives its chunk memory back after this long without data.
pub const RELEASE_AFTER: Duration = Duration::from_secs(10);

/// Reader settings, shared by every reader.
#[derive(Clone, Debug)]
pub struct TailConfig {
    pub split: SplitConfig,
    pub read_from: ReadFrom,
    /// Ship an unfinished last line after this long without data.
    pub partial_flush: Option<Duration>,
    pub rotate_wait: Duration,
    pub poll_max: Duration,
    /// Mark batches for the transfer to merge JSON-object lines (an entry option).
    pub parse_json: bool,
    /// Follow symlinks the globs find (`[agent]`, or the entry's option);
    /// used by discovery ([`crate::agent::guard`]).
    pub follow_symlinks: bool,
    /// `[agent] allowed_paths`: never an entry's.
    pub allowed_paths: crate::config::AllowedPaths,
    /// Close the file after this long without new data (nothing pending);
    /// discovery opens it again from its checkpoint once it grows.
    pub close_inactive: Option<Duration>,
    /// Group lines into events (an entry option); `None`: one line, one record.
    pub multiline: Option<Multiline>,
}

impl From<&AgentConfig> for TailConfig {
    fn from(a: &AgentConfig) -> Self {
        TailConfig {
            split: SplitConfig::from(a),
            read_from: a.read_from,
            partial_flush: (a.partial_line_flush_ms > 0).then(|| Duration::from_millis(a.partial_line_flush_ms)),
            rotate_wait: Duration::from_millis(a.rotate_wait_ms),
            poll_max: Duration::from_millis(a.poll_max_ms),
            // Only a collect entry sets it (discovery, per entry).
            parse_json: false,
            follow_symlinks: a.follow_symlinks,
            allowed_paths: a.allowed_paths.clone(),
            close_inactive: (a.close_inactive_ms > 0).then(|| Duration::from_millis(a.close_inactive_ms)),
            // Only a collect entry sets it.
            multiline: None,
        }
    }
}

/// The settings of `entry`'s readers: `base` with the entry's options.
pub fn entry_config(base: &TailConfig, entry: &crate::config::CollectEntry) -> TailConfig {
    let o = &entry.options;
    let mut cfg = base.clone();
    if let Some(r) = o.read_from {
        cfg.read_from = r;
    }
    if let Some(l) = o.long_lines {
        cfg.split.long_lines = l;
    }
    if let Some(m) = o.max_line_bytes {
        // The producer is sized for [agent] max_line_bytes: a longer
        // record would be refused for good.
        let limit = base.split.max_line_bytes;
        if m > limit {
            tracing::warn!(path = %entry.path, topic = %entry.topic, max_line_bytes = m, limit, "the entry's max_line_bytes is above [agent] max_line_bytes (the producer's record size): using the limit");
        }
        cfg.split.max_line_bytes = m.min(limit);
    }
    cfg.parse_json = o.parse_json;
    cfg.multiline = o.multiline.clone();
    if let Some(f) = o.follow_symlinks {
        cfg.follow_symlinks = f;
    }
    cfg
}

/// What every reader needs: settings, the checkpoint registry, the channel.
#[derive(Clone)]
pub struct TailCtx {
    pub cfg: TailConfig,
    pub checkpoints: Arc<Checkpoints>,
    pub tx: Sender<Batch>,
    pub stats: Arc<Stats>,
    /// Wakes parked readers on file changes; `None`: readers poll.
    pub wake: Option<Arc<Wake>>,
    /// `[agent] max_open_files`: most readers discovery runs; 0: no cap.
    pub max_open_files: usize,
}

impl TailCtx {
    /// The readers' context with `[agent]`'s settings; starts the inotify
    /// thread that wakes them.
    pub fn new(agent: &AgentConfig, checkpoints: Arc<Checkpoints>, tx: Sender<Batch>, stats: Arc<Stats>) -> Self {
        TailCtx {
            cfg: TailConfig::from(agent),
            checkpoints,
            tx,
            stats,
            wake: Wake::start(),
            max_open_files: agent.max_open_files,
        }
    }

    /// The same context with other settings (a collect entry's options).
    pub fn with_cfg(&self, cfg: TailConfig) -> Self {
        TailCtx { cfg, ..self.clone() }
    }
}

/// Where a file with no checkpoint is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Found when its collect entry was first scanned: `read_from` applies,
    /// except to files created after the previous run's last checkpoint
    /// (they appeared while the agent was down).
    Present,
    /// Appeared while running: from the beginning.
    New,
}

/// A running reader.
pub struct ReaderHandle {
    pub path: Arc<str>,
    stop: Arc<AtomicBool>,
    /// Set by the reader when it closed its file for inactivity: 1 + the
    /// offset it had read to (0: not closed for that).
    inactive_at: Arc<AtomicU64>,
    /// When the reader last read data (ms since the epoch), for choosing
    /// the idlest one to close when `max_open_files` is reached.
    last_data_ms: Arc<AtomicI64>,
    /// Set when discovery closes the reader to make room: it then reports
    /// where it stopped in `inactive_at`, as an inactive one does.
    evicted: Arc<AtomicBool>,
    /// The file's identity, set when the reader stops having read a line
    /// of it: discovery keeps a closed file's checkpoint fresh with it.
    fid: Arc<OnceLock<FileId>>,
    thread: JoinHandle<()>,
}

impl ReaderHandle {
    /// Asks the reader to stop after handing on what it has read.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Closes the file to make room for one waiting (`max_open_files`):
    /// like [`ReaderHandle::stop`], and discovery opens it again from its
    /// checkpoint once it grows.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.stop();
    }

    /// Whether [`ReaderHandle::evict`] or `stop` was asked.
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The offset read to when the reader closed its file for inactivity
    /// (or was evicted).
    pub fn closed_inactive_at(&self) -> Option<u64> {
        self.inactive_at.load(Ordering::Acquire).checked_sub(1)
    }

    /// The identity of the file, once the reader has stopped (`None` if it
    /// never read a first line).
    pub fn file_id(&self) -> Option<FileId> {
        self.fid.get().copied()
    }

    /// When data was last read (ms since the epoch; the start if never).
    pub fn last_data_ms(&self) -> i64 {
        self.last_data_ms.load(Ordering::Relaxed)
    }

    pub fn join(self) {
        self.stop();
        let _ = self.thread.join();
    }
}

/// Starts the reader thread of `file`, found at `path` and opened by
/// [`crate::agent::guard`] (a regular file), for `topic`; `collecting` are
/// the topics whose entries cover the file now (see
/// [`Checkpoints::acquire`]). An error here is the caller's to report;
/// nothing started. `None`: the file moves to `topic` from a topic whose
/// reader has not stopped yet, nothing started; try again later.
pub fn spawn(
    ctx: Arc<TailCtx>,
    file: File,
    path: PathBuf,
    topic: Arc<str>,
    start: Start,
    collecting: &[Arc<str>],
) -> io::Result<Option<ReaderHandle>> {
    let meta = file.metadata()?;
    let path_text: Arc<str> = Arc::from(path.to_string_lossy().as_ref());
    let stop = Arc::new(AtomicBool::new(false));
    let inactive_at = Arc::new(AtomicU64::new(0));
    let last_data_ms = Arc::new(AtomicI64::new(now_ms()));
    let evicted = Arc::new(AtomicBool::new(false));
    let fid = Arc::new(OnceLock::new());
    let events = ctx.cfg.multiline.as_ref().map(|m| Box::new(Events::new(m, ctx.cfg.split.max_line_bytes)));
    let mut reader = Reader {
        evicted: evicted.clone(),
        fid: fid.clone(),
        inactive_at: inactive_at.clone(),
        last_data_ms: last_data_ms.clone(),
        lb: LineBuffer::new(0, ctx.cfg.split),
        ctx,
        path,
        path_text: path_text.clone(),
        topic,
        file,
        dev: meta.dev(),
        ino: meta.ino(),
        source: None,
        spans: Vec::new(),
        stop: stop.clone(),
        last_data: Instant::now(),
        moved_since: None,
        watch: None,
        unaccounted: 0,
        events,
    };
    if !reader.position(&meta, start, collecting)? {
        return Ok(None);
    }
    let thread = thread::Builder::new().name("tail".into()).stack_size(256 << 10).spawn(move || reader.run())?;
    Ok(Some(ReaderHandle { path: path_text, stop, inactive_at, last_data_ms, evicted, fid, thread }))
}

struct Reader {
    ctx: Arc<TailCtx>,
    /// See [`ReaderHandle`].
    inactive_at: Arc<AtomicU64>,
    last_data_ms: Arc<AtomicI64>,
    evicted: Arc<AtomicBool>,
    fid: Arc<OnceLock<FileId>>,
    path: PathBuf,
    path_text: Arc<str>,
    topic: Arc<str>,
    file: File,
    /// Device and inode of the open file.
    dev: u64,
    ino: u64,
    lb: LineBuffer,
    /// `None` until the file has a first line to identify it by.
    source: Option<Arc<Source>>,
    /// Spans of the block being built; moved into the batch.
    spans: Vec<Span>,
    stop: Arc<AtomicBool>,
    last_data: Instant,
    /// Since when the path no longer leads to this file.
    moved_since: Option<Instant>,
    /// The inotify watch that unparks this thread, when there is one.
    watch: Option<Registration>,
    /// Bytes read not yet added to the source's stats.
    unaccounted: u64,
    /// With `multiline`: the file's events (boxed: plain readers carry a
    /// pointer's worth of it).
    events: Option<Box<Events>>,
}

/// Growth step of the events' buffer: it is allocated in pieces of at least
/// this, not per event.
const EVENT_CHUNK: usize = 64 << 10;

/// A multiline reader's events: the aggregator, and the events it ended
/// that wait to be shipped in the next batch.
struct Events {
    agg: Aggregator,
    /// The ended events' bytes, back to back; frozen into a batch's block
    /// (`split().freeze()`), the rest of the allocation stays for the next
    /// events, and `reserve` takes a whole one back once every batch cut
    /// from it was dropped.
    buf: BytesMut,
    /// One per event in `buf`, in file order.
    spans: Vec<Span>,
    /// File offset of each event's first line (its `offset`).
    offsets: Vec<u64>,
}

impl Events {
    fn new(m: &Multiline, max_line_bytes: usize) -> Self {
        Events { agg: Aggregator::new(m, max_line_bytes), buf: BytesMut::new(), spans: Vec::new(), offsets: Vec::new() }
    }

    /// Pushes `lines` (the splitter's spans of `block`) through the
    /// aggregator at `now`; then ends the open event if `flush`, or if its
    /// timeout passed.
    fn feed(&mut self, lines: Option<(&Block, &[Span])>, now: i64, flush: bool) {
        let Events { agg, buf, spans, offsets } = self;
        let mut keep = |e: Event<'_>| {
            if buf.capacity() - buf.len() < e.bytes.len() {
                buf.reserve(e.bytes.len().max(EVENT_CHUNK));
            }
            spans.push(Span { start: buf.len() as u32, len: e.bytes.len() as u32, cut: e.cut });
            offsets.push(e.offset);
            buf.extend_from_slice(e.bytes);
        };
        if let Some((block, lines)) = lines {
            for s in lines {
                agg.push(&block.data[s.range()], block.offset + u64::from(s.start), s.cut, now, &mut keep);
            }
        }
        if flush {
            agg.flush(&mut keep);
        } else {
            agg.tick(now, &mut keep);
        }
    }
}

enum Next {
    Read,
    Park,
    /// Stop reading; `forget` drops the checkpoint entry (file gone).
    Exit {
        forget: bool,
    },
}

impl Reader {
    /// Chooses the starting offset: the checkpoint (the file's own in this
    /// topic, or one it leaves in a topic not among `collecting`), else the
    /// start policy. False: the file is being handed over from another
    /// topic, not yet.
    fn position(&mut self, meta: &fs::Metadata, start: Start, collecting: &[Arc<str>]) -> io::Result<bool> {
        let Some(fid) = FileId::of(&self.file)? else {
            // No complete first line yet: nothing was ever shipped from it.
            return Ok(true);
        };
        let size = meta.len();
        let from_start = match (start, self.ctx.cfg.read_from) {
            (Start::New, _) | (_, ReadFrom::Beginning) => true,
            (Start::Present, ReadFrom::End) => match self.ctx.checkpoints.previous_saved_ms() {
                Some(prev) => created_ms(meta).is_some_and(|c| c > prev),
                None => false,
            },
        };
        let default = if from_start { 0 } else { line_start_before(&self.file, size)? };
        let (src, mut offset) =
            match self.ctx.checkpoints.acquire(fid, &self.topic, &self.path_text, default, collecting) {
                Acquired::Ready(src, offset) => (src, offset),
                Acquired::Handover => return Ok(false),
            };
        if offset > size {
            tracing::warn!(path = %self.path_text, checkpoint = offset, size, "file is shorter than its checkpoint (truncated while the agent was down): reading from the start");
            // How far the previous run saw it (see Checkpoints::acquire):
            // what it had not acknowledged went with the truncation.
            let end = src.stats.size.load(Ordering::Relaxed);
            if end > offset {
                tracing::error!(path = %self.path_text, topic = %self.topic, from = offset, to = end, bytes = end - offset, "file truncated before it was read to its end: these bytes are lost");
                self.ctx.stats.lost(&self.path_text, end - offset);
            }
            offset = 0;
        }
        tracing::info!(path = %self.path_text, topic = %self.topic, offset, fid = %src.fid_text, "following file");
        self.source = Some(src);
        self.lb = LineBuffer::new(offset, self.ctx.cfg.split);
        Ok(true)
    }

    fn run(mut self) {
        self.ctx.stats.files_open.fetch_add(1, Ordering::Relaxed);
        // Registered from this thread: it is the one events unpark.
        self.watch = self.ctx.wake.as_ref().and_then(|w| w.register(&self.file));
        let forget = self.follow();
        // Never past an open event (there is none unless a send failed: every
        // way out of `follow` ends it first).
        let open = self.events.as_ref().and_then(|e| e.agg.boundary());
        let resume = open.map_or(self.lb.offset(), |b| b.min(self.lb.offset()));
        if self.evicted.load(Ordering::Acquire) && !forget {
            self.inactive_at.store(resume + 1, Ordering::Release);
        }
        if let Some(src) = &self.source {
            let _ = self.fid.set(src.fid);
            self.ctx.checkpoints.release(src, resume, forget);
        }
        self.ctx.stats.files_open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(path = %self.path_text, resume, forget, "reader stopped");
    }

    /// The main loop; returns whether the file's checkpoint can be dropped.
    fn follow(&mut self) -> bool {
        let mut backoff = Duration::from_millis(1);
        loop {
            if self.stop.load(Ordering::Acquire) {
                // The open event ends here rather than wait for a restart.
                let _ = self.send_events(None, true);
                return false;
            }
            // Positioned reads: the file offset is always the buffer's, so a
            // restart, a checkpoint or a truncation never needs a seek.
            let mut at = ReadAt { file: &self.file, pos: self.lb.read_offset() };
            // Without a chunk (idle), look before allocating one to read nothing.
            let nothing_new =
                self.lb.is_released() && self.file.metadata().is_ok_and(|m| m.len() == self.lb.read_offset());
            let read = if nothing_new { Ok(0) } else { self.lb.read_from(&mut at) };
            let next = match read {
                Ok(0) => self.at_eof(),
                Ok(n) => {
                    self.ctx.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    self.unaccounted += n as u64;
                    self.last_data = Instant::now();
                    // Per read (a chunk), not per line.
                    self.last_data_ms.store(now_ms(), Ordering::Relaxed);
                    backoff = Duration::from_millis(1);
                    if let Some(block) = self.lb.take_lines(&mut self.spans) {
                        if !self.send(block) {
                            return false;
                        }
                    }
                    self.account();
                    Next::Read
                }
                Err(e) => {
                    tracing::warn!(path = %self.path_text, "read failed: {e}; retrying");
                    Next::Park
                }
            };
            match next {
                Next::Read => {}
                Next::Park => {
                    // Watched and nothing timed pending (an unfinished line
                    // to flush, a rotated file to let go): sleep until a change.
                    let quiet = self.lb.pending() == 0 && self.moved_since.is_none();
                    // An open event: wake when its timeout ends it.
                    let event_due = self.events.as_ref().and_then(|e| e.agg.deadline_ms());
                    if let Some(after) = self.ctx.cfg.close_inactive {
                        if quiet && event_due.is_none() && self.last_data.elapsed() >= after {
                            let at = self.lb.read_offset();
                            tracing::info!(path = %self.path_text, offset = at, "no new data for close_inactive_ms: closing the file (reopened from its checkpoint when it grows)");
                            self.inactive_at.store(at + 1, Ordering::Release);
                            return false;
                        }
                    }
                    let idle_wait = self.ctx.cfg.close_inactive.map_or(WATCHED_IDLE, |c| c.min(WATCHED_IDLE));
                    let mut wait = if self.watch.is_some() && quiet { idle_wait } else { backoff };
                    if let Some(due) = event_due {
                        let left = (due - now_ms()).clamp(1, i64::MAX) as u64;
                        wait = wait.min(Duration::from_millis(left));
                    }
                    if quiet && self.last_data.elapsed() >= RELEASE_AFTER {
                        self.lb.release_idle();
                    }
                    thread::park_timeout(wait);
                    backoff = (backoff * 2).min(self.ctx.cfg.poll_max);
                    self.check_head();
                }
                Next::Exit { forget } => return forget,
            }
        }
    }

    /// At the end of the file: look for truncation, deletion, rotation, and
    /// an unfinished line that waited long enough.
    fn at_eof(&mut self) -> Next {
        let meta = match self.file.metadata() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %self.path_text, "fstat failed: {e}");
                return Next::Park;
            }
        };
        if let Some(src) = &self.source {
            src.stats.size.store(meta.len(), Ordering::Relaxed);
        }
        if meta.len() < self.lb.read_offset() {
            self.restart_truncated("size below the read offset");
            return Next::Read;
        }
        if self.events.as_ref().is_some_and(|e| e.agg.deadline_ms().is_some_and(|d| now_ms() >= d)) {
            // `multiline_timeout_ms` without a new line: the event is over.
            if !self.send_events(None, false) {
                return Next::Exit { forget: false };
            }
        }
        let idle = self.last_data.elapsed();
        if self.lb.pending() > 0
            && self.ctx.cfg.partial_flush.is_some_and(|d| idle >= d)
            && self.identified()
            && !self.flush_partial()
        {
            return Next::Exit { forget: false };
        }
        if meta.nlink() == 0 {
            // Deleted: it will never grow again.
            if !self.flush_partial() || !self.send_events(None, true) {
                return Next::Exit { forget: false };
            }
            tracing::info!(path = %self.path_text, "file deleted and read to its end: closing it");
            return Next::Exit { forget: true };
        }
        let here = match fs::metadata(&self.path) {
            Ok(m) => m.dev() == self.dev && m.ino() == self.ino,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true, // cannot tell: keep following
        };
        if here {
            self.moved_since = None;
            return Next::Park;
        }
        let since = *self.moved_since.get_or_insert_with(|| {
            tracing::info!(path = %self.path_text, "file rotated away: reading it to its end");
            self.ctx.stats.rotations.fetch_add(1, Ordering::Relaxed);
            if let Some(src) = &self.source {
                src.stats.rotations.fetch_add(1, Ordering::Relaxed);
            }
            Instant::now()
        });
        if since.elapsed() >= self.ctx.cfg.rotate_wait && idle >= self.ctx.cfg.rotate_wait {
            let _ = self.flush_partial() && self.send_events(None, true);
            tracing::info!(path = %self.path_text, "rotated file idle: closing it");
            return Next::Exit { forget: false };
        }
        Next::Park
    }

    /// Whether the file has an identity that will not change: a source, or
    /// a complete first line (or [`HEAD_BYTES`] of one) to take it from.
    /// Until then an unfinished line is the file's first line, and is held
    /// (not flushed on the idle timeout): its identity would be hashed from
    /// bytes the line later outgrows, and the completed line would make the
    /// file look truncated (read again from 0) and, after a restart,
    /// unknown (read again from 0). Deletion and rotation still flush it:
    /// the file will not grow again under the glob.
    ///
    /// [`HEAD_BYTES`]: crate::agent::identity::HEAD_BYTES
    fn identified(&self) -> bool {
        self.source.is_some() || FileId::of(&self.file).is_ok_and(|f| f.is_some())
    }

    /// Moves the bytes read so far into the file's stats (a file has no
    /// source, so no stats, until its first line identified it).
    fn account(&mut self) {
        if let Some(src) = &self.source {
            src.stats.read_bytes.fetch_add(std::mem::take(&mut self.unaccounted), Ordering::Relaxed);
            src.stats.read_offset.store(self.lb.read_offset(), Ordering::Relaxed);
            src.stats.last_read_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// After a pause: a file truncated and written again may already have
    /// outgrown the old offset, so the size alone cannot tell. Its first line
    /// can: a different head means different content from offset 0.
    fn check_head(&mut self) {
        let Some(src) = &self.source else { return };
        if let Ok(Some(now)) = FileId::of(&self.file) {
            if now.head != src.fid.head {
                self.restart_truncated("its first line changed");
            }
        }
    }

    /// The file was truncated: its identity ends, reading restarts at 0.
    fn restart_truncated(&mut self, why: &str) {
        tracing::info!(path = %self.path_text, was = self.lb.read_offset(), "file truncated ({why}): reading it again from the start");
        self.ctx.stats.truncations.fetch_add(1, Ordering::Relaxed);
        // The open event belongs to the old content: it ends with it.
        let _ = self.send_events(None, true);
        if let Some(src) = self.source.take() {
            self.ctx.checkpoints.release(&src, self.lb.offset(), true);
        }
        self.lb.reset(0);
    }

    /// Ships the unfinished last line as it is. False when stopping.
    fn flush_partial(&mut self) -> bool {
        match self.lb.take_partial(&mut self.spans) {
            Some(block) => {
                self.ctx.stats.lines_partial.fetch_add(1, Ordering::Relaxed);
                self.send(block)
            }
            None => true,
        }
    }

    /// The source lines are shipped under, identifying the file on first use;
    /// `start` is where the first block to ship begins (every byte before it
    /// was shipped or skipped: what the new source counts as committed).
    fn source(&mut self, start: u64) -> Arc<Source> {
        if let Some(src) = &self.source {
            return src.clone();
        }
        let fid = match FileId::of(&self.file) {
            Ok(Some(fid)) => fid,
            _ => FileId::of_partial(&self.file).unwrap_or(FileId { dev: self.dev, ino: self.ino, head: 0 }),
        };
        // No first line when the reader started: no other topic shipped
        // lines of this identity, so there is no position to take over.
        let (src, _) = self.ctx.checkpoints.acquire_own(fid, &self.topic, &self.path_text, start);
        tracing::info!(path = %self.path_text, topic = %self.topic, fid = %src.fid_text, "following file");
        self.source = Some(src.clone());
        src
    }

    /// Hands a block to the channel, waiting while it is full (backpressure).
    /// Returns false when asked to stop before it could be sent; the block is
    /// then dropped unregistered and will be read again.
    fn send(&mut self, block: Block) -> bool {
        if self.events.is_some() {
            return self.send_events(Some(block), false);
        }
        // Not the buffer's offset: it is already past the block.
        let src = self.source(block.offset);
        let n = self.spans.len();
        let end = block.end_offset();
        let cut = self.spans.iter().filter(|s| s.cut != crate::record::Cut::Whole).count();
        let read_ms = now_ms();
        let ack = Arc::new(BatchAck::read_at(n, read_ms));
        if n == 0 {
            // Only skipped bytes (the rest of a truncated line).
            src.progress.push(ack, end);
            return true;
        }
        let spans = std::mem::replace(&mut self.spans, Vec::with_capacity(n));
        let parse_json = self.ctx.cfg.parse_json;
        let batch =
            Batch { source: src, block, spans, offsets: Vec::new(), end, read_ms, ack, parse_json, journal: None };
        self.deliver(batch, cut)
    }

    /// Multiline: pushes `block`'s lines (when there is one) through the
    /// aggregator, ends the open event if `flush` (or if its timeout
    /// passed), and ships the events that ended as one batch, registered up
    /// to the open event's first line. False as [`Reader::send`]. A reader
    /// without `multiline` has nothing to do here.
    fn send_events(&mut self, block: Option<Block>, flush: bool) -> bool {
        if self.events.is_none() {
            return true;
        }
        let src = if let Some(b) = &block {
            self.source(b.offset)
        } else if let Some(src) = &self.source {
            src.clone()
        } else {
            // Nothing read yet, so no event.
            return true;
        };
        let cut = self.spans.iter().filter(|s| s.cut != crate::record::Cut::Whole).count();
        // Every line before it went into the aggregator.
        let read_end = block.as_ref().map_or(self.lb.offset(), Block::end_offset);
        let ev = self.events.as_mut().expect("checked above");
        ev.feed(block.as_ref().map(|b| (b, &self.spans[..])), now_ms(), flush);
        self.spans.clear();
        let counts = ev.agg.take_counts();
        // Never into the open event: a restart reads it whole again.
        let end = ev.agg.boundary().unwrap_or(read_end);
        let n = ev.spans.len();
        let read_ms = now_ms();
        let ack = Arc::new(BatchAck::read_at(n, read_ms));
        if n == 0 {
            // Lines of the open event only (or skipped bytes).
            src.progress.push(ack, end);
            return true;
        }
        let data = ev.buf.split().freeze();
        let spans = std::mem::replace(&mut ev.spans, Vec::with_capacity(n));
        let offsets = std::mem::replace(&mut ev.offsets, Vec::with_capacity(n));
        let block = Block { data, offset: offsets[0] };
        let parse_json = self.ctx.cfg.parse_json;
        let batch = Batch { source: src, block, spans, offsets, end, read_ms, ack, parse_json, journal: None };
        if !self.deliver(batch, cut) {
            return false;
        }
        let stats = &self.ctx.stats;
        stats.multiline_events.fetch_add(counts.events, Ordering::Relaxed);
        stats.multiline_parts.fetch_add(counts.parts, Ordering::Relaxed);
        true
    }

    /// Sends a batch of records, `cut` of them lines the splitter cut, and
    /// registers it. False as [`Reader::send`].
    fn deliver(&mut self, mut batch: Batch, cut: usize) -> bool {
        let (src, ack, end, n) = (batch.source.clone(), batch.ack.clone(), batch.end, batch.spans.len());
        let stats = &self.ctx.stats;
        loop {
            match self.ctx.tx.send_timeout(batch, Duration::from_millis(100)) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(b)) => {
                    if self.stop.load(Ordering::Acquire) {
                        self.lb_rewind(&b);
                        return false;
                    }
                    batch = b;
                }
                Err(SendTimeoutError::Disconnected(b)) => {
                    self.lb_rewind(&b);
                    return false;
                }
            }
        }
        src.progress.push(ack, end);
        stats.lines_read.fetch_add(n as u64, Ordering::Relaxed);
        if cut > 0 {
            stats.lines_cut.fetch_add(cut as u64, Ordering::Relaxed);
            tracing::warn!(path = %self.path_text, cut, max_line_bytes = self.ctx.cfg.split.max_line_bytes, "lines longer than max_line_bytes were cut");
        }
        true
    }

    /// A batch was not sent: the next reader must start at its first byte
    /// (an event's first line, with `multiline`; the events after it are
    /// read again too).
    fn lb_rewind(&mut self, b: &Batch) {
        self.lb.reset(b.offsets.first().copied().unwrap_or(b.block.offset));
        if let (Some(ev), Some(m)) = (self.events.as_mut(), self.ctx.cfg.multiline.as_ref()) {
            ev.agg = Aggregator::new(m, self.ctx.cfg.split.max_line_bytes);
            ev.buf.clear();
            ev.spans.clear();
            ev.offsets.clear();
        }
    }
}

/// `Read` over `pread`: reads at `pos` without touching the file cursor.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Creation time of a file (statx birth time), in ms since the epoch.
fn created_ms(meta: &fs::Metadata) -> Option<i64> {
    meta.created().ok()?.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as i64)
}

/// The offset just after the last newline before `size`: where reading
/// "from the end" starts without cutting a line in half.
fn line_start_before(file: &File, size: u64) -> io::Result<u64> {
    const WINDOW: u64 = 64 << 10;
    if size == 0 {
        return Ok(0);
    }
    let from = size.saturating_sub(WINDOW);
    let mut buf = vec![0u8; (size - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(match memchr::memrchr(b'\n', &buf) {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}

#[cfg(test)]
pub(crate) mod tests;
