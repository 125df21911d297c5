//! The HTTP server under hostile input and without credentials: a 1 MiB
//! line of one repeated word searched by several clients at once (bounded
//! time, `/health/live` still fast, answers truncated with the whole line
//! one request away), authentication (basic with an argon2id hash from
//! `logcollect hash-password`, bearer tokens, the lockout), and the refusal
//! to listen beyond loopback without authentication.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The bound stated for one search over the 1 MiB line, four at once, in
/// the debug build the tests run (measured here: 12-16 ms each, four at
/// once, with /health/live answering in under 5 ms meanwhile).
const BIG_SEARCH_BOUND: Duration = Duration::from_secs(2);

fn run_config(dir: &Path, port: u16, collect: &str, http: &str) -> String {
    format!(
        "[agent]\ndata_dir = {}\nhost = h\nread_from = beginning\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n\
         [index]\ncommit_interval_ms = 200\n[http]\nlisten = 127.0.0.1:{port}\n{http}\n[collect]\n{collect}\n",
        dir.join("data").display()
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

fn search(port: u16, q: &str) -> (u16, Value) {
    let r = client().get(format!("http://127.0.0.1:{port}/api/search?q={q}&size=100")).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn a_1_mib_line_of_one_word_is_searched_within_a_bound_while_health_stays_fast() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let big = "error ".repeat((1 << 20) / 6 - 1);
    let mut f = std::fs::File::create(logs.join("big.log")).unwrap();
    writeln!(f, "{big}").unwrap();
    for i in 0..3 {
        writeln!(f, "error small line {i}").unwrap();
    }
    drop(f);
    let port = free_port();
    let collect = format!("big = {}/big.log", logs.display());
    // Whole, not split at the default max_line_bytes (960 KiB).
    let cfg =
        run_config(dir.path(), port, &collect, "").replacen("[agent]\n", "[agent]\nmax_line_bytes = 2097152\n", 1);
    let _run = Agent::start_as(dir.path(), "run", "run.ini", &cfg);
    wait_for_port(port, "logcollect run");
    assert!(wait_until(Duration::from_secs(60), || search(port, "small").1["total"].as_u64() == Some(3)), "indexed");

    // Four searches for the word at once, /health/live polled meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                let r = client().get(format!("http://127.0.0.1:{port}/health/live")).send().unwrap();
                assert_eq!(r.status().as_u16(), 200);
                worst = worst.max(t.elapsed());
                thread::sleep(Duration::from_millis(50));
            }
            worst
        })
    };
    let searches: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let t = Instant::now();
                let (status, body) = search(port, "error");
                (status, body, t.elapsed())
            })
        })
        .collect();
    let mut big_id = String::new();
    for s in searches {
        let (status, body, took) = s.join().unwrap();
        eprintln!("search for the repeated word: {took:?}, {status}");
        assert_eq!(status, 200, "{body}");
        assert!(took < BIG_SEARCH_BOUND, "a search took {took:?}");
        let hits = body["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 4);
        let hit = hits.iter().find(|h| h["truncated"] == Value::Bool(true)).expect("the big line is truncated");
        let shown = hit["message"].as_str().unwrap().len();
        assert!(shown <= 64 << 10, "an answer carries {shown} bytes of the line");
        big_id = hit["id"].as_str().unwrap().to_string();
    }
    stop.store(true, Ordering::Release);
    let worst = health.join().unwrap();
    eprintln!("slowest /health/live meanwhile: {worst:?}");
    assert!(worst < Duration::from_secs(1), "/health/live took {worst:?}");

    // The whole line, one request away.
    let r = client().get(format!("http://127.0.0.1:{port}/api/line?id={big_id}")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let line: Value = r.json().unwrap();
    assert_eq!(line["message"].as_str().unwrap().trim_end(), big.trim_end());
}

/// `logcollect hash-password` of `password`.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    phc
}

#[test]
fn basic_and_bearer_authentication_with_a_lockout_and_health_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "hello secret world\n").unwrap();
    let phc = hash_password("s3cret pass");
    let token = "tok-0123456789";
    let token_hash: String = Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let port = free_port();
    let http = format!("users = admin:{phc}\ntokens = {token_hash}\n");
    let collect = format!("a = {}/a.log", logs.display());
    let _run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, &collect, &http));
    wait_for_port(port, "logcollect run");
    let url = format!("http://127.0.0.1:{port}/api/search?q=hello");

    let anonymous = client().get(&url).send().unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let found = |r: reqwest::blocking::Response| {
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().unwrap()["total"].as_u64()
    };
    assert!(wait_until(Duration::from_secs(30), || {
        found(client().get(&url).basic_auth("admin", Some("s3cret pass")).send().unwrap()) == Some(1)
    }));
    assert_eq!(found(client().get(&url).bearer_auth(token).send().unwrap()), Some(1));
    for path in ["/", "/metrics"] {
        let r = client().get(format!("http://127.0.0.1:{port}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} needs credentials");
    }
    let health = client().get(format!("http://127.0.0.1:{port}/health/live")).send().unwrap();
    assert_eq!(health.status().as_u16(), 200, "health stays open");

    // Wrong credentials: 401 (each after a delay), then 429 for the address.
    let t = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(client().get(&url).basic_auth("admin", Some("wrong")).send().unwrap().status().as_u16());
    }
    eprintln!("11 wrong passwords: {statuses:?} in {:?}", t.elapsed());
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[10], 429);
    assert!(t.elapsed() >= Duration::from_secs(4), "failures are slowed down");
    assert_eq!(client().get(&url).bearer_auth("not-the-token").send().unwrap().status().as_u16(), 429);
}

#[test]
fn listening_beyond_loopback_without_authentication_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.ini");
    let port = free_port();
    std::fs::write(
        &cfg,
        format!("[agent]\ndata_dir = {}\n[http]\nlisten = 0.0.0.0:{port}\n", dir.path().join("data").display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect")).args(["run", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("http.listen"), "{err}");
}

/// Reads `s` until the server closes it (end of stream or reset), for at
/// most `limit`: how long that took, `None` if it stayed open.
fn closed_after(s: &mut std::net::TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn https_with_a_token_a_handshake_and_header_timeout_and_a_connection_cap() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "hello over tls\n").unwrap();
    let tls = TlsFiles::generate(dir.path());
    let token = "tok-tls-0123456789";
    let token_hash: String = Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let port = free_port();
    let http = format!(
        "tokens = {token_hash}\ntls_cert = {}\ntls_key = {}\nheader_timeout_ms = 1000\nmax_connections = 4\n",
        tls.server_cert.display(),
        tls.server_key.display()
    );
    let collect = format!("a = {}/a.log", logs.display());
    let _run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, &collect, &http));
    wait_for_port(port, "logcollect run");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).unwrap()).unwrap();
    let https = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/api/search?q=hello");
    assert!(wait_until(Duration::from_secs(30), || {
        let r = https.get(&url).bearer_auth(token).send().unwrap();
        r.status().as_u16() == 200 && r.json::<Value>().unwrap()["total"].as_u64() == Some(1)
    }));
    assert_eq!(https.get(&url).send().unwrap().status().as_u16(), 401, "no token");
    let plain = client().get(format!("http://127.0.0.1:{port}/health/live")).send();
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true), "plain HTTP on the TLS port is not served");

    // `logcollect status` with the CA and a token file; without the token a
    // 401 that says what to give.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let status = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_logcollect"))
            .args(["status", "--once", "--addr", &format!("https://127.0.0.1:{port}"), "--ca-file"])
            .arg(&tls.ca)
            .args(extra)
            .env_remove("LOGCOLLECT_TOKEN")
            .output()
            .unwrap()
    };
    let out = status(&["--token-file", token_file.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("logcollect run"),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = status(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401") && err.contains("--token-file"), "{err}");

    // Four connections that never start the TLS handshake take every slot:
    // a real request waits until the handshake timeout (1 s) cuts them.
    let started = Instant::now();
    let mut idle: Vec<_> = (0..4).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    let r = https.get(format!("https://127.0.0.1:{port}/health/live")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "served after {waited:?}: before the idle connections were cut");
    for s in &mut idle {
        let closed = closed_after(s, started, Duration::from_secs(10));
        assert!(closed.is_some_and(|d| d < Duration::from_secs(5)), "an idle connection was closed: {closed:?}");
    }
}

#[test]
fn a_request_whose_headers_trickle_in_is_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = "header_timeout_ms = 1000\n";
    let _run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, "", http));
    wait_for_port(port, "logcollect run");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    // One header byte every 200 ms: never a whole header block.
    let mut cut = None;
    for _ in 0..40 {
        if s.write_all(b"X").is_err() {
            cut = Some(started.elapsed());
            break;
        }
        if closed_after(&mut s, Instant::now(), Duration::from_millis(200)).is_some() {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the connection stayed open for 8 s of trickling headers");
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(4), "cut after {cut:?}");
    // The server still serves others.
    let r = client().get(format!("http://127.0.0.1:{port}/health/live")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
