//! [`MessageMode::ParseJson`](super::MessageMode::ParseJson): a line that is
//! a JSON object Elasticsearch would accept has its fields merged into the
//! document after ours, renamed where they would collide (see the body's
//! module docs). The line is parsed with simd-json into a reused tape;
//! anything doubtful leaves it a plain `message`.

use super::escape::{escape_into, write_utf8};
use super::{write_head, Fixed, JSON_MAX_DEPTH, OWN_FIELDS, RENAME_PREFIX};
use crate::elastic::tape::span;
use crate::record::Record;
use simd_json::prelude::Writable;
use simd_json::{Buffers, Node, StaticNode, Tape};

/// Most top-level keys a line may merge (security review finding 12: each
/// new key is a field of the index's dynamic mapping, and Elasticsearch's
/// `index.mapping.total_fields.limit` is 1000); a line with more stays a
/// plain `message`.
pub(super) const MAX_MERGED_KEYS: usize = 100;

/// Most keys a line may merge at all depths (depth is bounded by
/// [`JSON_MAX_DEPTH`]); a line with more stays a plain `message`.
pub(super) const MAX_MERGED_FIELDS: usize = 500;

/// Keys of every object in `tape`: one pass, no allocation.
fn total_keys(tape: &[Node<'_>]) -> usize {
    tape.iter().map(|n| if let Node::Object { len, .. } = n { *len } else { 0 }).sum()
}

/// Cheap pre-check before copying a line for simd-json: first non-blank
/// byte is `{`.
pub(super) fn looks_like_object(line: &[u8]) -> bool {
    line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).is_some_and(|&b| b == b'{')
}

/// Reused state of the `ParseJson` path.
pub(super) struct JsonScratch {
    /// The line copied (simd-json parses in place) plus `INPUT_PADDING`.
    input: Vec<u8>,
    buffers: Buffers,
    /// Kept between calls for its allocation only; always empty here.
    tape: Option<Tape<'static>>,
    /// Tape indices of one object's keys, for the duplicate check.
    keys: Vec<usize>,
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch {
            input: Vec::new(),
            buffers: Buffers::with_max_depth(1024, JSON_MAX_DEPTH),
            tape: None,
            keys: Vec::new(),
        }
    }
}

impl JsonScratch {
    /// Writes the whole document line with the line's fields merged;
    /// `None` (nothing written) when the line is not a JSON object that can
    /// be merged. `Some(lossy)` otherwise.
    pub(super) fn write_doc(&mut self, buf: &mut Vec<u8>, fixed: &mut Fixed, rec: &Record<'_>) -> Option<bool> {
        let len = rec.value.len();
        self.input.clear();
        self.input.extend_from_slice(rec.value);
        self.input.resize(len + simd_json::INPUT_PADDING, b' ');
        let mut tape: Tape<'_> = self.tape.take().unwrap_or_else(Tape::null).reset();
        let written = match simd_json::fill_tape_padded(&mut self.input, len, &mut self.buffers, &mut tape) {
            Ok(()) => write_merged(buf, fixed, rec, &tape.0, &mut self.keys),
            Err(_) => None,
        };
        self.tape = Some(tape.reset());
        written
    }
}

fn write_merged(
    buf: &mut Vec<u8>,
    fixed: &mut Fixed,
    rec: &Record<'_>,
    tape: &[Node<'_>],
    keys: &mut Vec<usize>,
) -> Option<bool> {
    let Some(&Node::Object { len, .. }) = tape.first() else {
        return None;
    };
    // A line that would add many fields to the mapping is kept whole as text.
    if len > MAX_MERGED_KEYS || total_keys(tape) > MAX_MERGED_FIELDS || !keys_acceptable(tape, 0, keys) {
        return None;
    }
    let doc_start = buf.len();
    let lossy = write_head(buf, fixed, rec);
    let mut i = 1;
    for _ in 0..len {
        let Node::String(key) = tape[i] else {
            buf.truncate(doc_start);
            return None;
        };
        buf.extend_from_slice(b",\"");
        if needs_rename(key) {
            buf.extend_from_slice(RENAME_PREFIX.as_bytes());
        }
        escape_into(buf, key.as_bytes());
        buf.extend_from_slice(b"\":");
        match write_value(buf, tape, i + 1, keys) {
            Some(next) => i = next,
            None => {
                buf.truncate(doc_start);
                return None;
            }
        }
    }
    buf.extend_from_slice(b"}\n");
    Some(lossy)
}

/// Whether a top-level line key must be renamed (see the module docs).
fn needs_rename(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or(key);
    key.starts_with('_') || key.starts_with(RENAME_PREFIX) || OWN_FIELDS.contains(&first)
}

/// Writes the value at `tape[i]`; returns the index after it, or `None` if
/// an object in it has keys Elasticsearch would refuse.
fn write_value(buf: &mut Vec<u8>, tape: &[Node<'_>], i: usize, keys: &mut Vec<usize>) -> Option<usize> {
    match tape[i] {
        Node::String(s) => {
            write_utf8(buf, s);
            Some(i + 1)
        }
        Node::Static(s) => {
            write_static(buf, s);
            Some(i + 1)
        }
        Node::Array { len, .. } => {
            buf.push(b'[');
            let mut j = i + 1;
            for k in 0..len {
                if k > 0 {
                    buf.push(b',');
                }
                j = write_value(buf, tape, j, keys)?;
            }
            buf.push(b']');
            Some(j)
        }
        Node::Object { len, .. } => {
            if !keys_acceptable(tape, i, keys) {
                return None;
            }
            buf.push(b'{');
            let mut j = i + 1;
            for k in 0..len {
                let Node::String(key) = tape[j] else {
                    return None;
                };
                if k > 0 {
                    buf.push(b',');
                }
                write_utf8(buf, key);
                buf.push(b':');
                j = write_value(buf, tape, j + 1, keys)?;
            }
            buf.push(b'}');
            Some(j)
        }
    }
}

fn write_static(buf: &mut Vec<u8>, s: StaticNode) {
    let mut num = itoa::Buffer::new();
    match s {
        StaticNode::Null => buf.extend_from_slice(b"null"),
        StaticNode::Bool(true) => buf.extend_from_slice(b"true"),
        StaticNode::Bool(false) => buf.extend_from_slice(b"false"),
        StaticNode::I64(n) => buf.extend_from_slice(num.format(n).as_bytes()),
        StaticNode::U64(n) => buf.extend_from_slice(num.format(n).as_bytes()),
        // Floats (and 128-bit integers, should a feature enable them):
        // simd-json's own writer (ryu, shortest round-trip form).
        #[allow(unreachable_patterns)]
        other => {
            let _ = simd_json::BorrowedValue::Static(other).write(buf);
        }
    }
}

/// The keys of the object at `tape[obj]` are distinct and each is a field
/// name Elasticsearch accepts: no empty dotted segment (`""`, `".a"`,
/// `"a..b"`, `"a."`) and none that is only whitespace.
fn keys_acceptable(tape: &[Node<'_>], obj: usize, keys: &mut Vec<usize>) -> bool {
    let Node::Object { len, .. } = tape[obj] else {
        return false;
    };
    let key_at = |k: usize| match tape[k] {
        Node::String(s) => s,
        _ => "",
    };
    keys.clear();
    let mut i = obj + 1;
    for _ in 0..len {
        let Node::String(key) = tape[i] else {
            return false;
        };
        if key.split('.').any(|seg| seg.trim().is_empty()) {
            return false;
        }
        keys.push(i);
        i += 1 + span(&tape[i + 1]);
    }
    if keys.len() <= 8 {
        // Small objects (nearly all): pairwise beats sorting.
        for (n, &a) in keys.iter().enumerate() {
            if keys[n + 1..].iter().any(|&b| key_at(a) == key_at(b)) {
                return false;
            }
        }
        true
    } else {
        keys.sort_unstable_by(|&a, &b| key_at(a).cmp(key_at(b)));
        keys.windows(2).all(|w| key_at(w[0]) != key_at(w[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elastic::body::testutil::one;
    use crate::elastic::body::{MessageMode, PushOutcome};
    use crate::record::testutil::rec;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn json_lines() {
        // (line, merged line fields; None = stays a plain message)
        let table: &[(&str, Option<Value>)] = &[
            (r#"{"level":"info","n":1}"#, Some(json!({"level": "info", "n": 1}))),
            ("{}", Some(json!({}))),
            (" \t{\"a\":true} ", Some(json!({"a": true}))),
            (
                r#"{"message":"m","host":"h","log":{"level":"x"},"topic":"t","kafka":1,"@timestamp":"2020"}"#,
                Some(json!({
                    "json_message": "m", "json_host": "h", "json_log": {"level": "x"},
                    "json_topic": "t", "json_kafka": 1, "json_@timestamp": "2020"
                })),
            ),
            (
                r#"{"log.level":"warn","host.name":"x","hostname":"y","_id":"1","_source":2,"json_a":3,"json":4,"a.b":5}"#,
                Some(json!({
                    "json_log.level": "warn", "json_host.name": "x", "hostname": "y", "json__id": "1",
                    "json__source": 2, "json_json_a": 3, "json": 4, "a.b": 5
                })),
            ),
            (
                r#"{"nested":{"message":"kept","_id":"kept"},"arr":[1,"two",{"three":3},[null]]}"#,
                Some(json!({"nested": {"message": "kept", "_id": "kept"}, "arr": [1, "two", {"three": 3}, [null]]})),
            ),
            (
                r#"{"esc":"a\nb\"c\\d\u0001\u00e9\ud83d\ude00","k\"ey":1}"#,
                Some(json!({"esc": "a\nb\"c\\d\u{1}é😀", "k\"ey": 1})),
            ),
            (
                r#"{"i":-5,"u":18446744073709551615,"f":1.5,"e":1e300,"z":-0.0,"t":true,"n":null}"#,
                Some(json!({"i": -5, "u": u64::MAX, "f": 1.5, "e": 1e300, "z": -0.0, "t": true, "n": null})),
            ),
            // Stays plain:
            ("[1,2,3]", None),
            ("\"just a string\"", None),
            ("42", None),
            ("{\"a\":1", None),
            ("{\"a\":1} trailing", None),
            ("{\"a\":1}{\"b\":2}", None),
            (r#"{"a":1,"a":2}"#, None),
            (r#"{"x":{"a":1,"a":2}}"#, None),
            (r#"{"x":[{"b":1,"b":1}]}"#, None),
            (r#"{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k1":10}"#, None),
            (r#"{"":1}"#, None),
            (r#"{" ":1}"#, None),
            (r#"{".a":1}"#, None),
            (r#"{"a.":1}"#, None),
            (r#"{"a..b":1}"#, None),
            (r#"{"x":{"":1}}"#, None),
            (r#"{"big":123456789012345678901234567890}"#, None),
            ("{\"a\":\"\u{1}\"}", None), // raw control character in a string
        ];
        for (line, want) in table {
            let (_, doc, out) = one(&rec(line.as_bytes()), MessageMode::ParseJson);
            let mut expected = json!({
                "@timestamp": "2026-11-25T10:44:34.123Z",
                "message": line,
                "host": {"name": "web1"},
                "log": {"file": {"path": "/var/log/app.log"}, "offset": 1234},
                "topic": "app",
                "kafka": {"partition": 3, "offset": 98765},
            });
            if let Some(Value::Object(fields)) = want {
                for (k, v) in fields {
                    assert!(expected.get(k).is_none(), "{k} collides");
                    expected[k] = v.clone();
                }
            }
            assert_eq!(doc, expected, "line {line}");
            assert_eq!(out, PushOutcome::Added { lossy: false, merged_json: want.is_some() }, "line {line}");
        }
    }

    #[test]
    fn json_key_limits() {
        let flat = |n: usize| format!("{{{}}}", (0..n).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(","));
        // (line, merged)
        let nested_wide =
            format!("{{{}}}", (0..6).map(|i| format!("\"o{i}\":{}", flat(90))).collect::<Vec<_>>().join(","));
        let table = [
            (flat(MAX_MERGED_KEYS), true),
            (flat(MAX_MERGED_KEYS + 1), false),
            (format!("{{\"a\":{}}}", flat(MAX_MERGED_FIELDS - 1)), true),
            (format!("{{\"a\":{}}}", flat(MAX_MERGED_FIELDS)), false),
            (nested_wide, false),
        ];
        for (line, merged) in table {
            let (_, doc, _) = one(&rec(line.as_bytes()), MessageMode::ParseJson);
            let first = doc.as_object().unwrap().keys().any(|k| k == "k0" || k == "a" || k == "o0");
            assert_eq!(first, merged, "{} bytes", line.len());
            if !merged {
                assert_eq!(doc["message"], line.as_str(), "kept whole as text");
            }
        }
    }

    #[test]
    fn json_depth_limit() {
        let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let (_, doc, _) = one(&rec(nested(JSON_MAX_DEPTH).as_bytes()), MessageMode::ParseJson);
        assert!(doc.get("a").is_some());
        let (_, doc, _) = one(&rec(nested(JSON_MAX_DEPTH + 1).as_bytes()), MessageMode::ParseJson);
        assert!(doc.get("a").is_none());
        // Deep arrays too, and the scratch is fine afterwards.
        let arr = format!("{{\"a\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        let (_, doc, _) = one(&rec(arr.as_bytes()), MessageMode::ParseJson);
        assert!(doc.get("a").is_none());
    }

    #[test]
    fn json_mode_with_invalid_utf8_stays_plain() {
        let line = b"{\"a\":\"\xff\"}";
        let (_, doc, out) = one(&rec(line), MessageMode::ParseJson);
        assert!(doc.get("a").is_none());
        assert_eq!(doc["message"], "{\"a\":\"\u{FFFD}\"}");
        assert_eq!(out, PushOutcome::Added { lossy: true, merged_json: false });
    }
    proptest! {
        #[test]
        fn json_fields_merge_without_collisions(
            fields in proptest::collection::btree_map(
                prop_oneof![
                    Just("a".to_string()), Just("message".to_string()), Just("host".to_string()),
                    Just("log.level".to_string()), Just("_id".to_string()), Just("json_host".to_string()),
                    Just("json_json_host".to_string()), Just("topic".to_string()), Just("kafka".to_string()),
                    Just("@timestamp".to_string()), Just("x.y".to_string()), Just("json_".to_string()),
                    "[a-z_]{1,8}",
                ],
                prop_oneof![
                    any::<i64>().prop_map(Value::from),
                    any::<bool>().prop_map(Value::from),
                    ".{0,10}".prop_map(Value::from),
                    Just(json!({"message": "inner", "n": [1, 2]})),
                ],
                0..12,
            )
        ) {
            let line = serde_json::to_string(&fields).unwrap();
            let (_, doc, out) = one(&rec(line.as_bytes()), MessageMode::ParseJson);
            prop_assert_eq!(out, PushOutcome::Added { lossy: false, merged_json: true });
            let doc = doc.as_object().unwrap();
            prop_assert_eq!(doc.len(), OWN_FIELDS.len() + fields.len());
            prop_assert_eq!(doc["message"].as_str(), Some(line.as_str()));
            for (k, v) in &fields {
                let name = if needs_rename(k) { format!("{RENAME_PREFIX}{k}") } else { k.clone() };
                prop_assert_eq!(doc.get(&name), Some(v), "key {}", k);
            }
        }
    }
}
