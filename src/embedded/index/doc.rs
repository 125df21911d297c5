//! Documents: a line as a tantivy document that borrows the reader's chunk
//! (no copy for valid UTF-8).

use super::{
    F_FLAGS, F_HOST, F_ID, F_KOFFSET, F_KPARTITION, F_MESSAGE, F_OFFSET, F_PART, F_PATH, F_SEQ, F_TOPIC, F_TS,
};
use crate::record::{self, Cut, Origin, Record};
use bytes::Bytes;
use std::sync::Arc;
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{Document, Field, Value};

/// Bytes known to be UTF-8.
#[derive(Clone, Debug)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// `None` when `b` is not UTF-8.
    pub fn new(b: Bytes) -> Option<Utf8Bytes> {
        std::str::from_utf8(&b).ok()?;
        Some(Utf8Bytes(b))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: checked in `new`, and `Bytes` never changes.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

/// The line's text: a slice of the reader's chunk when it is UTF-8, else a
/// copy with U+FFFD for the bad bytes (as the ES documents have it).
#[derive(Clone, Debug)]
pub enum Message {
    Shared(Utf8Bytes),
    Lossy(String),
}

impl Message {
    pub fn from_bytes(b: Bytes) -> Message {
        match Utf8Bytes::new(b.clone()) {
            Some(u) => Message::Shared(u),
            None => Message::Lossy(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Message::Shared(u) => u.as_str(),
            Message::Lossy(s) => s,
        }
    }
}

/// Where a line came from.
#[derive(Clone, Debug)]
pub struct LineOrigin {
    pub host: Arc<str>,
    pub path: Arc<str>,
    pub offset: u64,
    pub cut: Cut,
}

/// One line as a document. Cheap to build: it owns reference-counted
/// slices only (a copy only for lines that are not UTF-8).
#[derive(Clone, Debug)]
pub struct LineDoc {
    pub id: record::DocId,
    pub ts_ms: i64,
    /// Set by the writer.
    pub seq: u64,
    pub message: Message,
    pub topic: Arc<str>,
    /// `None` for Kafka records of other producers.
    pub origin: Option<LineOrigin>,
    /// (partition, offset) for lines that came through Kafka.
    pub kafka: Option<(i32, i64)>,
}

impl LineDoc {
    /// A document for `rec`, with `rec`'s deterministic id; `message` is
    /// `rec.value` as shared bytes, `host`/`path` its origin's as shared text.
    pub fn new(
        rec: &Record<'_>,
        message: Bytes,
        topic: Arc<str>,
        origin: Option<LineOrigin>,
        id_scratch: &mut Vec<u8>,
    ) -> LineDoc {
        LineDoc {
            id: record::doc_id_with(rec, id_scratch),
            ts_ms: rec.timestamp_ms.unwrap_or(0),
            seq: 0,
            message: Message::from_bytes(message),
            topic,
            origin,
            kafka: (rec.partition != record::NOT_FROM_KAFKA).then_some((rec.partition, rec.offset)),
        }
    }

    /// A document for a line the agent read, as the ES document of the same
    /// line would be (same id).
    pub fn from_line(
        line: &crate::agent::batch::Line<'_>,
        bytes: Bytes,
        src: &crate::agent::batch::Source,
        host: &Arc<str>,
        read_ms: i64,
        id_scratch: &mut Vec<u8>,
    ) -> LineDoc {
        let origin = Origin {
            host: host.as_bytes(),
            path: src.path.as_bytes(),
            offset: line.offset,
            fid: src.fid_text.as_bytes(),
            cut: line.cut,
            journal: None,
        };
        let rec = Record {
            value: line.bytes,
            topic: &src.topic,
            partition: record::NOT_FROM_KAFKA,
            offset: -1,
            timestamp_ms: Some(read_ms),
            origin: Some(origin),
        };
        let o = LineOrigin { host: host.clone(), path: src.path.clone(), offset: line.offset, cut: line.cut };
        LineDoc::new(&rec, bytes, src.topic.clone(), Some(o), id_scratch)
    }
}

/// A field value of a [`LineDoc`].
#[derive(Clone, Debug)]
pub enum LineValue<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
}

impl<'a> Value<'a> for LineValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        ReferenceValue::Leaf(match *self {
            LineValue::Str(s) => ReferenceValueLeaf::Str(s),
            LineValue::I64(n) => ReferenceValueLeaf::I64(n),
            LineValue::U64(n) => ReferenceValueLeaf::U64(n),
        })
    }
}

/// The fields of a [`LineDoc`], in field order.
pub struct LineFields<'a> {
    doc: &'a LineDoc,
    next: u32,
}

impl<'a> Iterator for LineFields<'a> {
    type Item = (Field, LineValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let d = self.doc;
        loop {
            let i = self.next;
            self.next += 1;
            let field = Field::from_field_id(i);
            let v = match field {
                F_ID => Some(LineValue::Str(d.id.as_str())),
                F_TS => Some(LineValue::I64(d.ts_ms)),
                F_SEQ => Some(LineValue::U64(d.seq)),
                F_MESSAGE => Some(LineValue::Str(d.message.as_str())),
                F_HOST => d.origin.as_ref().map(|o| LineValue::Str(&o.host)),
                F_PATH => d.origin.as_ref().map(|o| LineValue::Str(&o.path)),
                F_TOPIC => Some(LineValue::Str(&d.topic)),
                F_OFFSET => d.origin.as_ref().map(|o| LineValue::U64(o.offset)),
                F_FLAGS => d.origin.as_ref().and_then(|o| match o.cut {
                    Cut::Whole => None,
                    Cut::Truncated => Some(LineValue::Str("truncated")),
                    Cut::Partial => Some(LineValue::Str("partial")),
                    Cut::Part(_) => Some(LineValue::Str("split")),
                }),
                F_PART => d.origin.as_ref().and_then(|o| match o.cut {
                    Cut::Part(n) => Some(LineValue::U64(u64::from(n))),
                    _ => None,
                }),
                F_KPARTITION => d.kafka.map(|(p, _)| LineValue::I64(i64::from(p))),
                F_KOFFSET => d.kafka.map(|(_, o)| LineValue::I64(o)),
                _ => return None,
            };
            if let Some(v) = v {
                return Some((field, v));
            }
        }
    }
}

impl Document for LineDoc {
    type Value<'a> = LineValue<'a>;
    type FieldsValuesIter<'a> = LineFields<'a>;

    fn iter_fields_and_values(&self) -> LineFields<'_> {
        LineFields { doc: self, next: 0 }
    }
}
