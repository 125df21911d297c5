//! es: sends `_bulk` requests to Elasticsearch and sees every document
//! through to a final answer: stored, already there, or dead-lettered.
//!
//! A [`Request`] is a body built by [`crate::elastic::body::BulkBody`] plus, per
//! document, the acknowledgement it owes its Kafka partition. A worker posts
//! it with `filter_path` so Elasticsearch answers only what is needed,
//! classifies the answer per item ([`crate::elastic::classify::classify`]) and then:
//! - stored or 409 (a redelivery of a document already there): acknowledged;
//! - 429 / 5xx items: sent again, only those, with exponential backoff and
//!   jitter, for as long as it takes (backpressure, not loss);
//! - refused for good (mapping errors…): written to the dead-letter
//!   destination with the error, then acknowledged;
//! - the whole request refused with 429 / 5xx, or no connection: sent again
//!   whole; 413: split in halves.
//!
//! The body is never rebuilt from records: a retry concatenates the failed
//! documents' action+source line pairs out of the original body.

use crate::common::ack::BatchAck;
use crate::config::{DeadLetter, EsConfig, KafkaConfig};
use crate::elastic::classify::{classify, ItemError, ItemOutcome, Outcomes};
use crate::elastic::stats::TransferStats;
use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// The partition a group of documents came from, and what they owe it.
#[derive(Debug)]
pub struct Slot {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Counted down once per document of this slot reaching a final answer.
    pub ack: Arc<BatchAck>,
}

/// One `_bulk` request: the body, and for document `i` its slot `docs[i]`.
#[derive(Debug)]
pub struct Request {
    pub body: Bytes,
    pub docs: Vec<u16>,
    pub slots: Vec<Slot>,
    /// When each document's line was read (ms since the epoch; 0: unknown),
    /// for the end-to-end latency; empty when not kept.
    pub read_ms: Vec<i64>,
}

/// The HTTP side: nodes in rotation, auth, TLS.
pub struct EsClient {
    http: reqwest::Client,
    /// `<node>/_bulk?filter_path=…` per node.
    bulk_urls: Vec<String>,
    next: AtomicUsize,
    auth: Auth,
}

enum Auth {
    None,
    Basic(String, String),
    ApiKey(String),
}

/// What came back for a request.
enum Answer {
    /// HTTP status and body.
    Status(u16, Vec<u8>),
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
}

impl EsClient {
    pub fn new(cfg: &EsConfig) -> Result<EsClient, String> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.workers);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("es.ca_file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("es.ca_file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| format!("es: {e}"))?;
        let auth = match (&cfg.api_key, &cfg.username, &cfg.password) {
            (Some(key), _, _) => Auth::ApiKey(format!("ApiKey {key}")),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.clone()),
            _ => Auth::None,
        };
        let bulk_urls =
            cfg.nodes.iter().map(|n| format!("{n}/_bulk?filter_path=errors,items.*.status,items.*.error")).collect();
        Ok(EsClient { http, bulk_urls, next: AtomicUsize::new(0), auth })
    }

    async fn post_bulk(&self, body: Bytes) -> Answer {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bulk_urls.len();
        let req = self
            .authorize(self.http.post(&self.bulk_urls[i]).header("Content-Type", "application/x-ndjson").body(body));
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(b) => Answer::Status(status, b.to_vec()),
                    Err(e) => Answer::Unreachable(format!("{}: reading the answer: {e}", self.node(i))),
                }
            }
            Err(e) => Answer::Unreachable(format!("{}: {e}", self.node(i))),
        }
    }

    fn node(&self, i: usize) -> &str {
        self.bulk_urls[i].split("/_bulk").next().unwrap_or("")
    }

    /// Installs (or replaces) the index template `name`. `Err(None)`: no
    /// node answered (try again later); `Err(Some(msg))`: refused for good.
    pub async fn put_template(&self, name: &str, body: Vec<u8>) -> Result<(), Option<String>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bulk_urls.len();
        let url = format!("{}/_index_template/{name}", self.node(i));
        let req = self.authorize(self.http.put(&url).header("Content-Type", "application/json").body(body));
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => Err(None),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.bytes().await.map(|b| excerpt(&b)).unwrap_or_default();
                Err(Some(format!("{url}: {status} {text}")))
            }
            Err(e) => {
                tracing::warn!("{url}: {e}");
                Err(None)
            }
        }
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::ApiKey(k) => req.header("Authorization", k),
        }
    }

    /// Whether any node answers `GET /` (for readiness).
    pub async fn ping(&self) -> bool {
        for u in &self.bulk_urls {
            let base = u.split("/_bulk").next().unwrap_or("");
            if self.http.get(base).send().await.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
        }
        false
    }
}

// --- Searches (the search page over Elasticsearch, see `search`) ----------

impl EsClient {
    /// POSTs a JSON body to `path` (`index/_search?…`) on the next node in
    /// rotation: the status and the answer, or why there was none.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bulk_urls.len();
        let url = format!("{}/{}", self.node(i), path.trim_start_matches('/'));
        let mut req = self.http.post(&url).header("Content-Type", "application/json").body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::ApiKey(k) => req.header("Authorization", k),
        };
        let resp = req.send().await.map_err(|e| format!("{}: {e}", self.node(i)))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| format!("{}: reading the answer: {e}", self.node(i)))?;
        Ok((status, body.to_vec()))
    }
}

/// Where refused documents go.
pub enum DeadLetterSink {
    Kafka(FutureProducer),
    File(Mutex<tokio::fs::File>),
}

impl DeadLetterSink {
    /// Opens `cfg`'s destination; `kafka` (brokers and `[kafka.producer]`)
    /// is needed for [`DeadLetter::Kafka`].
    pub async fn open(cfg: &DeadLetter, kafka: Option<&KafkaConfig>) -> Result<DeadLetterSink, String> {
        match cfg {
            DeadLetter::Kafka => {
                let Some(k) = kafka else {
                    return Err("dead letters to Kafka need [kafka] address (or es.dead_letter_path)".into());
                };
                crate::kafka::dead_letter_producer(k)
                    .create()
                    .map(DeadLetterSink::Kafka)
                    .map_err(|e| format!("dead-letter producer: {e}"))
            }
            DeadLetter::File(path) => {
                if let Some(dir) = path.parent() {
                    let _ = tokio::fs::create_dir_all(dir).await;
                }
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map(|f| DeadLetterSink::File(Mutex::new(f)))
                    .map_err(|e| format!("es.dead_letter_path {}: {e}", path.display()))
            }
        }
    }

    /// Stores one refused document durably; retries until it is stored, so
    /// its acknowledgement (which lets the Kafka offset move) is earned.
    async fn put(&self, topic: &str, doc: &[u8], err: &ItemError, max_backoff: Duration) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let res = match self {
                DeadLetterSink::Kafka(p) => {
                    let status = err.status.to_string();
                    let error = err.to_string();
                    let dlq = format!("{topic}.dlq");
                    let headers = OwnedHeaders::new()
                        .insert(Header { key: "error", value: Some(error.as_str()) })
                        .insert(Header { key: "status", value: Some(status.as_str()) })
                        .insert(Header { key: "topic", value: Some(topic) });
                    let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq).payload(doc).headers(headers);
                    p.send(rec, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e.to_string())
                }
                DeadLetterSink::File(f) => {
                    let mut line = Vec::with_capacity(doc.len() + 128);
                    line.extend_from_slice(b"{\"topic\":");
                    line.extend_from_slice(serde_json::to_string(topic).unwrap_or_default().as_bytes());
                    line.extend_from_slice(b",\"error\":");
                    line.extend_from_slice(serde_json::to_string(&err.to_string()).unwrap_or_default().as_bytes());
                    line.extend_from_slice(b",\"doc\":");
                    line.extend_from_slice(doc);
                    line.extend_from_slice(b"}\n");
                    let mut f = f.lock().await;
                    match f.write_all(&line).await {
                        Ok(()) => f.sync_data().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            match res {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(topic, "dead-letter write failed: {e}; retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
    }
}

/// Everything a worker needs.
pub struct Worker {
    pub client: EsClient,
    pub dead_letter: DeadLetterSink,
    pub stats: Arc<TransferStats>,
    pub max_backoff: Duration,
}

impl Worker {
    /// Sees every document of `req` to a final answer.
    pub async fn process(&self, req: Request) {
        let pairs = doc_ranges(&req.body);
        if pairs.len() != req.docs.len() {
            // A bug, not bad input: the builder emits two lines per document.
            tracing::error!(docs = req.docs.len(), lines = pairs.len(), "bulk body does not match its documents");
        }
        let mut outcomes = Outcomes::new();
        let mut work: Vec<Vec<usize>> = vec![(0..pairs.len()).collect()];
        let mut backoff = Duration::from_millis(100);
        while let Some(pending) = work.pop() {
            let body =
                if pending.len() == pairs.len() { req.body.clone() } else { subset(&req.body, &pairs, &pending) };
            self.stats.bulk_requests.fetch_add(1, Ordering::Relaxed);
            self.stats.bulk_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let answer = self.client.post_bulk(body).await;
            self.stats.bulk_latency.observe(started.elapsed());
            // 0: no answer.
            let failed = match &answer {
                Answer::Unreachable(_) => Some(0),
                Answer::Status(s, _) => (*s >= 400).then_some(*s),
            };
            self.stats.es_answered(failed != Some(0));
            if let Some(status) = failed {
                self.stats.es_error(status, 1);
            }
            let mut retry = Vec::new();
            match answer {
                Answer::Unreachable(e) => {
                    self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "Elasticsearch unreachable ({e}); retrying {} documents in {:?}",
                        pending.len(),
                        backoff
                    );
                    retry = pending;
                }
                Answer::Status(413, _) if pending.len() > 1 => {
                    let half = pending.len() / 2;
                    tracing::info!(docs = pending.len(), "request too large (413): splitting it");
                    work.push(pending[half..].to_vec());
                    work.push(pending[..half].to_vec());
                    continue;
                }
                Answer::Status(status, text) if status == 429 || status >= 500 => {
                    self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        status,
                        "Elasticsearch refused the request for now ({}); retrying {} documents in {:?}",
                        excerpt(&text),
                        pending.len(),
                        backoff
                    );
                    retry = pending;
                }
                Answer::Status(status, text) if !(200..300).contains(&status) => {
                    // The request itself was refused for good (or one document
                    // alone is too large): each document goes to the dead letter.
                    self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                    let err = ItemError { status, kind: "request_refused".into(), reason: excerpt(&text) };
                    let rejected: Vec<_> = pending.iter().map(|&i| (i, err.clone())).collect();
                    self.reject_all(&req, &pairs, &rejected).await;
                }
                Answer::Status(_, mut text) => match classify(&mut text, pending.len(), &mut outcomes) {
                    Err(e) => {
                        self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("{e}; retrying {} documents", pending.len());
                        retry = pending;
                    }
                    Ok(()) => {
                        let mut rejected = Vec::new();
                        let mut first_retry = None;
                        let now = crate::common::clock::now_ms();
                        for (k, outcome) in outcomes.iter().enumerate() {
                            let i = pending[k];
                            match outcome {
                                ItemOutcome::Done => {
                                    self.stats.docs_indexed.fetch_add(1, Ordering::Relaxed);
                                    self.acked(&req, i, now);
                                }
                                ItemOutcome::Duplicate => {
                                    self.stats.docs_duplicate.fetch_add(1, Ordering::Relaxed);
                                    self.acked(&req, i, now);
                                }
                                ItemOutcome::Retry(err) => {
                                    first_retry.get_or_insert_with(|| err.clone());
                                    self.stats.es_error(err.status, 1);
                                    retry.push(i);
                                }
                                ItemOutcome::Reject(err) => {
                                    self.stats.es_error(err.status, 1);
                                    rejected.push((i, err.clone()));
                                }
                            }
                        }
                        if let Some(err) = first_retry {
                            tracing::warn!(
                                "{} documents refused for now (first: {err}); retrying them in {:?}",
                                retry.len(),
                                backoff
                            );
                        }
                        if !rejected.is_empty() {
                            self.reject_all(&req, &pairs, &rejected).await;
                        }
                    }
                },
            }
            if retry.is_empty() {
                backoff = Duration::from_millis(100);
            } else {
                self.stats.docs_retried.fetch_add(retry.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(self.max_backoff);
                work.push(retry);
            }
        }
    }

    /// Document `i` reached its final answer: counts its slot down and
    /// observes its end-to-end latency.
    fn acked(&self, req: &Request, i: usize, now_ms: i64) {
        req.slots[req.docs[i] as usize].ack.ack();
        if let Some(&read) = req.read_ms.get(i).filter(|&&t| t > 0) {
            self.stats.e2e_latency.observe_ms(now_ms - read);
        }
    }

    /// Sends refused documents to the dead letter, then acknowledges them.
    /// One log line per request (the first error stands for the rest; each
    /// document's error is at debug level and in the dead letter itself).
    async fn reject_all(&self, req: &Request, pairs: &[Range<usize>], rejected: &[(usize, ItemError)]) {
        if let Some((i, err)) = rejected.first() {
            let slot = &req.slots[req.docs[*i] as usize];
            tracing::error!(topic = %slot.topic, partition = slot.partition, "{} documents refused for good, sent to the dead letter; first: {err}", rejected.len());
        }
        for (i, err) in rejected {
            let slot = &req.slots[req.docs[*i] as usize];
            let pair = &req.body[pairs[*i].clone()];
            // The source line: the second line of the pair, without its newline.
            let nl = memchr::memchr(b'\n', pair).map(|p| p + 1).unwrap_or(0);
            let doc = pair[nl..].strip_suffix(b"\n").unwrap_or(&pair[nl..]);
            tracing::debug!(topic = %slot.topic, partition = slot.partition, "document refused for good: {err}");
            self.dead_letter.put(&slot.topic, doc, err, self.max_backoff).await;
            self.stats.docs_dead_lettered.fetch_add(1, Ordering::Relaxed);
            self.acked(req, *i, crate::common::clock::now_ms());
        }
    }
}

/// The worker pool: a queue of requests and the tasks that see each one
/// through. A full queue is the backpressure of whoever sends.
pub struct Workers {
    /// Where requests go; dropping every clone ends the tasks once the
    /// queue is empty.
    pub tx: tokio::sync::mpsc::Sender<Request>,
    /// What the tasks share (the client also installs templates).
    pub worker: Arc<Worker>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// `[es] workers` tasks on `rt` behind a queue of `queue` requests, with
    /// the client and the dead letter `es` asks for (`kafka`: for dead
    /// letters to Kafka).
    pub fn start(
        rt: &tokio::runtime::Runtime,
        es: &EsConfig,
        kafka: Option<&KafkaConfig>,
        stats: Arc<TransferStats>,
        queue: usize,
    ) -> Result<Workers, crate::config::ConfigError> {
        let need = |key: &str, message: String| crate::config::ConfigError { key: key.into(), message };
        let client = EsClient::new(es).map_err(|m| need("es", m))?;
        let dead_letter =
            rt.block_on(DeadLetterSink::open(&es.dead_letter, kafka)).map_err(|m| need("es.dead_letter", m))?;
        let worker = Arc::new(Worker {
            client,
            dead_letter,
            stats,
            max_backoff: Duration::from_millis(es.retry_max_backoff_ms),
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Request>(queue.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let tasks = (0..es.workers)
            .map(|_| {
                let (rx, w) = (rx.clone(), worker.clone());
                rt.spawn(async move {
                    loop {
                        // The lock is held only while waiting for the next request.
                        let req = rx.lock().await.recv().await;
                        match req {
                            Some(r) => w.process(r).await,
                            None => break,
                        }
                    }
                })
            })
            .collect();
        Ok(Workers { tx, worker, tasks })
    }

    /// Closes the queue and waits up to `timeout` for every request in it
    /// and in flight; false if some were still unanswered then (their
    /// records are read again at the next start).
    pub fn finish(self, rt: &tokio::runtime::Handle, timeout: Duration) -> bool {
        let Workers { tx, tasks, .. } = self;
        drop(tx);
        rt.block_on(async {
            tokio::time::timeout(timeout, async {
                for t in tasks {
                    let _ = t.await;
                }
            })
            .await
            .is_ok()
        })
    }
}

/// Byte range of each document's action+source line pair in a body.
pub fn doc_ranges(body: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut lines = 0;
    for nl in memchr::memchr_iter(b'\n', body) {
        lines += 1;
        if lines % 2 == 0 {
            out.push(start..nl + 1);
            start = nl + 1;
        }
    }
    out
}

/// A body of only the documents `pick` (indices into `pairs`).
fn subset(body: &[u8], pairs: &[Range<usize>], pick: &[usize]) -> Bytes {
    let mut out = Vec::with_capacity(pick.iter().map(|&i| pairs[i].len()).sum());
    for &i in pick {
        out.extend_from_slice(&body[pairs[i].clone()]);
    }
    Bytes::from(out)
}

/// `d` ± 25 %, so many workers do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
    let f = 0.75 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(f)
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]);
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ranges_and_subsets() {
        let body = b"{\"create\":{}}\n{\"m\":1}\n{\"create\":{}}\n{\"m\":2}\n{\"create\":{}}\n{\"m\":3}\n";
        let r = doc_ranges(body);
        assert_eq!(r.len(), 3);
        assert_eq!(&body[r[1].clone()], b"{\"create\":{}}\n{\"m\":2}\n");
        assert_eq!(&subset(body, &r, &[2, 0])[..], b"{\"create\":{}}\n{\"m\":3}\n{\"create\":{}}\n{\"m\":1}\n");
        assert!(doc_ranges(b"").is_empty());
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_millis(1000);
        let j = jitter(d);
        assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250));
    }
}
