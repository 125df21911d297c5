//! The `_bulk` body builder (`elastic::body::BulkBody`) and its JSON escaper, over
//! arbitrary records.
//!
//! Input layout (missing bytes read as 0; a field is a length byte and then
//! that many bytes, or what is left):
//! - byte 0: the body's `max_bytes` is `64 + 32 * b`, so `Full` comes often
//!   and a body is checked, cleared and reused many times per input;
//! - then records, one after another, until the input ends:
//!   - a flags byte: bit 0 `ParseJson` (else `Plain`); bit 1 agent headers
//!     (an `Origin`); bits 2..=3 the cut (`Whole`, `Truncated`, `Partial`,
//!     `Part`); bit 4 a timestamp; bits 5..=6 the value is its field
//!     repeated 1, 3, 17 or 65 times (long lines past the 8-byte SWAR
//!     steps); bit 7 the topic/index pair: `app`/`app-2026.11.25` or
//!     `App.Logs_1`/`we"ird\idx` (the escaper sees the index too);
//!   - a byte: the partition (as `i8`; -1 is `NOT_FROM_KAFKA`: no `kafka`
//!     field);
//!   - 8 bytes: the Kafka offset (`i64`, little endian);
//!   - with bit 4: 8 bytes, the timestamp in ms (`i64`: out-of-range
//!     values must leave `@timestamp` out, not break the body);
//!   - the value field;
//!   - with bit 1: host, path and fid fields, 8 bytes of file offset, and
//!     with the `Part` cut 4 bytes of part number.
//!
//! Checks, on every body handed over (at `Full` and at the end): it is
//! empty or ends in a newline; it has exactly two lines per document, each
//! of which serde_json parses as an object with no duplicate keys at any
//! depth; the action line is `{"create":{"_index":…,"_id":…}}` with the
//! record's index and `record::doc_id`; the document's `message` is the value
//! (`String::from_utf8_lossy` of it), and `host.name`, `log.file.path`,
//! `log.offset`, `log.flags`/`log.part`, `topic`, `kafka.partition`,
//! `kafka.offset` and `@timestamp` (RFC 3339, ms, only within years
//! 0000–9999) are the record's; `lossy` is reported exactly when a string
//! was not UTF-8; a merged JSON line's fields are all in the document, under
//! their name or `json_` + name, with their values; the document has no
//! other fields; `sources()` lists the records in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logcollect::body::{BulkBody, DocSource, MessageMode, PushOutcome, OWN_FIELDS, RENAME_PREFIX};
use logcollect::record::{doc_id, Cut, Origin, Record, NOT_FROM_KAFKA};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Reads the input front to back; past the end everything is 0 / empty.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.0.first().copied().unwrap_or(0);
        self.0 = self.0.get(1..).unwrap_or(&[]);
        b
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn field(&mut self) -> &'a [u8] {
        let n = self.byte() as usize;
        self.bytes(n)
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let src = self.bytes(8);
        b[..src.len()].copy_from_slice(src);
        u64::from_le_bytes(b)
    }
}

/// A record as the input described it, owning its bytes.
struct Spec {
    mode: MessageMode,
    value: Vec<u8>,
    topic: &'static str,
    index: &'static str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    origin: Option<(Vec<u8>, Vec<u8>, Vec<u8>, u64, Cut)>,
}

impl Spec {
    fn record(&self) -> Record<'_> {
        Record {
            value: &self.value,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            origin: self.origin.as_ref().map(|(host, path, fid, offset, cut)| Origin {
                host,
                path,
                fid,
                offset: *offset,
                cut: *cut,
                journal: None,
            }),
        }
    }
}

fn read_spec(inp: &mut Input<'_>) -> Spec {
    let flags = inp.byte();
    let mode = if flags & 1 == 1 { MessageMode::ParseJson } else { MessageMode::Plain };
    let (topic, index) = if flags & 0x80 == 0 { ("app", "app-2026.11.25") } else { ("App.Logs_1", "we\"ird\\idx") };
    let partition = i32::from(inp.byte() as i8);
    let offset = inp.u64() as i64;
    let timestamp_ms = (flags & 0x10 != 0).then(|| inp.u64() as i64);
    let repeat = [1, 3, 17, 65][usize::from(flags >> 5 & 3)];
    let value = inp.field().repeat(repeat);
    let origin = (flags & 2 != 0).then(|| {
        let host = inp.field().to_vec();
        let path = inp.field().to_vec();
        let fid = inp.field().to_vec();
        let file_offset = inp.u64();
        let cut = match flags >> 2 & 3 {
            0 => Cut::Whole,
            1 => Cut::Truncated,
            2 => Cut::Partial,
            _ => {
                let b = inp.bytes(4);
                let mut n = [0u8; 4];
                n[..b.len()].copy_from_slice(b);
                Cut::Part(u32::from_le_bytes(n))
            }
        };
        (host, path, fid, file_offset, cut)
    });
    Spec { mode, value, topic, index, partition, offset, timestamp_ms, origin }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let max_bytes = 64 + 32 * inp.byte() as usize;
    let mut body = BulkBody::new(max_bytes);
    // Records in the body now, with what `push` said about each.
    let mut inside: Vec<(Spec, bool, bool)> = Vec::new();
    while !inp.0.is_empty() {
        let spec = read_spec(&mut inp);
        let mut pushed = body.push(&spec.record(), spec.index, spec.mode);
        if pushed == PushOutcome::Full {
            assert!(!inside.is_empty(), "an empty body takes any document");
            assert!(
                body.len() <= max_bytes || inside.len() == 1,
                "a body is within max_bytes unless its only document is larger"
            );
            check_body(&body, &inside);
            body.clear();
            inside.clear();
            pushed = body.push(&spec.record(), spec.index, spec.mode);
        }
        match pushed {
            PushOutcome::Added { lossy, merged_json } => inside.push((spec, lossy, merged_json)),
            PushOutcome::Full => panic!("an empty body refused a document"),
        }
    }
    check_body(&body, &inside);
});

/// The fields every document of `spec` must have, our own only.
fn own_fields(spec: &Spec) -> Map<String, Value> {
    let lossy = |b: &[u8]| Value::from(String::from_utf8_lossy(b).into_owned());
    let mut m = Map::new();
    if let Some(ts) = spec.timestamp_ms.and_then(rfc3339_ms) {
        m.insert("@timestamp".into(), ts.into());
    }
    m.insert("message".into(), lossy(&spec.value));
    if let Some((host, path, _, offset, cut)) = &spec.origin {
        m.insert("host".into(), serde_json::json!({ "name": lossy(host) }));
        let mut log = serde_json::json!({ "file": { "path": lossy(path) }, "offset": offset });
        match cut {
            Cut::Whole => {}
            Cut::Truncated => log["flags"] = serde_json::json!(["truncated"]),
            Cut::Partial => log["flags"] = serde_json::json!(["partial"]),
            Cut::Part(n) => {
                log["flags"] = serde_json::json!(["split"]);
                log["part"] = (*n).into();
            }
        }
        m.insert("log".into(), log);
    }
    m.insert("topic".into(), spec.topic.into());
    // Partition -1 (`NOT_FROM_KAFKA`, the single-host path) has no `kafka`.
    if spec.partition != NOT_FROM_KAFKA {
        m.insert("kafka".into(), serde_json::json!({ "partition": spec.partition, "offset": spec.offset }));
    }
    m
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` outside years 0000–9999.
fn rfc3339_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

fn needs_rename(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or(key);
    key.starts_with('_') || key.starts_with(RENAME_PREFIX) || OWN_FIELDS.contains(&first)
}

/// Numbers compare as numbers (an integer written back may read as a
/// float of the same value); everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn check_body(body: &BulkBody, inside: &[(Spec, bool, bool)]) {
    let bytes = body.as_bytes();
    assert_eq!(body.docs(), inside.len());
    assert_eq!(body.len(), bytes.len());
    if bytes.is_empty() {
        assert!(inside.is_empty());
        return;
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "a body ends with a newline");
    let text = std::str::from_utf8(bytes).expect("a body is UTF-8");
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    assert_eq!(lines.len(), 2 * inside.len(), "two lines per document");
    let sources: Vec<DocSource> = inside.iter().map(|(s, ..)| DocSource { partition: s.partition, offset: s.offset }).collect();
    assert_eq!(body.sources(), &sources[..]);
    assert_eq!(body.lossy_docs(), inside.iter().filter(|d| d.1).count());
    assert_eq!(body.merged_docs(), inside.iter().filter(|d| d.2).count());

    for (pair, (spec, lossy, merged)) in lines.chunks(2).zip(inside) {
        let action = strict(pair[0]);
        let want_action = serde_json::json!({
            "create": { "_index": spec.index, "_id": doc_id(&spec.record()).as_str() }
        });
        assert_eq!(action, want_action, "action line {}", pair[0]);

        let doc = strict(pair[1]);
        let doc = doc.as_object().unwrap_or_else(|| panic!("document is not an object: {}", pair[1]));
        let own = own_fields(spec);
        for (k, v) in &own {
            assert_eq!(doc.get(k), Some(v), "field {k} of {}", pair[1]);
        }
        let want_lossy = std::str::from_utf8(&spec.value).is_err()
            || spec.origin.as_ref().is_some_and(|(h, p, ..)| std::str::from_utf8(h).is_err() || std::str::from_utf8(p).is_err());
        assert_eq!(*lossy, want_lossy, "lossy flag of {}", pair[1]);
        if *merged {
            assert_eq!(spec.mode, MessageMode::ParseJson);
            let line: Map<String, Value> = serde_json::from_slice(&spec.value).expect("a merged line is a JSON object");
            assert_eq!(doc.len(), own.len() + line.len(), "fields of {}", pair[1]);
            for (k, v) in &line {
                let name: Cow<'_, str> = if needs_rename(k) { format!("{RENAME_PREFIX}{k}").into() } else { k.into() };
                let got = doc.get(&*name).unwrap_or_else(|| panic!("line key {k:?} missing from {}", pair[1]));
                assert!(same(got, v), "line key {k:?}: {got} != {v}");
            }
        } else {
            assert_eq!(doc.len(), own.len(), "only our fields in {}", pair[1]);
        }
    }
}

/// Parses a body line, refusing duplicate keys at any depth (Elasticsearch
/// does), and requires an object.
fn strict(line: &str) -> Value {
    let v = serde_json::from_str::<Strict>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")).0;
    assert!(v.is_object(), "not an object: {line}");
    v
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Strict(Value::Array(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut m = Map::new();
        while let Some((k, Strict(v))) = map.next_entry::<String, Strict>()? {
            if m.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
        }
        Ok(Strict(Value::Object(m)))
    }
}
