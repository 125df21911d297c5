//! What a collect entry says about multiline events: the validated settings
//! (`multiline`, `multiline_start`, `multiline_condition`, `multiline_mode`,
//! `multiline_timeout_ms`, `multiline_max_lines`, `multiline_max_bytes`).
//!
//! Pure data: patterns are kept as the text they were written as (so the
//! settings compare, hash and sort like the rest of `EntryOptions`) after
//! being compiled once here to refuse a bad one with the regex crate's own
//! message. The aggregator (`agent/multiline`) compiles them again for each
//! reader it serves.

use super::values::{from_word, NotOneOf, Words};
use std::fmt;
use std::str::FromStr;

/// Quiet time after which an open event is emitted, unless the entry says.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Lines per event (or per part of a longer one), unless the entry says.
pub const DEFAULT_MAX_LINES: usize = 1000;
/// Upper bound of `multiline_max_lines`.
pub const MAX_LINES_LIMIT: usize = 1_000_000;
/// Upper bound of `multiline_timeout_ms` (an hour).
pub const TIMEOUT_MS_LIMIT: u64 = 3_600_000;

/// How lines group into events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Preset {
    /// JVM stack traces: `\tat …`, `Caused by: …`, `... 12 more`, `Suppressed:`.
    Java,
    /// Python tracebacks, chained ones included.
    Python,
    /// Go panics and goroutine dumps.
    Go,
    /// Ruby exceptions (`from …` lines).
    Ruby,
    /// .NET exceptions (`   at …`, ` ---> …`, `--- End of …`).
    Dotnet,
    /// Node.js errors (`    at …`).
    Node,
    /// An event starts at a line that begins with a timestamp.
    Timestamp,
    /// `multiline_start` / `multiline_condition` / `multiline_mode`.
    Custom,
}

impl Words for Preset {
    const WORDS: &'static [(Self, &'static str)] = &[
        (Preset::Java, "java"),
        (Preset::Python, "python"),
        (Preset::Go, "go"),
        (Preset::Ruby, "ruby"),
        (Preset::Dotnet, "dotnet"),
        (Preset::Node, "node"),
        (Preset::Timestamp, "timestamp"),
        (Preset::Custom, "custom"),
    ];
}

impl FromStr for Preset {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        from_word(s)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What `multiline_condition` means for an open event (Vector's modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Lines matching the condition join the event; the first that does not
    /// ends it and is looked at afresh.
    ContinueThrough,
    /// Lines matching the condition join the event, and so does the first
    /// that does not, which ends it.
    ContinuePast,
    /// Lines join the event until one matches the condition: it ends the
    /// event and is looked at afresh.
    HaltBefore,
    /// Lines join the event until one matches the condition: it joins and
    /// ends the event.
    HaltWith,
}

impl Words for Mode {
    const WORDS: &'static [(Self, &'static str)] = &[
        (Mode::ContinueThrough, "continue_through"),
        (Mode::ContinuePast, "continue_past"),
        (Mode::HaltBefore, "halt_before"),
        (Mode::HaltWith, "halt_with"),
    ];
}

impl FromStr for Mode {
    type Err = NotOneOf;
    fn from_str(s: &str) -> Result<Self, NotOneOf> {
        from_word(s)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A custom rule: Vector's `start_pattern`, `condition_pattern`, `mode`.
/// Each pattern is valid for `regex::bytes::Regex` (checked by
/// [`Custom::new`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Custom {
    /// A line matching it opens an event when none is open; `None`: every
    /// line may (a line that opens nothing is an event of its own).
    pub start: Option<String>,
    /// Read by `mode` for each line of an open event.
    pub condition: String,
    /// What a match of `condition` does.
    pub mode: Mode,
}

impl Custom {
    /// The rule, or which pattern does not compile and why (the field name
    /// first: `multiline_condition: regex parse error: …`).
    pub fn new(start: Option<String>, condition: String, mode: Mode) -> Result<Custom, (&'static str, String)> {
        if let Some(s) = &start {
            check_pattern(s).map_err(|e| ("multiline_start", e))?;
        }
        check_pattern(&condition).map_err(|e| ("multiline_condition", e))?;
        Ok(Custom { start, condition, mode })
    }
}

/// Why `pattern` is not a usable regex, on one line.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map(drop)
        .map_err(|e| e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The multiline settings of one collect entry. Invariants: `custom` is
/// `Some` exactly when `preset` is [`Preset::Custom`]; `max_lines` ≥ 1;
/// `max_bytes`, when set, ≥ 1; `timeout_ms` ≥ 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Multiline {
    /// How lines group.
    pub preset: Preset,
    /// The rule of [`Preset::Custom`].
    pub custom: Option<Custom>,
    /// Quiet time (no new line in the file) after which an open event is
    /// emitted as it is.
    pub timeout_ms: u64,
    /// Past this many lines an event is emitted in numbered parts.
    pub max_lines: usize,
    /// Past this many bytes (the lines and the `\n` between them) an event
    /// is emitted in numbered parts; `None`: the reader's `max_line_bytes`,
    /// so an event fits in a Kafka record as a line does.
    pub max_bytes: Option<usize>,
}

impl Multiline {
    /// A preset with the default limits (`custom` must come with
    /// [`Preset::Custom`]).
    pub fn preset(preset: Preset) -> Multiline {
        Multiline {
            preset,
            custom: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: None,
        }
    }

    /// A custom rule with the default limits.
    pub fn custom(rule: Custom) -> Multiline {
        Multiline { custom: Some(rule), ..Multiline::preset(Preset::Custom) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for w in Preset::words() {
            assert_eq!(w.parse::<Preset>().unwrap().word(), w);
        }
        for w in Mode::words() {
            assert_eq!(w.parse::<Mode>().unwrap().word(), w);
        }
        assert!("jvm".parse::<Preset>().is_err());
    }

    #[test]
    fn a_bad_pattern_names_its_field_on_one_line() {
        let (field, msg) = Custom::new(Some("^\\d".into()), "(unclosed".into(), Mode::HaltBefore).unwrap_err();
        assert_eq!(field, "multiline_condition");
        assert!(!msg.contains('\n') && msg.contains("unclosed"), "{msg}");
        let (field, _) = Custom::new(Some("[z-a]".into()), ".".into(), Mode::HaltBefore).unwrap_err();
        assert_eq!(field, "multiline_start");
        assert!(Custom::new(None, r"^\s".into(), Mode::ContinueThrough).is_ok());
    }
}
