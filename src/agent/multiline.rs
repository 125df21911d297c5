//! The multiline aggregator: whole lines of one file in, events out.
//!
//! A pure core, like the splitter: [`Aggregator::push`] takes one line (its
//! bytes, its file offset, its [`Cut`]) and emits the events it completes
//! through a callback; [`Aggregator::tick`] ends an event after
//! `timeout_ms` of quiet and [`Aggregator::flush`] ends it at rotation,
//! truncation, deletion and shutdown. The reader around it owns threads and
//! timers.
//!
//! An event is its lines joined by `\n` (the file's bytes, less any `\r`
//! before a newline), with the first line's offset, so its document id is as
//! deterministic as a line's. Past `max_lines` / `max_bytes` it is emitted in
//! numbered parts ([`Cut::Part`], the long-line marking); nothing is dropped.
//! [`Aggregator::boundary`] is where a checkpoint may go: never into an
//! event still open, so a crash mid-event reads the whole event again.
//!
//! Only readers with `multiline` set use it: with it off lines never reach
//! this module, so plain mode pays nothing for it.

use crate::config::multiline::{Custom, Mode, Multiline, Preset};
use crate::record::Cut;
use regex::bytes::Regex;
use std::sync::OnceLock;

/// One event (or part of one) ready to ship: borrowed from the aggregator
/// until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The lines, joined by `\n`, no final newline.
    pub bytes: &'a [u8],
    /// File offset of the first line (of this part).
    pub offset: u64,
    /// `Whole`, `Part(k)` past the limits, or the cut of a line that was
    /// already cut by the splitter (such a line is an event of its own).
    pub cut: Cut,
    /// Lines in it.
    pub lines: u32,
}

/// What a line does to the open event (or, with none open, whether it
/// opens one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Ends the open event, if any, and opens a new one.
    Start,
    /// Joins the open event.
    Continue,
    /// Joins the open event and ends it.
    Last,
    /// Ends the open event, if any, and is an event of its own.
    Alone,
}

/// Preset rules that look at one line at a time, plus the little state the
/// Python and Go ones need.
enum Rule {
    /// Lines matching the pattern continue an open event; others start one.
    Continuation(&'static Regex),
    /// `Custom` with its own compiled patterns.
    Custom { start: Option<Regex>, condition: Regex, mode: Mode },
    /// Python: `in_traceback` between a `Traceback …` line and its exception
    /// line; `after_exception` once that line has been seen (a blank line or
    /// a chaining phrase may follow).
    Python { in_traceback: bool, after_exception: bool },
    /// Go: `in_dump` from `panic:` / `fatal error:` to the first line that is
    /// no part of a goroutine dump.
    Go { in_dump: bool },
    /// A line that begins with a timestamp starts an event.
    Timestamp,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("preset patterns compile"))
}

static JAVA: OnceLock<Regex> = OnceLock::new();
static RUBY: OnceLock<Regex> = OnceLock::new();
static DOTNET: OnceLock<Regex> = OnceLock::new();
static NODE: OnceLock<Regex> = OnceLock::new();
static INDENTED: OnceLock<Regex> = OnceLock::new();
static PY_TRACEBACK: OnceLock<Regex> = OnceLock::new();
static PY_CHAIN: OnceLock<Regex> = OnceLock::new();
static GO_PANIC: OnceLock<Regex> = OnceLock::new();
static GO_DUMP: OnceLock<Regex> = OnceLock::new();
static TIMESTAMP: OnceLock<Regex> = OnceLock::new();

/// A line that begins with one of the common timestamp shapes: ISO 8601 /
/// RFC 3339 / log4j (`2026-12-02 03:41:47`, `T`, `/`), syslog 3164
/// (`Dec  2 03:41:47`, after an optional `<PRI>`), RFC 5424 (`<PRI>1 2026-…`),
/// the common log's `[02/Dec/2026:03:41:47`, klog (`I1202 03:41:47`), epoch
/// seconds or milliseconds; and a JSON object line (each is its own event).
const TIMESTAMP_START: &str = r"^(?:\{|(?:<\d{1,3}>\d?\s?)?\[?(?:\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}|[IWEF]\d{4} \d{2}:\d{2}:\d{2}|\d{10}(?:\d{3})?\b))";

impl Rule {
    fn new(m: &Multiline) -> Rule {
        match m.preset {
            // Indented lines (`\tat`, `    ... 12 more`), and the unindented
            // `Caused by:` / `Suppressed:` / `... N more` lines.
            Preset::Java => Rule::Continuation(re(
                &JAVA,
                r"^(?:\s|Caused by:|Suppressed:|\.\.\. \d+ (?:more|common frames omitted))",
            )),
            Preset::Ruby => Rule::Continuation(re(&RUBY, r"^(?:\s|from )")),
            Preset::Dotnet => Rule::Continuation(re(&DOTNET, r"^(?:\s|--- End of )")),
            Preset::Node => Rule::Continuation(re(&NODE, r"^\s")),
            Preset::Python => Rule::Python { in_traceback: false, after_exception: false },
            Preset::Go => Rule::Go { in_dump: false },
            Preset::Timestamp => {
                re(&TIMESTAMP, TIMESTAMP_START);
                Rule::Timestamp
            }
            Preset::Custom => {
                let c: &Custom = m.custom.as_ref().expect("Preset::Custom comes with its rule");
                // Validated when the entry was parsed.
                Rule::Custom {
                    start: c.start.as_deref().map(|s| Regex::new(s).expect("validated pattern")),
                    condition: Regex::new(&c.condition).expect("validated pattern"),
                    mode: c.mode,
                }
            }
        }
    }

    /// What `line` does, given whether an event is open. `open` is false
    /// after a timeout or a flush: the state machines restart then.
    fn step(&mut self, line: &[u8], open: bool) -> Step {
        match self {
            Rule::Continuation(r) => {
                if open && r.is_match(line) {
                    Step::Continue
                } else {
                    Step::Start
                }
            }
            Rule::Timestamp => {
                if !open || re(&TIMESTAMP, TIMESTAMP_START).is_match(line) {
                    Step::Start
                } else {
                    Step::Continue
                }
            }
            Rule::Custom { start, condition, mode } => {
                let fresh = |start: &Option<Regex>| match start {
                    Some(s) if !s.is_match(line) => Step::Alone,
                    _ => Step::Start,
                };
                if !open {
                    return fresh(start);
                }
                let hit = condition.is_match(line);
                match (*mode, hit) {
                    (Mode::ContinueThrough, true) | (Mode::ContinuePast, true) => Step::Continue,
                    (Mode::ContinueThrough, false) | (Mode::HaltBefore, true) => fresh(start),
                    (Mode::ContinuePast, false) | (Mode::HaltWith, true) => Step::Last,
                    (Mode::HaltBefore, false) | (Mode::HaltWith, false) => Step::Continue,
                }
            }
            Rule::Python { in_traceback, after_exception } => {
                let indented = re(&INDENTED, r"^\s").is_match(line);
                if !open {
                    *after_exception = false;
                    *in_traceback = re(&PY_TRACEBACK, r"^Traceback \(most recent call last\):").is_match(line);
                    return Step::Start;
                }
                if re(&PY_TRACEBACK, r"^Traceback \(most recent call last\):").is_match(line) {
                    // A traceback after a log line (`logger.exception`) or
                    // after a chaining phrase belongs to the same event.
                    (*in_traceback, *after_exception) = (true, false);
                    return Step::Continue;
                }
                if *in_traceback {
                    if !indented && !line.is_empty() {
                        // `ValueError: bad`: the traceback's last line.
                        (*in_traceback, *after_exception) = (false, true);
                    }
                    return Step::Continue;
                }
                if indented
                    || (*after_exception
                        && (line.is_empty()
                            || re(
                                &PY_CHAIN,
                                r"^(?:During handling of the above exception|The above exception was the direct cause)",
                            )
                            .is_match(line)))
                {
                    return Step::Continue;
                }
                *after_exception = false;
                Step::Start
            }
            Rule::Go { in_dump } => {
                let panic = re(&GO_PANIC, r"^(?:panic: |fatal error: |SIGSEGV: |SIGABRT: )").is_match(line);
                if !open {
                    *in_dump = panic;
                    return Step::Start;
                }
                if panic {
                    // `panic: …` after `panic: … [recovered]` stays one dump.
                    let was = *in_dump;
                    *in_dump = true;
                    return if was { Step::Continue } else { Step::Start };
                }
                if *in_dump {
                    let dump = line.is_empty()
                        || re(
                            &GO_DUMP,
                            r"^(?:\s|goroutine \d+ \[|created by |\[signal |exit status \d|[\w.*/()\[\]-]+\(.*\)\s*$|rax |rip |PC=|signal arrived)",
                        )
                        .is_match(line);
                    if dump {
                        return Step::Continue;
                    }
                    *in_dump = false;
                    return Step::Start;
                }
                if re(&INDENTED, r"^\s").is_match(line) {
                    Step::Continue
                } else {
                    Step::Start
                }
            }
        }
    }
}

/// Groups one file's lines into events. Invariants: `buf` is empty exactly
/// when no event is open; `part_offset` ≤ the offset of every line in `buf`;
/// `lines` ≤ `max_lines`.
pub struct Aggregator {
    rule: Rule,
    timeout_ms: i64,
    max_lines: usize,
    max_bytes: usize,
    /// The open part's lines joined by `\n`.
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u32,
    /// Offset of the open event's first line (of its first part): the
    /// checkpoint boundary while it is open.
    event_offset: u64,
    /// Offset of `buf`'s first line.
    part_offset: u64,
    /// Parts of the open event already emitted (0: none).
    parts: u32,
    /// When the last line joined the open event.
    last_ms: i64,
    /// What was emitted since the last [`take_counts`](Self::take_counts).
    counts: Counts,
}

/// What an aggregator emitted, for `/metrics` (moved out per batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events of more than one line ended (whole, or the last of their parts).
    pub events: u64,
    /// Records that are a part of an event cut at `max_lines` / `max_bytes`.
    pub parts: u64,
}

impl Aggregator {
    /// An aggregator for one reader; `max_line_bytes` is the reader's
    /// (the default of `max_bytes`).
    pub fn new(m: &Multiline, max_line_bytes: usize) -> Aggregator {
        Aggregator {
            rule: Rule::new(m),
            timeout_ms: m.timeout_ms.min(i64::MAX as u64) as i64,
            max_lines: m.max_lines.max(1),
            max_bytes: m.max_bytes.unwrap_or(max_line_bytes).max(1),
            buf: Vec::new(),
            lines: 0,
            event_offset: 0,
            part_offset: 0,
            parts: 0,
            last_ms: 0,
            counts: Counts::default(),
        }
    }

    /// Whether an event is open.
    pub fn is_open(&self) -> bool {
        self.lines > 0
    }

    /// Offset of the open event's first line, or `None` with no event
    /// open: a checkpoint may move up to it, never past it.
    pub fn boundary(&self) -> Option<u64> {
        self.is_open().then_some(self.event_offset)
    }

    /// What was emitted since the last call, and starts counting again.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// When [`tick`](Self::tick) will end the open event, if one is open.
    pub fn deadline_ms(&self) -> Option<i64> {
        self.is_open().then(|| self.last_ms.saturating_add(self.timeout_ms))
    }

    /// Takes one line (without its newline) at file offset `offset`, read at
    /// `now_ms`, and emits what it completes.
    pub fn push(&mut self, line: &[u8], offset: u64, cut: Cut, now_ms: i64, out: &mut impl FnMut(Event<'_>)) {
        if cut != Cut::Whole {
            // Already cut by the splitter (a part of a long line, a
            // truncated or partial one): it travels as the splitter made it.
            self.flush(out);
            out(Event { bytes: line, offset, cut, lines: 1 });
            return;
        }
        let open = self.is_open();
        match self.rule.step(line, open) {
            Step::Start => {
                self.flush(out);
                self.open(line, offset, now_ms);
            }
            Step::Alone => {
                self.flush(out);
                out(Event { bytes: line, offset, cut: Cut::Whole, lines: 1 });
            }
            Step::Continue => self.join(line, offset, now_ms, out),
            Step::Last => {
                self.join(line, offset, now_ms, out);
                self.flush(out);
            }
        }
    }

    /// Ends the open event when `timeout_ms` passed since its last line.
    /// Returns whether it did.
    pub fn tick(&mut self, now_ms: i64, out: &mut impl FnMut(Event<'_>)) -> bool {
        match self.deadline_ms() {
            Some(d) if now_ms >= d => {
                self.flush(out);
                true
            }
            _ => false,
        }
    }

    /// Ends the open event, if any (rotation, truncation, deletion,
    /// shutdown, and a new event starting).
    pub fn flush(&mut self, out: &mut impl FnMut(Event<'_>)) {
        if !self.is_open() {
            return;
        }
        let cut = if self.parts > 0 { Cut::Part(self.parts + 1) } else { Cut::Whole };
        if self.parts > 0 {
            self.counts.parts += 1;
        }
        if self.parts > 0 || self.lines > 1 {
            self.counts.events += 1;
        }
        out(Event { bytes: &self.buf, offset: self.part_offset, cut, lines: self.lines });
        self.buf.clear();
        self.lines = 0;
        self.parts = 0;
        if self.buf.capacity() > 4 * self.max_bytes.min(1 << 20) {
            // One huge event should not pin its buffer for the file's life.
            self.buf = Vec::new();
        }
    }

    fn open(&mut self, line: &[u8], offset: u64, now_ms: i64) {
        self.buf.extend_from_slice(line);
        self.lines = 1;
        self.parts = 0;
        self.event_offset = offset;
        self.part_offset = offset;
        self.last_ms = now_ms;
    }

    fn join(&mut self, line: &[u8], offset: u64, now_ms: i64, out: &mut impl FnMut(Event<'_>)) {
        if !self.is_open() {
            self.open(line, offset, now_ms);
            return;
        }
        if self.lines as usize >= self.max_lines || self.buf.len() + 1 + line.len() > self.max_bytes {
            // The open part is full: out it goes as part k, the line begins
            // part k + 1 of the same event (the boundary stays at the event).
            self.parts += 1;
            self.counts.parts += 1;
            out(Event { bytes: &self.buf, offset: self.part_offset, cut: Cut::Part(self.parts), lines: self.lines });
            self.buf.clear();
            self.buf.extend_from_slice(line);
            self.lines = 1;
            self.part_offset = offset;
        } else {
            self.buf.push(b'\n');
            self.buf.extend_from_slice(line);
            self.lines += 1;
        }
        self.last_ms = now_ms;
    }
}

/// What must hold for any lines and settings.
///
/// Input layout (missing header bytes read as 0):
/// - byte 0: the preset (`b % 8`, in `Preset::WORDS` order; `custom` is
///   `^\S` / `^\s` / the mode `b / 8 % 4`);
/// - byte 1: `max_lines = 1 + b % 8`; byte 2: `max_bytes = 1 + b` (small, so
///   events are cut into parts);
/// - the rest: the file; each line is pushed at its offset, a line whose
///   first byte is `\x01` also ticks past the timeout.
///
/// Checks: no panic; every event is the file's bytes at its offset (the
/// lines are joined by `\n`, as in the file); every line lands in exactly
/// one event (the events' line counts add up); a `Whole` event is within
/// `max_bytes` unless it is one line; the boundary is a line start.
///
/// Checked by the fuzz target (`fuzz/fuzz_targets/multiline.rs`) and by the unit tests over its seeds.
/// Panics when one does not hold.
pub fn assert_invariants(input: &[u8]) {
    use crate::config::multiline::{Custom, Mode, Multiline, Preset};
    use crate::config::Words;
    let byte = |i: usize| input.get(i).copied().unwrap_or(0);
    let preset = Preset::WORDS[byte(0) as usize % 8].0;
    let mut m = if preset == Preset::Custom {
        let mode = Mode::WORDS[(byte(0) / 8 % 4) as usize].0;
        Multiline::custom(Custom::new(Some(r"^\S".into()), r"^\s".into(), mode).unwrap())
    } else {
        Multiline::preset(preset)
    };
    m.max_lines = 1 + byte(1) as usize % 8;
    m.max_bytes = Some(1 + byte(2) as usize);
    let file = input.get(3..).unwrap_or(&[]);
    let mut agg = Aggregator::new(&m, 1 << 20);
    let mut lines_out = 0u64;
    let mut check = |e: Event<'_>| {
        let at = e.offset as usize;
        assert_eq!(&file[at..at + e.bytes.len()], e.bytes, "event at {at}");
        if e.cut == Cut::Whole && e.lines > 1 {
            assert!(e.bytes.len() <= m.max_bytes.unwrap() && e.lines as usize <= m.max_lines);
        }
        lines_out += u64::from(e.lines);
    };
    let mut offset = 0u64;
    let mut lines_in = 0u64;
    let mut now = 0i64;
    for line in file.split_inclusive(|&b| b == b'\n') {
        let Some(bytes) = line.strip_suffix(b"\n") else { break };
        if bytes.first() == Some(&1) {
            now += 10_000;
            agg.tick(now, &mut check);
        }
        agg.push(bytes, offset, Cut::Whole, now, &mut check);
        if let Some(b) = agg.boundary() {
            assert!(b <= offset && (b == 0 || file[b as usize - 1] == b'\n'));
        }
        offset += line.len() as u64;
        lines_in += 1;
    }
    agg.flush(&mut check);
    assert_eq!(lines_in, lines_out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::multiline::{Custom, Mode, Multiline, Preset};
    use proptest::prelude::*;

    type Out = Vec<(String, u64, Cut)>;

    /// Feeds `text`'s lines (offsets as in the file), flushes at the end.
    fn run(m: &Multiline, text: &str) -> Out {
        let mut agg = Aggregator::new(m, 1 << 20);
        let mut out = Vec::new();
        let mut sink = |e: Event<'_>| out.push((String::from_utf8_lossy(e.bytes).into_owned(), e.offset, e.cut));
        let mut offset = 0u64;
        for line in text.split_inclusive('\n') {
            let bytes = line.strip_suffix('\n').unwrap_or(line).as_bytes();
            agg.push(bytes, offset, Cut::Whole, 0, &mut sink);
            offset += line.len() as u64;
        }
        agg.flush(&mut sink);
        out
    }

    fn texts(out: &Out) -> Vec<&str> {
        out.iter().map(|(t, _, _)| t.as_str()).collect()
    }

    #[test]
    fn java_stack_traces_with_causes_and_more() {
        let text = "2026-12-02 03:41:47,123 INFO start\n\
                    2026-12-02 03:41:48,001 ERROR boom\n\
                    java.lang.IllegalStateException: outer\n\
                    \tat com.x.A.run(A.java:10)\n\
                    \tat com.x.B.main(B.java:3)\n\
                    \tSuppressed: java.io.IOException: close\n\
                    \t\tat com.x.C.close(C.java:7)\n\
                    Caused by: java.lang.NullPointerException\n\
                    \tat com.x.D.get(D.java:1)\n\
                    \t... 12 more\n\
                    2026-12-02 03:41:49,000 INFO next\n";
        let out = run(&Multiline::preset(Preset::Java), text);
        assert_eq!(texts(&out).len(), 4, "{out:?}");
        assert_eq!(out[0], ("2026-12-02 03:41:47,123 INFO start".into(), 0, Cut::Whole));
        assert!(out[2].0.starts_with("java.lang.IllegalStateException: outer\n\tat com.x.A"));
        assert!(out[2].0.ends_with("\t... 12 more"));
        assert_eq!(out[2].1, text.find("java.lang").unwrap() as u64);
        assert_eq!(out[3].0, "2026-12-02 03:41:49,000 INFO next");
    }

    #[test]
    fn python_chained_tracebacks_are_one_event() {
        let text = "ERROR:root:failed\n\
                    Traceback (most recent call last):\n\
                    \x20 File \"a.py\", line 3, in <module>\n\
                    \x20   f()\n\
                    KeyError: 'x'\n\
                    \n\
                    During handling of the above exception, another exception occurred:\n\
                    \n\
                    Traceback (most recent call last):\n\
                    \x20 File \"a.py\", line 5, in <module>\n\
                    ValueError: bad\n\
                    INFO:root:next\n";
        let out = run(&Multiline::preset(Preset::Python), text);
        assert_eq!(texts(&out).len(), 2, "{out:?}");
        assert!(out[0].0.starts_with("ERROR:root:failed\nTraceback"));
        assert!(out[0].0.ends_with("ValueError: bad"));
        assert_eq!(out[1].0, "INFO:root:next");
    }

    #[test]
    fn go_panic_with_several_goroutines() {
        let text = "2026/12/02 03:41:47 serving\n\
                    panic: runtime error: index out of range [5] with length 3\n\
                    \n\
                    goroutine 1 [running]:\n\
                    main.handler(0xc000010000, 0x3)\n\
                    \t/app/main.go:12 +0x1d\n\
                    created by main.main\n\
                    \t/app/main.go:30 +0x55\n\
                    \n\
                    goroutine 7 [chan receive]:\n\
                    main.worker()\n\
                    \t/app/main.go:40 +0x2a\n\
                    exit status 2\n\
                    2026/12/02 03:41:50 restarted\n";
        let out = run(&Multiline::preset(Preset::Go), text);
        assert_eq!(texts(&out).len(), 3, "{out:?}");
        assert!(out[1].0.starts_with("panic: runtime error") && out[1].0.ends_with("exit status 2"));
        assert_eq!(out[2].0, "2026/12/02 03:41:50 restarted");
    }

    #[test]
    fn ruby_dotnet_node() {
        let ruby = "app.rb:3:in `foo': bad (RuntimeError)\n\tfrom app.rb:7:in `<main>'\nfrom app.rb:9\nnext\n";
        assert_eq!(texts(&run(&Multiline::preset(Preset::Ruby), ruby)).len(), 2);
        let dotnet = "System.InvalidOperationException: outer\n ---> System.Exception: inner\n   at A.B() in C:\\a.cs:line 10\n   --- End of inner exception stack trace ---\n   at A.C()\nnext\n";
        let out = run(&Multiline::preset(Preset::Dotnet), dotnet);
        assert_eq!(texts(&out).len(), 2, "{out:?}");
        assert!(out[0].0.ends_with("   at A.C()"));
        let node = "TypeError: Cannot read properties of undefined (reading 'x')\n    at Object.<anonymous> (/app/x.js:1:1)\n    at node:internal/main:1:1\nlistening\n";
        assert_eq!(texts(&run(&Multiline::preset(Preset::Node), node)), vec![
            "TypeError: Cannot read properties of undefined (reading 'x')\n    at Object.<anonymous> (/app/x.js:1:1)\n    at node:internal/main:1:1",
            "listening"
        ]);
    }

    #[test]
    fn timestamp_starts_events() {
        let starts = [
            "2026-12-02T03:41:47.123Z x",
            "2026-12-02 03:41:47,123 x",
            "2026/12/02 03:41:47 x",
            "Dec  2 03:41:47 host x",
            "<34>Dec 12 03:41:47 host x",
            "<34>1 2026-12-02T03:41:47Z host x",
            "[02/Dec/2026:03:41:47 +0000] x",
            "I1202 03:41:47.123456 x",
            "1764646907 x",
            "1764646907123 x",
            "{\"ts\":1764646907}",
        ];
        for s in starts {
            let text = format!("{s}\n  continued\nno time here\n");
            let out = run(&Multiline::preset(Preset::Timestamp), &text);
            assert_eq!(texts(&out), vec![format!("{s}\n  continued\nno time here").as_str()], "{s}");
        }
        let out = run(&Multiline::preset(Preset::Timestamp), "a\nb\n2026-12-02 03:41:47 c\nd\n");
        assert_eq!(texts(&out), vec!["a\nb", "2026-12-02 03:41:47 c\nd"]);
    }

    fn custom(start: Option<&str>, cond: &str, mode: Mode) -> Multiline {
        Multiline::custom(Custom::new(start.map(String::from), cond.into(), mode).unwrap())
    }

    #[test]
    fn custom_modes_as_vector() {
        // continue_through: indented lines continue; others start.
        let m = custom(Some("^[^\\s]"), "^\\s", Mode::ContinueThrough);
        assert_eq!(texts(&run(&m, "a\n b\n c\nd\n e\n")), vec!["a\n b\n c", "d\n e"]);
        // A continuation with no event open is an event of its own.
        assert_eq!(texts(&run(&m, " x\na\n")), vec![" x", "a"]);
        // continue_past: lines ending in `\` continue, plus one more.
        let m = custom(Some("\\\\$"), "\\\\$", Mode::ContinuePast);
        assert_eq!(texts(&run(&m, "a \\\nb \\\nc\nd\n")), vec!["a \\\nb \\\nc", "d"]);
        // halt_before: a line starting with a date starts the next event.
        let m = custom(None, "^\\d{4}-", Mode::HaltBefore);
        assert_eq!(texts(&run(&m, "2026- a\nb\n2026- c\n")), vec!["2026- a\nb", "2026- c"]);
        // halt_with: `;` ends the event.
        let m = custom(None, ";$", Mode::HaltWith);
        assert_eq!(texts(&run(&m, "select\n*\nfrom t;\nx;\ny\n")), vec!["select\n*\nfrom t;", "x;\ny"]);
        // As in Vector, the line that opens an event is not read by the
        // condition: `x;` opens one and `y` joins it.
    }

    #[test]
    fn limits_emit_numbered_parts_and_keep_the_boundary() {
        let mut m = custom(None, "^\\s", Mode::ContinueThrough);
        m.max_lines = 2;
        let out = run(&m, "a\n 1\n 2\n 3\n 4\nb\n");
        assert_eq!(
            out,
            vec![
                ("a\n 1".into(), 0, Cut::Part(1)),
                (" 2\n 3".into(), 5, Cut::Part(2)),
                (" 4".into(), 11, Cut::Part(3)),
                ("b".into(), 14, Cut::Whole),
            ]
        );
        let mut m = custom(None, "^\\s", Mode::ContinueThrough);
        m.max_bytes = Some(5);
        let mut agg = Aggregator::new(&m, 1 << 20);
        let mut got = Vec::new();
        let mut sink = |e: Event<'_>| got.push((e.bytes.to_vec(), e.cut));
        agg.push(b"abc", 0, Cut::Whole, 0, &mut sink);
        agg.push(b" d", 4, Cut::Whole, 0, &mut sink);
        assert_eq!(agg.boundary(), Some(0));
        agg.push(b" longer than five", 7, Cut::Whole, 0, &mut sink);
        // A part was emitted, but the event is still open from offset 0.
        assert_eq!(agg.boundary(), Some(0));
        agg.flush(&mut sink);
        assert_eq!(agg.boundary(), None);
        assert_eq!(agg.take_counts(), Counts { events: 1, parts: 3 });
        assert_eq!(agg.take_counts(), Counts::default(), "taken");
        // A line over max_bytes is a part of its own: lines are never cut here.
        assert_eq!(
            got,
            vec![
                (b"abc".to_vec(), Cut::Part(1)),
                (b" d".to_vec(), Cut::Part(2)),
                (b" longer than five".to_vec(), Cut::Part(3)),
            ]
        );
    }

    #[test]
    fn timeout_ends_an_event_and_a_cut_line_travels_alone() {
        let m = custom(None, "^\\s", Mode::ContinueThrough);
        let mut agg = Aggregator::new(&m, 1 << 20);
        let mut got = Vec::new();
        let mut sink = |e: Event<'_>| got.push((e.bytes.to_vec(), e.offset, e.cut));
        assert_eq!(agg.deadline_ms(), None);
        agg.push(b"a", 0, Cut::Whole, 1000, &mut sink);
        agg.push(b" b", 2, Cut::Whole, 2000, &mut sink);
        assert_eq!(agg.deadline_ms(), Some(5000));
        assert!(!agg.tick(4999, &mut sink));
        assert!(agg.tick(5000, &mut sink));
        // After the timeout a continuation opens a new event.
        agg.push(b" c", 5, Cut::Whole, 6000, &mut sink);
        agg.push(b"xx", 8, Cut::Part(1), 6000, &mut sink);
        agg.flush(&mut sink);
        assert_eq!(
            got,
            vec![
                (b"a\n b".to_vec(), 0, Cut::Whole),
                (b" c".to_vec(), 5, Cut::Whole),
                (b"xx".to_vec(), 8, Cut::Part(1)),
            ]
        );
    }

    #[test]
    fn fuzz_seeds_hold_the_invariants() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/multiline");
        let mut n = 0;
        for f in std::fs::read_dir(dir).unwrap() {
            assert_invariants(&std::fs::read(f.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 3);
        assert_invariants(b"");
        assert_invariants(b"\x07");
    }

    #[test]
    fn empty_lines_and_empty_input() {
        let m = Multiline::preset(Preset::Java);
        assert!(run(&m, "").is_empty());
        assert_eq!(texts(&run(&m, "\n\n")), vec!["", ""]);
        assert_eq!(texts(&run(&m, "a\n\tat b")), vec!["a\n\tat b"]);
    }

    /// The naive model: a line starting with a space continues the open
    /// event, any other starts one, a `flush` mark ends it; each event is
    /// cut greedily into parts of at most `max_lines` lines.
    fn model(lines: &[(Vec<u8>, bool)], max_lines: usize) -> Vec<(Vec<u8>, Cut)> {
        let mut events: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut open = false;
        for (line, flush_after) in lines {
            if open && line.first() == Some(&b' ') {
                events.last_mut().unwrap().push(line.clone());
            } else {
                events.push(vec![line.clone()]);
            }
            open = !flush_after;
        }
        let mut out = Vec::new();
        for e in events {
            let parts: Vec<&[Vec<u8>]> = e.chunks(max_lines).collect();
            for (k, p) in parts.iter().enumerate() {
                let cut = if parts.len() == 1 { Cut::Whole } else { Cut::Part(k as u32 + 1) };
                out.push((p.join(&b'\n'), cut));
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Through the real splitter, over random chunkings: the events are
        /// the model's (never lost, never merged across starts, split only at
        /// the limit), each is the file's bytes at its offset, and the
        /// boundary never passes the first line of an unfinished event.
        #[test]
        fn matches_model_through_the_splitter(
            lines in proptest::collection::vec(
                (proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(b' '), proptest::strategy::Just(b'a'), proptest::strategy::Just(b'b')], 0..6),
                 any::<u8>().prop_map(|b| b < 32)),
                0..60),
            chunks in proptest::collection::vec(1usize..32, 1..6),
            max_lines in 1usize..5,
        ) {
            use crate::agent::split::{LineBuffer, SplitConfig};
            let mut file = Vec::new();
            for (l, _) in &lines {
                file.extend_from_slice(l);
                file.push(b'\n');
            }
            let mut m = custom(None, "^ ", Mode::ContinueThrough);
            m.max_lines = max_lines;
            let mut agg = Aggregator::new(&m, 1 << 20);
            let mut lb = LineBuffer::new(0, SplitConfig { max_line_bytes: 1 << 20, chunk_bytes: 64, ..SplitConfig::default() });
            let mut got: Vec<(Vec<u8>, u64, Cut)> = Vec::new();
            let (mut fed, mut i, mut line_no) = (0usize, 0usize, 0usize);
            let mut spans = Vec::new();
            while fed < file.len() {
                let n = chunks[i % chunks.len()].min(file.len() - fed);
                i += 1;
                lb.extend(&file[fed..fed + n]);
                fed += n;
                while let Some(block) = lb.take_lines(&mut spans) {
                    for s in spans.drain(..) {
                        let mut sink = |e: Event<'_>| got.push((e.bytes.to_vec(), e.offset, e.cut));
                        agg.push(&block.data[s.range()], block.offset + s.start as u64, s.cut, 0, &mut sink);
                        if lines[line_no].1 {
                            agg.flush(&mut sink);
                        }
                        line_no += 1;
                        // The boundary is the open event's first line: at or
                        // before this line, and a line start.
                        if let Some(b) = agg.boundary() {
                            prop_assert!(b <= block.offset + s.start as u64);
                            prop_assert!(b == 0 || file[b as usize - 1] == b'\n');
                        }
                    }
                }
            }
            agg.flush(&mut |e: Event<'_>| got.push((e.bytes.to_vec(), e.offset, e.cut)));
            for (bytes, offset, _) in &got {
                prop_assert_eq!(&file[*offset as usize..*offset as usize + bytes.len()], &bytes[..]);
            }
            let got: Vec<(Vec<u8>, Cut)> = got.into_iter().map(|(b, _, c)| (b, c)).collect();
            prop_assert_eq!(got, model(&lines, max_lines));
        }
    }
}
