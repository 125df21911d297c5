//! Bulk: the transfer's Elasticsearch `_bulk` request bodies, and the
//! classification of `_bulk` responses. Pure code over bytes, no I/O: the
//! `es` stage owns the connection, the retries and the acknowledgements.
//!
//! # Request body
//!
//! [`BulkBody`] appends one Kafka [`Record`] at a time as two NDJSON lines,
//! reusing one buffer from request to request:
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
//! - `_id` is the xxh3-128 hash of the record's origin, in URL-safe base64
//!   without padding (22 characters). With the agent's headers the origin is
//!   the byte range of the line: host, file identity (`fid`), file offset and
//!   line length, so the same line read again after a restart, shipped again
//!   or consumed again gets the same id (the length also tells a partial
//!   flush of a line from the whole line read again later at the same
//!   offset). Without the headers it is the Kafka coordinates: topic,
//!   partition, offset. Variable-length fields are length-prefixed and the
//!   two kinds carry different tags, so no two field splits hash the same
//!   input. See [`doc_id`].
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
//!
//! # Response
//!
//! [`classify`] reads the `_bulk` response (sent with
//! `filter_path=errors,items.*.status,items.*.error`) into one
//! [`ItemOutcome`] per document, item `i` answering the `i`-th push.
//!
//! # Index names
//!
//! [`IndexPattern`] (`{topic}-%Y.%m.%d`) is validated once; [`IndexNames`]
//! expands it per record from a small cache, allocating only on a miss.

use crate::record::{doc_id_with, Cut, Record, NOT_FROM_KAFKA};
use simd_json::prelude::Writable;
use simd_json::{Buffers, Node, StaticNode, Tape};
use std::fmt;
use time::OffsetDateTime;

// ---------------------------------------------------------------------------
// JSON string escaping
// ---------------------------------------------------------------------------

/// Per byte: 0 = copy as is; `u` = write `\u00XX`; else the character that
/// follows the backslash.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// High bit set in each byte of `w` that needs escaping (`< 0x20`, `"`,
/// `\`), clear in all others. SWAR without carries between bytes: adding
/// to the low 7 bits of a byte never reaches the next byte, so the mask is
/// exact and its lowest set bit finds the first byte to escape.
#[inline]
fn escape_mask(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of (low 7 bits + 0x60) is set iff the low 7 bits are ≥ 0x20.
    let ge_space = (w & LOW7) + LO * 0x60;
    let ctrl = !(ge_space | w);
    let is_zero = |v: u64| !(((v & LOW7) + LOW7) | v);
    let quote = is_zero(w ^ (LO * u64::from(b'"')));
    let backslash = is_zero(w ^ (LO * u64::from(b'\\')));
    (ctrl | quote | backslash) & HI
}

/// Appends the escape sequence of `b` (one that needs escaping).
#[inline]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[b as usize] {
        b'u' => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

/// Where [`next_escape`] stopped: the first byte at or after `from` that
/// needs escaping (`s.len()` if none), and whether a byte ≥ 0x80 of `s` was
/// seen on the way (bytes past `at` may count too: the caller only wants
/// to know whether `s` has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scan {
    at: usize,
    high: bool,
}

/// Finds the next byte of `s` to escape from `from` on: 16 bytes per step
/// with SSE2 on x86_64, then 8 per step (SWAR), then one by one for the
/// last few. [`next_escape_naive`] (tests) is the model.
#[inline]
fn next_escape(s: &[u8], from: usize) -> Scan {
    #[cfg(target_arch = "x86_64")]
    let (mut i, mut high) = match next_escape_sse2(s, from) {
        Ok(found) => return found,
        Err(rest) => (rest.at, rest.high),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (mut i, mut high) = (from, false);
    // Unaligned loads are fine; a chunk overlapping bytes already seen only
    // ORs their high bits in again.
    let mut seen = 0u64;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        seen |= w;
        let m = escape_mask(w);
        if m != 0 {
            return Scan { at: i + (m.trailing_zeros() / 8) as usize, high: high || seen & HI != 0 };
        }
        i += 8;
    }
    high |= seen & HI != 0;
    for (j, &b) in s.iter().enumerate().skip(i) {
        if ESCAPE[b as usize] != 0 {
            return Scan { at: j, high };
        }
        high |= b >= 0x80;
    }
    Scan { at: s.len(), high }
}

/// The 16-byte steps of [`next_escape`]: `Ok` with the byte to escape if
/// one is in the whole 16-byte steps from `from`, else `Err` with where
/// the steps ended (fewer than 16 bytes left) for the narrower loops.
#[cfg(target_arch = "x86_64")]
#[inline]
fn next_escape_sse2(s: &[u8], from: usize) -> Result<Scan, Scan> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut i = from;
    let mut high_bits = 0u32;
    while let Some(chunk) = s.get(i..i + 16) {
        // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsics
        // exist on every CPU this code runs on; the load reads exactly the
        // 16 bytes of `chunk` (unaligned loads are allowed by `loadu`).
        let (special, high) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            // Signed compare: bytes ≥ 0x80 are negative, so they are "< 0x20"
            // too; they are taken out with the sign bits below.
            let ctrl = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let special = _mm_or_si128(ctrl, _mm_or_si128(quote, backslash));
            (_mm_movemask_epi8(special) as u32, _mm_movemask_epi8(v) as u32)
        };
        high_bits |= high;
        let escape = special & !high;
        if escape != 0 {
            return Ok(Scan { at: i + escape.trailing_zeros() as usize, high: high_bits != 0 });
        }
        i += 16;
    }
    Err(Scan { at: i, high: high_bits != 0 })
}

/// Appends `s` escaped, without quotes; copies unescaped runs whole. Returns
/// whether `s` has a byte ≥ 0x80 (then the caller must check it is UTF-8).
#[inline]
fn escape_into(out: &mut Vec<u8>, s: &[u8]) -> bool {
    out.reserve(s.len());
    let mut high = false;
    let mut run = 0; // start of the bytes not yet copied
    loop {
        let scan = next_escape(s, run);
        high |= scan.high;
        out.extend_from_slice(&s[run..scan.at]);
        match s.get(scan.at) {
            Some(&b) => write_escape(out, b),
            None => return high,
        }
        run = scan.at + 1;
    }
}

/// Appends `s` as a JSON string, replacing what is not UTF-8 like
/// `String::from_utf8_lossy`. Returns whether anything was replaced.
fn write_str(out: &mut Vec<u8>, s: &[u8]) -> bool {
    out.push(b'"');
    let start = out.len();
    // ASCII (the usual log line) is escaped in one pass; only text with high
    // bytes is validated, and only invalid text is escaped a second time.
    let lossy = escape_into(out, s) && std::str::from_utf8(s).is_err();
    if lossy {
        out.truncate(start);
        for chunk in s.utf8_chunks() {
            escape_into(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice(REPLACEMENT);
            }
        }
    }
    out.push(b'"');
    lossy
}

/// Appends a string known to be UTF-8 (from simd-json) as a JSON string.
fn write_utf8(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// The `"YYYY-MM-DDTHH:MM:SS"` of the last second formatted: consecutive
/// records nearly always share it.
#[derive(Clone, Debug, Default)]
struct Clock {
    /// Unix second `prefix` renders; `None` before the first record.
    second: Option<i64>,
    prefix: [u8; 19],
}

impl Clock {
    /// Appends `"@timestamp":"…Z"`, or nothing (returning false) when `ms`
    /// is outside years 0000–9999, which RFC 3339 cannot write.
    fn write(&mut self, out: &mut Vec<u8>, ms: i64) -> bool {
        let second = ms.div_euclid(1000);
        let milli = ms.rem_euclid(1000) as u16;
        if self.second != Some(second) {
            let Some(prefix) = format_second(second) else {
                return false;
            };
            self.prefix = prefix;
            self.second = Some(second);
        }
        out.extend_from_slice(br#""@timestamp":""#);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[
            b'.',
            b'0' + (milli / 100) as u8,
            b'0' + (milli / 10 % 10) as u8,
            b'0' + (milli % 10) as u8,
            b'Z',
            b'"',
        ]);
        true
    }
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, for years 0000–9999.
fn format_second(second: i64) -> Option<[u8; 19]> {
    let t = OffsetDateTime::from_unix_timestamp(second).ok()?;
    let (year, month, day, hour) = (t.year(), u8::from(t.month()), t.day(), t.hour());
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut p = *b"0000-00-00T00:00:00";
    put_digits(&mut p[0..4], year as u32);
    put_digits(&mut p[5..7], u32::from(month));
    put_digits(&mut p[8..10], u32::from(day));
    put_digits(&mut p[11..13], u32::from(hour));
    put_digits(&mut p[14..16], u32::from(t.minute()));
    put_digits(&mut p[17..19], u32::from(t.second()));
    Some(p)
}

/// Year (0–9999), month, day, hour in UTC of a Unix second.
fn civil(second: i64) -> Option<(i32, u8, u8, u8)> {
    let t = OffsetDateTime::from_unix_timestamp(second).ok()?;
    let year = t.year();
    (0..=9999).contains(&year).then(|| (year, u8::from(t.month()), t.day(), t.hour()))
}

/// Writes `n` zero-padded into all of `out`.
fn put_digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

// ---------------------------------------------------------------------------
// Body builder
// ---------------------------------------------------------------------------

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
    pub partition: i32,
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
    /// `index` (see [`IndexNames`]).
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
    if let Some(o) = &rec.origin {
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

/// Cheap pre-check before copying a line for simd-json: first non-blank
/// byte is `{`.
fn looks_like_object(line: &[u8]) -> bool {
    line.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).is_some_and(|&b| b == b'{')
}

/// Reused state of the `ParseJson` path.
struct JsonScratch {
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
    fn write_doc(&mut self, buf: &mut Vec<u8>, fixed: &mut Fixed, rec: &Record<'_>) -> Option<bool> {
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

/// Number of tape nodes of the value starting with `node`.
fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
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
    if !keys_acceptable(tape, 0, keys) {
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

// ---------------------------------------------------------------------------
// Index names
// ---------------------------------------------------------------------------

/// A bad index pattern, or a pattern that gave a bad name for some record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The pattern itself is wrong.
    #[error("index pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    /// The pattern is fine but this topic makes an invalid name.
    #[error("index name {name:?} (pattern {pattern:?}, topic {topic:?}): {reason}")]
    Name { pattern: String, topic: String, name: String, reason: String },
    /// The pattern has a date and the record time is outside years 0000–9999.
    #[error("index pattern {pattern:?}: record timestamp {timestamp_ms} ms is out of range for a date")]
    Timestamp { pattern: String, timestamp_ms: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Topic,
    Year,
    Month,
    Day,
    Hour,
}

/// A validated index name pattern: literal text (lowercase, legal in an
/// index name), `{topic}` (the Kafka topic, lowercased), and the UTC date of
/// the record: `%Y` (4 digits), `%m`, `%d`, `%H` (2 digits), `%%` for `%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPattern {
    text: Box<str>,
    /// Never empty.
    parts: Vec<Part>,
    /// Seconds during which the date part cannot change: 3600 with `%H`,
    /// 86400 with only a date, 0 without any (the name ignores time).
    bucket_secs: i64,
}

/// Characters Elasticsearch refuses in index names (besides uppercase).
const INDEX_FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

impl IndexPattern {
    /// Parses and validates `pattern`; errors name it and the problem.
    pub fn parse(pattern: &str) -> Result<IndexPattern, IndexError> {
        let err = |reason: String| IndexError::Pattern { pattern: pattern.to_string(), reason };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let part = match c {
                '{' => {
                    if !pattern[at..].starts_with("{topic}") {
                        return Err(err(format!("unknown placeholder at byte {at}; the only one is {{topic}}")));
                    }
                    for _ in 0.."topic}".len() {
                        chars.next();
                    }
                    Part::Topic
                }
                '}' => return Err(err(format!("unmatched '}}' at byte {at}"))),
                '%' => match chars.next().map(|(_, c)| c) {
                    Some('Y') => Part::Year,
                    Some('m') => Part::Month,
                    Some('d') => Part::Day,
                    Some('H') => Part::Hour,
                    Some('%') => {
                        lit.push('%');
                        continue;
                    }
                    other => {
                        return Err(err(format!(
                            "unknown %{} at byte {at}; use %Y, %m, %d, %H or %%",
                            other.map(String::from).unwrap_or_default()
                        )))
                    }
                },
                c if c.is_uppercase() => return Err(err(format!("index names are lowercase; {c:?} is not"))),
                c if INDEX_FORBIDDEN.contains(&c) || c.is_control() => {
                    return Err(err(format!("{c:?} is not allowed in an index name")))
                }
                c => {
                    lit.push(c);
                    continue;
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit).into()));
            }
            parts.push(part);
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        match parts.first() {
            None => return Err(err("is empty".into())),
            Some(Part::Lit(l)) if l.starts_with(['-', '_', '+']) => {
                return Err(err("an index name cannot start with '-', '_' or '+'".into()))
            }
            Some(Part::Lit(l)) if parts.len() == 1 && (&**l == "." || &**l == "..") => {
                return Err(err("an index name cannot be '.' or '..'".into()))
            }
            _ => {}
        }
        let bucket_secs = if parts.contains(&Part::Hour) {
            3600
        } else if parts.iter().any(|p| matches!(p, Part::Year | Part::Month | Part::Day)) {
            86400
        } else {
            0
        };
        Ok(IndexPattern { text: pattern.into(), parts, bucket_secs })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the name depends on the record time.
    pub fn has_date(&self) -> bool {
        self.bucket_secs != 0
    }

    /// Expands into `out` (cleared first); allocates. [`IndexNames`] caches.
    pub fn expand(&self, topic: &str, timestamp_ms: i64, out: &mut String) -> Result<(), IndexError> {
        out.clear();
        let date = if self.has_date() {
            Some(
                civil(timestamp_ms.div_euclid(1000))
                    .ok_or_else(|| IndexError::Timestamp { pattern: self.text.to_string(), timestamp_ms })?,
            )
        } else {
            None
        };
        let (y, m, d, h) = date.unwrap_or_default();
        let mut digits = [0u8; 4];
        for part in &self.parts {
            let (n, width) = match part {
                Part::Lit(l) => {
                    out.push_str(l);
                    continue;
                }
                Part::Topic => {
                    // Kafka topics are [a-zA-Z0-9._-]: lowercase makes them legal.
                    out.extend(topic.chars().map(|c| c.to_ascii_lowercase()));
                    continue;
                }
                Part::Year => (y as u32, 4),
                Part::Month => (u32::from(m), 2),
                Part::Day => (u32::from(d), 2),
                Part::Hour => (u32::from(h), 2),
            };
            put_digits(&mut digits[..width], n);
            out.push_str(std::str::from_utf8(&digits[..width]).expect("digits"));
        }
        check_index_name(out).map_err(|reason| IndexError::Name {
            pattern: self.text.to_string(),
            topic: topic.to_string(),
            name: out.clone(),
            reason: reason.to_string(),
        })
    }
}

impl IndexPattern {
    /// The index names this pattern gives `topic`, as an index pattern for
    /// a template: the date parts become `*` (`{topic}-%Y.%m.%d` ->
    /// `app-*`).
    pub fn wildcard(&self, topic: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Topic => out.extend(topic.chars().map(|c| c.to_ascii_lowercase())),
                Part::Year | Part::Month | Part::Day | Part::Hour => {
                    if !out.ends_with('*') {
                        out.push('*');
                    }
                }
            }
        }
        out
    }
}

/// The composable index template (`PUT _index_template/<name>`) that maps
/// the fields this module writes, so the first document of an index cannot
/// give them a wrong type (Elasticsearch's dynamic mapping would map a
/// `message` that reads as a date as `date`, then refuse every other line).
/// Fields merged from JSON lines stay dynamically mapped.
///
/// `message` is cut into words as the embedded index and the search
/// language cut it (`query::words`: runs of letters and digits,
/// lower-cased, at most 255 long), so a search means the same on both.
pub fn index_template(index_patterns: &[String], priority: u32) -> Vec<u8> {
    let doc = serde_json::json!({
        "index_patterns": index_patterns,
        "priority": priority,
        "_meta": {"managed_by": "logcollect"},
        "template": {
            "settings": {"analysis": {
                "analyzer": {"logcollect_words": {
                    "type": "custom",
                    "tokenizer": "logcollect_words",
                    "filter": ["lowercase", "logcollect_max_word"]
                }},
                "tokenizer": {"logcollect_words": {"type": "pattern", "pattern": "[^\\p{IsAlphabetic}\\p{N}]+"}},
                "filter": {"logcollect_max_word": {"type": "length", "max": 255}}
            }},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text", "analyzer": "logcollect_words"},
                    "host": {"properties": {"name": {"type": "keyword"}}},
                    "log": {"properties": {
                        "file": {"properties": {"path": {"type": "keyword"}}},
                        "offset": {"type": "long"},
                        "flags": {"type": "keyword"},
                        "part": {"type": "long"}
                    }},
                    "topic": {"type": "keyword"},
                    "kafka": {"properties": {
                        "partition": {"type": "integer"},
                        "offset": {"type": "long"}
                    }}
                }
            }
        }
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

impl std::str::FromStr for IndexPattern {
    type Err = IndexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IndexPattern::parse(s)
    }
}

/// Elasticsearch's rules for an index name.
fn check_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("is empty")
    } else if name.len() > 255 {
        Err("is longer than 255 bytes")
    } else if name == "." || name == ".." {
        Err("cannot be '.' or '..'")
    } else if name.starts_with(['-', '_', '+']) {
        Err("cannot start with '-', '_' or '+'")
    } else if name.chars().any(|c| c.is_uppercase()) {
        Err("must be lowercase")
    } else if name.chars().any(|c| INDEX_FORBIDDEN.contains(&c) || c.is_control()) {
        Err("has a character Elasticsearch does not allow (\\ / * ? \" < > | space , # :)")
    } else {
        Ok(())
    }
}

/// Cache entries kept by [`IndexNames`]; a transfer sees few topics × days.
const INDEX_CACHE: usize = 64;

#[derive(Debug)]
struct CachedName {
    topic: String,
    /// Unix second ÷ `bucket_secs` (0 for time-free patterns).
    bucket: i64,
    name: String,
}

/// Index names for records: [`IndexPattern`] expansion behind a small
/// cache keyed by (topic, hour or day), so a hit allocates nothing.
#[derive(Debug)]
pub struct IndexNames {
    pattern: IndexPattern,
    /// At most `INDEX_CACHE` entries.
    cache: Vec<CachedName>,
    /// Index of the last hit (checked first); may be stale.
    last: usize,
    /// Next entry to overwrite once the cache is full.
    evict: usize,
}

impl IndexNames {
    /// A cache for `pattern`.
    pub fn new(pattern: IndexPattern) -> Self {
        IndexNames { pattern, cache: Vec::new(), last: 0, evict: 0 }
    }

    /// The pattern names are made from.
    pub fn pattern(&self) -> &IndexPattern {
        &self.pattern
    }

    /// The index for a record of `topic` at `timestamp_ms` (UTC). Records
    /// without a timestamp: pass the time they were received.
    pub fn name(&mut self, topic: &str, timestamp_ms: i64) -> Result<&str, IndexError> {
        let bucket = match self.pattern.bucket_secs {
            0 => 0,
            b => timestamp_ms.div_euclid(1000).div_euclid(b),
        };
        let hit = |e: &CachedName| e.bucket == bucket && e.topic == topic;
        let pos =
            if self.cache.get(self.last).is_some_and(hit) { Some(self.last) } else { self.cache.iter().position(hit) };
        let pos = match pos {
            Some(pos) => pos,
            None => {
                let mut name = String::new();
                self.pattern.expand(topic, timestamp_ms, &mut name)?;
                let entry = CachedName { topic: topic.to_string(), bucket, name };
                if self.cache.len() < INDEX_CACHE {
                    self.cache.push(entry);
                    self.cache.len() - 1
                } else {
                    let pos = self.evict;
                    self.evict = (self.evict + 1) % INDEX_CACHE;
                    self.cache[pos] = entry;
                    pos
                }
            }
        };
        self.last = pos;
        Ok(&self.cache[pos].name)
    }
}

// ---------------------------------------------------------------------------
// Response classification
// ---------------------------------------------------------------------------

/// Why Elasticsearch did not store a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    /// HTTP status of the item.
    pub status: u16,
    /// Elasticsearch's error `type` (`mapper_parsing_exception`, …); empty
    /// if the item had no error object.
    pub kind: String,
    /// The error `reason`, followed by `caused by <type>: <reason>` of the
    /// first cause when there is one.
    pub reason: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if !self.kind.is_empty() {
            write!(f, " {}", self.kind)?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

/// What became of one document of a `_bulk` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Stored (2xx).
    Done,
    /// Already stored: 409 to a `create`, the `_id` exists (a redelivery).
    Duplicate,
    /// Refused for now (429, 5xx): send it again later.
    Retry(ItemError),
    /// Refused for good (other statuses, e.g. 400 mapping errors).
    Reject(ItemError),
}

impl ItemOutcome {
    /// Done or duplicate: the record can be acknowledged.
    pub fn is_stored(&self) -> bool {
        matches!(self, ItemOutcome::Done | ItemOutcome::Duplicate)
    }
}

static DONE: ItemOutcome = ItemOutcome::Done;

/// How many items ended which way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub duplicate: usize,
    pub retry: usize,
    pub reject: usize,
}

/// The classified response of one `_bulk` request; reused between calls to
/// [`classify`] (it also keeps simd-json's buffers).
pub struct Outcomes {
    /// One per item when `all_done` is false; empty when it is true.
    items: Vec<ItemOutcome>,
    /// `errors: false`: every item is `Done` and `items` stays empty.
    all_done: bool,
    /// Number of items answered; `items.len()` unless `all_done`.
    len: usize,
    counts: Counts,
    buffers: Buffers,
    /// Kept between calls for its allocation only; always empty here.
    tape: Option<Tape<'static>>,
}

impl Default for Outcomes {
    fn default() -> Self {
        Outcomes::new()
    }
}

impl fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcomes")
            .field("len", &self.len)
            .field("all_done", &self.all_done)
            .field("counts", &self.counts)
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

impl Outcomes {
    /// Empty outcomes, ready for [`classify`].
    pub fn new() -> Self {
        Outcomes {
            items: Vec::new(),
            all_done: true,
            len: 0,
            counts: Counts::default(),
            buffers: Buffers::default(),
            tape: None,
        }
    }

    /// Number of items (= documents sent).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every item was stored as new (the `errors: false` answer).
    pub fn all_done(&self) -> bool {
        self.all_done
    }

    /// The outcome of the `i`-th document. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> &ItemOutcome {
        assert!(i < self.len, "item {i} of {}", self.len);
        if self.all_done {
            &DONE
        } else {
            &self.items[i]
        }
    }

    /// Outcomes in document order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ItemOutcome> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    /// Totals per outcome.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn set_all_done(&mut self, n: usize) {
        self.items.clear();
        self.all_done = true;
        self.len = n;
        self.counts = Counts { done: n, ..Counts::default() };
    }
}

/// A `_bulk` response that cannot be matched to the request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    /// Not JSON, or not shaped like a `_bulk` response.
    #[error("_bulk response: {what}; it starts with {excerpt:?}")]
    Malformed { what: String, excerpt: String },
    /// Elasticsearch refused the whole request (`{"error":…,"status":…}`).
    #[error("_bulk request refused{}: {kind}: {reason}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Request { status: Option<u16>, kind: String, reason: String },
    /// As many items as documents are expected.
    #[error("_bulk response has {got} items for {expected} documents sent")]
    ItemCount { expected: usize, got: usize },
}

/// Bytes of the response quoted in [`ClassifyError::Malformed`].
const EXCERPT: usize = 160;

/// Classifies a `_bulk` response for a request of `expected_items`
/// documents into `out` (item `i` answers document `i`). The body is parsed
/// in place, so it is left scrambled.
///
/// `{"errors":false}` means every document was stored; the items are then
/// not read (only counted, if present). Otherwise per item: 2xx → `Done`;
/// 409 to `create` → `Duplicate`; 429, 5xx → `Retry`; anything else →
/// `Reject`. On error `out` is left empty.
pub fn classify(body: &mut [u8], expected_items: usize, out: &mut Outcomes) -> Result<(), ClassifyError> {
    out.set_all_done(0);
    if body.trim_ascii() == br#"{"errors":false}"# {
        out.set_all_done(expected_items);
        return Ok(());
    }
    // simd-json scrambles the body: keep its head for error messages.
    let mut head = [0u8; EXCERPT];
    let head_len = body.len().min(EXCERPT);
    head[..head_len].copy_from_slice(&body[..head_len]);
    let body_len = body.len();
    let malformed = |what: String| ClassifyError::Malformed { what, excerpt: excerpt(&head[..head_len], body_len) };

    let mut tape: Tape<'_> = out.tape.take().unwrap_or_else(Tape::null).reset();
    let result = match simd_json::fill_tape(body, &mut out.buffers, &mut tape) {
        Err(e) => Err(Fail::Malformed(format!("not JSON ({e})"))),
        Ok(()) => read_response(&tape.0, expected_items, out),
    };
    out.tape = Some(tape.reset());
    result.map_err(|fail| {
        out.set_all_done(0);
        match fail {
            Fail::Malformed(what) => malformed(what),
            Fail::Error(e) => e,
        }
    })
}

/// Why [`read_response`] gave up.
enum Fail {
    /// Becomes [`ClassifyError::Malformed`] with the excerpt.
    Malformed(String),
    Error(ClassifyError),
}

/// Iterates the entries of the object at `tape[at]`: (key, value index).
fn entries<'t, 'i>(tape: &'t [Node<'i>], at: usize) -> impl Iterator<Item = (&'i str, usize)> + 't {
    let len = match tape.get(at) {
        Some(Node::Object { len, .. }) => *len,
        _ => 0,
    };
    let mut i = at + 1;
    (0..len).map_while(move |_| {
        let key = match tape.get(i)? {
            Node::String(k) => *k,
            _ => return None,
        };
        let value = i + 1;
        i = value + span(tape.get(value)?);
        Some((key, value))
    })
}

/// Iterates the element indices of the array at `tape[at]`.
fn elements<'t>(tape: &'t [Node<'_>], at: usize) -> impl Iterator<Item = usize> + 't {
    let len = match tape.get(at) {
        Some(Node::Array { len, .. }) => *len,
        _ => 0,
    };
    let mut i = at + 1;
    (0..len).map_while(move |_| {
        let here = i;
        i += span(tape.get(here)?);
        Some(here)
    })
}

fn string_at<'i>(tape: &[Node<'i>], at: usize) -> Option<&'i str> {
    match tape.get(at)? {
        Node::String(s) => Some(s),
        _ => None,
    }
}

fn u64_at(tape: &[Node<'_>], at: usize) -> Option<u64> {
    match tape.get(at)? {
        Node::Static(StaticNode::U64(n)) => Some(*n),
        Node::Static(StaticNode::I64(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn read_response(tape: &[Node<'_>], expected: usize, out: &mut Outcomes) -> Result<(), Fail> {
    if !matches!(tape.first(), Some(Node::Object { .. })) {
        return Err(Fail::Malformed("not a JSON object".into()));
    }
    let (mut errors, mut items, mut error, mut status) = (None, None, None, None);
    for (key, v) in entries(tape, 0) {
        match key {
            "errors" => match tape[v] {
                Node::Static(StaticNode::Bool(b)) => errors = Some(b),
                _ => return Err(Fail::Malformed("\"errors\" is not a boolean".into())),
            },
            "items" => items = Some(v),
            "error" => error = Some(v),
            "status" => status = u64_at(tape, v).and_then(|s| u16::try_from(s).ok()),
            _ => {}
        }
    }
    let items = match items {
        Some(v) => match tape[v] {
            Node::Array { len, .. } if len == expected => Some(v),
            Node::Array { len, .. } => return Err(Fail::Error(ClassifyError::ItemCount { expected, got: len })),
            _ => return Err(Fail::Malformed("\"items\" is not an array".into())),
        },
        None => None,
    };
    match (errors, items, error) {
        (Some(false), _, _) => {
            // Everything was stored: the items need not be read.
            out.set_all_done(expected);
            Ok(())
        }
        (_, Some(items), _) => {
            out.all_done = false;
            out.len = expected;
            out.items.reserve(expected);
            for (n, item) in elements(tape, items).enumerate() {
                let outcome = read_item(tape, item)
                    .ok_or_else(|| Fail::Malformed(format!("item {n} has no action with a status")))?;
                match &outcome {
                    ItemOutcome::Done => out.counts.done += 1,
                    ItemOutcome::Duplicate => out.counts.duplicate += 1,
                    ItemOutcome::Retry(_) => out.counts.retry += 1,
                    ItemOutcome::Reject(_) => out.counts.reject += 1,
                }
                out.items.push(outcome);
            }
            Ok(())
        }
        (_, None, Some(e)) => {
            let (kind, reason) = error_text(tape, e);
            Err(Fail::Error(ClassifyError::Request { status, kind, reason }))
        }
        (Some(true), None, None) => Err(Fail::Malformed("\"errors\" is true but there are no items".into())),
        (None, None, None) => Err(Fail::Malformed("neither \"errors\" nor \"items\"".into())),
    }
}

/// `{"<action>":{"status":N,"error":{…}}}` → outcome; `None` if malformed.
fn read_item(tape: &[Node<'_>], item: usize) -> Option<ItemOutcome> {
    let (action, body) = entries(tape, item).next()?;
    let (mut status, mut error) = (None, None);
    for (key, v) in entries(tape, body) {
        match key {
            "status" => status = u64_at(tape, v).and_then(|s| u16::try_from(s).ok()),
            "error" => error = Some(v),
            _ => {}
        }
    }
    let status = status?;
    let failure = || {
        let (kind, reason) = error.map(|e| error_text(tape, e)).unwrap_or_default();
        ItemError { status, kind, reason }
    };
    Some(match status {
        200..=299 => ItemOutcome::Done,
        // The `_id` exists: this record was stored before (redelivery).
        409 if action == "create" => ItemOutcome::Duplicate,
        429 | 500..=599 => ItemOutcome::Retry(failure()),
        _ => ItemOutcome::Reject(failure()),
    })
}

/// (type, reason + first cause) of an Elasticsearch error object; a bare
/// string is taken as the reason.
fn error_text(tape: &[Node<'_>], at: usize) -> (String, String) {
    if let Some(s) = string_at(tape, at) {
        return (String::new(), s.to_string());
    }
    let (mut kind, mut reason, mut cause) = ("", "", None);
    for (key, v) in entries(tape, at) {
        match key {
            "type" => kind = string_at(tape, v).unwrap_or(""),
            "reason" => reason = string_at(tape, v).unwrap_or(""),
            "caused_by" => cause = Some(v),
            _ => {}
        }
    }
    let mut reason = reason.to_string();
    if let Some(c) = cause {
        let (ck, cr) = (
            entries(tape, c).find(|e| e.0 == "type").and_then(|e| string_at(tape, e.1)),
            entries(tape, c).find(|e| e.0 == "reason").and_then(|e| string_at(tape, e.1)),
        );
        if ck.is_some() || cr.is_some() {
            reason.push_str(&format!("; caused by {}: {}", ck.unwrap_or(""), cr.unwrap_or("")));
        }
    }
    (kind.to_string(), reason)
}

fn excerpt(head: &[u8], total: usize) -> String {
    let mut s = String::from_utf8_lossy(head).into_owned();
    if total > head.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::testutil::{origin, rec};
    use crate::record::{doc_id, Origin};
    use proptest::prelude::*;
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{json, Map, Value};

    /// A JSON value parsed by serde_json that refuses duplicate keys at any
    /// depth, as Elasticsearch does.
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
    fn parse_body(body: &[u8]) -> Vec<(Value, Value)> {
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

    fn one(r: &Record<'_>, mode: MessageMode) -> (Value, Value, PushOutcome) {
        let mut b = BulkBody::new(1 << 20);
        let out = b.push(r, "logs", mode);
        let mut docs = parse_body(b.as_bytes());
        assert_eq!(docs.len(), 1);
        let (a, d) = docs.pop().unwrap();
        (a, d, out)
    }

    fn lossy_json(v: &[u8]) -> String {
        serde_json::to_string(&String::from_utf8_lossy(v)).unwrap()
    }

    // ----- escaping -------------------------------------------------------

    #[test]
    fn escaping_table() {
        // (input, escaped JSON string, replaced)
        let table: &[(&[u8], &str, bool)] = &[
            (b"", r#""""#, false),
            (b"plain text", r#""plain text""#, false),
            (b"\"", r#""\"""#, false),
            (b"\\", r#""\\""#, false),
            (b"a\"b\\c", r#""a\"b\\c""#, false),
            (b"\x00", r#""\u0000""#, false),
            (b"\x01\x1f", r#""\u0001\u001f""#, false),
            (b"\x08\x09\x0a\x0c\x0d", r#""\b\t\n\f\r""#, false),
            (b"\x7f", "\"\x7f\"", false),
            (b"tab\tin the middle of a long line", r#""tab\tin the middle of a long line""#, false),
            (b"12345678\"", r#""12345678\"""#, false),
            (b"1234567\"", r#""1234567\"""#, false),
            ("é€😀".as_bytes(), "\"é€😀\"", false),
            ("\u{2028}".as_bytes(), "\"\u{2028}\"", false),
            (b"\xff", "\"\u{FFFD}\"", true),
            (b"\x80", "\"\u{FFFD}\"", true),
            (b"ab\xc3", "\"ab\u{FFFD}\"", true),
            (b"ab\xe2\x82", "\"ab\u{FFFD}\"", true),
            (b"ab\xf0\x9f\x98", "\"ab\u{FFFD}\"", true),
            (b"\xf0\x9f\x98\x80\xf0\x9f", "\"😀\u{FFFD}\"", true),
            (b"\xc0\x80", "\"\u{FFFD}\u{FFFD}\"", true), // overlong NUL
            (b"\xed\xa0\x80", "\"\u{FFFD}\u{FFFD}\u{FFFD}\"", true), // surrogate
            (b"\xff\n\"", "\"\u{FFFD}\\n\\\"\"", true),
        ];
        for &(input, want, replaced) in table {
            let mut out = Vec::new();
            let got = write_str(&mut out, input);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "input {input:?}");
            assert_eq!(got, replaced, "input {input:?}");
            assert_eq!(want, lossy_json(input), "serde_json agrees on {input:?}");
        }
    }

    #[test]
    fn every_byte_alone_and_in_a_word() {
        for b in 0..=255u8 {
            for input in [vec![b], [b"abcdefg".as_slice(), &[b], b"hijklmnop"].concat()] {
                let mut out = Vec::new();
                write_str(&mut out, &input);
                assert_eq!(std::str::from_utf8(&out).unwrap(), lossy_json(&input), "byte {b:#x}");
                assert!(!out.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn escape_mask_every_byte_every_position() {
        // Fillers next to the boundaries of the three tests (0x20, '"', '\\').
        for filler in [b'a', 0x00, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xff] {
            for b in 0..=255u8 {
                for pos in 0..8 {
                    let mut bytes = [filler; 8];
                    bytes[pos] = b;
                    let naive = bytes
                        .iter()
                        .enumerate()
                        .fold(0u64, |m, (k, &c)| m | if ESCAPE[c as usize] != 0 { 0x80 << (8 * k) } else { 0 });
                    assert_eq!(escape_mask(u64::from_le_bytes(bytes)), naive, "{bytes:02x?}");
                }
            }
        }
    }

    /// The model of [`next_escape`]: byte by byte.
    fn next_escape_naive(s: &[u8], from: usize) -> usize {
        s[from..].iter().position(|&b| ESCAPE[b as usize] != 0).map_or(s.len(), |k| from + k)
    }

    /// Checks [`next_escape`] against the model: the same stop, and `high`
    /// set if a byte before it is ≥ 0x80 but never when `s` has none.
    fn check_next_escape(s: &[u8], from: usize) {
        let scan = next_escape(s, from);
        assert_eq!(scan.at, next_escape_naive(s, from), "{s:02x?} from {from}");
        if s[from..scan.at].iter().any(|&b| b >= 0x80) {
            assert!(scan.high, "high bytes missed: {s:02x?} from {from}");
        }
        if scan.high {
            assert!(s.iter().any(|&b| b >= 0x80), "high without a high byte: {s:02x?} from {from}");
        }
    }

    #[test]
    fn next_escape_every_byte_every_position() {
        // Lengths around the 16- and 8-byte steps; fillers next to the
        // boundaries of the tests (0x20, '"', '\\', the sign bit).
        for len in [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47] {
            for filler in [b'a', 0x1f, 0x20, 0x21, 0x5d, 0x7f, 0x80, 0xff] {
                for b in 0..=255u8 {
                    for pos in 0..len {
                        let mut s = vec![filler; len];
                        s[pos] = b;
                        for from in [0, 1, pos, pos + 1, len] {
                            check_next_escape(&s, from.min(len));
                        }
                    }
                }
            }
        }
        check_next_escape(b"", 0);
    }

    /// The model of [`escape_into`]: byte by byte.
    fn escape_naive(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in s {
            if ESCAPE[b as usize] != 0 {
                write_escape(&mut out, b);
            } else {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn escape_into_every_byte_every_position() {
        // Two escapes anywhere in 40 bytes: in one 16-byte step, in two,
        // in the tail.
        for filler in [b'a', 0x1f, 0x7f, 0x80, 0xff] {
            for b in 0..=255u8 {
                for pos in 0..40 {
                    for second in [0, pos / 2, 15, 16, 31, 32, 39] {
                        let mut s = vec![filler; 40];
                        s[second] = b'"';
                        s[pos] = b;
                        let mut out = b"prefix".to_vec();
                        let high = escape_into(&mut out, &s);
                        assert_eq!(&out[6..], &escape_naive(&s)[..], "{s:02x?}");
                        assert_eq!(high, s.iter().any(|&c| c >= 0x80), "{s:02x?}");
                    }
                }
            }
        }
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

    // ----- documents ------------------------------------------------------

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
    fn timestamps() {
        // (ms, @timestamp; None = left out)
        let table: &[(Option<i64>, Option<&str>)] = &[
            (None, None),
            (Some(0), Some("1970-01-01T00:00:00.000Z")),
            (Some(1), Some("1970-01-01T00:00:00.001Z")),
            (Some(-1), Some("1969-12-31T23:59:59.999Z")),
            (Some(1_795_603_474_123), Some("2026-11-25T10:44:34.123Z")),
            (Some(1_795_603_474_999), Some("2026-11-25T10:44:34.999Z")),
            (Some(1_795_603_475_000), Some("2026-11-25T10:44:35.000Z")),
            (Some(951_782_400_000), Some("2000-02-29T00:00:00.000Z")),
            (Some(253_402_300_799_999), Some("9999-12-31T23:59:59.999Z")),
            (Some(253_402_300_800_000), None),
            (Some(-62_167_219_200_000), Some("0000-01-01T00:00:00.000Z")),
            (Some(-62_167_219_200_001), None),
            (Some(i64::MAX), None),
            (Some(i64::MIN), None),
        ];
        // One builder for all: the per-second cache must follow jumps.
        let mut b = BulkBody::new(1 << 20);
        for &(ms, _) in table.iter().chain(table.iter().rev()) {
            let _ = b.push(&Record { timestamp_ms: ms, ..rec(b"t") }, "i", MessageMode::Plain);
        }
        let docs = parse_body(b.as_bytes());
        let wants = table.iter().chain(table.iter().rev()).map(|t| t.1);
        for ((_, doc), want) in docs.iter().zip(wants) {
            assert_eq!(doc.get("@timestamp").and_then(Value::as_str), want);
        }
    }

    #[test]
    fn the_action_carries_doc_id() {
        let r = rec(b"line");
        let (action, _, _) = one(&r, MessageMode::Plain);
        assert_eq!(action["create"]["_id"], doc_id(&r).as_str());
    }

    // ----- body bookkeeping ------------------------------------------------

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

    // ----- parse_json --------------------------------------------------------

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

    // ----- properties ------------------------------------------------------

    /// Byte strings rich in what escaping and UTF-8 repair must handle.
    fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
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

        #[test]
        fn escaping_matches_serde_json(v in nasty_bytes()) {
            let mut out = Vec::new();
            write_str(&mut out, &v);
            prop_assert_eq!(String::from_utf8(out).unwrap(), lossy_json(&v));
        }

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

        #[test]
        fn escape_mask_is_exact(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x9f), Just(0xa2), Just(0xdc)], 8)
        ) {
            let w = u64::from_le_bytes(bytes[..].try_into().unwrap());
            let naive = bytes.iter().enumerate().fold(0u64, |m, (k, &b)| {
                m | if ESCAPE[b as usize] != 0 { 0x80 << (8 * k) } else { 0 }
            });
            prop_assert_eq!(escape_mask(w), naive, "{:02x?}", bytes);
        }


        #[test]
        fn next_escape_matches_the_naive_scan(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x7f), 0x80u8..=0xff, b'a'..=b'z'], 0..80),
            from in 0usize..80,
        ) {
            check_next_escape(&bytes, from.min(bytes.len()));
        }

        #[test]
        fn escape_into_matches_the_naive_escaper(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x7f), 0x80u8..=0xff, b'a'..=b'z'], 0..80),
        ) {
            let naive = escape_naive(&bytes);
            let mut out = b"prefix".to_vec();
            let high = escape_into(&mut out, &bytes);
            prop_assert_eq!(&out[6..], &naive[..]);
            prop_assert_eq!(high, bytes.iter().any(|&b| b >= 0x80));
        }
    }

    // ----- index names -------------------------------------------------------

    #[test]
    fn index_patterns() {
        // (pattern, topic, ms, name or error fragment)
        let table: &[(&str, &str, i64, Result<&str, &str>)] = &[
            ("{topic}", "app", 0, Ok("app")),
            ("{topic}", "App.Logs_1", 0, Ok("app.logs_1")),
            ("{topic}-%Y.%m.%d", "app", 1_795_603_474_123, Ok("app-2026.11.25")),
            ("logs-{topic}-%Y%m%d%H", "nginx", 1_795_603_474_123, Ok("logs-nginx-2026112510")),
            ("{topic}-%Y.%m.%d", "app", -1, Ok("app-1969.12.31")),
            ("100%%-{topic}", "x", 0, Ok("100%-x")),
            ("fixed", "ignored", i64::MAX, Ok("fixed")),
            ("{topic}", "_private", 0, Err("cannot start with")),
            ("{topic}-%Y", "app", i64::MAX, Err("out of range")),
            ("Logs-{topic}", "app", 0, Err("lowercase")),
            ("logs {topic}", "app", 0, Err("not allowed")),
            ("logs/{topic}", "app", 0, Err("not allowed")),
            ("logs:{topic}", "app", 0, Err("not allowed")),
            ("logs#{topic}", "app", 0, Err("not allowed")),
            ("{topik}", "app", 0, Err("placeholder")),
            ("{topic", "app", 0, Err("placeholder")),
            ("topic}", "app", 0, Err("unmatched")),
            ("{topic}-%y", "app", 0, Err("unknown %y")),
            ("{topic}-%", "app", 0, Err("unknown %")),
            ("", "app", 0, Err("empty")),
            ("-logs", "app", 0, Err("cannot start")),
            ("_logs", "app", 0, Err("cannot start")),
            ("..", "app", 0, Err("'.' or '..'")),
        ];
        for &(pattern, topic, ms, want) in table {
            let got = IndexPattern::parse(pattern).and_then(|p| IndexNames::new(p).name(topic, ms).map(str::to_string));
            match (got, want) {
                (Ok(name), Ok(w)) => assert_eq!(name, w, "{pattern}"),
                (Err(e), Err(w)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(w), "{pattern}: {msg:?} lacks {w:?}");
                    assert!(msg.contains(pattern) || pattern.is_empty(), "{msg:?} names the pattern");
                }
                (got, want) => panic!("{pattern}: got {got:?}, want {want:?}"),
            }
        }
        let long = "a".repeat(250);
        let e = IndexPattern::parse(&format!("{long}-{{topic}}")).unwrap();
        assert!(matches!(IndexNames::new(e).name("abcdef", 0), Err(IndexError::Name { .. })));
    }

    #[test]
    fn template_patterns_cover_every_name() {
        // (pattern, topic, wildcard)
        let table = [
            ("{topic}", "App", "app"),
            ("{topic}-%Y.%m.%d", "app", "app-*.*.*"),
            ("logs-{topic}-%Y%m%d%H", "nginx", "logs-nginx-*"),
            ("fixed", "x", "fixed"),
        ];
        for (pattern, topic, want) in table {
            assert_eq!(IndexPattern::parse(pattern).unwrap().wildcard(topic), want, "{pattern}");
        }
        let t: serde_json::Value = serde_json::from_slice(&index_template(&["app-*".into()], 7)).unwrap();
        assert_eq!(t["index_patterns"][0], "app-*");
        assert_eq!(t["priority"], 7);
        assert_eq!(t["template"]["mappings"]["properties"]["message"]["type"], "text");
        assert_eq!(t["template"]["mappings"]["properties"]["message"]["analyzer"], "logcollect_words");
        assert_eq!(
            t["template"]["settings"]["analysis"]["tokenizer"]["logcollect_words"]["pattern"],
            r"[^\p{IsAlphabetic}\p{N}]+"
        );
        assert_eq!(t["template"]["mappings"]["properties"]["log"]["properties"]["offset"]["type"], "long");
    }

    #[test]
    fn index_cache_hits_and_rolls_over() {
        let mut names = IndexNames::new("{topic}-%Y.%m.%d".parse().unwrap());
        let day = 86_400_000;
        let t0 = 1_795_564_800_000; // 2026-11-25T00:00:00Z
        assert_eq!(names.name("a", t0).unwrap(), "a-2026.11.25");
        assert_eq!(names.name("a", t0 + day - 1).unwrap(), "a-2026.11.25");
        assert_eq!(names.name("b", t0).unwrap(), "b-2026.11.25");
        assert_eq!(names.name("a", t0 + day).unwrap(), "a-2026.11.26");
        assert_eq!(names.name("a", t0 + 5).unwrap(), "a-2026.11.25");
        assert_eq!(names.cache.len(), 3);
        // Many topics: the cache stays bounded and answers stay right.
        for i in 0..200 {
            let t = format!("t{i}");
            assert_eq!(names.name(&t, t0).unwrap(), format!("t{i}-2026.11.25"));
        }
        assert_eq!(names.cache.len(), INDEX_CACHE);
        assert_eq!(names.name("a", t0).unwrap(), "a-2026.11.25");
    }

    // ----- classify ------------------------------------------------------------

    fn run(body: &str, expected: usize) -> Result<Outcomes, ClassifyError> {
        let mut out = Outcomes::new();
        let mut bytes = body.as_bytes().to_vec();
        classify(&mut bytes, expected, &mut out).map(|()| out)
    }

    fn err(status: u16, kind: &str, reason: &str) -> ItemError {
        ItemError { status, kind: kind.into(), reason: reason.into() }
    }

    #[test]
    fn classify_table() {
        use ItemOutcome::*;
        // (response, expected items, outcomes)
        let table: Vec<(&str, usize, Vec<ItemOutcome>)> = vec![
            (r#"{"errors":false}"#, 3, vec![Done, Done, Done]),
            (" {\"errors\":false}\n", 0, vec![]),
            (r#"{ "errors" : false }"#, 2, vec![Done, Done]),
            (r#"{"took":3,"errors":false,"items":[{"create":{"status":201}}]}"#, 1, vec![Done]),
            (
                r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"}}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary not active"}}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"abc\""}}}},{"index":{"status":409}},{"create":{"status":404,"error":"no such index"}},{"create":{"status":200}}]}"#,
                8,
                vec![
                    Done,
                    Duplicate,
                    Retry(err(429, "es_rejected_execution_exception", "queue full")),
                    Retry(err(503, "unavailable_shards_exception", "primary not active")),
                    Reject(err(
                        400,
                        "mapper_parsing_exception",
                        "failed to parse field [n]; caused by illegal_argument_exception: For input string: \"abc\"",
                    )),
                    Reject(err(409, "", "")),
                    Reject(err(404, "", "no such index")),
                    Done,
                ],
            ),
            (r#"{"items":[{"create":{"status":500}}]}"#, 1, vec![Retry(err(500, "", ""))]),
        ];
        for (body, expected, want) in table {
            let out = run(body, expected).unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(out.len(), want.len(), "{body}");
            assert_eq!(out.iter().cloned().collect::<Vec<_>>(), want, "{body}");
            let c = out.counts();
            let count = |f: fn(&ItemOutcome) -> bool| want.iter().filter(|o| f(o)).count();
            assert_eq!(
                (c.done, c.duplicate, c.retry, c.reject),
                (
                    count(|o| matches!(o, Done)),
                    count(|o| matches!(o, Duplicate)),
                    count(|o| matches!(o, Retry(_))),
                    count(|o| matches!(o, Reject(_)))
                ),
                "{body}"
            );
            assert_eq!(out.all_done(), want.iter().all(|o| *o == Done), "{body}");
        }
    }

    #[test]
    fn classify_errors() {
        // (response, expected items, error fragment)
        let table: &[(&str, usize, &str)] = &[
            ("", 1, "not JSON"),
            ("<html>502 Bad Gateway</html>", 1, "<html>502 Bad Gateway</html>"),
            ("[1,2]", 1, "not a JSON object"),
            ("{}", 1, "neither"),
            (r#"{"errors":"no"}"#, 1, "not a boolean"),
            (r#"{"errors":true}"#, 1, "no items"),
            (r#"{"errors":true,"items":{}}"#, 1, "not an array"),
            (r#"{"errors":true,"items":[{"create":{"status":201}}]}"#, 2, "1 items for 2 documents"),
            (r#"{"errors":false,"items":[]}"#, 2, "0 items for 2 documents"),
            (r#"{"errors":true,"items":[{"create":{}}]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[{}]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[7]}"#, 1, "item 0 has no action"),
            (r#"{"errors":true,"items":[{"create":{"status":70000}}]}"#, 1, "item 0"),
            (
                r#"{"error":{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline"},"status":400}"#,
                3,
                "refused with status 400: illegal_argument_exception: The bulk request must be terminated by a newline",
            ),
        ];
        for &(body, expected, fragment) in table {
            let mut out = Outcomes::new();
            let mut bytes = body.as_bytes().to_vec();
            let e = classify(&mut bytes, expected, &mut out).expect_err(body);
            assert!(e.to_string().contains(fragment), "{body}: {e}");
            assert!(out.is_empty(), "{body}: outcomes cleared on error");
        }
        let long = format!("garbage {}", "x".repeat(1000));
        let e = run(&long, 1).unwrap_err().to_string();
        assert!(e.len() < 400 && e.contains('…'), "{e}");
    }

    #[test]
    fn outcomes_are_reused() {
        let mut out = Outcomes::new();
        let mut mixed = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429}}]}"#.to_vec();
        classify(&mut mixed, 2, &mut out).unwrap();
        assert_eq!(out.counts().retry, 1);
        let mut ok = br#"{"errors":false}"#.to_vec();
        classify(&mut ok, 5, &mut out).unwrap();
        assert!(out.all_done());
        assert_eq!(out.len(), 5);
        assert_eq!(out.get(4), &ItemOutcome::Done);
        assert_eq!(out.counts(), Counts { done: 5, ..Counts::default() });
        let mut mixed = br#"{"errors":true,"items":[{"create":{"status":400}}]}"#.to_vec();
        classify(&mut mixed, 1, &mut out).unwrap();
        assert_eq!(out.iter().filter(|o| !o.is_stored()).count(), 1);
    }
}
