//! The systemd journal source: `journalctl --follow --output=export` as a
//! child process, its entries into batches on the readers' channel (so the
//! Kafka shipper sends them like file lines), and the cursor of the
//! acknowledged prefix as the checkpoint.
//!
//! Why a child process and the export format: reading the journal files
//! natively means libsystemd (a C library whose version follows the host)
//! or reimplementing a file format that changes (compact mode, new
//! compression); journalctl is on every host with a journal and reads its
//! files whatever their version, as Vector's journald source does. Export
//! rather than JSON: it gives binary fields (a `MESSAGE` that is not text)
//! as their bytes, length-prefixed, where JSON gives arrays of numbers,
//! and it needs no JSON parser ([`export`]).
//!
//! - Records: value = `MESSAGE` (any bytes; cut to `max_line_bytes` and
//!   marked truncated); `path` = `journal`; `fid` = `journal-<seqnum id>`
//!   (the journal's sequence); `offset` = the entry's sequence number; the
//!   timestamp = `__REALTIME_TIMESTAMP` (ms); headers `journal`, `unit`,
//!   `ident`, `pid`, `priority`. The document id hashes host, fid, offset
//!   and length, like a file line's: an entry read again gets the same id.
//! - Checkpoint ([`checkpoint`]): the cursor of the last entry of the
//!   acknowledged prefix (a [`Progress`] over entry numbers), written with
//!   the file checkpoints. A start with a checkpoint first checks that the
//!   cursor is still in the journal, then follows with `--after-cursor`;
//!   if it was vacuumed away meanwhile, it reads from the oldest entry,
//!   counts a gap and logs how many entries were lost, when the sequence
//!   numbers tell.
//! - journalctl exiting (killed, journal rotated under a `--file`) is
//!   logged and restarted after the last entry read, with backoff.

pub mod checkpoint;
pub mod export;

use crate::agent::batch::{Batch, Source, SourceStats};
use crate::agent::identity::FileId;
use crate::agent::split::{Block, Span};
use crate::agent::stats::Stats;
use crate::common::ack::{BatchAck, Progress};
use crate::common::backoff::Backoff;
use crate::common::sync::lock;
use crate::config::{JournaldConfig, ReadFrom};
use crate::error::RunError;
use crate::record::Cut;
use crossbeam_channel::{SendTimeoutError, Sender};
use export::{CursorId, Entry};
use rdkafka::message::{Header, OwnedHeaders};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The `path` of journal records.
pub const JOURNAL_PATH: &str = "journal";

/// Most entries in one batch.
const MAX_BATCH_ENTRIES: usize = 512;

/// Bytes read from journalctl at a time: a pipe holds 64 KiB.
const READ_BYTES: usize = 128 << 10;

/// Where `journalctl` looks for the system journal.
const SYSTEM_JOURNALS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// One entry of a journal batch, beside its span: what its record carries
/// besides `MESSAGE`. Ranges index the batch's block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// The entry's sequence number (`i=` of its cursor): the record offset.
    pub seqnum: u64,
    /// `__REALTIME_TIMESTAMP` in ms: the record timestamp.
    pub realtime_ms: Option<i64>,
    /// `_SYSTEMD_UNIT`: a range of the block (start, end), at most 1 KiB.
    pub unit: Option<(u32, u32)>,
    /// `SYSLOG_IDENTIFIER`: a range of the block (start, end), at most 1 KiB.
    pub ident: Option<(u32, u32)>,
    /// `_PID`, when decimal.
    pub pid: Option<u64>,
    /// 0..=7.
    pub priority: Option<u8>,
}

/// What a journal batch carries besides its lines: one [`EntryMeta`] per span.
#[derive(Clone, Debug, Default)]
pub struct JournalLines {
    pub entries: Vec<EntryMeta>,
}

/// The record headers of a journal entry after the common ones.
pub fn headers(mut h: OwnedHeaders, e: &EntryMeta, data: &[u8]) -> OwnedHeaders {
    let slice = |r: (u32, u32)| &data[r.0 as usize..r.1 as usize];
    let mut num = itoa::Buffer::new();
    h = h.insert(Header { key: "journal", value: Some("1") });
    if let Some(r) = e.unit {
        h = h.insert(Header { key: "unit", value: Some(slice(r)) });
    }
    if let Some(r) = e.ident {
        h = h.insert(Header { key: "ident", value: Some(slice(r)) });
    }
    if let Some(p) = e.pid {
        h = h.insert(Header { key: "pid", value: Some(num.format(p)) });
    }
    if let Some(p) = e.priority {
        h = h.insert(Header { key: "priority", value: Some(num.format(p)) });
    }
    h
}

/// The journal source's counters (`/metrics`).
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Entries handed to the next stage.
    pub entries_read: AtomicU64,
    /// `MESSAGE` bytes handed on.
    pub bytes_read: AtomicU64,
    /// Starts whose checkpoint cursor was no longer in the journal.
    pub gaps: AtomicU64,
    /// Entries lost in those gaps, where sequence numbers tell.
    pub gap_entries: AtomicU64,
    /// Times journalctl ended and was started again.
    pub restarts: AtomicU64,
    /// Entries skipped for having no usable `__CURSOR`, and export streams
    /// that could not be parsed.
    pub bad_entries: AtomicU64,
    /// 1 while journalctl runs.
    pub running: AtomicU64,
}

/// Why the journal is not there to collect, for `enabled = auto`; `Ok`
/// when journalctl runs and a journal exists.
pub fn detect(cfg: &JournaldConfig) -> Result<(), String> {
    let out = Command::new(&cfg.journalctl).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("{} --version failed ({})", cfg.journalctl.display(), o.status)),
        Err(e) => return Err(format!("{} does not run: {e}", cfg.journalctl.display())),
    }
    match &cfg.directory {
        Some(d) if d.is_dir() => Ok(()),
        Some(d) => Err(format!("journald.directory {} is not a directory", d.display())),
        None if !cfg.files.is_empty() => Ok(()),
        None if SYSTEM_JOURNALS.iter().any(|d| Path::new(d).is_dir()) => Ok(()),
        None => Err(format!("no journal in {}", SYSTEM_JOURNALS.join(" or "))),
    }
}

/// The running source: its thread, and what the agent's saver needs.
pub struct Journal {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    cfg: JournaldConfig,
    /// Entry numbers (from 0 at this start) of the batches in flight.
    progress: Progress,
    /// (entry number just past a batch, the cursor of its last entry), in order.
    cursors: Mutex<VecDeque<(u64, String)>>,
    /// The cursor of the acknowledged prefix, and the one last written.
    acked: Mutex<(Option<String>, Option<String>)>,
    file: PathBuf,
    stats: Arc<JournalStats>,
    /// The follow child's pid while it runs and is not yet reaped.
    child: Mutex<Option<u32>>,
    stop: AtomicBool,
}

impl Journal {
    /// Loads the checkpoint and starts the reading thread: batches go to
    /// `tx` for the topic `cfg.topic`, lines longer than `max_line_bytes`
    /// truncated.
    pub fn spawn(
        cfg: JournaldConfig,
        data_dir: &Path,
        max_line_bytes: usize,
        tx: Sender<Batch>,
        agent_stats: Arc<Stats>,
        stats: Arc<JournalStats>,
    ) -> Result<Journal, RunError> {
        let file = checkpoint::path(data_dir);
        let saved = checkpoint::load(&file)?;
        let shared = Arc::new(Shared {
            cfg,
            progress: Progress::new(0),
            cursors: Mutex::new(VecDeque::new()),
            acked: Mutex::new((saved.clone(), saved.clone())),
            file,
            stats,
            child: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let reader = Reader::new(shared.clone(), tx, agent_stats, max_line_bytes);
        let thread = thread::Builder::new()
            .name("journal".into())
            .spawn(move || reader.run(saved))
            .map_err(|source| RunError::Spawn { what: "journal", source })?;
        Ok(Journal { shared, thread: Some(thread) })
    }

    /// Writes the cursor of the acknowledged prefix when it moved.
    pub fn save(&self) -> io::Result<()> {
        let s = &self.shared;
        let committed = s.progress.advance();
        let mut newest = None;
        {
            let mut q = lock(&s.cursors);
            while q.front().is_some_and(|(end, _)| *end <= committed) {
                newest = q.pop_front().map(|(_, c)| c);
            }
        }
        let mut acked = lock(&s.acked);
        if newest.is_some() {
            acked.0 = newest;
        }
        if acked.0 != acked.1 {
            if let Some(c) = &acked.0 {
                checkpoint::save(&s.file, c)?;
            }
            acked.1 = acked.0.clone();
        }
        Ok(())
    }

    /// Stops journalctl and the thread; what it read is on the channel (its
    /// sender is dropped, so the shipper can finish).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.kill_child();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn kill_child(&self) {
        if let Some(pid) = *lock(&self.child) {
            // Not yet reaped (the reader clears it first): the pid is still ours.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// `--directory` / `--file`: which journal.
    fn journal_args(&self) -> Vec<OsString> {
        let mut a = Vec::new();
        if let Some(d) = &self.cfg.directory {
            a.push(concat("--directory=", d.as_os_str()));
        }
        for f in &self.cfg.files {
            a.push(OsString::from(format!("--file={f}")));
        }
        a
    }

    /// The follow command's arguments from `start`.
    fn follow_args(&self, start: &Start) -> Vec<OsString> {
        let mut a = self.journal_args();
        a.extend(["--follow", "--output=export", "--no-pager"].map(OsString::from));
        if self.cfg.current_boot_only {
            a.push("--boot".into());
        }
        for u in &self.cfg.units {
            a.push(format!("--unit={u}").into());
        }
        match start {
            Start::After(c) => {
                a.push(format!("--after-cursor={c}").into());
                a.push("--no-tail".into());
            }
            Start::Oldest => a.push("--no-tail".into()),
            Start::End => a.push("--lines=0".into()),
        }
        if !self.cfg.matches.is_empty() {
            a.push("--".into());
            a.extend(self.cfg.matches.iter().map(OsString::from));
        }
        a
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.cfg.journalctl);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        // journalctl ends with the agent, even on kill -9.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd
    }

    /// The cursor of the first entry `journalctl <journal> <extra>` prints
    /// (no filters, no follow); `None` when it prints none. Errors: it did
    /// not run, or failed without printing one.
    fn first_cursor(&self, extra: &[OsString]) -> io::Result<Option<String>> {
        let mut args = self.journal_args();
        args.extend(["--output=export", "--no-pager"].map(OsString::from));
        args.extend_from_slice(extra);
        let mut child = self.command(&args).stderr(Stdio::piped()).spawn()?;
        let mut out = child.stdout.take().expect("piped");
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let found = loop {
            if let Some((e, _)) = export::next_entry(&buf).map_err(io::Error::other)? {
                break e.cursor.map(|c| String::from_utf8_lossy(c).into_owned());
            }
            let n = out.read(&mut chunk)?;
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let _ = child.kill();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait()?;
        if found.is_none() && !status.success() && !err.contains("No entries") {
            return Err(io::Error::other(format!("journalctl {status}: {}", err.trim())));
        }
        Ok(found)
    }

    /// Where a start with the checkpoint `cursor` begins: after it when the
    /// journal still holds it; else at the oldest entry, the gap counted
    /// and logged.
    fn start_after(&self, cursor: &str) -> io::Result<Start> {
        let want = CursorId::parse(cursor.as_bytes());
        // A cursor journalctl refuses is as gone as a vacuumed one.
        let at = self.first_cursor(&[format!("--cursor={cursor}").into()]).unwrap_or(None);
        let same = |c: &str| {
            let got = CursorId::parse(c.as_bytes());
            want.is_some() && got.map(|g| (g.seqnum_id, g.seqnum)) == want.map(|w| (w.seqnum_id, w.seqnum))
        };
        if at.as_deref().is_some_and(same) {
            return Ok(Start::After(cursor.to_string()));
        }
        let oldest = self.first_cursor(&[])?;
        let lost = match (want, oldest.as_deref().and_then(|o| CursorId::parse(o.as_bytes()))) {
            (Some(w), Some(o)) if w.seqnum_id == o.seqnum_id && o.seqnum > w.seqnum => Some(o.seqnum - w.seqnum - 1),
            _ => None,
        };
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        self.stats.gap_entries.fetch_add(lost.unwrap_or(0), Ordering::Relaxed);
        let lost_text = lost.map_or("an unknown number of".to_string(), |n| n.to_string());
        tracing::warn!(
            checkpoint = cursor,
            oldest = oldest.as_deref().unwrap_or("none"),
            lost = lost_text.as_str(),
            "the journal no longer holds the checkpoint's entry (vacuumed while the agent was down?): reading from the oldest entry; {lost_text} entries were lost"
        );
        Ok(Start::Oldest)
    }
}

fn concat(a: &str, b: &std::ffi::OsStr) -> OsString {
    let mut s = OsString::from(a);
    s.push(b);
    s
}

/// Where journalctl starts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Start {
    /// After this cursor, which the journal holds.
    After(String),
    /// The oldest entry.
    Oldest,
    /// Entries written from now on.
    End,
}

/// The reading thread's state: the batch being filled.
struct Reader {
    shared: Arc<Shared>,
    tx: Sender<Batch>,
    agent_stats: Arc<Stats>,
    max_line_bytes: usize,
    /// The source of the current sequence number id.
    source: Option<Arc<Source>>,
    data: Vec<u8>,
    spans: Vec<Span>,
    entries: Vec<EntryMeta>,
    /// The cursor of the last entry pushed.
    last: Option<String>,
    /// Entries handed on since this start: the [`Progress`] position.
    handed: u64,
    warned_bad: bool,
}

impl Reader {
    fn new(shared: Arc<Shared>, tx: Sender<Batch>, agent_stats: Arc<Stats>, max_line_bytes: usize) -> Self {
        Reader {
            shared,
            tx,
            agent_stats,
            max_line_bytes,
            source: None,
            data: Vec::new(),
            spans: Vec::new(),
            entries: Vec::new(),
            last: None,
            handed: 0,
            warned_bad: false,
        }
    }

    /// Follows the journal until stopped; `resume` is the checkpoint.
    fn run(mut self, mut resume: Option<String>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let shared = self.shared.clone();
        let mut first = true;
        // Set once a gap sent this start to the oldest entry: journalctl
        // started again before any entry was read goes there again.
        let mut oldest = false;
        while !shared.stopped() {
            let start = match &resume {
                Some(c) => match shared.start_after(c) {
                    Ok(Start::Oldest) => {
                        resume = None;
                        oldest = true;
                        Start::Oldest
                    }
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("journal: cannot run {}: {e}; retrying", shared.cfg.journalctl.display());
                        self.nap(backoff.next_wait());
                        continue;
                    }
                },
                None if shared.cfg.read_from == ReadFrom::End && !oldest => Start::End,
                None => Start::Oldest,
            };
            if first {
                tracing::info!(topic = %shared.cfg.topic, start = ?start, "collecting the systemd journal");
                first = false;
            }
            match self.follow(&start) {
                Ok(()) if shared.stopped() => break,
                Ok(()) => tracing::warn!("journal: journalctl ended; starting it again after the last entry read"),
                Err(e) => tracing::warn!("journal: {e}; starting journalctl again after the last entry read"),
            }
            shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
            if self.last.is_some() {
                resume = self.last.clone();
                backoff.reset();
            }
            self.nap(backoff.next_wait());
        }
    }

    fn nap(&self, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.shared.stopped() && std::time::Instant::now() < until {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one journalctl until it ends (or is stopped), handing its
    /// entries on.
    fn follow(&mut self, start: &Start) -> io::Result<()> {
        let shared = self.shared.clone();
        let args = shared.follow_args(start);
        tracing::debug!(?args, "starting journalctl");
        let mut child: Child = {
            let mut slot = lock(&shared.child);
            if shared.stopped() {
                return Ok(());
            }
            let c = shared.command(&args).stderr(Stdio::inherit()).spawn()?;
            *slot = Some(c.id());
            c
        };
        shared.stats.running.store(1, Ordering::Relaxed);
        let mut out = child.stdout.take().expect("piped");
        let result = self.read_all(&mut out);
        drop(out);
        let _ = child.kill();
        // Cleared before the wait reaps it: `kill_child` never signals a reused pid.
        *lock(&shared.child) = None;
        let status = child.wait();
        shared.stats.running.store(0, Ordering::Relaxed);
        result?;
        match status {
            Ok(s) if !s.success() && !shared.stopped() => Err(io::Error::other(format!("journalctl exited: {s}"))),
            _ => Ok(()),
        }
    }

    fn read_all(&mut self, out: &mut impl Read) -> io::Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BYTES * 2);
        let mut chunk = vec![0u8; READ_BYTES];
        loop {
            let n = match out.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut pos = 0;
            loop {
                match export::next_entry(&buf[pos..]) {
                    Ok(Some((e, used))) => {
                        self.push(&e);
                        pos += used;
                        if self.spans.len() >= MAX_BATCH_ENTRIES {
                            self.flush();
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.flush();
                        self.shared.stats.bad_entries.fetch_add(1, Ordering::Relaxed);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("journalctl's output: {e}")));
                    }
                }
            }
            buf.drain(..pos);
            // Everything the read brought is handed on: a quiet journal
            // ships each entry as it comes, a busy one in reads of 128 KiB.
            self.flush();
            if self.shared.stopped() {
                return Ok(());
            }
        }
    }

    /// Adds an entry to the batch being filled.
    fn push(&mut self, e: &Entry<'_>) {
        let Some((cursor, id)) = e.cursor.and_then(|c| Some((std::str::from_utf8(c).ok()?, CursorId::parse(c)?)))
        else {
            self.shared.stats.bad_entries.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.warned_bad, true) {
                tracing::warn!("journal: an entry without a usable __CURSOR was skipped (counted in logcollect_journal_bad_entries)");
            }
            return;
        };
        let fid_text = format!("journal-{}", id.seqnum_id);
        if self.source.as_ref().map_or(true, |s| *s.fid_text != *fid_text) {
            self.flush();
            let head = xxhash_rust::xxh3::xxh3_64(id.seqnum_id.as_bytes());
            self.source = Some(Arc::new(Source {
                topic: self.shared.cfg.topic.as_str().into(),
                path: JOURNAL_PATH.into(),
                fid: FileId { dev: 0, ino: 0, head },
                fid_text: fid_text.into(),
                progress: Progress::new(0),
                stats: SourceStats::default(),
            }));
        }
        let message = e.message.unwrap_or_default();
        let (message, cut) = if message.len() > self.max_line_bytes {
            (&message[..self.max_line_bytes], Cut::Truncated)
        } else {
            (message, Cut::Whole)
        };
        let start = self.data.len() as u32;
        self.data.extend_from_slice(message);
        self.spans.push(Span { start, len: message.len() as u32, cut });
        let mut range = |v: Option<&[u8]>| {
            v.map(|v| {
                let s = self.data.len() as u32;
                // Unit and identifier names are short; a long one is cut.
                self.data.extend_from_slice(&v[..v.len().min(1024)]);
                (s, self.data.len() as u32)
            })
        };
        let unit = range(e.unit);
        let ident = range(e.ident);
        self.entries.push(EntryMeta {
            seqnum: id.seqnum,
            realtime_ms: e.realtime_us.map(|us| (us / 1000) as i64),
            unit,
            ident,
            pid: e.pid.and_then(export::parse_decimal),
            priority: e.priority.and_then(export::parse_decimal).filter(|&p| p <= 7).map(|p| p as u8),
        });
        if cut == Cut::Truncated {
            self.agent_stats.lines_cut.fetch_add(1, Ordering::Relaxed);
        }
        self.last = Some(cursor.to_string());
    }

    /// Hands the batch being filled to the channel.
    fn flush(&mut self) {
        let n = self.spans.len();
        let (Some(source), Some(last)) = (self.source.clone(), self.last.clone()) else { return };
        if n == 0 {
            return;
        }
        let read_ms = crate::common::clock::now_ms();
        let ack = Arc::new(BatchAck::read_at(n, read_ms));
        let bytes: u64 = self.spans.iter().map(|s| u64::from(s.len)).sum();
        self.handed += n as u64;
        lock(&self.shared.cursors).push_back((self.handed, last));
        self.shared.progress.push(ack.clone(), self.handed);
        let s = &self.shared.stats;
        s.entries_read.fetch_add(n as u64, Ordering::Relaxed);
        s.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.agent_stats.lines_read.fetch_add(n as u64, Ordering::Relaxed);
        self.agent_stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        let mut batch = Batch {
            source,
            block: Block { data: std::mem::take(&mut self.data).into(), offset: 0 },
            spans: std::mem::take(&mut self.spans),
            // Journal entries carry their sequence numbers in `journal`.
            offsets: Vec::new(),
            end: self.handed,
            read_ms,
            ack,
            parse_json: false,
            journal: Some(JournalLines { entries: std::mem::take(&mut self.entries) }),
        };
        loop {
            match self.tx.send_timeout(batch, Duration::from_millis(100)) {
                Ok(()) => return,
                // Stopping with the channel full: the batch is dropped
                // unacknowledged, so the checkpoint stays before it.
                Err(SendTimeoutError::Timeout(_)) if self.shared.stopped() => return,
                Err(SendTimeoutError::Timeout(b)) => batch = b,
                Err(SendTimeoutError::Disconnected(_)) => return,
            }
        }
    }
}

/// Starts the journal source `cfg` asks for, if the journal is there
/// (`enabled = auto`) or wanted anyway (`enabled = true`), saying which at
/// start; its counters go to `observed`.
pub fn start(
    cfg: &crate::config::Config,
    tx: Sender<Batch>,
    agent_stats: &Arc<Stats>,
    observed: &crate::observe::Observed,
) -> Result<Option<Journal>, RunError> {
    let Some(j) = &cfg.journald else { return Ok(None) };
    if let Err(why) = detect(j) {
        if j.enabled == crate::config::JournalEnabled::Auto {
            tracing::info!("not collecting the systemd journal: {why} ([journald] enabled = auto)");
            return Ok(None);
        }
        tracing::warn!("[journald] enabled = true but {why}: trying anyway, and again with backoff");
    }
    let stats = Arc::new(JournalStats::default());
    observed.add_journal(stats.clone());
    let journal =
        Journal::spawn(j.clone(), &cfg.agent.data_dir, cfg.agent.max_line_bytes, tx, agent_stats.clone(), stats)?;
    Ok(Some(journal))
}

/// What `logcollect run` without Kafka says of `[journald]`: it does not
/// collect the journal yet (its pipelines keep file checkpoints in the
/// embedded index's commits, which know no cursor); with Kafka it does,
/// through the agent.
pub fn say_not_collected_by_run(cfg: &crate::config::Config) {
    if let Some(j) = &cfg.journald {
        match detect(j) {
            Ok(()) => tracing::warn!(
                "not collecting the systemd journal: `run` collects it only with [kafka] address set (through the agent)"
            ),
            Err(why) => tracing::info!("not collecting the systemd journal: {why}"),
        }
    }
}

/// [`Journal::save`], a failure logged (the next save retries).
pub fn save_logged(journal: Option<&Journal>) {
    if let Some(j) = journal {
        if let Err(e) = j.save() {
            tracing::error!("writing the journal checkpoint {}: {e}", j.shared.file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(cfg: JournaldConfig) -> Shared {
        Shared {
            cfg,
            progress: Progress::new(0),
            cursors: Mutex::new(VecDeque::new()),
            acked: Mutex::new((None, None)),
            file: PathBuf::from("/nonexistent/journal.json"),
            stats: Arc::default(),
            child: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    #[test]
    fn follow_arguments() {
        let cfg = JournaldConfig {
            units: vec!["ssh.service".into()],
            matches: vec!["PRIORITY=3".into()],
            current_boot_only: true,
            directory: Some("/j".into()),
            ..JournaldConfig::default()
        };
        let s = shared(cfg);
        let text = |a: Vec<OsString>| a.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        assert_eq!(
            text(s.follow_args(&Start::After("s=1;i=2".into()))),
            "--directory=/j --follow --output=export --no-pager --boot --unit=ssh.service --after-cursor=s=1;i=2 --no-tail -- PRIORITY=3"
        );
        let s = shared(JournaldConfig { files: vec!["/a/*.journal".into()], ..JournaldConfig::default() });
        assert_eq!(
            text(s.follow_args(&Start::Oldest)),
            "--file=/a/*.journal --follow --output=export --no-pager --no-tail"
        );
        assert_eq!(
            text(s.follow_args(&Start::End)),
            "--file=/a/*.journal --follow --output=export --no-pager --lines=0"
        );
    }

    #[test]
    fn entries_become_batches_with_their_fields() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sh = Arc::new(shared(JournaldConfig::default()));
        let mut r = Reader::new(sh.clone(), tx, Arc::default(), 4);
        let e = |i: u64, msg: &'static [u8]| Entry {
            cursor: Some(Box::leak(format!("s=ab;i={i:x};b=cd;m=1;t=2;x=3").into_bytes().into_boxed_slice())),
            realtime_us: Some(1_733_300_000_123_456),
            message: Some(msg),
            unit: Some(b"u.service"),
            pid: Some(b"12"),
            ident: Some(b"id"),
            priority: Some(b"3"),
            hostname: None,
            fields: 7,
        };
        r.push(&e(10, b"ab"));
        r.push(&e(11, b"toolong"));
        r.push(&Entry { cursor: None, ..e(12, b"x") });
        r.flush();
        let b = rx.try_recv().unwrap();
        assert_eq!(&*b.source.fid_text, "journal-ab");
        let lines: Vec<(&[u8], Cut)> = b.lines().map(|l| (l.bytes, l.cut)).collect();
        assert_eq!(lines, vec![(&b"ab"[..], Cut::Whole), (&b"tool"[..], Cut::Truncated)]);
        let j = b.journal.as_ref().unwrap();
        assert_eq!(j.entries.iter().map(|m| m.seqnum).collect::<Vec<_>>(), [10, 11]);
        let m = &j.entries[0];
        assert_eq!((m.realtime_ms, m.pid, m.priority), (Some(1_733_300_000_123), Some(12), Some(3)));
        assert_eq!(&b.block.data[m.unit.unwrap().0 as usize..m.unit.unwrap().1 as usize], b"u.service");
        assert_eq!(sh.stats.bad_entries.load(Ordering::Relaxed), 1);
        // The checkpoint moves only once the batch is acknowledged.
        let dir = tempfile::tempdir().unwrap();
        let sh2 = Arc::new(Shared { file: checkpoint::path(dir.path()), ..shared(JournaldConfig::default()) });
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut r = Reader::new(sh2.clone(), tx, Arc::default(), 100);
        let journal = Journal { shared: sh2, thread: None };
        r.push(&e(1, b"one"));
        r.flush();
        r.push(&e(2, b"two"));
        r.flush();
        let (b1, b2) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        journal.save().unwrap();
        assert_eq!(checkpoint::load(&checkpoint::path(dir.path())).unwrap(), None);
        b2.ack.ack();
        journal.save().unwrap();
        assert_eq!(checkpoint::load(&checkpoint::path(dir.path())).unwrap(), None, "not past an unacknowledged batch");
        b1.ack.ack();
        journal.save().unwrap();
        let saved = checkpoint::load(&checkpoint::path(dir.path())).unwrap().unwrap();
        assert!(saved.contains("i=2;"), "{saved}");
    }
}
