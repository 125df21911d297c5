//! The tailer against a model: random write / rotate / truncate / delete /
//! restart sequences on real files, read by the real readers.
//!
//! Each case runs the agent's reading half as the agent wires it (a
//! [`Discovery`] over one `*.log` glob, one [`TailCtx`], [`Checkpoints`] in a
//! data dir, the bounded channel) into a test sink thread instead of Kafka.
//! The sink records every line with its path and offset and acknowledges
//! each batch as soon as it has recorded it. A naive model knows every line
//! written, in which file generation (a file between its creation, or a
//! truncation, and the next rotation, truncation or deletion) and at which
//! offset.
//!
//! Actions (on files `f0.log`, `f1.log`):
//! - `Write`: appends whole lines `f{file}-{seq}[-pad]`, in one `write`,
//!   creating the file if needed.
//! - `WritePartial`: appends a line without its newline, then waits until it
//!   was flushed as a partial line (`partial_flush`); a later write starts a
//!   new line after it. Waiting keeps the model exact: whether the flush comes
//!   before the next write would otherwise be a race. A file with no complete
//!   first line gets a whole line first, unless the unfinished one is at
//!   least `HEAD_BYTES` long: a shorter unfinished first line is held until
//!   complete, since it identifies the file (`tail.rs` tests that case).
//! - `Rotate`: `x.log.1` is removed, `x.log` renamed to it, a new empty
//!   `x.log` created. The renamed file leaves the glob; its reader reads it to
//!   its end within `rotate_wait`. First the test waits until a reader of the
//!   current run follows the file (a file that leaves the glob before any
//!   reader found it is never read, by any glob-based tailer), and until the
//!   old `x.log.1` was delivered (removing it unread loses it for anyone).
//! - `Truncate` (copytruncate): waits until what was written was delivered,
//!   truncates to 0, and waits until the reader noticed. Lines written and
//!   truncated before a reader read them are gone for any tailer, so the model
//!   cannot require them. And a file truncated and written past the old
//!   offset between two reads of a busy reader (one not parked, so its head
//!   check has not run) is read from the old offset: size and head are only
//!   compared between reads, so waiting for the reader to see the truncation
//!   is what makes the next writes' offsets exact.
//! - `Delete`: waits until the file's lines were delivered, removes it.
//! - `Restart`: stops discovery and the readers as the agent's shutdown
//!   does, lets the sink drain the channel, saves the checkpoints and starts a
//!   fresh `Discovery` / `TailCtx` / `Checkpoints` over the same data dir.
//!   With `drop_in_flight` the sink first drops every batch it receives
//!   without recording or acknowledging it (the next stage lost them), until
//!   every line written was recorded or dropped; then the stop. The dropped
//!   lines were read but never acknowledged, so the checkpoint stays before
//!   them and the next run must deliver them. Rotated-away files need not
//!   be delivered first: the next run finds them outside the glob by their
//!   saved positions and reads them to their end. With `rotate_while_down`
//!   one file is rotated between the stop and the start (after its reader
//!   followed it), so the next run finds it outside the glob with whatever
//!   the stopped run had not read or had dropped.
//! - `Wait` (sleep, then a checkpoint save as the agent's timer does) and
//!   `Settle` (wait until every line written was delivered).
//!
//! What the model allows: every line written is delivered exactly once (a
//! batch is acknowledged before any restart can happen, or dropped and never
//! recorded, so no line is both recorded and left unacknowledged: no
//! duplicate is allowed, and none is lost), with the bytes written, at the
//! offset it was written at, under the path it was written to (a rotated file
//! keeps the path it was found under), as a whole line or, for
//! `WritePartial`, as a partial one; and each generation's lines arrive in
//! file order. The end of a case waits until the delivered set is complete and
//! then stops changing, stops the readers and checks all of it, and that
//! each file's checkpoint on disk is then its size.

use crate::agent::batch::Batch;
use crate::agent::checkpoint::Checkpoints;
use crate::agent::discovery::{self, Discovery};
use crate::agent::identity::{FileId, HEAD_BYTES};
use crate::agent::split::SplitConfig;
use crate::agent::stats::Stats;
use crate::agent::tail::{TailConfig, TailCtx};
use crate::config::{CollectEntry, LongLines, ReadFrom};
use crate::record::Cut;
use crossbeam_channel::{Receiver, Sender};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Files the actions pick from.
const FILES: usize = 2;
const SCAN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(20);
const ROTATE_WAIT: Duration = Duration::from_millis(100);
/// Long against a `write` of a few lines (a reader may see one half-done),
/// so a partial flush only ever happens where the model expects one.
const PARTIAL_FLUSH: Duration = Duration::from_millis(250);
/// Longest wait for any condition; far above what a healthy run needs.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// The delivered set must stay unchanged this long to count as settled.
const QUIET: Duration = Duration::from_millis(300);

#[derive(Clone, Debug)]
enum Action {
    Write { file: usize, lines: usize, pad: usize },
    WritePartial { file: usize, pad: usize },
    Rotate { file: usize },
    Truncate { file: usize },
    Delete { file: usize },
    Restart { drop_in_flight: bool, rotate_while_down: Option<usize> },
    Wait { ms: u64 },
    Settle,
}

fn action() -> impl Strategy<Value = Action> {
    let file = 0..FILES;
    // 300 bytes of padding: a first line longer than the 256-byte head.
    let pad = prop_oneof![Just(0usize), Just(12), Just(300)];
    let lines = prop_oneof![8 => 1usize..40, 1 => Just(1500)];
    prop_oneof![
        6 => (file.clone(), lines, pad.clone()).prop_map(|(file, lines, pad)| Action::Write { file, lines, pad }),
        1 => (file.clone(), pad).prop_map(|(file, pad)| Action::WritePartial { file, pad }),
        2 => file.clone().prop_map(|file| Action::Rotate { file }),
        2 => file.clone().prop_map(|file| Action::Truncate { file }),
        1 => file.prop_map(|file| Action::Delete { file }),
        2 => (any::<bool>(), proptest::option::of(0..FILES))
            .prop_map(|(drop_in_flight, rotate_while_down)| Action::Restart { drop_in_flight, rotate_while_down }),
        1 => (0u64..60).prop_map(|ms| Action::Wait { ms }),
        1 => Just(Action::Settle),
    ]
}

/// A line the sink received.
#[derive(Debug)]
struct Delivered {
    path: String,
    offset: u64,
    text: String,
    cut: Cut,
}

#[derive(Default)]
struct Log {
    lines: Vec<Delivered>,
    /// Times each text was delivered.
    seen: HashMap<String, usize>,
    /// Texts the sink dropped (received, not recorded, not acknowledged)
    /// in this run.
    dropped: HashSet<String>,
}

/// A line the model wrote.
#[derive(Debug)]
struct Written {
    file: usize,
    generation: u32,
    offset: u64,
    text: String,
    partial: bool,
}

#[derive(Default)]
struct FileModel {
    exists: bool,
    generation: u32,
    size: u64,
}

/// What the files hold and held.
#[derive(Default)]
struct Model {
    files: [FileModel; FILES],
    lines: Vec<Written>,
    next_seq: u32,
    next_generation: u32,
    /// The generation at each file's `x.log.1`, if any.
    rotated: [Option<u32>; FILES],
}

impl Model {
    fn new_generation(&mut self, file: usize) {
        self.next_generation += 1;
        self.files[file].generation = self.next_generation;
        self.files[file].size = 0;
    }

    /// Appends `n` lines (or one unfinished line) to `file`; returns the bytes.
    fn append(&mut self, file: usize, n: usize, pad: usize, partial: bool) -> Vec<u8> {
        if !self.files[file].exists {
            self.files[file].exists = true;
            self.new_generation(file);
        }
        let mut bytes = Vec::new();
        for _ in 0..n {
            self.next_seq += 1;
            let mut text = format!("f{file}-{}{}", self.next_seq, if partial { "p" } else { "" });
            if pad > 0 {
                text.push('-');
                text.extend(std::iter::repeat_n('x', pad));
            }
            let f = &mut self.files[file];
            self.lines.push(Written { file, generation: f.generation, offset: f.size, text: text.clone(), partial });
            f.size += text.len() as u64 + u64::from(!partial);
            bytes.extend_from_slice(text.as_bytes());
            if !partial {
                bytes.push(b'\n');
            }
        }
        bytes
    }
}

/// One run of the readers: discovery, its readers, the sink.
struct Run {
    stop_discovery: Sender<()>,
    discovery: JoinHandle<()>,
    sink: JoinHandle<()>,
    checkpoints: Arc<Checkpoints>,
    stats: Arc<Stats>,
    /// Set: the sink drops what it receives, unrecorded and unacknowledged.
    discard: Arc<AtomicBool>,
}

struct Harness {
    _dir: tempfile::TempDir,
    logs: PathBuf,
    data: PathBuf,
    inotify: bool,
    log: Arc<Mutex<Log>>,
    run: Option<Run>,
    model: Model,
    /// The actions so far, for failure messages.
    trace: String,
}

fn tail_config() -> TailConfig {
    TailConfig {
        split: SplitConfig { max_line_bytes: 1 << 20, long_lines: LongLines::Split, chunk_bytes: 64 << 10 },
        read_from: ReadFrom::Beginning,
        partial_flush: Some(PARTIAL_FLUSH),
        rotate_wait: ROTATE_WAIT,
        poll_max: POLL_MAX,
        parse_json: false,
        follow_symlinks: false,
        allowed_paths: Default::default(),
        close_inactive: None,
        multiline: None,
    }
}

/// Records every line of every batch, then acknowledges the batch (or, once
/// `discard` is set, drops it unrecorded and unacknowledged).
fn sink(rx: Receiver<Batch>, log: Arc<Mutex<Log>>, discard: Arc<AtomicBool>) {
    for batch in rx {
        if discard.load(Ordering::Acquire) {
            let mut log = log.lock().unwrap();
            log.dropped.extend(batch.lines().map(|l| String::from_utf8_lossy(l.bytes).into_owned()));
            continue;
        }
        {
            let mut log = log.lock().unwrap();
            for line in batch.lines() {
                let text = String::from_utf8_lossy(line.bytes).into_owned();
                *log.seen.entry(text.clone()).or_default() += 1;
                log.lines.push(Delivered {
                    path: batch.source.path.to_string(),
                    offset: line.offset,
                    text,
                    cut: line.cut,
                });
            }
        }
        batch.ack.ack_many(batch.spans.len() as u32);
    }
}

impl Harness {
    fn new(inotify: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let data = dir.path().join("data");
        fs::create_dir(&logs).unwrap();
        let mut h = Harness {
            _dir: dir,
            logs,
            data,
            inotify,
            log: Arc::default(),
            run: None,
            model: Model::default(),
            trace: String::new(),
        };
        h.start();
        h
    }

    fn path(&self, file: usize) -> PathBuf {
        self.logs.join(format!("f{file}.log"))
    }

    /// Starts discovery, readers and sink as the agent does.
    fn start(&mut self) {
        let checkpoints = Arc::new(Checkpoints::open(&self.data).unwrap());
        let stats = Arc::new(Stats::default());
        let (tx, rx) = crossbeam_channel::bounded(4);
        let discard = Arc::new(AtomicBool::new(false));
        let sink = {
            let (log, discard) = (self.log.clone(), discard.clone());
            thread::spawn(move || sink(rx, log, discard))
        };
        let ctx = Arc::new(TailCtx {
            cfg: tail_config(),
            checkpoints: checkpoints.clone(),
            tx,
            stats: stats.clone(),
            wake: if self.inotify { crate::agent::wake::Wake::start() } else { None },
            max_open_files: 0,
        });
        let entry = CollectEntry::new(format!("{}/*.log", self.logs.display()), "t");
        let (stop_discovery, stopped) = crossbeam_channel::bounded::<()>(0);
        let discovery =
            discovery::spawn(Discovery::new(ctx, vec![entry]), SCAN, crossbeam_channel::never(), stopped).unwrap();
        self.run = Some(Run { stop_discovery, discovery, sink, checkpoints, stats, discard });
    }

    /// Stops as the agent's shutdown does: discovery and readers (which hand
    /// on what they read), then the sink drains the channel (every sender is
    /// gone with the readers), then the checkpoints are written.
    fn stop(&mut self) {
        let run = self.run.take().unwrap();
        drop(run.stop_discovery);
        run.discovery.join().unwrap();
        run.sink.join().unwrap();
        run.checkpoints.save().unwrap();
        self.log.lock().unwrap().dropped.clear();
    }

    fn current(&self) -> &Run {
        self.run.as_ref().unwrap()
    }

    /// Polls `ready` until it holds, or fails naming `what` and the actions.
    fn wait_until(&self, what: &str, mut ready: impl FnMut(&Self) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !ready(self) {
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {WAIT_LIMIT:?} waiting for {what}; actions so far:\n{}",
                    self.trace
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Waits until every written line `which` selects was delivered.
    fn wait_delivered(&self, what: &str, which: impl Fn(&Written) -> bool) -> Result<(), String> {
        let result = self.wait_until(what, |h| {
            let log = h.log.lock().unwrap();
            h.model.lines.iter().filter(|w| which(w)).all(|w| log.seen.contains_key(&w.text))
        });
        result.map_err(|e| {
            let log = self.log.lock().unwrap();
            let missing: Vec<&str> = self
                .model
                .lines
                .iter()
                .filter(|w| which(w) && !log.seen.contains_key(&w.text))
                .map(|w| w.text.as_str())
                .take(5)
                .collect();
            let last: Vec<_> = log.lines.iter().rev().take(5).collect();
            format!("{e}\nmissing (first 5): {missing:?}\nlast delivered (newest first): {last:?}")
        })
    }

    /// Waits until all of `file`'s current generation was delivered.
    fn wait_file_delivered(&self, file: usize) -> Result<(), String> {
        let generation = self.model.files[file].generation;
        self.wait_delivered(&format!("the lines of f{file}.log"), |w| w.file == file && w.generation == generation)
    }

    /// Waits until a reader of this run follows `file` (its identity is one
    /// of this run's sources).
    fn wait_followed(&self, file: usize) -> Result<(), String> {
        let f = File::open(self.path(file)).unwrap();
        let fid = FileId::of(&f).unwrap().unwrap_or_else(|| FileId::of_partial(&f).unwrap());
        self.wait_until(&format!("a reader of f{file}.log ({fid})"), |h| {
            h.current().checkpoints.live().iter().any(|s| s.fid == fid)
        })
    }

    fn act(&mut self, action: &Action) -> Result<(), String> {
        let _ = writeln!(self.trace, "  {action:?}");
        match *action {
            Action::Write { file, lines, pad } => self.write(file, lines, pad, false),
            Action::WritePartial { file, pad } => {
                let f = &self.model.files[file];
                if (!f.exists || f.size == 0) && pad < HEAD_BYTES {
                    // An unfinished first line is held until it is complete
                    // (it identifies the file): give the file one first.
                    self.write(file, 1, 0, false);
                }
                self.write(file, 1, pad, true);
                let text = self.model.lines.last().unwrap().text.clone();
                self.wait_delivered("the partial line to be flushed", |w| w.text == text)?;
            }
            Action::Rotate { file } => {
                if self.ready_to_rotate(file)? {
                    self.rotate(file);
                }
            }
            Action::Truncate { file } => {
                if !self.model.files[file].exists || self.model.files[file].size == 0 {
                    return Ok(());
                }
                self.wait_file_delivered(file)?;
                self.wait_followed(file)?;
                let before = Stats::get(&self.current().stats.truncations);
                OpenOptions::new().write(true).open(self.path(file)).unwrap().set_len(0).unwrap();
                self.wait_until(&format!("the reader to see f{file}.log truncated"), |h| {
                    Stats::get(&h.current().stats.truncations) > before
                })?;
                self.model.new_generation(file);
            }
            Action::Delete { file } => {
                if !self.model.files[file].exists {
                    return Ok(());
                }
                self.wait_file_delivered(file)?;
                fs::remove_file(self.path(file)).unwrap();
                self.model.files[file].exists = false;
            }
            Action::Restart { drop_in_flight, rotate_while_down } => {
                let rotate = match rotate_while_down {
                    Some(file) => self.ready_to_rotate(file)?,
                    None => false,
                };
                if drop_in_flight {
                    self.current().discard.store(true, Ordering::Release);
                    self.wait_until("every line delivered or dropped", |h| {
                        let log = h.log.lock().unwrap();
                        h.model.lines.iter().all(|w| log.seen.contains_key(&w.text) || log.dropped.contains(&w.text))
                    })?;
                }
                self.stop();
                if let (Some(file), true) = (rotate_while_down, rotate) {
                    self.rotate(file);
                }
                self.start();
            }
            Action::Wait { ms } => {
                thread::sleep(Duration::from_millis(ms));
                self.current().checkpoints.save().unwrap();
            }
            Action::Settle => self.wait_delivered("every line", |_| true)?,
        }
        Ok(())
    }

    /// Waits until `file` may be rotated: a reader follows it, and the
    /// generation at its `x.log.1` (which the rotation removes) was
    /// delivered. False: there is no file to rotate.
    fn ready_to_rotate(&self, file: usize) -> Result<bool, String> {
        if !self.model.files[file].exists {
            return Ok(false);
        }
        if self.model.files[file].size > 0 {
            self.wait_followed(file)?;
        }
        if let Some(old) = self.model.rotated[file] {
            self.wait_delivered(&format!("f{file}.log.1"), |w| w.generation == old)?;
        }
        Ok(true)
    }

    /// `x.log.1` removed, `x.log` renamed to it, a new empty `x.log`.
    fn rotate(&mut self, file: usize) {
        let (path, rotated) = (self.path(file), self.path(file).with_extension("log.1"));
        let _ = fs::remove_file(&rotated);
        fs::rename(&path, &rotated).unwrap();
        File::create(&path).unwrap();
        let m = &mut self.model;
        m.rotated[file] = Some(m.files[file].generation);
        m.new_generation(file);
    }

    fn write(&mut self, file: usize, lines: usize, pad: usize, partial: bool) {
        let bytes = self.model.append(file, lines, pad, partial);
        // One `write`: a reader sees at most one line half-written, briefly.
        let mut f = OpenOptions::new().create(true).append(true).open(self.path(file)).unwrap();
        f.write_all(&bytes).unwrap();
    }

    /// Waits until everything arrived and nothing more does, stops the
    /// readers, and checks the delivered lines against the model.
    fn finish(mut self) -> Result<(), String> {
        self.wait_delivered("every line at the end", |_| true)?;
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut count = self.log.lock().unwrap().lines.len();
        let mut since = Instant::now();
        while since.elapsed() < QUIET && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            let now = self.log.lock().unwrap().lines.len();
            if now != count {
                (count, since) = (now, Instant::now());
            }
        }
        self.stop();
        let log = self.log.lock().unwrap();
        check(&self.model, &log, &self.logs)
            .and_then(|()| self.check_checkpoints())
            .map_err(|e| format!("{e}\nactions:\n{}", self.trace))
    }

    /// Everything was acknowledged: each file's checkpoint on disk is its size.
    fn check_checkpoints(&self) -> Result<(), String> {
        let saved = Checkpoints::open(&self.data).unwrap();
        for (file, m) in self.model.files.iter().enumerate() {
            if !m.exists || m.size == 0 {
                continue;
            }
            let f = File::open(self.path(file)).unwrap();
            let fid = FileId::of(&f).unwrap().unwrap_or_else(|| FileId::of_partial(&f).unwrap());
            let offset = saved.lookup(fid, &"t".into());
            if offset != Some(m.size) {
                return Err(format!("f{file}.log: checkpoint {offset:?}, size {}", m.size));
            }
        }
        Ok(())
    }
}

/// The invariants: nothing unknown, nothing lost, nothing twice, each line
/// at its offset under its path, each generation in order.
fn check(model: &Model, log: &Log, logs: &Path) -> Result<(), String> {
    let by_text: HashMap<&str, &Written> = model.lines.iter().map(|w| (w.text.as_str(), w)).collect();
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    for d in &log.lines {
        let Some(w) = by_text.get(d.text.as_str()) else {
            return Err(format!("delivered a line never written: {:?} from {} at {}", d.text, d.path, d.offset));
        };
        let path = logs.join(format!("f{}.log", w.file));
        let cut = if w.partial { Cut::Partial } else { Cut::Whole };
        if d.path != path.to_string_lossy() || d.offset != w.offset || d.cut != cut {
            return Err(format!(
                "{:?} delivered as ({}, {}, {:?}), written as ({}, {}, {cut:?})",
                d.text,
                d.path,
                d.offset,
                d.cut,
                path.display(),
                w.offset
            ));
        }
        if let Some(prev) = last_offset.insert(w.generation, d.offset) {
            if prev >= d.offset {
                return Err(format!("{:?} at {} delivered after the line at {prev} of its file", d.text, d.offset));
            }
        }
    }
    let lost: Vec<&str> = model.lines.iter().filter(|w| !log.seen.contains_key(&w.text)).map(|w| &*w.text).collect();
    let twice: Vec<(&str, usize)> = log.seen.iter().filter(|(_, &n)| n > 1).map(|(t, &n)| (t.as_str(), n)).collect();
    if !lost.is_empty() || !twice.is_empty() {
        return Err(format!("lost: {lost:?}\ndelivered more than once: {twice:?}"));
    }
    Ok(())
}

fn run_case(actions: &[Action], inotify: bool) -> Result<(), String> {
    let mut h = Harness::new(inotify);
    let _ = writeln!(h.trace, "  (inotify: {inotify})");
    for a in actions {
        h.act(a)?;
    }
    h.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_time: 120_000, ..ProptestConfig::default() })]
    /// The readers deliver exactly what the model wrote (see the module doc).
    #[test]
    fn tailer_matches_the_model(actions in proptest::collection::vec(action(), 1..=12), inotify in any::<bool>()) {
        if let Err(e) = run_case(&actions, inotify) {
            return Err(TestCaseError::fail(e));
        }
    }
}
