//! Throughput of the transfer's `_bulk` body builder and response classifier.
//!
//! Body building: 10 000 agent records (headers host/path/offset/fid, a few
//! split/truncated markers, timestamps 1 ms apart) with realistic lines of
//! 120..=280 bytes, about 200 on average, built deterministically once. One
//! iteration looks each record's index name up (`{topic}-%Y.%m.%d`, cached)
//! and pushes it into a reused `BulkBody`, then clears it, the way the
//! transfer fills request after request.
//! - `clean_ascii`: text lines (web access and application lines) with
//!   nothing to escape, `MessageMode::Plain`: the escaper's fast path.
//! - `plain`: the same kind of lines with now and then a quote, a tab or a
//!   backslash (about one in five words).
//! - `escape_heavy`: something to escape after every other word: quotes,
//!   backslashes, tab, CR, ESC colour codes, NUL, 0x01.
//! - `non_ascii`: valid UTF-8 with multi-byte characters after every other
//!   word (é, 中文, emoji): validated, nothing replaced.
//! - `invalid_utf8`: every line has invalid bytes (lone 0xff/0xfe, cut
//!   sequences, Latin-1 é) among valid multi-byte text and escapes: the
//!   lossy path, U+FFFD.
//! - `parse_json`: JSON-object lines, `MessageMode::ParseJson` (simd-json
//!   parse, key checks, merge).
//!
//! Each case prints its line statistics (bytes, bytes to escape, non-ASCII
//! bytes, body bytes per document) once.
//!
//! Group `bulk_body_bytes` reports line bytes/s, `bulk_body_docs` docs/s.
//!
//! Classification: responses for 1 000 documents.
//! - `all_ok_filtered`: `{"errors":false}` (what `filter_path` leaves).
//! - `all_ok_items`: `errors:false` with the 1 000 items present.
//! - `mixed`: `errors:true`, 1 000 items: mostly 201, some 409, 429, 400.
//!
//! `cargo bench --bench bulk -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use logcollect::body::{BulkBody, MessageMode, PushOutcome};
use logcollect::classify::{classify, Outcomes};
use logcollect::config::IndexPattern;
use logcollect::index_name::IndexNames;
use logcollect::record::{Cut, Origin, Record};
use std::hint::black_box;

// The transfer runs on mimalloc, like the agent.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS: usize = 10_000;
const RESPONSE_ITEMS: usize = 1_000;

/// splitmix64: deterministic, dependency-free, good enough for fixtures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Appends a random lowercase word of 2..=9 letters.
    fn word(&mut self, out: &mut String) {
        for _ in 0..self.range(2, 9) {
            out.push((b'a' + self.range(0, 25) as u8) as char);
        }
    }
}

/// A text line of `120..=280` bytes: a web access or application line
/// prefix, then random words; after each word, with probability
/// `1/every`, one of `extras` instead of a space.
fn line_with(rng: &mut Rng, extras: &[&[u8]], every: u64) -> Vec<u8> {
    let target = rng.range(120, 280) as usize;
    let mut l = Vec::with_capacity(target + 16);
    if rng.next() % 2 == 0 {
        l.extend_from_slice(
            format!(
                "10.{}.{}.{} - - [25/Nov/2026:10:44:{:02} +0000] \"GET /api/v1/",
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(0, 59)
            )
            .as_bytes(),
        );
    } else {
        l.extend_from_slice(b"2026-11-25T10:44:34.123Z INFO  [worker-3] c.e.OrderService: ");
    }
    while l.len() < target {
        let mut w = String::new();
        rng.word(&mut w);
        l.extend_from_slice(w.as_bytes());
        if !extras.is_empty() && rng.next() % every == 0 {
            l.extend_from_slice(extras[rng.range(0, extras.len() as u64 - 1) as usize]);
        } else {
            l.push(b' ');
        }
    }
    l.truncate(target);
    // Cutting may split a UTF-8 sequence: finish the line on ASCII.
    while !extras.iter().any(|e| e.iter().any(|&b| b >= 0x80 && std::str::from_utf8(e).is_err()))
        && std::str::from_utf8(&l).is_err()
    {
        l.pop();
    }
    l
}

/// Plain ASCII, nothing to escape: the escaper's fast path throughout.
fn clean_line(rng: &mut Rng) -> Vec<u8> {
    line_with(rng, &[], 1)
}

/// Realistic: now and then a quote, a tab or a backslash.
fn text_line(rng: &mut Rng) -> Vec<u8> {
    line_with(rng, &[b" \"q\" ", b"\t", b"=\\path "], 5)
}

/// Something to escape after every other word: quotes, backslashes,
/// control characters (tab, CR, ESC colour codes, NUL, 0x01).
fn escape_line(rng: &mut Rng) -> Vec<u8> {
    line_with(
        rng,
        &[b" \"quoted\" ", b" C:\\logs\\app.log ", b"\t", b"\r", b" \x1b[31mERROR\x1b[0m ", b"\0", b"\x01", b"\\\""],
        2,
    )
}

/// Valid UTF-8 with multi-byte characters: validated, not escaped.
fn non_ascii_line(rng: &mut Rng) -> Vec<u8> {
    line_with(
        rng,
        &["é ".as_bytes(), " naïve ".as_bytes(), " 中文日志 ".as_bytes(), " 😀 ".as_bytes(), " Ωmega ".as_bytes()],
        2,
    )
}

/// Invalid UTF-8 (lone bytes, cut sequences) among valid multi-byte text
/// and escapes: the lossy path (U+FFFD) for every line.
fn invalid_utf8_line(rng: &mut Rng) -> Vec<u8> {
    let mut l = line_with(rng, &[b" \xff ", b" \xc3(", b" caf\xe9 ", "é ".as_bytes(), b" \"q\" ", b"\t"], 3);
    l.push(0xfe); // at least one invalid byte per line
    l
}

/// A JSON-object line of roughly `120..=280` bytes.
fn json_line(rng: &mut Rng) -> Vec<u8> {
    let target = rng.range(120, 280) as usize;
    let mut msg = String::new();
    while msg.len() + 110 < target {
        rng.word(&mut msg);
        msg.push(' ');
    }
    format!(
        r#"{{"ts":"2026-11-25T10:44:34.123Z","level":"info","logger":"orders","thread":"w-{}","msg":"{}","latency_ms":{},"ok":true}}"#,
        rng.range(1, 16),
        msg.trim_end(),
        rng.range(1, 900)
    )
    .into_bytes()
}

struct Fixture {
    lines: Vec<Vec<u8>>,
    offsets: Vec<u64>,
    bytes: u64,
}

fn fixture(seed: u64, line: fn(&mut Rng) -> Vec<u8>) -> Fixture {
    let mut rng = Rng(seed);
    let lines: Vec<Vec<u8>> = (0..RECORDS).map(|_| line(&mut rng)).collect();
    let mut offsets = Vec::with_capacity(RECORDS);
    let mut off = 0u64;
    for l in &lines {
        offsets.push(off);
        off += l.len() as u64 + 1;
    }
    let bytes = lines.iter().map(|l| l.len() as u64).sum();
    Fixture { lines, offsets, bytes }
}

/// Records as the consumer would hand them over.
fn records(f: &Fixture) -> Vec<Record<'_>> {
    const T0: i64 = 1_795_603_474_123; // 2026-11-25T10:44:34.123Z
    f.lines
        .iter()
        .zip(&f.offsets)
        .enumerate()
        .map(|(i, (line, &offset))| Record {
            value: line,
            topic: "app",
            partition: (i % 12) as i32,
            offset: 5_000_000 + i as i64,
            timestamp_ms: Some(T0 + i as i64),
            origin: Some(Origin {
                host: b"web-17.dc1.example.com",
                path: b"/var/log/app/orders.log",
                offset,
                fid: b"803-1a2b3c-9f8e7d6c5b4a3921",
                cut: match i % 100 {
                    0 => Cut::Part(1),
                    1 => Cut::Truncated,
                    _ => Cut::Whole,
                },
                journal: None,
            }),
        })
        .collect()
}

fn fill(body: &mut BulkBody, names: &mut IndexNames, recs: &[Record<'_>], mode: MessageMode) {
    body.clear();
    for r in recs {
        let index = names.name(r.topic, r.timestamp_ms.unwrap_or(0)).expect("valid index");
        let out = body.push(r, index, mode);
        debug_assert!(matches!(out, PushOutcome::Added { .. }));
        let _ = black_box(out);
    }
    black_box(body.as_bytes());
}

fn bench_body(c: &mut Criterion) {
    let cases = [
        ("clean_ascii", fixture(3, clean_line), MessageMode::Plain),
        ("plain", fixture(1, text_line), MessageMode::Plain),
        ("escape_heavy", fixture(4, escape_line), MessageMode::Plain),
        ("non_ascii", fixture(5, non_ascii_line), MessageMode::Plain),
        ("invalid_utf8", fixture(6, invalid_utf8_line), MessageMode::Plain),
        ("parse_json", fixture(2, json_line), MessageMode::ParseJson),
    ];
    let pattern: IndexPattern = "{topic}-%Y.%m.%d".parse().expect("pattern");
    for (group, per_bytes) in [("bulk_body_bytes", true), ("bulk_body_docs", false)] {
        let mut g = c.benchmark_group(group);
        for (name, f, mode) in &cases {
            let (name, mode) = (*name, *mode);
            let recs = records(f);
            let mut body = BulkBody::new(64 << 20);
            let mut names = IndexNames::new(pattern.clone());
            fill(&mut body, &mut names, &recs, mode);
            if per_bytes {
                let escapes = f.lines.iter().flatten().filter(|&&b| b < 0x20 || b == b'"' || b == b'\\').count();
                let high = f.lines.iter().flatten().filter(|&&b| b >= 0x80).count();
                eprintln!(
                    "{name}: {} records, {:.1} line bytes avg ({:.1} to escape, {:.1} non-ASCII) -> body {:.1} bytes/doc, {} lossy, {} merged",
                    recs.len(),
                    f.bytes as f64 / recs.len() as f64,
                    escapes as f64 / recs.len() as f64,
                    high as f64 / recs.len() as f64,
                    body.len() as f64 / recs.len() as f64,
                    body.lossy_docs(),
                    body.merged_docs(),
                );
            }
            g.throughput(if per_bytes { Throughput::Bytes(f.bytes) } else { Throughput::Elements(recs.len() as u64) });
            g.bench_function(name, |b| b.iter(|| fill(&mut body, &mut names, &recs, mode)));
        }
        g.finish();
    }
}

fn responses() -> [(&'static str, Vec<u8>); 3] {
    let items = |f: &dyn Fn(usize) -> &'static str| (0..RESPONSE_ITEMS).map(f).collect::<Vec<_>>().join(",");
    let ok = items(&|_| r#"{"create":{"status":201}}"#);
    let mixed = items(&|i| match i % 20 {
        0 | 1 => {
            r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[aBc123]: version conflict, document already exists (current version [1])","index_uuid":"q1w2e3","shard":"0","index":"app-2026.11.25"}}}"#
        }
        2 => {
            r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}}"#
        }
        3 if i % 100 == 3 => {
            r#"{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:120] failed to parse field [latency_ms] of type [long]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"slow\""}}}}"#
        }
        _ => r#"{"create":{"status":201}}"#,
    });
    [
        ("all_ok_filtered", br#"{"errors":false}"#.to_vec()),
        ("all_ok_items", format!(r#"{{"took":31,"errors":false,"items":[{ok}]}}"#).into_bytes()),
        ("mixed", format!(r#"{{"errors":true,"items":[{mixed}]}}"#).into_bytes()),
    ]
}

fn bench_classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("bulk_classify");
    g.throughput(Throughput::Elements(RESPONSE_ITEMS as u64));
    for (name, body) in responses() {
        let mut out = Outcomes::new();
        classify(&mut body.clone(), RESPONSE_ITEMS, &mut out).expect("classifies");
        assert_eq!(out.len(), RESPONSE_ITEMS);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| {
                    classify(buf, RESPONSE_ITEMS, &mut out).expect("classifies");
                    black_box(out.counts())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench_body, bench_classify);
criterion_main!(benches);
