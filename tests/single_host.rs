//! End-to-end scenarios for `logcollect run`: files -> the embedded index
//! (or Kafka, or Elasticsearch) -> the search API and page, read back over
//! real HTTP, and the page driven in a real headless Chromium.

mod common;

use common::es::Noida;
use common::*;
use logcollect::query::{self, DocView};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const HOST: &str = "test-host";

/// `q=…&from=…` with every value percent-encoded.
fn qs(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// GET `path` on the run's HTTP port: status and JSON body.
fn get(port: u16, path: &str) -> (u16, Value) {
    let r = client().get(format!("http://127.0.0.1:{port}{path}")).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

/// Total matches of `q` over all time, or `None` while the server is down.
fn total(port: u16, q: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{port}/api/search?{}", qs(&[("q", q), ("from", "0"), ("size", "1")]));
    let r = client().get(url).send().ok()?;
    let v: Value = r.json().ok()?;
    v["total"].as_u64()
}

/// A config for `logcollect run` with data under `dir/data`, the search
/// page on `port`, and `extra` sections.
fn run_config(dir: &Path, port: u16, collect: &str, extra: &str) -> String {
    format!(
        "[agent]\ndata_dir = {}\nhost = {HOST}\nread_from = beginning\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n\
         [index]\ncommit_interval_ms = 200\n[http]\nlisten = 127.0.0.1:{port}\n{extra}\n[collect]\n{collect}\n",
        dir.join("data").display()
    )
}

fn start_run(dir: &Path, config: &str) -> Agent {
    Agent::start_as(dir, "run", "run.ini", config)
}

fn wait_total(port: u16, q: &str, want: u64, timeout: Duration) -> Option<u64> {
    let mut last = None;
    wait_until(timeout, || {
        last = total(port, q);
        last == Some(want)
    });
    last
}

#[test]
fn kill_9_while_indexing_then_restart_gives_exactly_one_document_per_line() {
    const FILES: usize = 3;
    const LINES: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let cfg = run_config(dir.path(), port, &format!("app = {}/*.log", logs.display()), "");
    let mut run = start_run(dir.path(), &cfg);
    let writers: Vec<_> = (0..FILES)
        .map(|f| {
            let path = logs.join(format!("f{f}.log"));
            thread::spawn(move || {
                for k in 0..20 {
                    append_lines(&path, f, k * LINES / 20, (k + 1) * LINES / 20);
                    thread::sleep(Duration::from_millis(150));
                }
            })
        })
        .collect();
    // kill -9 three times while the files grow and the index commits.
    for k in 0..3 {
        thread::sleep(Duration::from_millis(700 + 300 * k));
        let before = total(port, "");
        run.kill9();
        eprintln!("kill -9 #{k} with {before:?} documents searchable");
        run.restart();
    }
    for w in writers {
        w.join().unwrap();
    }
    let want = (FILES * LINES) as u64;
    let t = Instant::now();
    let got = wait_total(port, "", want, Duration::from_secs(180));
    eprintln!("{got:?} documents after {:?}", t.elapsed());
    assert_eq!(got, Some(want), "exactly one document per line");
    // Nothing arrives late: still exact a moment later.
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(total(port, ""), Some(want));
    for f in 0..FILES {
        let path = logs.join(format!("f{f}.log"));
        let q = format!("path:\"{}\"", path.display());
        assert_eq!(total(port, &q), Some(LINES as u64), "{q}");
    }
    // Spot checks of content: one line, found by its words, intact.
    for (f, i) in [(0, 0), (1, 12_345), (2, LINES - 1)] {
        let q = format!("\"file={f} seq={i:09}\"");
        let (status, page) = get(port, &format!("/api/search?{}", qs(&[("q", &q), ("from", "0")])));
        assert_eq!(status, 200);
        let hits = page["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{q}: {page}");
        assert_eq!(hits[0]["message"], line(f, i), "{q}");
        assert_eq!(hits[0]["host"], HOST);
        assert_eq!(hits[0]["topic"], "app");
    }
    let (code, _) = run.terminate();
    assert_eq!(code, Some(0));
}

/// Lines of the query scenario: varied words, punctuation, Unicode.
fn corpus_line(i: usize) -> String {
    match i % 9 {
        0 => format!("GET /api/v1/items/{i} 200 ok"),
        1 => format!("POST /api/v1/orders 500 Error: disk full on /dev/sda{}", i % 3),
        2 => format!("user Ünïcode-{i} logged in from 10.0.{}.{}", i % 5, i % 7),
        3 => format!("timeout talking to db-{} after {i}ms", i % 4),
        4 => format!("WARN cache miss key=k{}", i % 10),
        5 => "error: connection reset by peer".to_string(),
        6 => "disk almost full, Errors ahead".to_string(),
        7 => format!("ERROR [main] java.lang.NullPointerException at Foo.bar(Foo.java:{i})"),
        _ => format!("2026-11-25T10:00:00Z level=info msg=\"request done\" took={}ms", i % 100),
    }
}

/// A line written: where it is and what it says.
struct Written {
    path: String,
    topic: &'static str,
    offset: u64,
    text: String,
}

/// Writes `rounds` rounds of lines over three files in two topics, with a
/// pause between rounds so read times differ; returns every line.
fn write_corpus(logs: &Path, rounds: usize, per_round: usize, pause: Duration) -> Vec<Written> {
    let files = [("a.log", "web"), ("b.log", "web"), ("c.log", "db")];
    let mut sizes = [0u64; 3];
    let mut out = Vec::new();
    let mut i = 0;
    for r in 0..rounds {
        let mut bufs: [String; 3] = Default::default();
        for _ in 0..per_round {
            // Every kind of line in every file.
            let f = (i + i / 9) % 3;
            let text = corpus_line(i);
            let path = logs.join(files[f].0);
            out.push(Written {
                path: path.display().to_string(),
                topic: files[f].1,
                offset: sizes[f] + bufs[f].len() as u64,
                text: text.clone(),
            });
            bufs[f].push_str(&text);
            bufs[f].push('\n');
            i += 1;
        }
        for f in 0..3 {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(files[f].0)).unwrap();
            file.write_all(bufs[f].as_bytes()).unwrap();
            sizes[f] += bufs[f].len() as u64;
        }
        if r + 1 < rounds {
            thread::sleep(pause);
        }
    }
    out
}

fn corpus_collect(logs: &Path) -> String {
    format!("web = {0}/a.log; {0}/b.log\ndb = {0}/c.log", logs.display())
}

/// Queries of the comparison, `{logs}` standing for the log directory.
const QUERIES: &[&str] = &[
    "",
    "error",
    "ERROR",
    "err*",
    "\"disk full\"",
    "disk full",
    "api/v1/items",
    "host:test-host",
    "-host:test-host",
    "topic:db",
    "topic:web error",
    "path:{logs}/a.log",
    "path:{logs}/*",
    "(timeout OR reset) -topic:web",
    "NOT error",
    "ünïcode",
    "10.0.3",
    "java.lang.NullPointerException",
    "key=k3",
    "\"connection reset\" OR \"cache miss\"",
    "msg=\"request done\"",
    "db-2 OR db-3",
];

/// Every page of `q` through the cursor: (path, offset, ts_ms) in the order
/// the API gave them; checks the order and the totals on the way.
fn all_pages(port: u16, q: &str, size: usize) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut total = None;
    loop {
        let mut params = vec![("q", q), ("from", "0")];
        let size_s = size.to_string();
        params.push(("size", &size_s));
        if !cursor.is_empty() {
            params.push(("cursor", &cursor));
        }
        let (status, page) = get(port, &format!("/api/search?{}", qs(&params)));
        assert_eq!(status, 200, "{q:?}: {page}");
        let t = page["total"].as_u64().unwrap();
        assert_eq!(*total.get_or_insert(t), t, "{q:?}: the total does not change between pages");
        for h in page["hits"].as_array().unwrap() {
            let msg = h["message"].as_str().unwrap();
            // Highlights are character ranges of words the query has.
            let chars: Vec<char> = msg.chars().collect();
            for r in h["highlights"].as_array().unwrap() {
                let (s, e) = (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize);
                assert!(s < e && e <= chars.len(), "{q:?}: highlight {s}..{e} of {msg:?}");
            }
            out.push((
                h["path"].as_str().unwrap().to_string(),
                h["offset"].as_u64().unwrap(),
                h["ts_ms"].as_i64().unwrap(),
            ));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(out.len() as u64, total.unwrap_or(0), "{q:?}: pages add up to the total");
    assert!(out.windows(2).all(|w| w[0].2 >= w[1].2), "{q:?}: newest first");
    out
}

/// The API's answers for every query in [`QUERIES`] are the lines a naive
/// scan with the query model picks, page after page; histograms add up.
fn api_matches_naive_scan(port: u16, logs: &Path, lines: &[Written]) {
    for raw in QUERIES {
        let q = raw.replace("{logs}", &logs.display().to_string());
        let node = query::parse(&q).unwrap();
        let want: HashSet<(String, u64)> = lines
            .iter()
            .filter(|l| node.matches(&DocView { message: &l.text, host: HOST, path: &l.path, topic: l.topic }))
            .map(|l| (l.path.clone(), l.offset))
            .collect();
        let got = all_pages(port, &q, 37);
        let got_set: HashSet<(String, u64)> = got.iter().map(|(p, o, _)| (p.clone(), *o)).collect();
        assert_eq!(got_set.len(), got.len(), "{q:?}: a line came twice");
        assert_eq!(got_set, want, "{q:?}");
        // The histogram of the same range counts the same lines.
        let (lo, hi) = match (got.iter().map(|g| g.2).min(), got.iter().map(|g| g.2).max()) {
            (Some(lo), Some(hi)) => (lo - 5_000, hi + 5_000),
            _ => continue,
        };
        let (from, to) = (lo.to_string(), hi.to_string());
        let (status, h) =
            get(port, &format!("/api/histogram?{}", qs(&[("q", &q), ("from", &from), ("to", &to), ("buckets", "30")])));
        assert_eq!(status, 200, "{q:?}: {h}");
        assert_eq!(h["total"].as_u64(), Some(got.len() as u64), "{q:?}: {h}");
        let interval = h["interval_ms"].as_i64().unwrap();
        let mut naive: BTreeMap<i64, u64> = BTreeMap::new();
        for g in &got {
            *naive.entry(g.2.div_euclid(interval) * interval).or_default() += 1;
        }
        for b in h["buckets"].as_array().unwrap() {
            let key = b["key_ms"].as_i64().unwrap();
            assert_eq!(b["count"].as_u64().unwrap(), naive.get(&key).copied().unwrap_or(0), "{q:?}: bucket {key}");
        }
    }
}

/// Bad input is a 400 naming the parameter, never a 500.
fn bad_requests_are_400s(port: u16) {
    // (path and query, param named, words in the error)
    let table: &[(&str, &str, &str)] = &[
        ("/api/search?q=%28error", "q", "expected ) to close the ( at character 1"),
        ("/api/search?q=host%3A", "q", "a value right after host:"),
        ("/api/search?q=a%20AND", "q", "expected a word"),
        ("/api/search?q=%22open", "q", "closing \""),
        ("/api/histogram?q=OR", "q", "expected a word"),
        ("/api/live?q=%29", "q", "closes nothing"),
        ("/api/search?from=yesterday", "from", "yesterday"),
        ("/api/search?from=now&to=now-1h", "from", "empty"),
        ("/api/search?size=0", "size", "whole number"),
        ("/api/search?size=lots", "size", "lots"),
        ("/api/search?cursor=garbage", "cursor", "not a cursor"),
        ("/api/histogram?buckets=-3", "buckets", "whole number"),
    ];
    for &(path, param, words) in table {
        let (status, body) = get(port, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["param"], param, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(words), "{path}: {body}");
    }
    let (_, body) = get(port, "/api/search?q=a%20AND%20%28b");
    assert_eq!((body["position"].as_u64(), body["found"].as_str()), (Some(8), Some("the end of the query")), "{body}");
}

/// Reads Server-Sent Events from `/api/live?q=…` until `want` hits came or
/// `timeout`; `act` runs once the stream is ready.
fn live_hits(port: u16, q: &str, want: usize, timeout: Duration, act: impl FnOnce()) -> Vec<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(s, "GET /api/live?{} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", qs(&[("q", q)]))
        .unwrap();
    let mut r = BufReader::new(s);
    let deadline = Instant::now() + timeout;
    let (mut event, mut hits, mut act) = (String::new(), Vec::new(), Some(act));
    let mut line = String::new();
    while Instant::now() < deadline && hits.len() < want {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        // Chunked transfer encoding: chunk sizes are lines of hex; SSE
        // fields start with a name and a colon.
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event:") {
            event = e.trim().to_string();
            if event == "ready" {
                if let Some(a) = act.take() {
                    a();
                }
            }
        } else if let Some(d) = l.strip_prefix("data:") {
            if event == "hit" {
                hits.push(serde_json::from_str(d.trim()).unwrap());
            }
            assert_ne!(event, "error", "live failed: {d}");
        }
    }
    hits
}

/// Every hit of `q` over all time, through the cursor: (id, path, offset).
fn all_ids(port: u16, q: &str) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let mut params = vec![("q", q), ("from", "0"), ("size", "1000")];
        if !cursor.is_empty() {
            params.push(("cursor", &cursor));
        }
        let (status, page) = get(port, &format!("/api/search?{}", qs(&params)));
        assert_eq!(status, 200, "{page}");
        for h in page["hits"].as_array().unwrap() {
            out.push((
                h["id"].as_str().unwrap().to_string(),
                h["path"].as_str().unwrap().to_string(),
                h["offset"].as_u64().unwrap(),
            ));
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

/// `/api/context`: the lines around a line are its neighbours in its file,
/// in file order, the same as a naive scan of what was written; at a
/// file's ends there is nothing more; bad input is a 400, an unknown id a 404.
fn context_matches_the_files(port: u16, logs: &Path, lines: &[Written]) {
    let a = logs.join("a.log").display().to_string();
    let file: Vec<&Written> = lines.iter().filter(|l| l.path == a).collect();
    assert!(file.len() > 20);
    let mut ids = all_ids(port, &format!("path:{a}"));
    ids.sort_by_key(|i| i.2);
    assert_eq!(ids.len(), file.len());
    let id_at = |k: usize| ids[k].0.as_str();
    let texts = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|h| h["message"].as_str().unwrap().to_string()).collect()
    };
    let want = |r: std::ops::Range<usize>| -> Vec<String> { file[r].iter().map(|l| l.text.clone()).collect() };
    // (line, before, after)
    for &(k, before, after) in &[(10usize, 3usize, 4usize), (0, 5, 2), (file.len() - 1, 2, 5), (7, 0, 0), (5, 500, 1)] {
        let (status, c) = get(port, &format!("/api/context?id={}&before={before}&after={after}", id_at(k)));
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["hit"]["message"].as_str(), Some(file[k].text.as_str()), "{k}");
        assert_eq!(c["hit"]["offset"].as_u64(), Some(file[k].offset));
        let lo = k.saturating_sub(before);
        let hi = (k + 1 + after).min(file.len());
        assert_eq!(texts(&c["before"]), want(lo..k), "{k} -{before}");
        assert_eq!(texts(&c["after"]), want(k + 1..hi), "{k} +{after}");
        assert_eq!(c["more_before"].as_bool(), Some(lo > 0), "{k}: {}", c["more_before"]);
        assert_eq!(c["more_after"].as_bool(), Some(hi < file.len()), "{k}: {}", c["more_after"]);
        let offsets: Vec<u64> = c["before"].as_array().unwrap().iter().map(|h| h["offset"].as_u64().unwrap()).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        assert!(c["before"].as_array().unwrap().iter().all(|h| h["path"] == a.as_str()));
    }
    for (path, param) in [
        ("/api/context", "id"),
        ("/api/context?id=x&before=-1", "before"),
        ("/api/context?id=x&after=501", "after"),
        ("/api/fields?top=0", "top"),
        ("/api/download?format=xml", "format"),
        ("/api/download?limit=100001", "limit"),
    ] {
        let (status, body) = get(port, path);
        assert_eq!((status, body["param"].as_str()), (400, Some(param)), "{path}: {body}");
    }
    let (status, body) = get(port, "/api/context?id=no-such-line");
    assert_eq!(status, 404, "{body}");
}

/// `/api/fields`: the counts of host, path and topic over a query's
/// matches are those of a naive scan; `top` bounds the values, the rest is
/// `other`.
fn fields_match_a_naive_scan(port: u16, logs: &Path, lines: &[Written]) {
    for q in ["", "error", "topic:web \"disk full\"", "NOT timeout"] {
        let node = query::parse(q).unwrap();
        let hits: Vec<&Written> = lines
            .iter()
            .filter(|l| node.matches(&DocView { message: &l.text, host: HOST, path: &l.path, topic: l.topic }))
            .collect();
        let (status, f) = get(port, &format!("/api/fields?{}", qs(&[("q", q), ("from", "0"), ("top", "10")])));
        assert_eq!(status, 200, "{f}");
        assert_eq!(f["total"].as_u64(), Some(hits.len() as u64), "{q:?}: {f}");
        let field = |name: &str| -> BTreeMap<String, u64> {
            let v = f["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["field"] == name)
                .unwrap_or_else(|| panic!("{name}: {f}"));
            v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x["value"].as_str().unwrap().to_string(), x["count"].as_u64().unwrap()))
                .collect()
        };
        let mut by_path: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_topic: BTreeMap<String, u64> = BTreeMap::new();
        for h in &hits {
            *by_path.entry(h.path.clone()).or_default() += 1;
            *by_topic.entry(h.topic.to_string()).or_default() += 1;
        }
        assert_eq!(field("path"), by_path, "{q:?}");
        assert_eq!(field("topic"), by_topic, "{q:?}");
        let hosts = field("host");
        assert_eq!(hosts.get(HOST).copied().unwrap_or(0), hits.len() as u64, "{q:?}");
    }
    // One value: the most frequent, the rest counted as other.
    let (_, f) = get(port, "/api/fields?from=0&top=1");
    let path = f["fields"].as_array().unwrap().iter().find(|x| x["field"] == "path").unwrap();
    assert_eq!(path["values"].as_array().unwrap().len(), 1, "{f}");
    let first = path["values"][0]["count"].as_u64().unwrap();
    assert_eq!(first + path["other"].as_u64().unwrap(), lines.len() as u64, "{f}");
    let _ = logs;
}

/// `/api/download`: every match as NDJSON (the same lines as the search),
/// as CSV with a header, and cut at `limit` with a closing note.
fn download_gives_the_matches(port: u16) {
    let want: HashSet<(String, u64)> = all_ids(port, "error").into_iter().map(|(_, p, o)| (p, o)).collect();
    let get_text = |path: &str| {
        let r = client().get(format!("http://127.0.0.1:{port}{path}")).send().unwrap();
        let status = r.status().as_u16();
        let kind = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let disp = r.headers().get("content-disposition").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, kind, disp, r.text().unwrap())
    };
    let (status, kind, disp, text) = get_text("/api/download?q=error&from=0&format=ndjson");
    assert_eq!((status, kind.as_str()), (200, "application/x-ndjson"), "{text}");
    assert!(disp.starts_with("attachment; filename=\"logcollect-") && disp.ends_with(".ndjson\""), "{disp}");
    let got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got_set: HashSet<(String, u64)> =
        got.iter().map(|v| (v["path"].as_str().unwrap().to_string(), v["offset"].as_u64().unwrap())).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got_set, want);
    let (status, kind, _, text) = get_text("/api/download?q=error&from=0&format=csv");
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    let rows: Vec<&str> = text.split("\r\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(rows[0], "@timestamp,host,path,offset,topic,message");
    assert_eq!(rows.len(), want.len() + 1);
    assert!(rows[1..].iter().all(|r| r.starts_with('"') && r.contains(&format!("\"{HOST}\""))), "{}", rows[1]);
    let (_, _, _, text) = get_text("/api/download?from=0&format=ndjson&limit=5");
    let got: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), 6, "{text}");
    assert_eq!(got[5]["truncated"], true, "{text}");
    assert!(got[..5].iter().all(|v| v["message"].is_string()));
}

#[test]
fn the_api_matches_a_naive_scan_and_refuses_bad_input_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let mut run = start_run(dir.path(), &run_config(dir.path(), port, &corpus_collect(&logs), ""));
    let lines = write_corpus(&logs, 4, 150, Duration::from_millis(1200));
    assert_eq!(
        wait_total(port, "", lines.len() as u64, Duration::from_secs(60)),
        Some(lines.len() as u64),
        "{}",
        run.log_text()
    );
    let t = Instant::now();
    api_matches_naive_scan(port, &logs, &lines);
    eprintln!("{} queries compared in {:?}", QUERIES.len(), t.elapsed());
    bad_requests_are_400s(port);
    context_matches_the_files(port, &logs, &lines);
    fields_match_a_naive_scan(port, &logs, &lines);
    download_gives_the_matches(port);
    let (status, info) = get(port, "/api/info");
    assert_eq!((status, info["backend"].as_str()), (200, Some("embedded")));

    // Live: only new matching lines, in order.
    let a = logs.join("a.log");
    let hits = live_hits(port, "needle", 2, Duration::from_secs(20), || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&a).unwrap();
        f.write_all(b"a needle one\nsomething else\nanother needle two\n").unwrap();
    });
    let got: Vec<&str> = hits.iter().map(|h| h["message"].as_str().unwrap()).collect();
    assert_eq!(got, vec!["a needle one", "another needle two"]);
    assert_eq!(hits[0]["highlights"], serde_json::json!([[2, 8]]));
    let (code, took) = run.terminate();
    assert_eq!(code, Some(0), "{}", run.log_text());
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn through_elasticsearch_the_same_api_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let noida = Noida::start(dir.path());
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let es = format!("[es]\naddress = {}\nbulk_max_wait_ms = 100\nparse_json = db\n", noida.url());
    let mut run = start_run(dir.path(), &run_config(dir.path(), port, &corpus_collect(&logs), &es));
    let lines = write_corpus(&logs, 3, 100, Duration::from_millis(1200));
    let got = wait_total(port, "", lines.len() as u64, Duration::from_secs(120));
    assert_eq!(got, Some(lines.len() as u64), "{}", run.log_text());
    let (status, info) = get(port, "/api/info");
    assert_eq!((status, info["backend"].as_str()), (200, Some("elasticsearch")));
    let t = Instant::now();
    api_matches_naive_scan(port, &logs, &lines);
    eprintln!("{} queries compared through Elasticsearch in {:?}", QUERIES.len(), t.elapsed());
    bad_requests_are_400s(port);
    context_matches_the_files(port, &logs, &lines);
    fields_match_a_naive_scan(port, &logs, &lines);
    download_gives_the_matches(port);
    // Fields parsed from JSON lines (`parse_json`) are counted too.
    let mut f = std::fs::OpenOptions::new().append(true).open(logs.join("c.log")).unwrap();
    f.write_all(b"{\"level\":\"warn\",\"msg\":\"a\"}\n{\"level\":\"warn\",\"msg\":\"b\"}\n{\"level\":\"error\",\"msg\":\"c\"}\n")
        .unwrap();
    let n = lines.len() as u64 + 3;
    assert_eq!(wait_total(port, "", n, Duration::from_secs(60)), Some(n), "{}", run.log_text());
    let (_, fields) = get(port, "/api/fields?from=0&q=topic%3Adb");
    let level = fields["fields"].as_array().unwrap().iter().find(|x| x["field"] == "level").cloned();
    assert_eq!(
        level.map(|l| l["values"].clone()),
        Some(serde_json::json!([{"value": "warn", "count": 2}, {"value": "error", "count": 1}])),
        "{fields}"
    );
    let hits = live_hits(port, "needle", 1, Duration::from_secs(30), || {
        let mut f = std::fs::OpenOptions::new().append(true).open(logs.join("c.log")).unwrap();
        f.write_all(b"other\na needle in elasticsearch\n").unwrap();
    });
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["message"], "a needle in elasticsearch");
    assert_eq!(hits[0]["topic"], "db");
    assert_eq!(run.terminate().0, Some(0), "{}", run.log_text());
}

#[test]
fn through_kafka_into_the_embedded_index_kill_9_leaves_one_document_per_line() {
    const LINES: usize = 20_000;
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let extra = format!(
        "[kafka]\naddress = {}\ntopic = app\ngroup_id = single\n[kafka.consumer]\nsession.timeout.ms = 6000\n",
        kafka.brokers()
    );
    let mut run =
        start_run(dir.path(), &run_config(dir.path(), port, &format!("app = {}/*.log", logs.display()), &extra));
    let path = logs.join("f0.log");
    let writer = {
        let path = path.clone();
        thread::spawn(move || {
            for k in 0..10 {
                append_lines(&path, 0, k * LINES / 10, (k + 1) * LINES / 10);
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // Once lines flow, kill -9 the whole process (agent and indexer).
    assert!(wait_until(Duration::from_secs(60), || total(port, "").unwrap_or(0) > 0), "{}", run.log_text());
    run.kill9();
    run.restart();
    writer.join().unwrap();
    let got = wait_total(port, "", LINES as u64, Duration::from_secs(120));
    assert_eq!(got, Some(LINES as u64), "{}", run.log_text());
    thread::sleep(Duration::from_secs(2));
    assert_eq!(total(port, ""), Some(LINES as u64), "no duplicate arrives late");
    let (_, page) = get(port, &format!("/api/search?{}", qs(&[("q", "\"seq=000000007\""), ("from", "0")])));
    assert_eq!(page["hits"][0]["message"], line(0, 7));
    assert_eq!(run.terminate().0, Some(0), "{}", run.log_text());
}

// ---------------------------------------------------------------------------
// The page in a real browser
// ---------------------------------------------------------------------------

/// Headless Chromium driven over the DevTools protocol.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,720",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} not runnable ({e}); scripts/test.sh installs chromium"));
        // Chromium writes the port it picked into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        assert!(wait_until(Duration::from_secs(30), || port_file.exists()), "chromium did not start");
        thread::sleep(Duration::from_millis(100));
        let port: u16 = std::fs::read_to_string(&port_file).unwrap().lines().next().unwrap().parse().unwrap();
        let mut targets = Value::Null;
        wait_until(Duration::from_secs(10), || {
            targets = client()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .and_then(|r| r.json())
                .unwrap_or(Value::Null);
            targets.as_array().is_some_and(|a| a.iter().any(|t| t["type"] == "page"))
        });
        let url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tungstenite::connect(url).unwrap();
        Browser { child, ws, next: 0, _profile: profile }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws.send(tungstenite::Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    fn wait_for(&mut self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expr) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {expr}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A mouse event at (x, y) in CSS pixels; `modifiers` as DevTools has
    /// them (1 = Alt).
    fn mouse(&mut self, kind: &str, x: f64, y: f64, modifiers: u32) {
        self.call(
            "Input.dispatchMouseEvent",
            serde_json::json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1, "modifiers": modifiers}),
        );
    }

    /// The centre of the first element `selector` picks.
    fn centre(&mut self, selector: &str) -> (f64, f64) {
        let v = self.eval(&format!(
            "(() => {{ const e = document.querySelector({selector:?}); e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    }

    /// A real click (mouse down and up) on the first element `selector` picks.
    fn click(&mut self, selector: &str, modifiers: u32) {
        let (x, y) = self.centre(selector);
        self.mouse("mousePressed", x, y, modifiers);
        self.mouse("mouseReleased", x, y, modifiers);
    }

    /// A key pressed and released; `code` is its Windows virtual key code
    /// (what Chromium maps to actions such as Tab's focus move).
    fn key(&mut self, key: &str, code: u32, text: &str) {
        let kind = if text.is_empty() { "rawKeyDown" } else { "keyDown" };
        let mut down =
            serde_json::json!({"type": kind, "key": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
        if !text.is_empty() {
            down["text"] = text.into();
        }
        self.call("Input.dispatchKeyEvent", down);
        let up = serde_json::json!({"type": "keyUp", "key": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
        self.call("Input.dispatchKeyEvent", up);
    }

    /// Runs `action` (JavaScript) and waits for the page's next `done`.
    fn settle(&mut self, action: &str) {
        self.eval(&format!("document.body.dataset.state = ''; {action}; true"));
        self.wait_for("document.body.dataset.state === 'done'");
    }

    /// A screenshot under the test's tmp dir, copied to `docs/` when
    /// `LOGCOLLECT_UPDATE_DOCS` is set.
    fn shot(&mut self, name: &str) {
        let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        self.screenshot(&shot);
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
        eprintln!("screenshot: {}", shot.display());
        if std::env::var_os("LOGCOLLECT_UPDATE_DOCS").is_some() {
            std::fs::copy(&shot, Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name)).unwrap();
        }
    }

    fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", serde_json::json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_search_page_in_headless_chromium_searches_highlights_and_draws_the_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let mut run = start_run(dir.path(), &run_config(dir.path(), port, &corpus_collect(&logs), ""));
    let started = checkpoint_now();
    // Rounds of different sizes, a second apart: a histogram with a shape.
    let mut lines = Vec::new();
    for (k, n) in [40, 120, 60, 200, 90, 30, 150].iter().enumerate() {
        let batch = write_corpus(&logs, 1, *n, Duration::ZERO);
        lines.extend(batch.into_iter().map(|w| (k, w)));
        thread::sleep(Duration::from_millis(1000));
    }
    // write_corpus restarts its offsets per call: only the count matters here.
    let n = lines.len() as u64;
    assert_eq!(wait_total(port, "", n, Duration::from_secs(60)), Some(n), "{}", run.log_text());
    let ended = checkpoint_now();

    let mut b = Browser::start();
    let iso = |ms: i64| logcollect::clock::rfc3339_ms(ms);
    let url = format!(
        "http://127.0.0.1:{port}/?{}",
        qs(&[("q", "error"), ("range", "custom"), ("from", &iso(started - 3_000)), ("to", &iso(ended + 3_000))])
    );
    b.call("Page.enable", Value::Null);
    b.call("Page.navigate", serde_json::json!({"url": url}));
    b.wait_for("document.body && document.body.dataset.state === 'done'");
    let want = total(port, "error").unwrap();
    assert!(want > 0);
    let count = b.eval("document.getElementById('count').textContent");
    assert_eq!(count, Value::String(format!("{} matches", want)), "the count shown");
    let shown = b.eval("document.querySelectorAll('#results .hit').length").as_u64().unwrap();
    assert_eq!(shown, want.min(100));
    // Every shown line has its matched words marked, and only those.
    let marks = b.eval("Array.from(document.querySelectorAll('#results mark')).map(m => m.textContent.toLowerCase())");
    let marks: Vec<&str> = marks.as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(marks.len() as u64 >= shown && marks.iter().all(|m| *m == "error"), "{marks:?}");
    // The histogram: bars whose counts add up to the total, several non-empty.
    let bars = b.eval("Array.from(document.querySelectorAll('#histogram rect.bar')).map(r => Number(r.dataset.count))");
    let bars: Vec<u64> = bars.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(bars.iter().sum::<u64>(), want, "{bars:?}");
    assert!(bars.iter().filter(|&&c| c > 0).count() >= 4, "{bars:?}");

    // A search typed into the box.
    b.eval("document.body.dataset.state = ''; document.getElementById('q').value = 'topic:db \"disk almost full\" OR timeout'; document.getElementById('go').click(); true");
    b.wait_for("document.body.dataset.state === 'done'");
    let want = total(port, "topic:db \"disk almost full\" OR timeout").unwrap();
    assert_eq!(b.eval("document.getElementById('count').textContent"), Value::String(format!("{} matches", want)));
    let url_now = b.eval("location.search").as_str().unwrap().to_string();
    assert!(url_now.contains("q=topic"), "the query is in the address: {url_now}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("search-page.png");
    b.eval("document.body.dataset.state = ''; document.getElementById('q').value = 'error OR \"disk full\"'; document.getElementById('go').click(); true");
    b.wait_for("document.body.dataset.state === 'done'");
    // (docs/search-page.png comes from the features test below.)
    b.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);

    // A bad query: a clear message on the page, no results, no crash.
    b.eval("document.body.dataset.state = ''; document.getElementById('q').value = '(error OR'; document.getElementById('go').click(); true");
    b.wait_for("document.body.dataset.state === 'done'");
    let err = b.eval("document.getElementById('error').hidden ? '' : document.getElementById('error').textContent");
    let err = err.as_str().unwrap();
    assert!(err.contains("expected a word") && err.contains('^'), "{err}");
    assert_eq!(b.eval("document.querySelectorAll('#results .hit').length"), Value::from(0));

    // A line longer than http.message_max_bytes (64 KiB) is cut in the
    // answer; its button fetches the whole line and shows it in place.
    let long = format!("wholeline {}", "abcdefgh ".repeat(10_000));
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("c.log"))
        .unwrap()
        .write_all(format!("{long}\n").as_bytes())
        .unwrap();
    assert_eq!(wait_total(port, "wholeline", 1, Duration::from_secs(60)), Some(1));
    b.eval("document.body.dataset.state = ''; document.getElementById('range').value = '24h'; document.getElementById('q').value = 'wholeline'; document.getElementById('go').click(); true");
    b.wait_for("document.body.dataset.state === 'done'");
    let cut = b.eval("document.querySelector('#results .hit .msg').textContent.length").as_u64().unwrap();
    assert!(cut <= 64 << 10, "cut in the answer: {cut}");
    b.eval("document.querySelector('#results .hit button.whole').click(); true");
    b.wait_for("!document.querySelector('#results .hit button.whole')");
    let whole = b.eval("document.querySelector('#results .hit .msg').textContent");
    assert_eq!(whole.as_str().map(str::len), Some(long.len()), "the whole line, in place");
    drop(b);
    assert_eq!(run.terminate().0, Some(0));
}

/// The page's features, each driven as a person would in headless Chromium
/// (1280×720, then dark, then phone-sized), with a screenshot of each in
/// `docs/` (`LOGCOLLECT_UPDATE_DOCS=1`).
#[test]
fn the_page_s_fields_context_histogram_live_and_layouts_work_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let port = free_port();
    let mut run = start_run(dir.path(), &run_config(dir.path(), port, &corpus_collect(&logs), ""));
    let started = checkpoint_now();
    let mut n = 0;
    for per_round in [60, 150, 90, 240, 120] {
        n += write_corpus(&logs, 1, per_round, Duration::ZERO).len() as u64;
        thread::sleep(Duration::from_millis(1000));
    }
    // A long line (folded on the page), and a hostile one (shown as text).
    let long = format!("longline {}", "0123456789 ".repeat(300));
    let hostile =
        "<img src=x onerror=\"document.body.dataset.pwned=1\"> <script>document.body.dataset.pwned=2</script> error";
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("b.log"))
        .unwrap()
        .write_all(format!("{long}\n{hostile}\n").as_bytes())
        .unwrap();
    n += 2;
    assert_eq!(wait_total(port, "", n, Duration::from_secs(60)), Some(n), "{}", run.log_text());
    let ended = checkpoint_now();

    let mut b = Browser::start();
    b.call("Page.enable", Value::Null);
    b.call("Page.navigate", serde_json::json!({"url": format!("http://127.0.0.1:{port}/?range=1h")}));
    b.wait_for("document.body && document.body.dataset.state === 'done'");
    b.wait_for("document.querySelectorAll('#field-list .field').length === 3");
    assert_eq!(b.eval("document.body.dataset.pwned === undefined"), Value::Bool(true), "hostile line ran");
    assert_eq!(
        b.eval("Array.from(document.querySelectorAll('#results .msg')).some(m => m.textContent.includes('<script>'))"),
        Value::Bool(true),
        "the hostile line is shown as text"
    );

    // Fields: counts per topic as the API has them; a click filters, an
    // Alt-click excludes.
    let topics = b.eval("Array.from(document.querySelectorAll('.field[data-field=topic] .fv')).map(li => [li.querySelector('.val').textContent, li.querySelector('.n').textContent])");
    let web = total(port, "topic:web").unwrap();
    assert!(
        topics
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t[0] == "web" && t[1].as_str().and_then(|n| n.parse().ok()) == Some(web)),
        "{topics}"
    );
    b.shot("search-fields.png");
    b.eval("document.body.dataset.state = ''");
    b.click(".field[data-field=topic] .fv .val", 0);
    b.wait_for("document.body.dataset.state === 'done'");
    let q = b.eval("document.getElementById('q').value");
    let first =
        b.eval("document.querySelector('.field[data-field=topic] .fv .val').textContent").as_str().unwrap().to_string();
    assert_eq!(q, Value::String(format!("topic:{first}")));
    let want = total(port, &format!("topic:{first}")).unwrap();
    assert_eq!(b.eval("document.getElementById('count').textContent"), Value::String(format!("{want} matches")));
    b.eval("document.body.dataset.state = ''");
    b.click(".field[data-field=path] .fv .val", 1);
    b.wait_for("document.body.dataset.state === 'done'");
    let q = b.eval("document.getElementById('q').value").as_str().unwrap().to_string();
    assert!(q.starts_with(&format!("topic:{first} -path:")), "{q}");
    assert_eq!(
        b.eval("document.getElementById('count').textContent"),
        Value::String(format!("{} matches", total(port, &q).unwrap()))
    );

    // Context: the lines around a hit, the hit marked, more on demand.
    b.settle("document.getElementById('q').value = 'timeout'; document.getElementById('go').click()");
    b.click("#results .hit:nth-child(20) button.ctx", 0);
    b.wait_for("!!document.querySelector('#results .context li.at')");
    let ctx = b.eval("(() => { const c = document.querySelector('#results .context'); return [c.querySelectorAll('li').length, c.querySelector('li.at').textContent.includes('timeout')]; })()");
    assert_eq!(ctx[1], Value::Bool(true), "{ctx}");
    let shown = ctx[0].as_u64().unwrap();
    assert_eq!(shown, 21, "10 lines either side: {ctx}");
    b.shot("search-context.png");
    b.click("#results .context button.edge", 0);
    b.wait_for(&format!("document.querySelectorAll('#results .context li').length > {shown}"));

    // A link to one line: /?line=ID shows it in its file.
    let href =
        b.eval("document.querySelector('#results .hit a.link').getAttribute('href')").as_str().unwrap().to_string();
    assert!(href.starts_with("/?line="), "{href}");
    b.call("Page.navigate", serde_json::json!({"url": format!("http://127.0.0.1:{port}{href}")}));
    b.wait_for(
        "document.body && document.body.dataset.state === 'done' && !document.getElementById('line-view').hidden",
    );
    b.wait_for("!!document.querySelector('#results .context li.at')");
    assert_eq!(
        b.eval("document.querySelector('#results .context li.at').textContent.includes('timeout')"),
        Value::Bool(true)
    );

    // "/" goes to the search box; a long line is folded until "show all".
    b.call("Page.navigate", serde_json::json!({"url": format!("http://127.0.0.1:{port}/?q=longline&range=1h")}));
    b.wait_for("document.body && document.body.dataset.state === 'done'");
    b.eval("document.activeElement.blur(); true");
    b.key("/", 191, "/");
    assert_eq!(b.eval("document.activeElement.id"), Value::String("q".into()));
    assert_eq!(b.eval("document.getElementById('q').value"), Value::String("longline".into()), "the / is not typed");
    let folded = b.eval("(() => { const m = document.querySelector('#results .msg'); return [m.classList.contains('folded'), m.clientHeight < m.scrollHeight]; })()");
    assert_eq!(folded, serde_json::json!([true, true]));
    b.click("#results button.unfold", 0);
    assert_eq!(b.eval("document.querySelector('#results .msg').classList.contains('folded')"), Value::Bool(false));
    // Everything is reachable with Tab: the controls are buttons and links.
    let plain = b.eval("Array.from(document.querySelectorAll('span, div, li')).filter(e => e.onclick).length");
    assert_eq!(plain, Value::from(0), "clickable elements that are not focusable");
    b.eval("document.getElementById('q').focus(); true");
    let mut seen = HashSet::new();
    for _ in 0..12 {
        b.key("Tab", 9, "");
        seen.insert(
            b.eval("document.activeElement.id || document.activeElement.className").as_str().unwrap_or("").to_string(),
        );
    }
    assert!(seen.contains("go") && seen.contains("live"), "{seen:?}");

    // Histogram: labels, a count on hover, drag to zoom.
    let iso = |ms: i64| logcollect::clock::rfc3339_ms(ms);
    let url = format!(
        "http://127.0.0.1:{port}/?{}",
        qs(&[("q", ""), ("range", "custom"), ("from", &iso(started - 2_000)), ("to", &iso(ended + 2_000))])
    );
    b.call("Page.navigate", serde_json::json!({"url": url}));
    b.wait_for("document.body && document.body.dataset.state === 'done'");
    let labels = b.eval("document.querySelectorAll('#axis span').length").as_u64().unwrap();
    assert!(labels >= 4, "{labels}");
    let bar = b.eval("(() => { const bars = Array.from(document.querySelectorAll('#histogram rect.bar')); const i = bars.findIndex(r => Number(r.dataset.count) > 0); const r = bars[i].getBoundingClientRect(); return [i, r.x + r.width / 2, r.y + r.height - 2, Number(bars[i].dataset.count)]; })()");
    let (x, y) = (bar[1].as_f64().unwrap(), bar[2].as_f64().unwrap());
    b.mouse("mouseMoved", x, y, 0);
    let tip = b.eval("document.getElementById('tip').hidden ? '' : document.getElementById('tip').textContent");
    let count = bar[3].as_u64().unwrap();
    assert!(tip.as_str().unwrap().ends_with(&format!(" {count} lines")) || count == 1, "{tip} / {bar}");
    b.shot("search-page.png");
    let before_zoom =
        b.eval("Number(document.getElementById('count').textContent.replace(/[^0-9]/g, ''))").as_u64().unwrap();
    b.eval("document.body.dataset.state = ''");
    b.mouse("mousePressed", x, y, 0);
    b.mouse("mouseMoved", x + 30.0, y, 0);
    b.mouse("mouseReleased", x + 30.0, y, 0);
    b.wait_for("document.body.dataset.state === 'done'");
    assert_eq!(b.eval("document.getElementById('range').value"), Value::String("custom".into()));
    let zoomed =
        b.eval("Number(document.getElementById('count').textContent.replace(/[^0-9]/g, ''))").as_u64().unwrap();
    assert!(zoomed > 0 && zoomed < before_zoom, "{zoomed} of {before_zoom}");

    // Live: new lines wait behind "N new lines"; the list does not move.
    b.settle("document.getElementById('range').value = '1h'; document.getElementById('q').value = 'livewire'; document.getElementById('go').click()");
    b.click("#live", 0);
    thread::sleep(Duration::from_millis(1500));
    std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("a.log"))
        .unwrap()
        .write_all(b"livewire one\nnothing\nlivewire two\nlivewire three\n")
        .unwrap();
    b.wait_for("document.getElementById('fresh').textContent.startsWith('3 new lines')");
    assert_eq!(b.eval("document.querySelectorAll('#results .hit').length"), Value::from(0), "nothing moved");
    b.click("#fresh", 0);
    let live = b.eval("Array.from(document.querySelectorAll('#results .hit .msg')).map(m => m.textContent)");
    assert_eq!(live, serde_json::json!(["livewire three", "livewire two", "livewire one"]));
    b.click("#pause", 0);
    assert_eq!(b.eval("document.getElementById('pause').textContent"), Value::String("Resume".into()));
    b.click("#pause", 0);
    b.click("#live", 0);

    // Dark: the system setting picks the colours.
    b.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    b.settle("document.getElementById('q').value = 'error OR timeout'; document.getElementById('go').click()");
    let bg = b.eval("getComputedStyle(document.body).backgroundColor");
    assert_eq!(bg, Value::String("rgb(20, 23, 28)".into()));
    b.click("#results .hit:nth-child(2) button.ctx", 0);
    b.wait_for("!!document.querySelector('#results .context li.at')");
    b.shot("search-dark.png");

    // A phone: one column, nothing wider than the screen.
    b.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": "light"}]}),
    );
    b.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    b.call("Page.navigate", serde_json::json!({"url": format!("http://127.0.0.1:{port}/?q=error&range=1h")}));
    b.wait_for("document.body && document.body.dataset.state === 'done'");
    assert_eq!(
        b.eval("document.documentElement.scrollWidth <= window.innerWidth"),
        Value::Bool(true),
        "no sideways scrolling"
    );
    assert_eq!(b.eval("document.getElementById('fields-box').open"), Value::Bool(false), "the panel starts folded");
    b.shot("search-phone.png");
    drop(b);
    assert_eq!(run.terminate().0, Some(0));
}

fn checkpoint_now() -> i64 {
    logcollect::clock::now_ms()
}

#[test]
fn bare_logcollect_runs_the_config_ini_of_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "hello from a bare start\n").unwrap();
    let port = free_port();
    std::fs::write(dir.path().join("config.ini"), run_config(dir.path(), port, "web_log = ./logs/*.log", "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let found = wait_until(Duration::from_secs(30), || total(port, "bare").is_some_and(|n| n == 1));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(found, "the line was not searchable");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_megabyte_line_of_one_word_is_searched_within_a_bound_and_data_dir_is_private() {
    // One 960,000-byte line of one repeated word (whole under the default
    // max_line_bytes, 960 KiB): before highlighting was bounded, a search
    // for that word took 14 s per hit and held a worker thread of the HTTP
    // server all along (the security review, finding 1).
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let big = "error ".repeat(960_000 / 6);
    std::fs::write(logs.join("big.log"), format!("{big}\nan error here\n")).unwrap();
    let port = free_port();
    let mut run = start_run(dir.path(), &run_config(dir.path(), port, &format!("big = {}/*.log", logs.display()), ""));
    assert_eq!(wait_total(port, "error", 2, Duration::from_secs(60)), Some(2), "{}", run.log_text());

    // Four searches at once, each asking for the big line, while liveness
    // is asked meanwhile: each answers within the bound, and so does it.
    const BOUND: Duration = Duration::from_secs(3);
    let searches: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let (status, page) = get(port, &format!("/api/search?{}", qs(&[("q", "error"), ("size", "100")])));
                (status, page, t.elapsed())
            })
        })
        .collect();
    let t = Instant::now();
    let (live, _) = get(port, "/health/live");
    let live_took = t.elapsed();
    for s in searches {
        let (status, page, took) = s.join().unwrap();
        assert_eq!(status, 200, "{page}");
        assert!(took < BOUND, "search took {took:?}");
        let big_hit = page["hits"].as_array().unwrap().iter().find(|h| h["message"].as_str().unwrap().len() > 1000);
        let ranges = big_hit.expect("the big line")["highlights"].as_array().unwrap().len();
        assert_eq!(ranges, logcollect::query::HIGHLIGHT_MAX_RANGES, "highlights capped");
    }
    assert_eq!(live, 200);
    assert!(live_took < Duration::from_secs(1), "/health/live took {live_took:?} during the searches");

    // Context, fields and downloads cut the big line as searches do.
    let (_, page) = get(port, &format!("/api/search?{}", qs(&[("q", "\"an error here\""), ("from", "0")])));
    let small = page["hits"][0]["id"].as_str().unwrap().to_string();
    let (status, c) = get(port, &format!("/api/context?id={small}&before=5&after=5"));
    assert_eq!(status, 200, "{c}");
    let big_line = &c["before"][0];
    assert_eq!(big_line["truncated"], true);
    assert!(big_line["message"].as_str().unwrap().len() <= 64 << 10);
    assert_eq!((c["more_before"].as_bool(), c["after"].as_array().map(Vec::len)), (Some(false), Some(0)));
    let (status, f) = get(port, "/api/fields?q=error&from=0");
    assert_eq!((status, f["total"].as_u64()), (200, Some(2)), "{f}");
    let text =
        client().get(format!("http://127.0.0.1:{port}/api/download?q=error&from=0")).send().unwrap().text().unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.len() < 70 << 10, "{} bytes", text.len());

    // Another name for the loopback server (DNS rebinding), a cross-site
    // request to the API, and the headers every answer carries.
    let url = format!("http://127.0.0.1:{port}/api/info");
    let c = client();
    assert_eq!(c.get(&url).header("Host", "evil.example").send().unwrap().status(), 421);
    assert_eq!(c.get(&url).header("Sec-Fetch-Site", "cross-site").send().unwrap().status(), 403);
    let page = c.get(format!("http://localhost:{port}/")).header("Sec-Fetch-Site", "cross-site").send().unwrap();
    assert_eq!(page.status(), 200, "the page itself may be linked to");
    let h = page.headers();
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");

    // data_dir and every file and directory in it: the user's only.
    let mut seen = 0;
    let mut stack = vec![dir.path().join("data")];
    while let Some(p) = stack.pop() {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o077, 0, "{} is mode {:o}", p.display(), meta.permissions().mode());
        seen += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 3, "the index files were looked at");
    let (code, _) = run.terminate();
    assert_eq!(code, Some(0), "{}", run.log_text());
}
