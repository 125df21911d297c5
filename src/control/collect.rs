//! The collect list as etcd holds it: a JSON array of entries, turned into
//! validated [`CollectEntry`]s by one pure function, [`parse`] (fuzzed by
//! `fuzz/fuzz_targets/collect.rs`), and written back by [`to_json`].
//!
//! ```json
//! [{"path": "/var/log/nginx/*.log", "topic": "web_log"},
//!  {"path": "/var/log/app/*.log", "topic": "app", "read_from": "beginning",
//!   "exclude": ["*.gz", "/var/log/app/debug-*"], "max_line_bytes": 65536,
//!   "long_lines": "truncate", "parse_json": true, "follow_symlinks": true}]
//! ```
//!
//! `path` and `topic` are the seed's fields; the others are optional and
//! default to the agent's `[agent]` settings ([`EntryOptions`]). `null` and
//! `[]` mean "collect nothing". Everything wrong is reported at once, each
//! problem at its place (`[2].topic`), and nothing of a bad value is used:
//! wrong types, empty paths, bad globs and topic names, unknown or repeated
//! fields, and two entries with the same path and topic.

use crate::config::multiline;
use crate::config::{check_topic, CollectEntry, EntryOptions, Words, MAX_LINE_BYTES_LIMIT};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

/// The fields an entry may have.
pub const FIELDS: &[&str] = &[
    "path",
    "topic",
    "read_from",
    "exclude",
    "max_line_bytes",
    "long_lines",
    "parse_json",
    "follow_symlinks",
    "multiline",
    "multiline_start",
    "multiline_condition",
    "multiline_mode",
    "multiline_timeout_ms",
    "multiline_max_lines",
    "multiline_max_bytes",
];

/// Problems shown in one message; the rest are counted.
const SHOWN: usize = 5;

/// One thing wrong with a collect list, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `""` (the whole value), `[i]` (an entry) or `[i].field`.
    pub at: String,
    /// What is wrong there.
    pub message: String,
}

/// Why a collect list was refused. Holds at least one problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectError {
    /// Every problem found, in document order; never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if p.at.is_empty() {
                f.write_str(&p.message)?;
            } else {
                write!(f, "{}: {}", p.at, p.message)?;
            }
        }
        if self.problems.len() > SHOWN {
            write!(f, "; and {} more", self.problems.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for CollectError {}

/// Parses and validates a collect list (the bytes of the etcd value).
pub fn parse(bytes: &[u8]) -> Result<Vec<CollectEntry>, CollectError> {
    let whole = |message: String| CollectError { problems: vec![Problem { at: String::new(), message }] };
    let Top(items) = serde_json::from_slice(bytes).map_err(|e| {
        whole(match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => format!("invalid JSON: {e}"),
            _ => e.to_string(),
        })
    })?;
    let mut problems = Vec::new();
    let mut entries = Vec::with_capacity(items.len());
    // (path, topic) -> index of the entry that has it.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let fields = match item {
            Item::Object(fields) => fields,
            Item::Other(kind) => {
                problems.push(Problem { at: format!("[{i}]"), message: format!("expected an object, got {kind}") });
                continue;
            }
        };
        if let Some(entry) = entry(i, fields, &mut problems) {
            match seen.get(&(entry.path.clone(), entry.topic.clone())) {
                Some(&j) => problems.push(Problem {
                    at: format!("[{i}]"),
                    message: format!(
                        "same path and topic as [{j}] ({} -> {}); give each pair once",
                        shown(&entry.path),
                        entry.topic
                    ),
                }),
                None => {
                    seen.insert((entry.path.clone(), entry.topic.clone()), i);
                    entries.push(entry);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(CollectError { problems })
    }
}

/// One entry from its fields, or `None` with the problems recorded.
fn entry(i: usize, fields: Vec<(String, Value)>, problems: &mut Vec<Problem>) -> Option<CollectEntry> {
    let before = problems.len();
    let mut bad = |field: &str, message: String| problems.push(Problem { at: format!("[{i}].{field}"), message });
    let mut given: Vec<&str> = Vec::new();
    let (mut path, mut topic) = (None, None);
    let mut opts = EntryOptions::default();
    let mut ml = MultilineFields::default();
    for (name, value) in &fields {
        let Some(&field) = FIELDS.iter().find(|f| **f == name) else {
            bad(&shown(name), format!("unknown field (known: {})", FIELDS.join(", ")));
            continue;
        };
        if given.contains(&field) {
            bad(field, "given twice".into());
            continue;
        }
        given.push(field);
        match field {
            "path" => match value.as_str() {
                Some(p) if p.trim().is_empty() => bad(field, "must not be empty".into()),
                // Kept as text: `glob::glob`, which expands it, takes text.
                Some(p) => match glob::Pattern::new(p) {
                    Ok(_) => path = Some(p.to_string()),
                    Err(e) => bad(field, format!("bad glob {}: {e}", shown(p))),
                },
                None => bad(field, format!("expected a string (a path or glob), got {}", kind(value))),
            },
            "topic" => match value.as_str() {
                Some(t) => match check_topic(t) {
                    Ok(()) => topic = Some(t.to_string()),
                    Err(m) => bad(field, m),
                },
                None => bad(field, format!("expected a string (a Kafka topic), got {}", kind(value))),
            },
            "read_from" => match word(value) {
                Ok(r) => opts.read_from = Some(r),
                Err(m) => bad(field, m),
            },
            "long_lines" => match word(value) {
                Ok(l) => opts.long_lines = Some(l),
                Err(m) => bad(field, m),
            },
            "max_line_bytes" => match value.as_u64() {
                Some(n) if n >= 1 && n <= MAX_LINE_BYTES_LIMIT as u64 => opts.max_line_bytes = Some(n as usize),
                _ => bad(
                    field,
                    format!("expected a whole number 1..={MAX_LINE_BYTES_LIMIT}, got {}", kind_or_value(value)),
                ),
            },
            "parse_json" => match value.as_bool() {
                Some(b) => opts.parse_json = b,
                None => bad(field, format!("expected true or false, got {}", kind_or_value(value))),
            },
            "follow_symlinks" => match value.as_bool() {
                Some(b) => opts.follow_symlinks = Some(b),
                None => bad(field, format!("expected true or false, got {}", kind_or_value(value))),
            },
            "exclude" => match value.as_array() {
                Some(globs) => {
                    for (k, g) in globs.iter().enumerate() {
                        match g.as_str() {
                            Some(s) if s.trim().is_empty() => bad(&format!("exclude[{k}]"), "must not be empty".into()),
                            Some(s) => match glob::Pattern::new(s) {
                                Ok(p) => opts.exclude.push(p),
                                Err(e) => bad(&format!("exclude[{k}]"), format!("bad glob {}: {e}", shown(s))),
                            },
                            None => {
                                bad(&format!("exclude[{k}]"), format!("expected a string (a glob), got {}", kind(g)))
                            }
                        }
                    }
                }
                None => bad(field, format!("expected an array of globs, got {}", kind(value))),
            },
            "multiline" => match word(value) {
                Ok(p) => ml.preset = Some(p),
                Err(m) => bad(field, m),
            },
            "multiline_mode" => match word(value) {
                Ok(m) => ml.mode = Some(m),
                Err(m) => bad(field, m),
            },
            "multiline_start" | "multiline_condition" => match value.as_str() {
                Some(p) => match multiline::check_pattern(p) {
                    Ok(()) if field == "multiline_start" => ml.start = Some(p.to_string()),
                    Ok(()) => ml.condition = Some(p.to_string()),
                    Err(e) => bad(field, format!("bad regex {}: {e}", shown(p))),
                },
                None => bad(field, format!("expected a string (a regex), got {}", kind(value))),
            },
            "multiline_timeout_ms" => match value.as_u64() {
                Some(n) if (1..=multiline::TIMEOUT_MS_LIMIT).contains(&n) => ml.timeout_ms = Some(n),
                _ => bad(
                    field,
                    format!(
                        "expected a whole number 1..={}, got {}",
                        multiline::TIMEOUT_MS_LIMIT,
                        kind_or_value(value)
                    ),
                ),
            },
            "multiline_max_lines" => match value.as_u64() {
                Some(n) if n >= 1 && n <= multiline::MAX_LINES_LIMIT as u64 => ml.max_lines = Some(n as usize),
                _ => bad(
                    field,
                    format!("expected a whole number 1..={}, got {}", multiline::MAX_LINES_LIMIT, kind_or_value(value)),
                ),
            },
            "multiline_max_bytes" => match value.as_u64() {
                Some(n) if n >= 1 && n <= MAX_LINE_BYTES_LIMIT as u64 => ml.max_bytes = Some(n as usize),
                _ => bad(
                    field,
                    format!("expected a whole number 1..={MAX_LINE_BYTES_LIMIT}, got {}", kind_or_value(value)),
                ),
            },
            _ => unreachable!("every name in FIELDS is handled"),
        }
    }
    match ml.build() {
        Ok(m) => opts.multiline = m,
        Err((field, message)) => bad(field, message),
    }
    for required in ["path", "topic"] {
        if !given.contains(&required) {
            problems.push(Problem { at: format!("[{i}]"), message: format!("missing \"{required}\"") });
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(CollectEntry { path: path?, topic: topic?, options: opts })
}

/// The `multiline*` fields of one entry, as given.
#[derive(Default)]
struct MultilineFields {
    preset: Option<multiline::Preset>,
    start: Option<String>,
    condition: Option<String>,
    mode: Option<multiline::Mode>,
    timeout_ms: Option<u64>,
    max_lines: Option<usize>,
    max_bytes: Option<usize>,
}

impl MultilineFields {
    /// The settings, or the field that is wrong: `multiline_*` without
    /// `multiline`, a custom rule without its condition or mode, a pattern
    /// given to a preset.
    fn build(self) -> Result<Option<multiline::Multiline>, (&'static str, String)> {
        use multiline::Preset;
        let Some(preset) = self.preset else {
            let given = [
                ("multiline_start", self.start.is_some()),
                ("multiline_condition", self.condition.is_some()),
                ("multiline_mode", self.mode.is_some()),
                ("multiline_timeout_ms", self.timeout_ms.is_some()),
                ("multiline_max_lines", self.max_lines.is_some()),
                ("multiline_max_bytes", self.max_bytes.is_some()),
            ];
            return match given.iter().find(|(_, g)| *g) {
                Some((f, _)) => Err((f, "needs \"multiline\" (a preset, or \"custom\")".into())),
                None => Ok(None),
            };
        };
        let mut m = if preset == Preset::Custom {
            let Some(condition) = self.condition else {
                return Err(("multiline_condition", "\"multiline\": \"custom\" needs a regex here".into()));
            };
            let Some(mode) = self.mode else {
                return Err((
                    "multiline_mode",
                    "\"multiline\": \"custom\" needs one of continue_through, continue_past, halt_before, halt_with"
                        .into(),
                ));
            };
            multiline::Multiline::custom(multiline::Custom::new(self.start, condition, mode)?)
        } else {
            for (f, g) in [
                ("multiline_start", self.start.is_some()),
                ("multiline_condition", self.condition.is_some()),
                ("multiline_mode", self.mode.is_some()),
            ] {
                if g {
                    return Err((f, format!("only for \"multiline\": \"custom\" (the {preset} preset has its own)")));
                }
            }
            multiline::Multiline::preset(preset)
        };
        m.timeout_ms = self.timeout_ms.unwrap_or(m.timeout_ms);
        m.max_lines = self.max_lines.unwrap_or(m.max_lines);
        m.max_bytes = self.max_bytes.or(m.max_bytes);
        Ok(Some(m))
    }
}

/// What must hold for any input, checked by the fuzz target
/// (`fuzz/fuzz_targets/collect.rs`) and by the unit tests over its seeds:
/// [`parse`] does not panic; a refusal names at least one problem and reads
/// as one line (it is logged as one); an accepted list has non-empty paths
/// and distinct (path, topic) pairs, and [`to_json`] of it parses back to the
/// same entries, so what an operator puts, what the agent caches and what it
/// applies agree. Panics when one does not hold.
pub fn assert_invariants(input: &[u8]) {
    match parse(input) {
        Ok(entries) => {
            assert!(entries.iter().all(|e| !e.path.trim().is_empty() && !e.topic.is_empty()));
            let mut keys: Vec<(&str, &str)> = entries.iter().map(|e| e.key()).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), entries.len(), "duplicate (path, topic) accepted");
            let json = to_json(&entries);
            let again = parse(json.as_bytes()).unwrap_or_else(|e| panic!("to_json output {json:?} refused: {e}"));
            assert_eq!(again, entries, "round trip through {json:?}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            let line = e.to_string();
            assert!(!line.is_empty() && !line.contains('\n'), "not one line: {line:?}");
        }
    }
}

/// The collect list as JSON, options only where they are set: what
/// [`parse`] reads back into the same entries.
pub fn to_json(entries: &[CollectEntry]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        path: &'a str,
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        read_from: Option<&'static str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        max_line_bytes: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        long_lines: Option<&'static str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        parse_json: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        follow_symlinks: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_start: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_condition: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_mode: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_timeout_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_max_lines: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiline_max_bytes: Option<usize>,
    }
    let out: Vec<Out<'_>> = entries
        .iter()
        .map(|e| {
            let o = &e.options;
            let custom = o.multiline.as_ref().and_then(|m| m.custom.as_ref());
            Out {
                path: &e.path,
                topic: &e.topic,
                read_from: o.read_from.map(Words::word),
                exclude: o.exclude.iter().map(glob::Pattern::as_str).collect(),
                max_line_bytes: o.max_line_bytes,
                long_lines: o.long_lines.map(Words::word),
                parse_json: o.parse_json,
                follow_symlinks: o.follow_symlinks,
                multiline: o.multiline.as_ref().map(|m| m.preset.word()),
                multiline_start: custom.and_then(|c| c.start.as_deref()),
                multiline_condition: custom.map(|c| c.condition.as_str()),
                multiline_mode: custom.map(|c| c.mode.word()),
                // Written out even at their defaults: what was put reads back.
                multiline_timeout_ms: o.multiline.as_ref().map(|m| m.timeout_ms),
                multiline_max_lines: o.multiline.as_ref().map(|m| m.max_lines),
                multiline_max_bytes: o.multiline.as_ref().and_then(|m| m.max_bytes),
            }
        })
        .collect();
    serde_json::to_string(&out).expect("plain structs serialize")
}

/// One of an enum's words (`"end"`), or why not: `expected "end" or
/// "beginning", got 7`.
fn word<T: Words + std::str::FromStr>(value: &Value) -> Result<T, String> {
    value.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
        let choices: Vec<String> = T::words().map(|w| format!("{w:?}")).collect();
        format!("expected {}, got {}", choices.join(" or "), kind_or_value(value))
    })
}

/// A string for a message: quoted, and cut if long.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Scalars are shown as they are (`"middle"`, `-1`), the rest by kind.
fn kind_or_value(v: &Value) -> String {
    match v {
        Value::String(s) => shown(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind(other).to_string(),
    }
}

/// The top level: an array, or `null` for nothing.
struct Top(Vec<Item>);

/// One element of the array: an object's fields in order, repeats kept (a
/// map would silently keep only the last), or what else it was.
enum Item {
    Object(Vec<(String, Value)>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a JSON array of collect entries, like [{"path": "/var/log/*.log", "topic": "web_log"}]"#)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
                Ok(Top(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Top(items))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a collect entry (an object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut fields = Vec::new();
                while let Some(kv) = map.next_entry::<String, Value>()? {
                    fields.push(kv);
                }
                Ok(Item::Object(fields))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Item::Other("an array"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
                Ok(Item::Other("null"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Item, E> {
                Ok(Item::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Item, E> {
                Ok(Item::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Item, E> {
                Ok(Item::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Item, E> {
                Ok(Item::Other("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Item, E> {
                Ok(Item::Other("a string"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LongLines, ReadFrom};

    fn entry(path: &str, topic: &str) -> CollectEntry {
        CollectEntry::new(path, topic)
    }

    #[test]
    fn multiline_fields_parse_validate_and_round_trip() {
        use crate::config::multiline::{Mode, Preset};
        let d = parse(br#"[{"path":"/a","topic":"t","multiline":"java","multiline_timeout_ms":500,"multiline_max_lines":50},
            {"path":"/b","topic":"t","multiline":"custom","multiline_start":"^\\S","multiline_condition":"^\\s","multiline_mode":"continue_through","multiline_max_bytes":4096}]"#).unwrap();
        let m = d[0].options.multiline.as_ref().unwrap();
        assert_eq!((m.preset, m.timeout_ms, m.max_lines, m.max_bytes), (Preset::Java, 500, 50, None));
        let c = d[1].options.multiline.as_ref().unwrap().custom.as_ref().unwrap();
        assert_eq!((c.start.as_deref(), c.condition.as_str(), c.mode), (Some(r"^\S"), r"^\s", Mode::ContinueThrough));
        assert_eq!(parse(to_json(&d).as_bytes()).unwrap(), d);
        let refused: &[(&str, &str, &str)] = &[
            (r#"{"multiline":"jvm"}"#, "[0].multiline", "\"java\""),
            (r#"{"multiline":"custom","multiline_mode":"halt_with"}"#, "[0].multiline_condition", "needs a regex"),
            (r#"{"multiline":"custom","multiline_condition":"x"}"#, "[0].multiline_mode", "halt_before"),
            (
                r#"{"multiline":"custom","multiline_condition":"(x","multiline_mode":"halt_with"}"#,
                "[0].multiline_condition",
                "bad regex",
            ),
            (r#"{"multiline":"java","multiline_condition":"x"}"#, "[0].multiline_condition", "only for"),
            (r#"{"multiline_max_lines":5}"#, "[0].multiline_max_lines", "needs \"multiline\""),
            (r#"{"multiline":"go","multiline_timeout_ms":0}"#, "[0].multiline_timeout_ms", "got 0"),
            (r#"{"multiline":"go","multiline_max_lines":"many"}"#, "[0].multiline_max_lines", "1..="),
        ];
        for (extra, at, msg) in refused {
            let text = format!(r#"[{{"path":"/a","topic":"t",{}]"#, &extra[1..]);
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.problems.iter().any(|p| p.at == *at && p.message.contains(msg)), "{text}: {e}");
        }
    }
    #[test]
    fn the_seed_format_and_empty_lists() {
        // (value, entries)
        let table: &[(&str, Vec<CollectEntry>)] = &[
            (
                r#"[{"path":"/var/log/nginx/*.log","topic":"web_log"},{"path":"d:/x.log","topic":"t"}]"#,
                vec![entry("/var/log/nginx/*.log", "web_log"), entry("d:/x.log", "t")],
            ),
            ("[]", vec![]),
            ("null", vec![]),
            (" \n[ ]\n", vec![]),
            // Same path to two topics, two paths to one topic: both fine.
            (
                r#"[{"path":"/a","topic":"t1"},{"path":"/a","topic":"t2"},{"path":"/b","topic":"t1"}]"#,
                vec![entry("/a", "t1"), entry("/a", "t2"), entry("/b", "t1")],
            ),
            (r#"[{"topic":"t","path":"/ü/*.log"}]"#, vec![entry("/ü/*.log", "t")]),
        ];
        for (text, want) in table {
            assert_eq!(&parse(text.as_bytes()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn optional_fields() {
        let e = parse(
            br#"[{"path":"/a/*","topic":"t","read_from":"beginning","exclude":["*.gz","/a/x-*"],
                 "max_line_bytes":4096,"long_lines":"truncate","parse_json":true}]"#,
        )
        .unwrap();
        let o = &e[0].options;
        assert_eq!(o.read_from, Some(ReadFrom::Beginning));
        assert_eq!(o.exclude.iter().map(glob::Pattern::as_str).collect::<Vec<_>>(), vec!["*.gz", "/a/x-*"]);
        assert_eq!(o.max_line_bytes, Some(4096));
        assert_eq!(o.long_lines, Some(LongLines::Truncate));
        assert!(o.parse_json);
        let d = parse(br#"[{"path":"/a","topic":"t","read_from":"end","parse_json":false,"exclude":[]}]"#).unwrap();
        assert_eq!(d[0].options, EntryOptions { read_from: Some(ReadFrom::End), ..EntryOptions::default() });
    }

    #[test]
    fn problems_name_the_place_and_the_value() {
        // (value, where, words the message must contain)
        let table: &[(&str, &str, &str)] = &[
            ("", "", "invalid JSON"),
            ("[{\"path\":", "", "invalid JSON"),
            ("[{\"path\":\"/a\",\"topic\":\"t\"}] x", "", "trailing"),
            ("{\"path\":\"/a\",\"topic\":\"t\"}", "", "JSON array of collect entries"),
            ("\"[]\"", "", "JSON array"),
            ("42", "", "JSON array"),
            ("[\"/a\"]", "[0]", "expected an object, got a string"),
            ("[null]", "[0]", "got null"),
            ("[[1]]", "[0]", "got an array"),
            ("[{}]", "[0]", "missing \"path\""),
            ("[{\"path\":\"/a\"}]", "[0]", "missing \"topic\""),
            ("[{\"path\":\"\",\"topic\":\"t\"}]", "[0].path", "must not be empty"),
            ("[{\"path\":\"  \",\"topic\":\"t\"}]", "[0].path", "must not be empty"),
            ("[{\"path\":7,\"topic\":\"t\"}]", "[0].path", "got a number"),
            ("[{\"path\":\"/a/[x\",\"topic\":\"t\"}]", "[0].path", "bad glob \"/a/[x\""),
            ("[{\"path\":\"/a\",\"topic\":\"\"}]", "[0].topic", "1 to 249"),
            ("[{\"path\":\"/a\",\"topic\":\"a b\"}]", "[0].topic", "a-z"),
            ("[{\"path\":\"/a\",\"topic\":[\"t\"]}]", "[0].topic", "got an array"),
            (
                "[{\"path\":\"/a\",\"topic\":\"t\",\"Path\":\"/b\"}]",
                "[0].\"Path\"",
                "unknown field (known: path, topic",
            ),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"path\":\"/b\"}]", "[0].path", "given twice"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"read_from\":\"middle\"}]", "[0].read_from", "got \"middle\""),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"long_lines\":\"fold\"}]", "[0].long_lines", "got \"fold\""),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"max_line_bytes\":0}]", "[0].max_line_bytes", "got 0"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"max_line_bytes\":-5}]", "[0].max_line_bytes", "got -5"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"max_line_bytes\":1.5}]", "[0].max_line_bytes", "got 1.5"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"max_line_bytes\":\"4k\"}]", "[0].max_line_bytes", "got \"4k\""),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"max_line_bytes\":1073741825}]", "[0].max_line_bytes", "1..="),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"parse_json\":\"yes\"}]", "[0].parse_json", "true or false"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"follow_symlinks\":1}]", "[0].follow_symlinks", "true or false"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"exclude\":\"*.gz\"}]", "[0].exclude", "array of globs, got a string"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"exclude\":[1]}]", "[0].exclude[0]", "got a number"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"exclude\":[\"\"]}]", "[0].exclude[0]", "must not be empty"),
            ("[{\"path\":\"/a\",\"topic\":\"t\",\"exclude\":[\"[\"]}]", "[0].exclude[0]", "bad glob"),
            (
                "[{\"path\":\"/a\",\"topic\":\"t\"},{\"path\":\"/a\",\"topic\":\"t\",\"read_from\":\"end\"}]",
                "[1]",
                "same path and topic as [0]",
            ),
        ];
        for &(text, at, words) in table {
            let e = parse(text.as_bytes()).unwrap_err();
            let p = &e.problems[0];
            assert_eq!(p.at, at, "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
        }
    }

    #[test]
    fn every_problem_is_reported_in_one_line() {
        let text = r#"[{"path":"","topic":"t"},{"path":"/b","topic":"bad topic","x":1},7]"#;
        let e = parse(text.as_bytes()).unwrap_err();
        let at: Vec<&str> = e.problems.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(at, vec!["[0].path", "[1].topic", "[1].\"x\"", "[2]"]);
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        let many = format!("[{}]", ["1"; 9].join(","));
        let e = parse(many.as_bytes()).unwrap_err().to_string();
        assert!(e.ends_with("; and 4 more"), "{e}");
        // A long bad value is cut in the message.
        let long = format!(r#"[{{"path":"/a","topic":"t","read_from":"{}"}}]"#, "z".repeat(500));
        assert!(parse(long.as_bytes()).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn invalid_utf8_and_deep_nesting_are_errors_not_crashes() {
        assert!(parse(b"[{\"path\":\"/\xff\",\"topic\":\"t\"}]").is_err());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes()).is_err());
        let deep_field = format!(r#"[{{"path":"/a","topic":"t","x":{}{}}}]"#, "[".repeat(5_000), "]".repeat(5_000));
        assert!(parse(deep_field.as_bytes()).is_err());
    }

    #[test]
    fn the_fuzz_seeds_and_the_tables_hold_the_invariants() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/collect");
        let mut n = 0;
        for f in std::fs::read_dir(&seeds).unwrap() {
            assert_invariants(&std::fs::read(f.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 5, "seeds in {}", seeds.display());
        for text in
            ["", "[", "[{\"path\":\"a\\nb\",\"topic\":\"t\",\"x\\n\":1}]", "[{\"path\":\"/a\",\"topic\":\"t\"}]"]
        {
            assert_invariants(text.as_bytes());
        }
    }

    #[test]
    fn to_json_reads_back_the_same_entries() {
        let text = r#"[{"path":"/a/*","topic":"t","read_from":"end","exclude":["*.gz"],"max_line_bytes":10,
            "long_lines":"split","parse_json":true,"follow_symlinks":false},{"path":"/b","topic":"u"}]"#;
        let entries = parse(text.as_bytes()).unwrap();
        let json = to_json(&entries);
        assert_eq!(parse(json.as_bytes()).unwrap(), entries);
        assert!(json.ends_with(r#"{"path":"/b","topic":"u"}]"#), "defaults are left out: {json}");
        assert_eq!(to_json(&[]), "[]");
    }
}
