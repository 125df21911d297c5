//! The torture suite's helpers (`perf/torture.sh`): a paced writer of
//! numbered lines over many files, an independent counter (a plain Kafka
//! consumer from the earliest offsets, Elasticsearch `_count` and
//! a scroll over every document), and a TCP proxy that drops every
//! connection while a flag file exists (Elasticsearch "unreachable").

use crate::Args;
use rdkafka::message::Message;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Line `n` of file `f`: `f` and `n` parse back, the rest pads to ~150 bytes.
fn line(f: u32, n: u64, out: &mut Vec<u8>) {
    let pad = (n * 7919 + u64::from(f) * 31) % 80;
    let _ = write!(out, "torture f={f} n={n:010} GET /api/v1/items/{} 200 ", n * 13);
    out.extend(std::iter::repeat_n(b'x', pad as usize));
    out.push(b'\n');
}

/// `(f, n)` of a line, `None` for anything else.
fn parse(v: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let f = s.split("f=").nth(1)?.split(' ').next()?.parse().ok()?;
    let n = s.split("n=").nth(1)?.split(' ').next()?.parse().ok()?;
    Some((f, n))
}

/// `torture-write --dir D --files N --lines L --secs S [--rotate-ms MS]`:
/// appends `L` lines to each of `N` files `D/f<i>.log`, evenly over `S`
/// seconds (10 ms steps); with `--rotate-ms`, every MS renames each file to
/// `f<i>.log.<k>` (outside the `*.log` glob) and starts a new one.
/// Writes `D/written` (total lines) at the end.
pub fn write(args: &Args) -> Result<(), String> {
    let dir = PathBuf::from(args.req("--dir")?);
    let files: u32 = args.num("--files", None)?;
    let lines: u64 = args.num("--lines", None)?;
    let secs: f64 = args.num("--secs", None)?;
    let rotate_ms: u64 = args.num("--rotate-ms", Some(0))?;
    let t0 = Instant::now();
    let mut done = vec![0u64; files as usize];
    let mut buf = Vec::with_capacity(1 << 20);
    let mut last_rotate = Instant::now();
    let mut rotations = 0u64;
    let open = |f: u32| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("f{f}.log")))
            .map_err(|e| e.to_string())
    };
    let mut handles: Vec<std::fs::File> = (0..files).map(open).collect::<Result<_, _>>()?;
    loop {
        let frac = (t0.elapsed().as_secs_f64() / secs).min(1.0);
        let target = (lines as f64 * frac) as u64;
        for f in 0..files {
            let i = f as usize;
            buf.clear();
            while done[i] < target {
                line(f, done[i], &mut buf);
                done[i] += 1;
            }
            if !buf.is_empty() {
                handles[i].write_all(&buf).map_err(|e| e.to_string())?;
            }
        }
        if rotate_ms > 0 && last_rotate.elapsed() >= Duration::from_millis(rotate_ms) {
            rotations += 1;
            for f in 0..files {
                let p = dir.join(format!("f{f}.log"));
                std::fs::rename(&p, dir.join(format!("f{f}.log.{rotations}"))).map_err(|e| e.to_string())?;
                handles[f as usize] = open(f)?;
            }
            last_rotate = Instant::now();
        }
        if frac >= 1.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total: u64 = done.iter().sum();
    std::fs::write(dir.join("written"), total.to_string()).map_err(|e| e.to_string())?;
    println!("RESULT written={total} rotations={rotations} secs={:.1}", t0.elapsed().as_secs_f64());
    Ok(())
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(url: &str, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).map_err(|e| format!("{hostport}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or("no status")?;
    let mut rest = &raw[split + 4..];
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).map_err(|e| e.to_string())?.trim(), 16)
                .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 4 + n..];
        }
        out
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `torture-count --brokers B --topic T --written N [--es URL --index I]`:
/// prints `RESULT written= kafka= kafka_distinct= kafka_dups= es_count= es_docs=
/// es_ids= es_dup_contents= lost=` and fails on a lost line or a duplicate
/// document. Lost: lines in neither the topic (nor, with `--es`, the index).
pub fn count(args: &Args) -> Result<(), String> {
    let brokers = args.req("--brokers")?;
    let topic = args.req("--topic")?;
    let written: u64 = args.num("--written", None)?;
    let idle = Duration::from_millis(args.num("--idle-ms", Some(5_000))?);
    let (c, _) = crate::count::assigned_from_start(brokers, topic, "torture-count")?;
    let mut seen: HashMap<(u32, u64), u32> = HashMap::with_capacity(written as usize);
    let (mut records, mut odd) = (0u64, 0u64);
    let mut last = Instant::now();
    while last.elapsed() < if records >= written { Duration::from_secs(2) } else { idle } {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                match parse(m.payload().unwrap_or_default()) {
                    Some(k) => *seen.entry(k).or_default() += 1,
                    None => odd += 1,
                }
                last = Instant::now();
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => {}
        }
    }
    let kafka_distinct = seen.len() as u64;
    let mut row = format!(
        "written={written} kafka={records} kafka_distinct={kafka_distinct} kafka_dups={} odd={odd}",
        records - kafka_distinct - odd
    );
    let mut lost = written.saturating_sub(kafka_distinct);
    let mut dup_docs = 0u64;
    if let (Some(url), Some(index)) = (args.opt("--es"), args.opt("--index")) {
        http(url, "POST", &format!("/{index}/_refresh"), "")?;
        let (_, b) = http(url, "GET", &format!("/{index}/_count"), "")?;
        let v: serde_json::Value = serde_json::from_str(&b).map_err(|e| format!("_count: {e}: {b}"))?;
        let es_count = v["count"].as_u64().ok_or(format!("_count: {b}"))?;
        // Every document, page by page: a scroll in index order (search_after
        // over path and offset skips documents at a page boundary whose sort
        // values tie, and rotated files share a path and reuse offsets).
        let mut ids = std::collections::HashSet::with_capacity(es_count as usize);
        let mut contents: HashMap<(u32, u64), u32> = HashMap::with_capacity(es_count as usize);
        let mut docs = 0u64;
        let (mut code, mut b) =
            http(url, "POST", &format!("/{index}/_search?scroll=5m"), r#"{"size":5000,"sort":["_doc"]}"#)?;
        loop {
            let v: serde_json::Value = serde_json::from_str(&b).map_err(|e| format!("_search {code}: {e}"))?;
            let hits = v["hits"]["hits"].as_array().ok_or(format!("_search {code}: {b}"))?;
            if hits.is_empty() {
                break;
            }
            for h in hits {
                docs += 1;
                ids.insert(h["_id"].as_str().unwrap_or_default().to_string());
                if let Some(k) = h["_source"]["message"].as_str().and_then(|m| parse(m.as_bytes())) {
                    *contents.entry(k).or_default() += 1;
                }
            }
            let sid = v["_scroll_id"].as_str().ok_or("no _scroll_id")?;
            let q = serde_json::json!({"scroll": "5m", "scroll_id": sid});
            (code, b) = http(url, "POST", "/_search/scroll", &q.to_string())?;
        }
        dup_docs = docs - contents.len() as u64;
        lost = written.saturating_sub(contents.len() as u64);
        row.push_str(&format!(
            " es_count={es_count} es_docs={docs} es_ids={} es_distinct={} es_dup_contents={dup_docs}",
            ids.len(),
            contents.len()
        ));
        if es_count != docs {
            dup_docs = dup_docs.max(1);
            row.push_str(" es_count_mismatch=1");
        }
    }
    row.push_str(&format!(" lost={lost}"));
    println!("RESULT {row}");
    if lost > 0 || dup_docs > 0 {
        return Err(format!("{lost} lost, {dup_docs} duplicate documents"));
    }
    Ok(())
}

/// `drop-proxy --port P --upstream HOST:PORT --flag FILE`: forwards TCP
/// connections; while `FILE` exists, refuses new ones and cuts the open ones.
pub fn drop_proxy(args: &Args) -> Result<(), String> {
    let port: u16 = args.num("--port", None)?;
    let upstream = args.req("--upstream")?.to_string();
    let flag = PathBuf::from(args.req("--flag")?);
    let l = TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    // Bumped each time the flag appears: connections of an older epoch end.
    let epoch = Arc::new(AtomicU64::new(0));
    {
        let (epoch, flag) = (epoch.clone(), flag.clone());
        std::thread::spawn(move || {
            let mut was = false;
            loop {
                let now = flag.exists();
                if now && !was {
                    epoch.fetch_add(1, Ordering::SeqCst);
                }
                was = now;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    for c in l.incoming() {
        let Ok(c) = c else { continue };
        if flag.exists() {
            let _ = c.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(u) = TcpStream::connect(&upstream) else { continue };
        let mine = epoch.load(Ordering::SeqCst);
        for (mut a, mut b) in [(c.try_clone().unwrap(), u.try_clone().unwrap()), (u, c)] {
            let (epoch, flag) = (epoch.clone(), flag.clone());
            std::thread::spawn(move || pipe(&mut a, &mut b, &epoch, mine, &flag));
        }
    }
    Ok(())
}

fn pipe(a: &mut TcpStream, b: &mut TcpStream, epoch: &AtomicU64, mine: u64, _flag: &Path) {
    a.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if epoch.load(Ordering::SeqCst) != mine {
            break;
        }
        match a.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if b.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}
