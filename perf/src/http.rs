//! `wait-total` and `http-latency`: the search side of the single-host
//! measurement (`perf/single.sh`), over plain HTTP/1.1 on a kept-alive
//! connection (std only: no HTTP client crate in the harness).
//!
//! - `wait-total`: polls `/api/search?…&size=1` until its `total` reaches
//!   `--expect`; reports how long that took from `--t0-ns` (a
//!   CLOCK_REALTIME time in ns, as `date +%s%N` gives).
//! - `http-latency`: sends `--n` GETs of one path (after `--warmup` more) and
//!   reports the median, p99 and maximum latency in ms.

use crate::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One kept-alive connection.
struct Conn {
    r: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    fn open(host: &str) -> Result<Conn, String> {
        let s = TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120))).ok();
        s.set_nodelay(true).ok();
        Ok(Conn { r: BufReader::new(s), host: host.to_string() })
    }

    /// GET `path`: status and body.
    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        write!(self.r.get_mut(), "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.r.read_line(&mut line).map_err(|e| e.to_string())?;
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            self.r.read_line(&mut line).map_err(|e| e.to_string())?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.ok_or("no content-length")?;
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

/// `http://host:port/path` -> (`host:port`, `/path`).
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or(format!("{url}: only http:// URLs"))?;
    let slash = rest.find('/').unwrap_or(rest.len());
    Ok((rest[..slash].to_string(), if slash == rest.len() { "/".into() } else { rest[slash..].to_string() }))
}

fn total_of(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["total"].as_u64()
}

pub fn wait_total(args: &Args) -> Result<(), String> {
    let (host, path) = split_url(args.req("--url")?)?;
    let expect: u64 = args.num("--expect", None)?;
    let t0_ns: u128 = args.num("--t0-ns", None)?;
    let timeout = Duration::from_secs(args.num("--timeout-s", Some(3600))?);
    let started = Instant::now();
    let mut seen = 0;
    loop {
        let got = Conn::open(&host)
            .and_then(|mut c| c.get(&path))
            .ok()
            .and_then(|(s, b)| (s == 200).then(|| total_of(&b)).flatten());
        if let Some(n) = got {
            if n != seen {
                eprintln!("wait-total: {n} of {expect} ({:.0} s)", started.elapsed().as_secs_f64());
                seen = n;
            }
            if n >= expect {
                break;
            }
        }
        if started.elapsed() > timeout {
            return Err(format!("only {seen} of {expect} after {timeout:?}"));
        }
        // Each poll counts the whole index: not too often.
        std::thread::sleep(Duration::from_millis(500));
    }
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_nanos();
    let secs = (now_ns - t0_ns) as f64 / 1e9;
    println!("RESULT total={seen} seconds={secs:.3} lines_per_s={:.0}", seen as f64 / secs);
    Ok(())
}

pub fn latency(args: &Args) -> Result<(), String> {
    let (host, path) = split_url(args.req("--url")?)?;
    let n: usize = args.num("--n", Some(200))?;
    let warmup: usize = args.num("--warmup", Some(10))?;
    let mut c = Conn::open(&host)?;
    let mut ms = Vec::with_capacity(n);
    let mut total = None;
    for i in 0..warmup + n {
        let t = Instant::now();
        let (status, body) = c.get(&path)?;
        let el = t.elapsed().as_secs_f64() * 1e3;
        if status != 200 {
            return Err(format!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        total = total_of(&body);
        if i >= warmup {
            ms.push(el);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!(
        "RESULT n={n} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} total={}",
        q(0.50),
        q(0.99),
        ms[ms.len() - 1],
        total.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
    );
    Ok(())
}
