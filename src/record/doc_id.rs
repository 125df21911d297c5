//! Document ids. `_id` is the xxh3-128 hash of the record's origin, in
//! URL-safe base64 without padding (22 characters). With the agent's
//! headers the origin is the byte range of the line: host, file identity
//! (`fid`), file offset and line length, so the same line read again after a
//! restart, shipped again or consumed again gets the same id (the length
//! also tells a partial flush of a line from the whole line read again later
//! at the same offset). Without the headers it is the Kafka coordinates:
//! topic, partition, offset. Variable-length fields are length-prefixed and
//! the two kinds carry different tags, so no two field splits hash the same
//! input.
//!
//! Elasticsearch deduplicates redeliveries by these ids (`create` refuses an
//! existing `_id`), so they never change between versions (`ids_are_pinned`).

use super::Record;
use std::fmt;

/// A document `_id`: 22 characters of URL-safe base64 (xxh3-128, no padding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DocId([u8; 22]);

impl DocId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Always base64url characters: ASCII.
        std::str::from_utf8(&self.0).expect("base64url is ASCII")
    }

    /// The id's 22 ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; 22] {
        &self.0
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self.as_str())
    }
}

/// The `_id` of `rec` (see the module docs for what it hashes). Allocates a
/// little; the body builder and the embedded index reuse a buffer
/// ([`doc_id_with`]).
pub fn doc_id(rec: &Record<'_>) -> DocId {
    let mut input = Vec::new();
    doc_id_with(rec, &mut input)
}

/// [`doc_id`] with a reused scratch buffer for the hash input (the embedded
/// index builds ids line by line without allocating).
pub fn doc_id_with(rec: &Record<'_>, input: &mut Vec<u8>) -> DocId {
    fn prefixed(input: &mut Vec<u8>, field: &[u8]) {
        input.extend_from_slice(&(field.len() as u64).to_le_bytes());
        input.extend_from_slice(field);
    }
    input.clear();
    match &rec.origin {
        Some(o) => {
            input.push(b'F');
            prefixed(input, o.host);
            prefixed(input, o.fid);
            input.extend_from_slice(&o.offset.to_le_bytes());
            input.extend_from_slice(&(rec.value.len() as u64).to_le_bytes());
        }
        None => {
            input.push(b'K');
            prefixed(input, rec.topic.as_bytes());
            input.extend_from_slice(&rec.partition.to_le_bytes());
            input.extend_from_slice(&rec.offset.to_le_bytes());
        }
    }
    DocId(base64url16(xxhash_rust::xxh3::xxh3_128(input).to_be_bytes()))
}

fn base64url16(bytes: [u8; 16]) -> [u8; 22] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // The 128 bits, first byte first, 6 at a time: 21 whole characters and
    // a 22nd of the last 2 bits and 4 zero bits. Shifts of one `u128`
    // instead of byte groups: no branches, and the loop unrolls.
    let n = u128::from_be_bytes(bytes);
    let mut out = [0u8; 22];
    for (k, c) in out.iter_mut().enumerate() {
        let sextet = if k < 21 { n >> (122 - 6 * k) } else { n << 4 };
        *c = ALPHABET[sextet as usize & 63];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::{origin, rec};
    use crate::record::Origin;
    use proptest::prelude::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let base = rec(b"line");
        let id = doc_id(&base);
        assert_eq!(id.as_str().len(), 22);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // Same origin, different Kafka coordinates, time, text of the same
        // length, topic: a redelivery, same id.
        let same = Record { partition: 9, offset: 1, timestamp_ms: None, topic: "other", value: b"LINE", ..base };
        assert_eq!(doc_id(&same), id);
        let o = origin(1234);
        let variants = [
            Record { origin: Some(Origin { host: b"web2", ..o }), ..base },
            Record { origin: Some(Origin { fid: b"803-1a2b-00112233aabbccde", ..o }), ..base },
            Record { origin: Some(Origin { offset: 1235, ..o }), ..base },
            Record { value: b"line+", ..base },
            // Field splits: "web1"+"803…" vs "web18"+"03…".
            Record { origin: Some(Origin { host: b"web18", fid: b"03-1a2b-00112233aabbccdd", ..o }), ..base },
            Record { origin: None, ..base },
        ];
        let mut ids = vec![id];
        for v in &variants {
            ids.push(doc_id(v));
        }
        let mut dedup = ids.clone();
        dedup.sort_by_key(|i| i.0);
        dedup.dedup();
        assert_eq!(dedup.len(), ids.len(), "{ids:?}");

        // Without headers: Kafka coordinates.
        let k = Record { origin: None, ..base };
        assert_eq!(doc_id(&Record { value: b"other", timestamp_ms: None, ..k }), doc_id(&k));
        assert_ne!(doc_id(&Record { partition: 4, ..k }), doc_id(&k));
        assert_ne!(doc_id(&Record { offset: 98766, ..k }), doc_id(&k));
        assert_ne!(doc_id(&Record { topic: "app2", ..k }), doc_id(&k));
    }

    #[test]
    fn ids_are_pinned() {
        // The ids of replayed records must never change between versions:
        // Elasticsearch deduplicates by them. Values of commit e9c69bc.
        let o = origin(1234);
        let table: [(Record<'_>, &str); 4] = [
            (rec(b"line"), "1G7tH7nj6-N3AujVSSnzLw"),
            (
                Record {
                    origin: Some(Origin { host: b"web-17.dc1.example.com", offset: 1 << 40, ..o }),
                    ..rec(&[b'x'; 300])
                },
                "WxEPrJet0-jV0XMvxM6Hvw",
            ),
            (Record { origin: None, ..rec(b"line") }, "JId5slEK2klId5JI9h9hlw"),
            (Record { origin: None, topic: "", partition: -1, offset: i64::MIN, ..rec(b"") }, "ABFTWy0YJuRvhenMoSQvKQ"),
        ];
        let got: Vec<String> = table.iter().map(|(r, _)| doc_id(r).to_string()).collect();
        let want: Vec<&str> = table.iter().map(|&(_, id)| id).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn base64url_of_known_bytes() {
        let mut bytes = [0u8; 16];
        assert_eq!(&base64url16(bytes), b"AAAAAAAAAAAAAAAAAAAAAA");
        bytes = [0xff; 16];
        assert_eq!(&base64url16(bytes), b"_____________________w");
        bytes[0] = 0xfb;
        assert_eq!(&base64url16(bytes)[..2], b"-_");
    }

    proptest! {
        #[test]
        fn base64url_matches_the_base64_crate(bytes in any::<[u8; 16]>()) {
            use base64::Engine;
            let want = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let got = base64url16(bytes);
            prop_assert_eq!(std::str::from_utf8(&got).unwrap(), want);
        }
    }
}
