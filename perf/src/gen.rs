//! `gen`: a deterministic file of realistic log lines.
//!
//! Four kinds, mixed like a busy host's logs: web access lines, application
//! lines, JSON lines and the odd error. Lengths vary (roughly 110–330 bytes,
//! mean near 200); ids, numbers and timestamps vary per line so lz4 sees
//! text about as compressible as real logs, not a repeated constant. Same
//! `--seed` and `--bytes`, same file, byte for byte.
//!
//! The file holds only whole lines and is at most `--bytes` long. Lines are
//! built into one buffer and written in large blocks (~1 GB/s here).

use crate::Args;
use std::fs::File;
use std::io::Write;
use std::time::Instant;

/// splitmix64: tiny, fast, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A wall clock that only moves forward, a few ms per line.
struct Clock {
    day: u32,
    h: u32,
    m: u32,
    s: u32,
    ms: u32,
}

impl Clock {
    fn advance(&mut self, ms: u32) {
        self.ms += ms;
        self.s += self.ms / 1000;
        self.ms %= 1000;
        self.m += self.s / 60;
        self.s %= 60;
        self.h += self.m / 60;
        self.m %= 60;
        self.day += self.h / 24;
        self.h %= 24;
        // Keep it a valid May date: wrap after the 31st.
        if self.day > 31 {
            self.day = 1;
        }
    }
}

/// Appends to the output buffer.
struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn s(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn n(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&tmp[i..]);
    }

    /// `v` zero-padded to `width` digits.
    fn pad(&mut self, v: u64, width: usize) {
        let mut tmp = [b'0'; 20];
        let mut i = tmp.len();
        let mut v = v;
        while v > 0 {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let start = (tmp.len() - width).min(i);
        self.buf.extend_from_slice(&tmp[start..]);
    }

    /// `digits` lowercase hex digits of `v`.
    fn hex(&mut self, v: u64, digits: usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in (0..digits).rev() {
            self.buf.push(HEX[((v >> (4 * (i % 16))) & 0xf) as usize]);
        }
    }

    /// `cents` as `12.34`.
    fn money(&mut self, cents: u64) {
        self.n(cents / 100);
        self.buf.push(b'.');
        self.pad(cents % 100, 2);
    }

    /// ISO 8601 UTC timestamp.
    fn iso(&mut self, c: &Clock) {
        self.s("2024-05-");
        self.pad(c.day as u64, 2);
        self.buf.push(b'T');
        self.pad(c.h as u64, 2);
        self.buf.push(b':');
        self.pad(c.m as u64, 2);
        self.buf.push(b':');
        self.pad(c.s as u64, 2);
        self.buf.push(b'.');
        self.pad(c.ms as u64, 3);
        self.buf.push(b'Z');
    }

    /// Common Log Format timestamp.
    fn clf(&mut self, c: &Clock) {
        self.pad(c.day as u64, 2);
        self.s("/May/2024:");
        self.pad(c.h as u64, 2);
        self.buf.push(b':');
        self.pad(c.m as u64, 2);
        self.buf.push(b':');
        self.pad(c.s as u64, 2);
        self.s(" +0000");
    }
}

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const RESOURCES: &[&str] = &["users", "orders", "carts", "products", "sessions", "invoices", "search"];
const STATUSES: &[&str] = &["200", "200", "200", "200", "201", "204", "304", "404", "500"];
const AGENTS: &[&str] = &[
    "curl/8.5.0",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
];
const LEVELS: &[&str] = &["INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "WARN "];
const THREADS: &[&str] = &["worker", "http-nio-8080-exec", "kafka-consumer", "scheduler", "pool-3-thread"];
const CLASSES: &[&str] = &[
    "com.shop.order.OrderService",
    "com.shop.cart.CartController",
    "com.shop.payment.PaymentGateway",
    "com.shop.inventory.StockReservation",
    "com.shop.auth.TokenValidator",
    "o.a.k.clients.consumer.internals.ConsumerCoordinator",
];
const ACTIONS: &[&str] = &[
    "processed order",
    "reserved stock for",
    "validated token for",
    "cache miss, loading",
    "committed offsets for",
    "retrying request to upstream after transient failure for",
];
const SERVICES: &[&str] = &["payments", "checkout", "inventory", "search", "notifications"];
const MESSAGES: &[&str] = &[
    "charge captured",
    "refund issued",
    "email queued for delivery",
    "search query served from replica",
    "rate limit close to threshold for tenant",
];
const ERRORS: &[&str] = &[
    "java.net.SocketTimeoutException: Read timed out",
    "org.postgresql.util.PSQLException: ERROR: deadlock detected",
    "java.lang.IllegalStateException: Connection pool shut down",
    "io.grpc.StatusRuntimeException: UNAVAILABLE: upstream connect error or disconnect/reset before headers",
];
const UPSTREAMS: &[&str] = &["inventory-svc:8443", "payments-db:5432", "search-es:9200", "auth:443"];

fn line(o: &mut Out, r: &mut Rng, c: &Clock) {
    let kind = r.below(100);
    if kind < 40 {
        // Web access log.
        o.s("10.");
        o.n(r.below(256));
        o.s(".");
        o.n(r.below(256));
        o.s(".");
        o.n(1 + r.below(254));
        o.s(" - - [");
        o.clf(c);
        o.s("] \"");
        o.s(r.pick(METHODS));
        o.s(" /api/v");
        o.n(1 + r.below(3));
        o.s("/");
        o.s(r.pick(RESOURCES));
        o.s("/");
        o.n(r.below(1_000_000));
        if r.below(2) == 0 {
            o.s("?page=");
            o.n(1 + r.below(40));
            o.s("&limit=50");
        }
        o.s(" HTTP/1.1\" ");
        o.s(r.pick(STATUSES));
        o.s(" ");
        o.n(r.below(60_000));
        o.s(" \"-\" \"");
        o.s(r.pick(AGENTS));
        o.s("\" rt=0.");
        o.pad(r.below(1000), 3);
        o.s(" req=");
        o.hex(r.next(), 16);
    } else if kind < 80 {
        // Application log.
        o.iso(c);
        o.s(" ");
        o.s(r.pick(LEVELS));
        o.s(" [");
        o.s(r.pick(THREADS));
        o.s("-");
        o.n(1 + r.below(16));
        o.s("] ");
        o.s(r.pick(CLASSES));
        o.s(" - ");
        o.s(r.pick(ACTIONS));
        o.s(" id=");
        o.n(r.below(100_000_000));
        o.s(" customer=cust-");
        o.pad(r.below(100_000), 5);
        o.s(" items=");
        o.n(1 + r.below(12));
        o.s(" total=");
        o.money(r.below(50_000));
        o.s(" latency_ms=");
        o.n(r.below(400));
        o.s(" trace=");
        o.hex(r.next(), 16);
    } else if kind < 96 {
        // JSON log.
        o.s("{\"ts\":\"");
        o.iso(c);
        o.s("\",\"level\":\"info\",\"service\":\"");
        let svc = r.pick(SERVICES);
        o.s(svc);
        o.s("\",\"host\":\"");
        o.s(svc);
        o.s("-");
        o.hex(r.next(), 4);
        o.s("-");
        o.n(r.below(8));
        o.s("\",\"msg\":\"");
        o.s(r.pick(MESSAGES));
        o.s("\",\"user_id\":");
        o.n(r.below(10_000_000));
        o.s(",\"amount_cents\":");
        o.n(r.below(100_000));
        o.s(",\"duration_ms\":");
        o.n(r.below(900));
        o.s(",\"trace_id\":\"");
        o.hex(r.next(), 16);
        o.hex(r.next(), 16);
        o.s("\"}");
    } else {
        // Error.
        o.iso(c);
        o.s(" ERROR [");
        o.s(r.pick(THREADS));
        o.s("-");
        o.n(1 + r.below(16));
        o.s("] ");
        o.s(r.pick(CLASSES));
        o.s(" - request failed: ");
        o.s(r.pick(ERRORS));
        o.s(" (upstream=");
        o.s(r.pick(UPSTREAMS));
        o.s(", attempt=");
        o.n(1 + r.below(3));
        o.s("/3) trace=");
        o.hex(r.next(), 16);
    }
    o.buf.push(b'\n');
}

/// Writes lines to `w` until the next one would pass `bytes`. Returns
/// (bytes written, lines written).
pub fn generate(w: &mut impl Write, bytes: u64, seed: u64) -> std::io::Result<(u64, u64)> {
    const BLOCK: usize = 8 << 20;
    let mut r = Rng(seed);
    let mut c = Clock { day: 1, h: 0, m: 0, s: 0, ms: 0 };
    let mut o = Out { buf: Vec::with_capacity(BLOCK + 4096) };
    let (mut written, mut lines) = (0u64, 0u64);
    // Bytes of `o.buf` that are whole lines within the limit.
    let mut keep = 0usize;
    loop {
        line(&mut o, &mut r, &c);
        c.advance(r.below(25) as u32);
        if written + o.buf.len() as u64 > bytes {
            o.buf.truncate(keep);
            written += keep as u64;
            w.write_all(&o.buf)?;
            return Ok((written, lines));
        }
        keep = o.buf.len();
        lines += 1;
        if o.buf.len() >= BLOCK {
            w.write_all(&o.buf)?;
            written += o.buf.len() as u64;
            o.buf.clear();
            keep = 0;
        }
    }
}

/// `gen --bytes N --out FILE [--seed S]`.
pub fn main(args: &Args) -> Result<(), String> {
    let bytes: u64 = args.num("--bytes", None)?;
    let out = args.req("--out")?;
    let seed: u64 = args.num("--seed", Some(1))?;
    let t = Instant::now();
    // Write to a temp name and rename, so an interrupted run leaves no
    // truncated file that looks cached (no fsync: a crash of the machine is
    // not worth the seconds; the run script checks the size anyway).
    let tmp = format!("{out}.tmp");
    let mut f = File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
    let (written, lines) = generate(&mut f, bytes, seed).map_err(|e| format!("{tmp}: {e}"))?;
    drop(f);
    std::fs::rename(&tmp, out).map_err(|e| format!("{out}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "gen: {written} bytes, {lines} lines (mean {:.1} bytes/line incl. newline) in {secs:.2}s",
        written as f64 / lines.max(1) as f64
    );
    println!("RESULT bytes={written} lines={lines} secs={secs:.3}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_within_the_limit_and_deterministic() {
        for limit in [0u64, 1, 150, 10_000, 3 << 20] {
            let mut a = Vec::new();
            let (n, lines) = generate(&mut a, limit, 7).unwrap();
            assert_eq!(n, a.len() as u64);
            assert!(n <= limit);
            assert_eq!(lines as usize, a.iter().filter(|&&b| b == b'\n').count());
            assert!(a.is_empty() || a.ends_with(b"\n"));
            let mut b = Vec::new();
            generate(&mut b, limit, 7).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn lines_are_about_200_bytes_and_vary() {
        let mut a = Vec::new();
        let (n, lines) = generate(&mut a, 4 << 20, 1).unwrap();
        let mean = n as f64 / lines as f64;
        assert!((170.0..240.0).contains(&mean), "mean {mean}");
        let lens: Vec<usize> = a.split(|&b| b == b'\n').map(<[u8]>::len).collect();
        let (min, max) = (lens[..lens.len() - 1].iter().min(), lens.iter().max());
        assert!(min < Some(&150) && max > Some(&260), "{min:?} {max:?}");
    }
}
