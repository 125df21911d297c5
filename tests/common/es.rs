//! The Elasticsearch side of end-to-end tests: noida-db (an
//! Elasticsearch-compatible server) on a free port, a small client for
//! `_count` / `_search` / `_refresh`, and a fault-injecting HTTP proxy for
//! the answers a real server will not give on demand (a 503 for a whole
//! request, a 413 for a large body).

use super::{die_with_parent, free_port, python_package_file, wait_for_port};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn noida_bin() -> PathBuf {
    let p =
        std::env::var_os("NOIDA_BIN").map(PathBuf::from).unwrap_or_else(|| python_package_file("noida_db", "noida-db"));
    assert!(p.exists(), "noida-db not found at {} (scripts/test.sh installs it)", p.display());
    p
}

/// A noida-db Elasticsearch server with its data under `dir`.
pub struct Noida {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    http: reqwest::blocking::Client,
}

impl Noida {
    pub fn start(dir: &Path) -> Noida {
        let mut n = Noida {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        n.restart();
        n
    }

    /// Starts the server again on the same port and data dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("noida.log")).unwrap();
        let child = die_with_parent(
            Command::new(noida_bin())
                .args([
                    "start",
                    "--only",
                    "elasticsearch",
                    "--elasticsearch-port",
                    &self.port.to_string(),
                    "--data-dir",
                ])
                .arg(self.dir.join("noida-data"))
                .stdout(Stdio::null())
                .stderr(log),
        )
        .spawn()
        .expect("start noida-db");
        self.child = Some(child);
        wait_for_port(self.port, "noida-db");
        // The port opens before the HTTP side answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.http.get(self.url()).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "noida-db did not answer GET /");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9: the server is gone, its port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the server stalls with its sockets open.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}/{path}", self.url()));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} /{path}: {e}"));
        resp.json().unwrap_or_else(|e| panic!("{method} /{path}: not JSON: {e}"))
    }

    pub fn refresh(&self, index: &str) {
        self.send(reqwest::Method::POST, &format!("{index}/_refresh"), None);
    }

    /// Documents in `index` (a name or pattern), after a refresh; 0 when
    /// the index does not exist yet.
    pub fn count(&self, index: &str) -> u64 {
        self.refresh(index);
        let v = self.send(reqwest::Method::GET, &format!("{index}/_count"), None);
        v["count"].as_u64().unwrap_or(0)
    }

    pub fn search(&self, index: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, &format!("{index}/_search"), Some(body))
    }

    pub fn put_settings(&self, index: &str, settings: Value) -> Value {
        self.send(reqwest::Method::PUT, &format!("{index}/_settings"), Some(settings))
    }

    /// Every document's `_source` in `index`, in (path, offset) order, read
    /// page by page with `search_after`.
    pub fn dump(&self, index: &str) -> Vec<Value> {
        self.refresh(index);
        let mut out = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": 5000,
                "sort": [{"log.file.path": "asc"}, {"log.offset": "asc"}],
            });
            if let Some(a) = &after {
                body["search_after"] = a.clone();
            }
            let v = self.search(index, body);
            let hits = v["hits"]["hits"].as_array().unwrap_or_else(|| panic!("search {index}: {v}")).clone();
            if hits.is_empty() {
                return out;
            }
            after = Some(hits.last().unwrap()["sort"].clone());
            out.extend(hits.into_iter().map(|h| {
                let mut src = h["_source"].clone();
                src["_id"] = h["_id"].clone();
                src
            }));
        }
    }

    /// Polls until `index` holds `want` documents, then keeps watching for
    /// `quiet` to see that no more arrive. Returns the final count.
    pub fn wait_count(&self, index: &str, want: u64, quiet: Duration, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut n = self.count(index);
        while n < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            n = self.count(index);
        }
        if n >= want {
            std::thread::sleep(quiet);
            n = self.count(index);
        }
        n
    }
}

impl Drop for Noida {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// What the proxy does with the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Answer every request with this status and a JSON error, forwarding nothing.
    Status(u16),
    /// Answer 413 to bodies over this many bytes; forward the rest.
    MaxBody(usize),
    /// Down: close every connection without an answer (a client sees a
    /// reset or an empty reply, as from a server that is gone). Unlike
    /// killing noida-db, which loses documents it acknowledged just before
    /// (it is not durable across a kill), the upstream keeps everything.
    Down,
}

/// An HTTP/1.1 proxy in front of one upstream that can be told to fail.
/// Enough HTTP for the transfer's requests: Content-Length bodies,
/// keep-alive connections; each forwarded request uses a fresh upstream
/// connection with `Connection: close`.
pub struct FaultProxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
    /// Requests answered by the proxy itself (faults), and forwarded.
    pub faulted: Arc<AtomicU64>,
    pub forwarded: Arc<AtomicU64>,
    /// Largest body forwarded to the upstream.
    pub largest_forwarded: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = FaultProxy {
            port,
            fault: Arc::new(Mutex::new(Fault::None)),
            stop: Arc::new(AtomicBool::new(false)),
            faulted: Arc::default(),
            forwarded: Arc::default(),
            largest_forwarded: Arc::default(),
        };
        let (fault, stop, faulted, forwarded, largest) =
            (p.fault.clone(), p.stop.clone(), p.faulted.clone(), p.forwarded.clone(), p.largest_forwarded.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if matches!(*fault.lock().unwrap(), Fault::Down) {
                            faulted.fetch_add(1, Ordering::Relaxed);
                            drop(conn);
                            continue;
                        }
                        conn.set_nonblocking(false).unwrap();
                        let (fault, faulted, forwarded, largest) =
                            (fault.clone(), faulted.clone(), forwarded.clone(), largest.clone());
                        std::thread::spawn(move || {
                            let _ = serve(conn, upstream_port, &fault, &faulted, &forwarded, &largest);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        p
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    fault: &Mutex<Fault>,
    faulted: &AtomicU64,
    forwarded: &AtomicU64,
    largest: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        // Request line and headers.
        let mut head = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(()); // client closed
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") {
                continue;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body)?;
        let f = *fault.lock().unwrap();
        if matches!(f, Fault::Down) {
            faulted.fetch_add(1, Ordering::Relaxed);
            return Ok(()); // closed without an answer
        }
        let answer = match f {
            Fault::Status(code) => Some(code),
            Fault::MaxBody(max) if body.len() > max => Some(413),
            _ => None,
        };
        if let Some(code) = answer {
            faulted.fetch_add(1, Ordering::Relaxed);
            let text = format!("{{\"error\":\"injected by the test proxy\",\"status\":{code}}}");
            write!(
                out,
                "HTTP/1.1 {code} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            )?;
            continue;
        }
        forwarded.fetch_add(1, Ordering::Relaxed);
        largest.fetch_max(body.len(), Ordering::Relaxed);
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(&head)?;
        up.write_all(b"connection: close\r\n\r\n")?;
        up.write_all(&body)?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp)?;
        // Re-frame the answer for a keep-alive client: drop the upstream's
        // connection header, keep its body framing.
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
        let (rhead, rbody) = resp.split_at(split);
        let rhead = String::from_utf8_lossy(rhead);
        let mut fixed = String::new();
        let mut has_length = false;
        let mut chunked = false;
        for l in rhead.split("\r\n").filter(|l| !l.is_empty()) {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("connection:") {
                continue;
            }
            has_length |= lower.starts_with("content-length:");
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            fixed.push_str(l);
            fixed.push_str("\r\n");
        }
        if !has_length && !chunked {
            fixed.push_str(&format!("content-length: {}\r\n", rbody.len()));
        }
        fixed.push_str("\r\n");
        out.write_all(fixed.as_bytes())?;
        out.write_all(rbody)?;
    }
}
