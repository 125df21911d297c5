//! Throughput of the reader's line splitter, driven the way `tail` drives it.
//!
//! A ~32 MiB fixture of realistic log lines (nginx access lines, app lines
//! with key=value fields, JSON lines; 120..=280 bytes each, about 200 on
//! average, built deterministically once) is read from memory with
//! `LineBuffer::read_from` in the default chunk size. After every read
//! `take_lines` hands out a block, the sink "acknowledges" it by dropping it,
//! and the spans are cleared for the next read.
//!
//! Two sinks:
//! - `drop`: every block is dropped at once, so the same chunk is reclaimed
//!   read after read.
//! - `in_flight_64`: the last 64 blocks stay alive (lines queued towards
//!   Kafka), which exercises the chunk pool.
//!
//! Each is measured twice, once per throughput unit: group `split_bytes`
//! reports bytes/s, group `split_lines` lines/s.
//!
//! `cargo bench --bench split -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use logcollect::split::{Block, LineBuffer, Span, SplitConfig};
use std::collections::VecDeque;
use std::hint::black_box;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

// The agent binary runs on mimalloc; chunk allocation is part of what the
// in-flight variant measures, so measure it with the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXTURE_BYTES: usize = 32 << 20;
/// Blocks kept alive by the `in_flight_64` sink.
const IN_FLIGHT: usize = 64;

struct Fixture {
    data: Vec<u8>,
    /// Number of `\n`-terminated lines in `data`.
    lines: u64,
}

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

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() as usize % items.len()]
    }
}

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD"];
const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/orders/search",
    "/api/v2/users",
    "/static/js/app.bundle.js",
    "/healthz",
    "/api/v1/payments/authorize",
    "/images/catalog/thumbnail.webp",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "curl/8.5.0",
    "kube-probe/1.30",
    "Go-http-client/2.0",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
const TARGETS: &[&str] = &["orders::handler", "billing::retry", "auth::session", "db::pool", "cache::lru"];
const MESSAGES: &[&str] = &[
    "request completed",
    "retrying payment after timeout",
    "session refreshed",
    "connection checked out",
    "cache miss, loading from upstream",
    "slow query",
];
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// One log line of exactly `target` bytes, newline included.
fn line(rng: &mut Rng, n: u64, target: usize, out: &mut Vec<u8>) {
    let start = out.len();
    // one line per millisecond-ish, starting 2026-11-25 10:00:00
    let ms = 36_000_000 + n * 7;
    let (h, m, s, frac) = (ms / 3_600_000 % 24, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let _ = match rng.next() % 3 {
        0 => write!(
            out,
            "10.{}.{}.{} - - [25/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"{} {}?page={} HTTP/1.1\" {} {} \"-\" \"{}\" {}.{:03}",
            rng.range(0, 255),
            rng.range(0, 255),
            rng.range(1, 254),
            rng.pick(METHODS),
            rng.pick(PATHS),
            rng.range(1, 500),
            [200, 200, 200, 201, 304, 404, 500][rng.range(0, 6) as usize],
            rng.range(0, 250_000),
            rng.pick(AGENTS),
            rng.range(0, 2),
            rng.range(0, 999),
        ),
        1 => write!(
            out,
            "2026-11-25T{h:02}:{m:02}:{s:02}.{frac:03}Z {:<5} {}{{req_id={:016x}}}: {} latency_ms={} user=u{}",
            rng.pick(LEVELS),
            rng.pick(TARGETS),
            rng.next(),
            rng.pick(MESSAGES),
            rng.range(0, 3000),
            rng.range(1, 99_999),
        ),
        _ => write!(
            out,
            "{{\"ts\":\"2026-11-25T{h:02}:{m:02}:{s:02}.{frac:03}Z\",\"level\":\"{}\",\"target\":\"{}\",\"msg\":\"{}\",\"attempt\":{},\"trace_id\":\"{:016x}{:016x}\"",
            rng.pick(LEVELS).to_ascii_lowercase(),
            rng.pick(TARGETS),
            rng.pick(MESSAGES),
            rng.range(1, 5),
            rng.next(),
            rng.next(),
        ),
    };
    // Pad with a free-text field, or cut, to the target length.
    let body = target - 1;
    if out.len() - start < body {
        out.extend_from_slice(b" extra=");
        while out.len() - start < body {
            out.push(ALNUM[rng.next() as usize % ALNUM.len()]);
        }
    }
    out.truncate(start + body);
    out.push(b'\n');
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = Rng(0x5eed_1095);
        let mut data = Vec::with_capacity(FIXTURE_BYTES + 512);
        let mut lines = 0;
        while data.len() < FIXTURE_BYTES {
            let target = rng.range(120, 280) as usize;
            line(&mut rng, lines, target, &mut data);
            lines += 1;
        }
        Fixture { data, lines }
    })
}

/// What one pass saw: lines, line bytes (without newlines), chunks allocated.
struct Pass {
    lines: u64,
    line_bytes: u64,
    chunks: u64,
}

/// Reads all of `data` the way a tail reader does, keeping the last
/// `in_flight` blocks alive and dropping the rest.
fn split_all(data: &[u8], in_flight: usize, held: &mut VecDeque<Block>, spans: &mut Vec<Span>) -> Pass {
    let mut lb = LineBuffer::new(0, SplitConfig::default());
    let mut reader = data;
    let mut pass = Pass { lines: 0, line_bytes: 0, chunks: 0 };
    while lb.read_from(&mut reader).expect("reading from memory") > 0 {
        if let Some(block) = lb.take_lines(spans) {
            pass.lines += spans.len() as u64;
            pass.line_bytes += spans.iter().map(|s| s.len as u64).sum::<u64>();
            if in_flight > 0 {
                held.push_back(block);
                if held.len() > in_flight {
                    held.pop_front();
                }
            }
            // else: acknowledged, dropped here
        }
        spans.clear();
    }
    held.clear();
    pass.chunks = lb.chunks_allocated();
    pass
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let mut held = VecDeque::with_capacity(IN_FLIGHT + 1);
    let mut spans = Vec::new();
    let sinks = [("drop", 0), ("in_flight_64", IN_FLIGHT)];

    // Check the work is the work: every line comes out, whole.
    for (name, in_flight) in sinks {
        let pass = split_all(&fx.data, in_flight, &mut held, &mut spans);
        assert_eq!(pass.lines, fx.lines, "{name}: lines");
        assert_eq!(pass.line_bytes, fx.data.len() as u64 - fx.lines, "{name}: line bytes");
        eprintln!(
            "split/{name}: {} bytes, {} lines, {} chunks of {} KiB allocated per pass",
            fx.data.len(),
            fx.lines,
            pass.chunks,
            SplitConfig::default().chunk_bytes >> 10,
        );
    }

    let units =
        [("split_bytes", Throughput::Bytes(fx.data.len() as u64)), ("split_lines", Throughput::Elements(fx.lines))];
    for (group_name, throughput) in units {
        let mut group = c.benchmark_group(group_name);
        // One iteration is a whole 32 MiB pass (milliseconds): take the same
        // number of iterations per sample instead of criterion's 1..=n ramp.
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(throughput);
        for (name, in_flight) in sinks {
            group.bench_function(name, |b| {
                b.iter(|| black_box(split_all(&fx.data, in_flight, &mut held, &mut spans).lines))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Short by default so CI can run it; the command line overrides these.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
