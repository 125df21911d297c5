//! Helpers for the body's tests: a strict parse of a body, one-document
//! bodies, and the byte strings escaping must survive.

use super::{BulkBody, MessageMode, PushOutcome};
use crate::record::Record;
use proptest::prelude::*;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// A JSON value parsed by serde_json that refuses duplicate keys at any
/// depth, as Elasticsearch does.
pub(crate) struct Strict(pub(crate) Value);

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
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut v = Vec::new();
        while let Some(Strict(e)) = seq.next_element()? {
            v.push(e);
        }
        Ok(Strict(Value::Array(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if m.insert(k.clone(), v).is_some() {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
        }
        Ok(Strict(Value::Object(m)))
    }
}

/// Parses a body into (action, document) pairs, checking everything a
/// body must be: UTF-8, newline-terminated, one JSON value per line,
/// no duplicate keys.
pub(crate) fn parse_body(body: &[u8]) -> Vec<(Value, Value)> {
    let text = std::str::from_utf8(body).expect("body is UTF-8");
    if text.is_empty() {
        return Vec::new();
    }
    assert!(text.ends_with('\n'), "body ends with a newline");
    let lines: Vec<&str> = text[..text.len() - 1].split('\n').collect();
    assert_eq!(lines.len() % 2, 0, "action + document pairs: {text}");
    let parse = |l: &str| serde_json::from_str::<Strict>(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")).0;
    lines.chunks(2).map(|p| (parse(p[0]), parse(p[1]))).collect()
}

pub(crate) fn one(r: &Record<'_>, mode: MessageMode) -> (Value, Value, PushOutcome) {
    let mut b = BulkBody::new(1 << 20);
    let out = b.push(r, "logs", mode);
    let mut docs = parse_body(b.as_bytes());
    assert_eq!(docs.len(), 1);
    let (a, d) = docs.pop().unwrap();
    (a, d, out)
}

pub(crate) fn lossy_json(v: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(v)).unwrap()
}

/// Byte strings rich in what escaping and UTF-8 repair must handle.
pub(crate) fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        (0u8..0x20).prop_map(|b| vec![b]),
        (0x80u8..=0xff).prop_map(|b| vec![b]),
        any::<char>().prop_map(|c| c.to_string().into_bytes()),
        Just(b"\"\\".to_vec()),
        "[a-z ]{1,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}
