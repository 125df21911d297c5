//! `bulk-send`: Elasticsearch's own intake ceiling. Replays `_bulk` bodies
//! saved by `bulk-sink --save-dir` (exactly what the transfer sent) to a
//! server with `--workers` requests in flight, the transfer's concurrency,
//! after putting the saved index templates. Nothing is built or consumed:
//! what is left is the server's speed.
//!
//! Items refused for now (429, 5xx) or whole requests refused that way are
//! sent again (only those items' documents), like the transfer does, so the
//! count at the end is complete. Prints `RESULT docs=… stored=… refused=…
//! requests=… secs=… first_ns=… last_ns=…`, timed from the first request to
//! the last answer.

use crate::{now_ns, Args};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// The query the transfer sends with every `_bulk`.
const BULK_QUERY: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error";

#[derive(Default)]
struct Totals {
    docs: u64,
    stored: u64,
    refused: u64,
    requests: u64,
    retried: u64,
}

async fn send(client: &HttpClient, method: Method, url: &str, body: Bytes) -> Result<(u16, Bytes), String> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/x-ndjson")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| format!("{url}: {e}"))?.to_bytes();
    Ok((status, body))
}

/// Action+source line pairs of a body.
fn pairs(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut start, mut lines) = (0, 0);
    for nl in memchr::memchr_iter(b'\n', body) {
        lines += 1;
        if lines % 2 == 0 {
            out.push(&body[start..=nl]);
            start = nl + 1;
        }
    }
    out
}

/// Sends one body until every document has a final answer.
async fn deliver(client: &HttpClient, url: &str, body: Bytes, totals: &Mutex<Totals>) -> Result<(), String> {
    let mut body = body;
    let mut backoff = Duration::from_millis(100);
    loop {
        let docs = pairs(&body);
        let (status, answer) = send(client, Method::POST, url, body.clone()).await?;
        totals.lock().unwrap_or_else(|e| e.into_inner()).requests += 1;
        let mut again: Vec<&[u8]> = Vec::new();
        if status == 429 || status >= 500 {
            again = docs.clone();
        } else if !(200..300).contains(&status) {
            return Err(format!("{url}: status {status}: {}", String::from_utf8_lossy(&answer)));
        } else {
            let v: serde_json::Value =
                serde_json::from_slice(&answer).map_err(|e| format!("{url}: answer is not JSON: {e}"))?;
            let items = v.get("items").and_then(|i| i.as_array());
            let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
            match items {
                None if v.get("errors") == Some(&serde_json::Value::Bool(false)) => t.stored += docs.len() as u64,
                None => return Err(format!("{url}: no items in {v}")),
                Some(items) if items.len() != docs.len() => {
                    return Err(format!("{url}: {} items for {} documents", items.len(), docs.len()))
                }
                Some(items) => {
                    for (item, doc) in items.iter().zip(&docs) {
                        let status =
                            item.as_object().and_then(|o| o.values().next()).and_then(|a| a.get("status")?.as_u64());
                        match status {
                            Some(200..=299 | 409) => t.stored += 1,
                            Some(429 | 500..=599) => again.push(doc),
                            _ => t.refused += 1,
                        }
                    }
                }
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        totals.lock().unwrap_or_else(|e| e.into_inner()).retried += again.len() as u64;
        body = Bytes::from(again.concat());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `bulk-send --url U --dir D [--workers W]`
pub fn main(args: &Args) -> Result<(), String> {
    let base = args.req("--url")?.trim_end_matches('/').to_string();
    let dir = Path::new(args.req("--dir")?);
    let workers: usize = args.num("--workers", Some(4))?;
    let mut bodies = Vec::new();
    let mut templates = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let read = || std::fs::read(dir.join(&name)).map_err(|e| format!("{name}: {e}"));
        if name.starts_with("bulk-") && name.ends_with(".ndjson") {
            bodies.push(Bytes::from(read()?));
        } else if let Some(t) = name.strip_prefix("template-").and_then(|n| n.strip_suffix(".json")) {
            templates.push((t.to_string(), Bytes::from(read()?)));
        }
    }
    if bodies.is_empty() {
        return Err(format!("no bulk-*.ndjson in {}", dir.display()));
    }
    let docs: u64 = bodies.iter().map(|b| pairs(b).len() as u64).sum();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let totals = Arc::new(Mutex::new(Totals { docs, ..Totals::default() }));
    let (first_ns, secs) = rt.block_on(async {
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        for (name, body) in templates {
            let url = format!("{base}/_index_template/{name}");
            let (status, answer) = send(&client, Method::PUT, &url, body).await?;
            if !(200..300).contains(&status) {
                return Err(format!("{url}: {status} {}", String::from_utf8_lossy(&answer)));
            }
        }
        let queue = Arc::new(Mutex::new(bodies.into_iter().collect::<VecDeque<_>>()));
        let url = Arc::new(format!("{base}{BULK_QUERY}"));
        let first_ns = now_ns();
        let t = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (client, queue, url, totals) = (client.clone(), queue.clone(), url.clone(), totals.clone());
                tokio::spawn(async move {
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        match next {
                            Some(body) => deliver(&client, &url, body, &totals).await?,
                            None => return Ok::<(), String>(()),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
        Ok((first_ns, t.elapsed().as_secs_f64()))
    })?;
    let t = totals.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "bulk-send: {} documents in {secs:.2}s ({:.0} docs/s), {} requests",
        t.docs,
        t.docs as f64 / secs,
        t.requests
    );
    println!(
        "RESULT docs={} stored={} refused={} retried={} requests={} workers={workers} secs={secs:.3} first_ns={first_ns} last_ns={}",
        t.docs,
        t.stored,
        t.refused,
        t.retried,
        t.requests,
        now_ns()
    );
    if t.stored + t.refused != t.docs {
        return Err(format!("{} documents but {} stored and {} refused", t.docs, t.stored, t.refused));
    }
    Ok(())
}
