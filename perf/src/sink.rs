//! `bulk-sink`: a minimal Elasticsearch stand-in that measures the
//! transfer's own cost. It accepts `_bulk` (any path ending in `/_bulk`, the
//! query string ignored), checks every body ([`check_bulk`]: NDJSON, an
//! action line with `create`/`_index`/`_id` and a JSON-object source line
//! with a `message` per document, a final newline) and answers a correct
//! all-201 bulk response, with one item per document. `GET /` and
//! `PUT /_index_template/*` get 200 `{}` so the transfer starts.
//!
//! With `--forward URL` it is a counting proxy instead: every request goes
//! to `URL` (noida-db) as it came and the upstream's answer goes back; the
//! `_bulk` answers are read to count the documents stored. Both the transfer
//! and the replay client (`bulk-send`) are timed through it, the same way.
//!
//! - `--expect N`: once N documents are acknowledged, `--done-file` gets
//!   `done_ns=… first_ns=… acked=…` (CLOCK_REALTIME ns; written to a temp
//!   file and renamed), which `watch-transfer` waits for.
//! - `--save-dir D`: every `_bulk` body is saved as `D/bulk-NNNNNN.ndjson`
//!   and every template as `D/template-<name>.json`, for `bulk-send`.
//!
//! One thread (a current-thread tokio runtime): the sink's CPU is the price
//! of checking, and it is reported. It runs until SIGTERM/SIGINT, then
//! prints the `RESULT` line: documents, distinct `_id`s, bad bodies, other
//! requests, its own CPU seconds.

use crate::{now_ns, procfs, Args};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

type Body = Full<Bytes>;
type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// `{"create":{"_index":…,"_id":…}}`; other keys are ignored, a missing
/// `create`, `_index` or `_id` is an error.
#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    create: Meta<'a>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "_index")]
    index: Cow<'a, str>,
    #[serde(borrow, rename = "_id")]
    id: Cow<'a, str>,
}

/// A source line: any object with a `message` (serde also refuses a
/// duplicate `message` key, as Elasticsearch does).
#[derive(Deserialize)]
struct Source {
    #[allow(dead_code)]
    message: IgnoredAny,
}

/// `_id`s seen: the logcollect ones (22 characters) without allocating.
#[derive(Default)]
pub struct Ids {
    short: HashSet<[u8; 22]>,
    other: HashSet<Vec<u8>>,
}

impl Ids {
    /// Records `id`; false if it was seen before.
    pub fn insert(&mut self, id: &[u8]) -> bool {
        match <[u8; 22]>::try_from(id) {
            Ok(a) => self.short.insert(a),
            Err(_) => self.other.insert(id.to_vec()),
        }
    }

    pub fn len(&self) -> usize {
        self.short.len() + self.other.len()
    }
}

/// Whether `line` (without its newline) is a JSON object by its first
/// non-blank byte (serde would also take an array for a struct).
fn is_object(line: &[u8]) -> bool {
    line.trim_ascii_start().first() == Some(&b'{')
}

/// Checks a `_bulk` body as Elasticsearch would read ours, and returns its
/// number of documents; every `_id` goes into `ids`. The error names the
/// line (1-based) and what is wrong with it.
pub fn check_bulk(body: &[u8], ids: &mut Ids) -> Result<usize, String> {
    if body.is_empty() {
        return Err("empty body".into());
    }
    if body.last() != Some(&b'\n') {
        return Err("the body does not end with a newline".into());
    }
    let mut docs = 0;
    let mut start = 0;
    let mut line_no = 0;
    for nl in memchr::memchr_iter(b'\n', body) {
        let line = &body[start..nl];
        start = nl + 1;
        line_no += 1;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            let head = String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
            format!("line {line_no}: {what}: {e}; it starts with {head:?}")
        };
        if line_no % 2 == 1 {
            if !is_object(line) {
                return Err(bad("action line", &"not a JSON object"));
            }
            let a: Action<'_> = serde_json::from_slice(line).map_err(|e| bad("action line", &e))?;
            if a.create.index.is_empty() || a.create.id.is_empty() {
                return Err(bad("action line", &"empty _index or _id"));
            }
            ids.insert(a.create.id.as_bytes());
        } else {
            if !is_object(line) {
                return Err(bad("source line", &"not a JSON object"));
            }
            serde_json::from_slice::<Source>(line).map_err(|e| bad("source line", &e))?;
            docs += 1;
        }
    }
    if line_no % 2 == 1 {
        return Err(format!("{line_no} lines: the last action line has no source line"));
    }
    Ok(docs)
}

/// The answer Elasticsearch gives when every document was created.
pub fn all_created(docs: usize) -> Vec<u8> {
    const ITEM: &[u8] = br#"{"create":{"status":201}}"#;
    let mut out = Vec::with_capacity(40 + docs * (ITEM.len() + 1));
    out.extend_from_slice(br#"{"took":1,"errors":false,"items":["#);
    for i in 0..docs {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(ITEM);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Documents stored (2xx, or 409: already there) and refused, from a
/// `_bulk` answer; `errors:false` without items counts all `docs` stored.
fn count_answer(answer: &[u8], docs: usize) -> Result<(usize, usize), String> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|e| format!("answer is not JSON: {e}"))?;
    let items = match v.get("items").and_then(|i| i.as_array()) {
        Some(items) => items,
        None if v.get("errors") == Some(&serde_json::Value::Bool(false)) => return Ok((docs, 0)),
        None => return Err(format!("answer has no items: {}", excerpt(answer))),
    };
    if items.len() != docs {
        return Err(format!("{} items for {docs} documents", items.len()));
    }
    let mut stored = 0;
    for item in items {
        let status = item.as_object().and_then(|o| o.values().next()).and_then(|a| a.get("status")?.as_u64());
        if matches!(status, Some(200..=299 | 409)) {
            stored += 1;
        }
    }
    Ok((stored, docs - stored))
}

fn excerpt(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

#[derive(Default)]
struct Stats {
    /// Documents in well-formed bodies.
    docs: u64,
    /// Documents acknowledged as stored (all of `docs` when answering
    /// ourselves; the upstream's 2xx/409 items when forwarding).
    acked: u64,
    /// Items the upstream refused (forwarding only).
    item_errors: u64,
    ids: Ids,
    bodies: u64,
    bytes: u64,
    bad_bodies: u64,
    /// Requests that are neither `_bulk`, `GET /` nor a template.
    other: u64,
    first_error: Option<String>,
    first_ns: Option<u128>,
    last_ns: u128,
    done: bool,
}

struct Sink {
    stats: Mutex<Stats>,
    expect: Option<u64>,
    done_file: Option<PathBuf>,
    save_dir: Option<PathBuf>,
    forward: Option<(HttpClient, String)>,
}

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, s: &mut Stats, e: String) {
        if s.first_error.is_none() {
            eprintln!("bulk-sink: {e}");
            s.first_error = Some(e);
        }
    }

    /// Counts `n` acknowledged documents; writes the done file on reaching `expect`.
    fn ack(&self, s: &mut Stats, n: usize) {
        s.acked += n as u64;
        s.last_ns = now_ns();
        if let (Some(want), Some(path), false) = (self.expect, &self.done_file, s.done) {
            if s.acked >= want {
                s.done = true;
                let text = format!("done_ns={} first_ns={} acked={}\n", s.last_ns, s.first_ns.unwrap_or(0), s.acked);
                let tmp = path.with_extension("tmp");
                if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
                    eprintln!("bulk-sink: {}: {e}", path.display());
                }
            }
        }
    }

    fn save(&self, name: &str, body: &[u8]) {
        if let Some(dir) = &self.save_dir {
            if let Err(e) = std::fs::write(dir.join(name), body) {
                eprintln!("bulk-sink: saving {name}: {e}");
            }
        }
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

fn es_error(status: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": {"type": "illegal_argument_exception", "reason": reason},
        "status": status.as_u16(),
    });
    reply(status, serde_json::to_vec(&body).unwrap_or_default())
}

async fn handle(sink: Arc<Sink>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(es_error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}"))),
    };
    let path = parts.uri.path();
    let is_bulk = parts.method == Method::POST && (path == "/_bulk" || path.ends_with("/_bulk"));
    let template = path.strip_prefix("/_index_template/").filter(|_| parts.method == Method::PUT);
    if let Some(name) = template {
        sink.save(&format!("template-{name}.json"), &body);
    }
    if !is_bulk {
        if sink.forward.is_none() {
            return Ok(if (parts.method == Method::GET && path == "/") || template.is_some() {
                reply(StatusCode::OK, "{}")
            } else {
                let mut s = sink.lock();
                s.other += 1;
                sink.error(&mut s, format!("unexpected request {} {}", parts.method, parts.uri));
                es_error(StatusCode::NOT_FOUND, "not a _bulk request")
            });
        }
        return Ok(forward(&sink, parts, body).await.unwrap_or_else(|e| es_error(StatusCode::BAD_GATEWAY, &e)));
    }

    let docs = {
        let mut s = sink.lock();
        s.first_ns.get_or_insert_with(now_ns);
        s.bodies += 1;
        s.bytes += body.len() as u64;
        let n = s.bodies;
        let checked = check_bulk(&body, &mut s.ids);
        match checked {
            Ok(docs) => {
                s.docs += docs as u64;
                drop(s);
                sink.save(&format!("bulk-{n:06}.ndjson"), &body);
                docs
            }
            Err(e) => {
                s.bad_bodies += 1;
                sink.error(&mut s, format!("body {n}: {e}"));
                return Ok(es_error(StatusCode::BAD_REQUEST, &e));
            }
        }
    };
    if sink.forward.is_none() {
        let mut s = sink.lock();
        sink.ack(&mut s, docs);
        return Ok(reply(StatusCode::OK, all_created(docs)));
    }
    let resp = match forward(&sink, parts, body).await {
        Ok(r) => r,
        Err(e) => return Ok(es_error(StatusCode::BAD_GATEWAY, &e)),
    };
    let (rparts, rbody) = resp.into_parts();
    let answer = rbody.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut s = sink.lock();
    if rparts.status.is_success() {
        match count_answer(&answer, docs) {
            Ok((stored, refused)) => {
                s.item_errors += refused as u64;
                sink.ack(&mut s, stored);
            }
            Err(e) => sink.error(&mut s, format!("upstream _bulk answer: {e}")),
        }
    } else {
        s.item_errors += docs as u64;
        sink.error(&mut s, format!("upstream answered {} to _bulk: {}", rparts.status, excerpt(&answer)));
    }
    Ok(Response::from_parts(rparts, Full::new(answer)))
}

/// Sends the request on to the upstream as it came; returns its answer.
async fn forward(sink: &Sink, parts: hyper::http::request::Parts, body: Bytes) -> Result<Response<Body>, String> {
    let (client, base) = sink.forward.as_ref().expect("forward mode");
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut b = Request::builder().method(parts.method).uri(format!("{base}{pq}"));
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST {
            b = b.header(k, v);
        }
    }
    let req = b.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("upstream {base}: {e}"))?;
    let (p, b) = resp.into_parts();
    let bytes = b.collect().await.map_err(|e| format!("upstream {base}: {e}"))?.to_bytes();
    Ok(Response::from_parts(p, Full::new(bytes)))
}

/// `bulk-sink --port P [--expect N --done-file F] [--save-dir D] [--forward URL]`
pub fn main(args: &Args) -> Result<(), String> {
    let port: u16 = args.num("--port", None)?;
    let expect = args.opt("--expect").map(|_| args.num("--expect", None)).transpose()?;
    let done_file = args.opt("--done-file").map(PathBuf::from);
    if expect.is_some() != done_file.is_some() {
        return Err("--expect and --done-file go together".into());
    }
    let save_dir = args.opt("--save-dir").map(PathBuf::from);
    if let Some(d) = &save_dir {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let forward = args.opt("--forward").map(|u| {
        let _guard = rt.enter();
        (Client::builder(TokioExecutor::new()).build_http(), u.trim_end_matches('/').to_string())
    });
    let sink = Arc::new(Sink { stats: Mutex::new(Stats::default()), expect, done_file, save_dir, forward });
    rt.block_on(serve(sink.clone(), port))?;

    let s = sink.lock();
    let me = procfs::read("self")?;
    println!(
        "RESULT docs={} acked={} unique_ids={} duplicates={} bodies={} bytes={} bad_bodies={} item_errors={} other_requests={} first_ns={} last_ns={} cpu_s={:.3} hwm_kb={}",
        s.docs,
        s.acked,
        s.ids.len(),
        s.docs - s.ids.len() as u64,
        s.bodies,
        s.bytes,
        s.bad_bodies,
        s.item_errors,
        s.other,
        s.first_ns.unwrap_or(0),
        s.last_ns,
        me.cpu_s,
        me.hwm_kb
    );
    Ok(())
}

/// Serves until SIGTERM or SIGINT.
async fn serve(sink: Arc<Sink>, port: u16) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("port {port}: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    eprintln!("bulk-sink: listening on 127.0.0.1:{port}");
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, _) = accepted.map_err(|e| format!("accept: {e}"))?;
                let _ = stream.set_nodelay(true);
                let sink = sink.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(sink.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        eprintln!("bulk-sink: connection: {e}");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTION: &str = r#"{"create":{"_index":"perf","_id":"AAAAAAAAAAAAAAAAAAAAAA"}}"#;

    fn body(docs: &[(&str, &str)]) -> String {
        docs.iter().map(|(a, s)| format!("{a}\n{s}\n")).collect()
    }

    #[test]
    fn good_bodies() {
        let mut ids = Ids::default();
        let two = body(&[
            (ACTION, r#"{"message":"a \"q\" \u0000 é","host":{"name":"h"}}"#),
            (r#"{"create":{"_index":"perf","_id":"x1"}}"#, r#"{"@timestamp":"2026-01-01T00:00:00.000Z","message":""}"#),
        ]);
        assert_eq!(check_bulk(two.as_bytes(), &mut ids), Ok(2));
        assert_eq!(ids.len(), 2);
        assert_eq!(check_bulk(two.as_bytes(), &mut ids), Ok(2));
        assert_eq!(ids.len(), 2, "ids seen again are not new");
    }

    #[test]
    fn bad_bodies() {
        // (body, error fragment)
        let table: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (format!("{ACTION}\n{{\"message\":1}}"), "newline"),
            (format!("{ACTION}\n"), "no source line"),
            (format!("{ACTION}\n{{\"message\":\"a\nb\"}}\n"), "line 2"),
            (format!("{ACTION}\n[1]\n"), "not a JSON object"),
            (format!("{ACTION}\n{{\"msg\":1}}\n"), "missing field `message`"),
            (format!("{ACTION}\n{{\"message\":1,\"message\":2}}\n"), "duplicate field"),
            (format!("{ACTION}\n{{\"message\":\"\x01\"}}\n"), "control character"),
            ("{\"index\":{\"_index\":\"i\",\"_id\":\"a\"}}\n{\"message\":1}\n".into(), "missing field `create`"),
            ("{\"create\":{\"_index\":\"i\"}}\n{\"message\":1}\n".into(), "missing field `_id`"),
            ("{\"create\":{\"_index\":\"\",\"_id\":\"a\"}}\n{\"message\":1}\n".into(), "empty _index"),
            (format!("{ACTION}\n{{\"message\":1}} x\n"), "trailing characters"),
            (format!("{ACTION}\n\n"), "line 2"),
        ];
        for (b, want) in table {
            let e = check_bulk(b.as_bytes(), &mut Ids::default()).expect_err(&b);
            assert!(e.contains(want), "{b:?}: {e}");
        }
    }

    #[test]
    fn answers() {
        let a = all_created(3);
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["errors"], false);
        assert_eq!(v["items"].as_array().unwrap().len(), 3);
        assert_eq!(v["items"][2]["create"]["status"], 201);
        assert_eq!(count_answer(&a, 3), Ok((3, 0)));
        assert_eq!(all_created(0), br#"{"took":1,"errors":false,"items":[]}"#);
        let mixed = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}},{"create":{"status":429}}]}"#;
        assert_eq!(count_answer(mixed, 3), Ok((2, 1)));
        assert!(count_answer(mixed, 2).is_err());
        assert_eq!(count_answer(br#"{"errors":false}"#, 7), Ok((7, 0)));
    }
}
