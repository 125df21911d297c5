//! The `_bulk` request body. [`BulkBody`] appends one [`Record`] at a time
//! as two NDJSON lines, reusing one buffer from request to request. Pure
//! code over bytes, no I/O: the workers own the connection, the retries and
//! the acknowledgements.
//!
//! ```text
//! {"create":{"_index":"app-2026.11.25","_id":"q0m3…(22 chars)"}}
//! {"@timestamp":"2026-11-25T10:44:34.123Z","message":"…","host":{"name":"web1"},
//!  "log":{"file":{"path":"/var/log/app.log"},"offset":1234},"topic":"app",
//!  "kafka":{"partition":3,"offset":98765}}
//! ```
//!
//! - `create`, never `index`: with a deterministic `_id`, a record delivered
//!   twice (Kafka is at-least-once) is refused with 409 instead of being
//!   stored twice, and the classifier counts that as done.
//! - `_id` is the record's [`doc_id`](crate::record::doc_id): the same
//!   line read, shipped or consumed again gets the same id (see
//!   [`crate::record`] for what it hashes).
//! - `@timestamp` is the Kafka record timestamp (the agent sets it to the
//!   read time), RFC 3339 UTC with milliseconds; it is left out when the
//!   record has none or it falls outside years 0000–9999.
//! - `host`, `log` (ECS names) only with the agent's headers. Cut lines are
//!   marked the way Filebeat marks them, with `log.flags`: `["truncated"]`,
//!   `["partial"]` (a file's unfinished last line, flushed), or `["split"]`
//!   plus `log.part` (1-based part number) for the pieces of a long line.
//! - Every string is escaped per RFC 8259; bytes that are not UTF-8 become
//!   U+FFFD, exactly like `String::from_utf8_lossy`, and are counted
//!   ([`BulkBody::lossy_docs`]). The body is always valid UTF-8, and its
//!   only raw LFs are the line terminators.
//!
//! With [`MessageMode::ParseJson`], a line that is a JSON object also has its
//! top-level fields merged into the document. Our fields ([`OWN_FIELDS`])
//! win: a line key whose first dotted segment is one of them, that starts
//! with `_` (Elasticsearch reserves those) or that already starts with
//! [`RENAME_PREFIX`] gets [`RENAME_PREFIX`] in front, which keeps all names
//! distinct. A line Elasticsearch would refuse as a document — duplicate
//! keys at any depth, an empty or dot-ambiguous key, nesting deeper than
//! [`JSON_MAX_DEPTH`] — or that is not a JSON object at all stays a plain
//! `message`.

mod escape;
mod journal;
mod json_merge;
#[cfg(test)]
pub(crate) mod testutil;
pub(crate) mod timestamp;

use crate::record::{doc_id_with, Cut, Record, NOT_FROM_KAFKA};
use escape::{write_str, write_utf8};
use json_merge::{looks_like_object, JsonScratch};
use std::fmt;
use timestamp::Clock;

/// Top-level document fields the builder writes. Line keys colliding with
/// them are renamed in [`MessageMode::ParseJson`].
pub const OWN_FIELDS: [&str; 6] = ["@timestamp", "message", "host", "log", "topic", "kafka"];

/// What a colliding line key gets in front of it in [`MessageMode::ParseJson`]
/// (`host` → `json_host`, `_id` → `json__id`, `json_x` → `json_json_x`).
pub const RENAME_PREFIX: &str = "json_";

/// Deepest nesting (objects and arrays, the line's own object counting as 1)
/// of a line merged in [`MessageMode::ParseJson`]; deeper lines stay plain.
/// Matches Elasticsearch's default `index.mapping.depth.limit` (20), which
/// counts only objects, so whatever passes here passes there.
pub const JSON_MAX_DEPTH: usize = 20;

/// How a record's line becomes the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MessageMode {
    /// The line is the `message` string.
    #[default]
    Plain,
    /// The line is the `message` string and, when it is a JSON object
    /// Elasticsearch would accept, its fields are merged into the document.
    ParseJson,
}

/// What [`BulkBody::push`] did with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum PushOutcome {
    /// Appended as document number `docs() - 1`.
    Added {
        /// Some bytes were not UTF-8 and became U+FFFD.
        lossy: bool,
        /// The line's JSON fields were merged (only in `ParseJson` mode).
        merged_json: bool,
    },
    /// Not appended, the body is unchanged: the document would take the
    /// body past its `max_bytes`. Send the body, `clear` it, push again.
    Full,
}

/// The record a document came from, by Kafka coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocSource {
    /// Kafka partition of the record ([`crate::record::NOT_FROM_KAFKA`] for lines from the readers).
    pub partition: i32,
    /// Kafka offset of the record.
    pub offset: i64,
}

/// A `_bulk` request body under construction; reused request after request
/// (`clear` keeps the buffers), so building allocates only while it grows.
pub struct BulkBody {
    /// NDJSON: `sources.len()` action + document line pairs, each line
    /// ending in `\n`; empty or ending in `\n`.
    buf: Vec<u8>,
    /// `buf` stays at most this long, unless its only document is longer.
    max_bytes: usize,
    /// One per document, in push order: `_bulk` response item `i` answers
    /// `sources[i]`.
    sources: Vec<DocSource>,
    /// Documents with U+FFFD replacements; ≤ `sources.len()`.
    lossy: usize,
    /// Documents with merged JSON fields; ≤ `sources.len()`.
    merged: usize,
    fixed: Fixed,
    /// Scratch for the `_id` hash input.
    id_input: Vec<u8>,
    json: JsonScratch,
}

impl fmt::Debug for BulkBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkBody")
            .field("docs", &self.sources.len())
            .field("bytes", &self.buf.len())
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl BulkBody {
    /// An empty body that refuses documents past `max_bytes` (a single
    /// document is accepted whatever its size: it has to go somewhere).
    pub fn new(max_bytes: usize) -> Self {
        BulkBody {
            buf: Vec::with_capacity(max_bytes.min(16 << 20) + 4096),
            max_bytes,
            sources: Vec::new(),
            lossy: 0,
            merged: 0,
            fixed: Fixed::default(),
            id_input: Vec::with_capacity(256),
            json: JsonScratch::default(),
        }
    }

    /// Appends the action and document lines for `rec`, to be stored in
    /// `index` (see [`crate::elastic::index_name::IndexNames`]).
    pub fn push(&mut self, rec: &Record<'_>, index: &str, mode: MessageMode) -> PushOutcome {
        let start = self.buf.len();
        let buf = &mut self.buf;
        // `index` is a `str`: never anything to replace.
        self.fixed.action.write(buf, index.as_bytes(), b"", |out| {
            out.extend_from_slice(br#"{"create":{"_index":"#);
            write_utf8(out, index);
            out.extend_from_slice(br#","_id":""#);
            false
        });
        let mut lossy = false;
        buf.extend_from_slice(doc_id_with(rec, &mut self.id_input).as_bytes());
        buf.extend_from_slice(b"\"}}\n");

        let merged = match mode {
            MessageMode::ParseJson if looks_like_object(rec.value) => self.json.write_doc(buf, &mut self.fixed, rec),
            _ => None,
        };
        match merged {
            Some(l) => lossy |= l,
            None => {
                lossy |= write_head(buf, &mut self.fixed, rec);
                buf.extend_from_slice(b"}\n");
            }
        }

        if buf.len() > self.max_bytes && !self.sources.is_empty() {
            buf.truncate(start);
            return PushOutcome::Full;
        }
        self.sources.push(DocSource { partition: rec.partition, offset: rec.offset });
        self.lossy += usize::from(lossy);
        self.merged += usize::from(merged.is_some());
        PushOutcome::Added { lossy, merged_json: merged.is_some() }
    }

    /// Empties the body for the next request, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.sources.clear();
        self.lossy = 0;
        self.merged = 0;
    }

    /// The NDJSON body: empty, or ending in `\n`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Body length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no document was pushed since the last `clear`.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Number of documents in the body.
    pub fn docs(&self) -> usize {
        self.sources.len()
    }

    /// Where each document came from, in push order: response item `i`
    /// answers `sources()[i]`.
    pub fn sources(&self) -> &[DocSource] {
        &self.sources
    }

    /// Documents in this body with bytes replaced by U+FFFD.
    pub fn lossy_docs(&self) -> usize {
        self.lossy
    }

    /// Documents in this body whose JSON line was merged.
    pub fn merged_docs(&self) -> usize {
        self.merged
    }

    /// The size limit given to [`BulkBody::new`].
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

/// The parts of documents that are the same from record to record, kept
/// ready to copy: the timestamp's second, and the escaped index, host and
/// path, and topic of the last record (a body holds long runs of records
/// of one file, topic and day).
#[derive(Debug, Default)]
struct Fixed {
    clock: Clock,
    /// `{"create":{"_index":"…","_id":"` for the last index.
    action: Memo,
    /// `,"host":{"name":"…"},"log":{"file":{"path":"…"},"offset":` for the
    /// last host and path.
    origin: Memo,
    /// `,"topic":"…"` for the last topic.
    topic: Memo,
}

/// The output of a rendering function for the last key it was called with:
/// rendered again only when the key changes.
#[derive(Debug, Default)]
struct Memo {
    /// The key's two parts one after the other; `None` before the first
    /// call. The parts are kept apart by the length of the first.
    key: Option<(Vec<u8>, usize)>,
    /// What the rendering wrote for `key`, and what it returned.
    out: Vec<u8>,
    lossy: bool,
}

impl Memo {
    /// Appends what `render` writes for the key `(a, b)`, calling it only
    /// if the key is not the last one; returns what `render` returned.
    /// `render` must depend on nothing but the key.
    fn write(&mut self, buf: &mut Vec<u8>, a: &[u8], b: &[u8], render: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        let hit =
            matches!(&self.key, Some((key, a_len)) if *a_len == a.len() && key[..*a_len] == *a && key[*a_len..] == *b);
        if !hit {
            let (mut key, _) = self.key.take().unwrap_or_default();
            key.clear();
            key.extend_from_slice(a);
            key.extend_from_slice(b);
            self.key = Some((key, a.len()));
            self.out.clear();
            self.lossy = render(&mut self.out);
        }
        buf.extend_from_slice(&self.out);
        self.lossy
    }
}

/// Our fields, from `{` up to (not including) the closing `}`. Returns
/// whether a string needed U+FFFD.
fn write_head(buf: &mut Vec<u8>, fixed: &mut Fixed, rec: &Record<'_>) -> bool {
    let mut num = itoa::Buffer::new();
    buf.push(b'{');
    if let Some(ms) = rec.timestamp_ms {
        if fixed.clock.write(buf, ms) {
            buf.push(b',');
        }
    }
    buf.extend_from_slice(br#""message":"#);
    let mut lossy = write_str(buf, rec.value);
    if let Some(o) = rec.origin.as_ref().filter(|o| o.journal.is_some()) {
        lossy |= journal::write_origin(buf, o);
    } else if let Some(o) = &rec.origin {
        lossy |= fixed.origin.write(buf, o.host, o.path, |out| {
            out.extend_from_slice(br#","host":{"name":"#);
            let lossy = write_str(out, o.host);
            out.extend_from_slice(br#"},"log":{"file":{"path":"#);
            let lossy = write_str(out, o.path) | lossy;
            out.extend_from_slice(br#"},"offset":"#);
            lossy
        });
        buf.extend_from_slice(num.format(o.offset).as_bytes());
        match o.cut {
            Cut::Whole => {}
            Cut::Truncated => buf.extend_from_slice(br#","flags":["truncated"]"#),
            Cut::Partial => buf.extend_from_slice(br#","flags":["partial"]"#),
            Cut::Part(n) => {
                buf.extend_from_slice(br#","flags":["split"],"part":"#);
                buf.extend_from_slice(num.format(n).as_bytes());
            }
        }
        buf.push(b'}');
    }
    // `topic` is a `str`: never anything to replace.
    fixed.topic.write(buf, rec.topic.as_bytes(), b"", |out| {
        out.extend_from_slice(br#","topic":"#);
        write_utf8(out, rec.topic);
        false
    });
    if rec.partition != NOT_FROM_KAFKA {
        buf.extend_from_slice(br#","kafka":{"partition":"#);
        buf.extend_from_slice(num.format(rec.partition).as_bytes());
        buf.extend_from_slice(br#","offset":"#);
        buf.extend_from_slice(num.format(rec.offset).as_bytes());
        buf.push(b'}');
    }
    lossy
}

/// The `log.flags` mark of a document stored without the fields its JSON
/// line would have merged.
pub const UNMERGED_FLAG: &str = "json_unmerged";

/// A merged document (see [`MessageMode::ParseJson`]) with only our own
/// fields ([`OWN_FIELDS`]; `message` holds the whole line) and
/// [`UNMERGED_FLAG`] added to `log.flags`: what the workers send instead
/// when Elasticsearch refuses a document over a merged field (a type that
/// conflicts with an earlier line's, the index's field limit; review
/// finding 12). `None` when `doc` has no field but ours (nothing to take
/// out) or is not a JSON object.
pub fn without_merged_fields(doc: &[u8]) -> Option<Vec<u8>> {
    let serde_json::Value::Object(mut fields) = serde_json::from_slice(doc).ok()? else {
        return None;
    };
    let before = fields.len();
    fields.retain(|k, _| OWN_FIELDS.contains(&k.as_str()));
    if fields.len() == before {
        return None;
    }
    let log = fields.entry("log").or_insert_with(|| serde_json::json!({}));
    if let serde_json::Value::Object(log) = log {
        let flags = log.entry("flags").or_insert_with(|| serde_json::json!([]));
        if let serde_json::Value::Array(flags) = flags {
            flags.push(UNMERGED_FLAG.into());
        }
    }
    serde_json::to_vec(&fields).ok()
}

#[cfg(test)]
mod tests {
    use super::testutil::{nasty_bytes, one, parse_body};
    use super::*;
    use crate::record::testutil::{origin, rec};
    use crate::record::{doc_id, Origin};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn a_merged_document_loses_the_line_fields_and_is_marked() {
        let doc = br#"{"@timestamp":"2026-11-25T10:00:00.000Z","message":"{\"status\":{\"x\":1}}","log":{"offset":7},"topic":"t","status":{"x":1},"json_host":"h"}"#;
        let plain: serde_json::Value = serde_json::from_slice(&without_merged_fields(doc).unwrap()).unwrap();
        assert_eq!(
            plain,
            json!({"@timestamp":"2026-11-25T10:00:00.000Z","message":"{\"status\":{\"x\":1}}",
                   "log":{"offset":7,"flags":["json_unmerged"]},"topic":"t"})
        );
        // A cut line keeps its own flag beside the new one; no log at all gets one.
        let cut = br#"{"message":"m","log":{"flags":["partial"]},"a":1}"#;
        let plain: serde_json::Value = serde_json::from_slice(&without_merged_fields(cut).unwrap()).unwrap();
        assert_eq!(plain, json!({"message":"m","log":{"flags":["partial","json_unmerged"]}}));
        let foreign = br#"{"message":"m","a":1}"#;
        let plain: serde_json::Value = serde_json::from_slice(&without_merged_fields(foreign).unwrap()).unwrap();
        assert_eq!(plain, json!({"message":"m","log":{"flags":["json_unmerged"]}}));
        // Nothing merged, or not an object: nothing to do.
        assert_eq!(without_merged_fields(br#"{"message":"m","topic":"t"}"#), None);
        assert_eq!(without_merged_fields(b"[1]"), None);
        assert_eq!(without_merged_fields(b"{not json"), None);
    }

    #[test]
    fn memo_renders_only_for_a_new_key() {
        let mut memo = Memo::default();
        let mut renders = 0;
        let mut buf = Vec::new();
        // Same bytes split differently, empty parts: all distinct keys.
        let keys: [(&[u8], &[u8]); 7] =
            [(b"", b""), (b"", b""), (b"ab", b"c"), (b"a", b"bc"), (b"a", b"bc"), (b"abc", b""), (b"", b"abc")];
        for (a, b) in keys {
            let lossy = memo.write(&mut buf, a, b, |out| {
                renders += 1;
                out.extend_from_slice(a);
                out.push(b'|');
                out.extend_from_slice(b);
                out.push(b';');
                a.len() == 1
            });
            assert_eq!(lossy, a.len() == 1);
        }
        assert_eq!(renders, 5);
        assert_eq!(buf, b"|;|;ab|c;a|bc;a|bc;abc|;|abc;");
    }

    #[test]
    fn fixed_parts_follow_each_record() {
        // Each document as a fresh body (nothing cached) writes it, whatever
        // the records before it.
        let o = origin(7);
        let records = [
            (rec(b"one"), "logs"),
            (Record { origin: Some(Origin { host: b"web2", ..o }), ..rec(b"two") }, "logs"),
            (Record { origin: Some(Origin { path: b"/p\\\"q", ..o }), ..rec(b"three") }, "logs"),
            (Record { origin: Some(Origin { host: b"web\xff", ..o }), ..rec(b"four") }, "logs"),
            (Record { origin: Some(Origin { host: b"web", path: b"2/var/log/app.log", ..o }), ..rec(b"five") }, "logs"),
            (Record { origin: Some(Origin { host: b"web2/var/log/app.log", path: b"", ..o }), ..rec(b"six") }, "logs"),
            (Record { topic: "other", ..rec(b"seven") }, "other\"idx"),
            (Record { origin: None, ..rec(b"eight") }, "logs"),
            (rec(b"nine"), "logs"),
            (Record { topic: "app", partition: NOT_FROM_KAFKA, ..rec(b"ten") }, "logs"),
        ];
        let mut body = BulkBody::new(1 << 20);
        let mut want = Vec::new();
        for (r, index) in &records {
            let _ = body.push(r, index, MessageMode::Plain);
            let mut fresh = BulkBody::new(1 << 20);
            let _ = fresh.push(r, index, MessageMode::Plain);
            want.extend_from_slice(fresh.as_bytes());
        }
        assert_eq!(String::from_utf8_lossy(body.as_bytes()), String::from_utf8_lossy(&want));
        assert_eq!(body.lossy_docs(), 1);
    }

    #[test]
    fn plain_document_with_headers() {
        let (action, doc, out) = one(&rec(b"GET /index.html 200"), MessageMode::Plain);
        assert_eq!(out, PushOutcome::Added { lossy: false, merged_json: false });
        let id = doc_id(&rec(b"GET /index.html 200"));
        assert_eq!(action, json!({"create": {"_index": "logs", "_id": id.as_str()}}));
        assert_eq!(
            doc,
            json!({
                "@timestamp": "2026-11-25T10:44:34.123Z",
                "message": "GET /index.html 200",
                "host": {"name": "web1"},
                "log": {"file": {"path": "/var/log/app.log"}, "offset": 1234},
                "topic": "app",
                "kafka": {"partition": 3, "offset": 98765},
            })
        );
    }

    #[test]
    fn exact_bytes_of_a_document() {
        let mut b = BulkBody::new(1 << 20);
        let r = Record { timestamp_ms: Some(0), ..rec(b"x") };
        let _ = b.push(&r, "i", MessageMode::Plain);
        let text = std::str::from_utf8(b.as_bytes()).unwrap();
        let want = format!(
            concat!(
                r#"{{"create":{{"_index":"i","_id":"{}"}}}}"#,
                "\n",
                r#"{{"@timestamp":"1970-01-01T00:00:00.000Z","message":"x","host":{{"name":"web1"}},"#,
                r#""log":{{"file":{{"path":"/var/log/app.log"}},"offset":1234}},"topic":"app","#,
                r#""kafka":{{"partition":3,"offset":98765}}}}"#,
                "\n"
            ),
            doc_id(&r)
        );
        assert_eq!(text, want);
    }

    #[test]
    fn documents_edge_cases() {
        // (value, message as serde sees it, lossy)
        let table: &[(&[u8], bool)] = &[
            (b"", false),
            (b"\x01\x02\x1b[31mred\x1b[0m", false),
            (b"say \"hi\" \\ bye", false),
            (b"nul\x00inside", false),
            (
                &[
                    0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
                    27, 28, 29, 30, 31,
                ],
                false,
            ),
            (b"\r", false),
            (b"caf\xc3\xa9 \xf0\x9f\x8d\xb5", false),
            (b"bad \xfe\xff bytes", true),
            (b"cut at the end \xe2\x82", true),
            (b"cut at the end \xf0\x9f\x8d", true),
            (br#"{"not":"merged in plain mode"}"#, false),
        ];
        for &(value, lossy) in table {
            for mode in [MessageMode::Plain, MessageMode::ParseJson] {
                let (_, doc, out) = one(&rec(value), mode);
                assert_eq!(
                    doc["message"],
                    Value::String(String::from_utf8_lossy(value).into_owned()),
                    "value {value:?}"
                );
                let merged = mode == MessageMode::ParseJson && value.starts_with(b"{");
                assert_eq!(out, PushOutcome::Added { lossy, merged_json: merged }, "value {value:?}");
            }
        }
    }

    #[test]
    fn foreign_records_have_no_host_or_log() {
        let r = Record { origin: None, timestamp_ms: None, ..rec(b"hello") };
        let (action, doc, _) = one(&r, MessageMode::Plain);
        assert_eq!(doc, json!({"message": "hello", "topic": "app", "kafka": {"partition": 3, "offset": 98765}}));
        assert_eq!(action["create"]["_id"], doc_id(&r).as_str());
    }

    #[test]
    fn huge_and_negative_numbers() {
        let r = Record { partition: i32::MAX, offset: i64::MAX, origin: Some(origin(u64::MAX)), ..rec(b"x") };
        let (_, doc, _) = one(&r, MessageMode::Plain);
        assert_eq!(doc["log"]["offset"], json!(u64::MAX));
        assert_eq!(doc["kafka"], json!({"partition": i32::MAX, "offset": i64::MAX}));
        let r = Record { partition: i32::MIN, offset: i64::MIN, ..rec(b"x") };
        let (_, doc, _) = one(&r, MessageMode::Plain);
        assert_eq!(doc["kafka"], json!({"partition": i32::MIN, "offset": i64::MIN}));
        let r = Record { partition: NOT_FROM_KAFKA, ..rec(b"x") };
        let (_, doc, _) = one(&r, MessageMode::Plain);
        assert_eq!(doc.get("kafka"), None, "not from Kafka: no kafka field");
    }

    #[test]
    fn cut_markers() {
        let table = [
            (Cut::Whole, json!({"file": {"path": "/var/log/app.log"}, "offset": 1234})),
            (Cut::Truncated, json!({"file": {"path": "/var/log/app.log"}, "offset": 1234, "flags": ["truncated"]})),
            (Cut::Partial, json!({"file": {"path": "/var/log/app.log"}, "offset": 1234, "flags": ["partial"]})),
            (
                Cut::Part(7),
                json!({"file": {"path": "/var/log/app.log"}, "offset": 1234, "flags": ["split"], "part": 7}),
            ),
        ];
        for (cut, want) in table {
            let r = Record { origin: Some(Origin { cut, ..origin(1234) }), ..rec(b"x") };
            assert_eq!(one(&r, MessageMode::Plain).1["log"], want, "{cut:?}");
        }
    }

    #[test]
    fn header_fields_are_escaped_and_replaced() {
        let r = Record {
            origin: Some(Origin { host: b"h\"o\\st", path: b"/tmp/bad\xffname\n.log", ..origin(1) }),
            ..rec(b"fine")
        };
        let (_, doc, out) = one(&r, MessageMode::Plain);
        assert_eq!(doc["host"]["name"], "h\"o\\st");
        assert_eq!(doc["log"]["file"]["path"], "/tmp/bad\u{FFFD}name\n.log");
        assert_eq!(out, PushOutcome::Added { lossy: true, merged_json: false });
    }

    #[test]
    fn the_action_carries_doc_id() {
        let r = rec(b"line");
        let (action, _, _) = one(&r, MessageMode::Plain);
        assert_eq!(action["create"]["_id"], doc_id(&r).as_str());
    }

    #[test]
    fn full_body_refuses_and_stays_intact() {
        let mut b = BulkBody::new(600);
        let line = [b'x'; 200];
        let mut added = 0;
        loop {
            let r = Record { offset: added, ..rec(&line) };
            match b.push(&r, "i", MessageMode::Plain) {
                PushOutcome::Added { .. } => added += 1,
                PushOutcome::Full => break,
            }
        }
        assert!(added >= 1);
        assert!(b.len() <= 600, "{}", b.len());
        assert_eq!(b.docs(), added as usize);
        assert_eq!(parse_body(b.as_bytes()).len(), added as usize);
        let offsets: Vec<i64> = b.sources().iter().map(|s| s.offset).collect();
        assert_eq!(offsets, (0..added).collect::<Vec<_>>());
        // A single document larger than the limit still goes, alone.
        let big = [b'y'; 1000];
        b.clear();
        assert!(b.is_empty() && b.as_bytes().is_empty());
        assert!(matches!(b.push(&rec(&big), "i", MessageMode::Plain), PushOutcome::Added { .. }));
        assert_eq!(b.push(&rec(b"z"), "i", MessageMode::Plain), PushOutcome::Full);
        assert_eq!(b.docs(), 1);
        assert_eq!(parse_body(b.as_bytes()).len(), 1);
    }

    #[test]
    fn counters_and_reuse_without_growth() {
        let mut b = BulkBody::new(1 << 20);
        let fill = |b: &mut BulkBody| {
            for i in 0..500 {
                let v: &[u8] = match i % 5 {
                    0 => b"bad \xff",
                    1 => br#"{"level":"info","n":1}"#,
                    _ => b"2026-11-25 10:44:34 INFO request served in 3 ms",
                };
                let _ = b.push(&Record { offset: i, ..rec(v) }, "logs-2026.11.25", MessageMode::ParseJson);
            }
        };
        fill(&mut b);
        assert_eq!((b.docs(), b.lossy_docs(), b.merged_docs()), (500, 100, 100));
        let (ptr, cap, len) = (b.as_bytes().as_ptr(), b.buf.capacity(), b.len());
        b.clear();
        assert_eq!((b.docs(), b.lossy_docs(), b.merged_docs(), b.len()), (0, 0, 0, 0));
        fill(&mut b);
        // Same bytes again, in the same memory: nothing grew.
        assert_eq!((b.as_bytes().as_ptr(), b.buf.capacity(), b.len()), (ptr, cap, len));
    }

    proptest! {
        #[test]
        fn any_bytes_make_a_valid_body(values in proptest::collection::vec(nasty_bytes(), 1..6), json in any::<bool>()) {
            let mode = if json { MessageMode::ParseJson } else { MessageMode::Plain };
            let mut b = BulkBody::new(1 << 20);
            for (i, v) in values.iter().enumerate() {
                let r = Record { offset: i as i64, ..rec(v) };
                let added = matches!(b.push(&r, "i", mode), PushOutcome::Added { .. });
                prop_assert!(added);
            }
            let docs = parse_body(b.as_bytes());
            prop_assert_eq!(docs.len(), values.len());
            prop_assert_eq!(b.as_bytes().iter().filter(|&&c| c == b'\n').count(), 2 * values.len());
            let mut lossy = 0;
            for ((_, doc), v) in docs.iter().zip(&values) {
                let want = String::from_utf8_lossy(v);
                lossy += usize::from(std::str::from_utf8(v).is_err());
                prop_assert_eq!(doc["message"].as_str(), Some(&*want));
            }
            prop_assert_eq!(b.lossy_docs(), lossy);
        }

    }
}
