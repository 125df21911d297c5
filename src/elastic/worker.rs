//! The workers: they send `_bulk` requests to Elasticsearch and see every
//! document through to a final answer: stored, already there, or
//! dead-lettered.
//!
//! A [`Request`] is a body built by [`crate::elastic::body::BulkBody`] plus, per
//! document, the acknowledgement it owes its Kafka partition. A worker posts
//! it with `filter_path` so Elasticsearch answers only what is needed,
//! classifies the answer per item ([`classify`]) and then:
//! - stored or 409 (a redelivery of a document already there): acknowledged;
//! - 429 / 5xx items: sent again, only those, with exponential backoff and
//!   jitter, for as long as it takes (backpressure, not loss);
//! - refused over its fields (a mapping conflict, the field limit) when it
//!   carries fields merged from a JSON line (`parse_json`): sent once more
//!   with only our fields, the whole line in `message` and `log.flags`
//!   `json_unmerged` (review finding 12: one line fixing a field's type
//!   must not send every later line to the dead letter);
//! - refused for good (mapping errors…): written to the dead-letter
//!   destination with the error, then acknowledged;
//! - the whole request refused with 429 / 5xx, or no connection: sent again
//!   whole; 413: split in halves;
//! - 401 / 403 (our credentials refused): sent again whole with backoff,
//!   never dead-lettered (a password being rotated must not lose lines),
//!   logged at most every [`DENIED_LOG_EVERY_MS`], and `/health/ready` is
//!   503 while it lasts.
//!
//! That policy is `next_step`, a pure function of the answer (its unit test
//! is the table of it); [`Worker::process`] carries it out.
//!
//! The body is never rebuilt from records: a retry concatenates the failed
//! documents' action+source line pairs out of the original body.

use crate::common::ack::BatchAck;
use crate::common::backoff::Backoff;
use crate::config::{EsConfig, KafkaConfig};
use crate::elastic::classify::{classify, excerpt, ClassifyError, ItemError, ItemOutcome, Outcomes};
use crate::elastic::client::{Answer, EsClient, Purpose, ANSWER_EXCERPT};
use crate::elastic::dead_letter::DeadLetterSink;
use crate::elastic::stats::TransferStats;
use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The first wait before a retry (of a request, or of a dead-letter
/// write); it doubles up to `[es] retry_max_backoff_ms`.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(100);

/// How often a refusal of our credentials is logged while it lasts.
pub(crate) const DENIED_LOG_EVERY_MS: i64 = 10_000;

/// Lets a repeated message through at most once per period, counting the
/// ones held back in between.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    /// When the message was last let through (ms since the epoch; 0: never).
    last_ms: std::sync::atomic::AtomicI64,
    /// Held back since then.
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(held back since the last one)` when the message may be logged
    /// at `now_ms`, once per `every_ms`.
    pub(crate) fn allow(&self, now_ms: i64, every_ms: i64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < every_ms {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Another worker may log the same instant: one of them wins.
        self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).ok()?;
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

/// What a 401 or 403 means, for messages.
pub(crate) fn denied_words(status: u16) -> &'static str {
    if status == 401 {
        "authentication failed"
    } else {
        "forbidden"
    }
}

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

/// Everything a worker needs.
pub struct Worker {
    pub client: EsClient,
    pub dead_letter: DeadLetterSink,
    pub stats: Arc<TransferStats>,
    pub max_backoff: Duration,
    /// Paces the log line of refused credentials.
    pub denied_log: Throttle,
}

impl Worker {
    /// The retry pace: from [`FIRST_RETRY_WAIT`] up to `max_backoff`.
    fn backoff(&self) -> Backoff {
        Backoff::new(FIRST_RETRY_WAIT, self.max_backoff)
    }

    /// Sees every document of `req` to a final answer.
    pub async fn process(&self, req: Request) {
        let pairs = doc_ranges(&req.body);
        if pairs.len() != req.docs.len() {
            // A bug, not bad input: the builder emits two lines per document.
            tracing::error!(docs = req.docs.len(), lines = pairs.len(), "bulk body does not match its documents");
        }
        let mut outcomes = Outcomes::new();
        let mut work: Vec<Vec<usize>> = vec![(0..pairs.len()).collect()];
        let mut backoff = self.backoff();
        // Documents sent again without their merged fields: index → pair.
        let mut plain: HashMap<usize, Bytes> = HashMap::new();
        while let Some(pending) = work.pop() {
            let body = if pending.len() == pairs.len() && plain.is_empty() {
                req.body.clone()
            } else {
                subset(&req.body, &pairs, &pending, &plain)
            };
            self.stats.bulk_requests.fetch_add(1, Ordering::Relaxed);
            self.stats.bulk_bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let (node, answer) = self.client.post_bulk(body).await;
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
            let retry = match next_step(answer, pending.len(), &mut outcomes) {
                Step::Split => {
                    let half = pending.len() / 2;
                    tracing::info!(docs = pending.len(), "request too large (413): splitting it");
                    work.push(pending[half..].to_vec());
                    work.push(pending[..half].to_vec());
                    continue;
                }
                Step::RetryAll(why) => {
                    self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                    let (n, wait) = (pending.len(), backoff.peek());
                    match why {
                        Resend::Unreachable(e) => {
                            tracing::warn!("Elasticsearch unreachable ({e}); retrying {n} documents in {wait:?}")
                        }
                        Resend::Refused { status, excerpt } => tracing::warn!(
                            status,
                            "Elasticsearch refused the request for now ({excerpt}); retrying {n} documents in {wait:?}"
                        ),
                        Resend::Unclassified(e) => tracing::warn!("{e}; retrying {n} documents"),
                        Resend::Denied { status, excerpt } => {
                            self.stats.es_denied(status);
                            if let Some(held) =
                                self.denied_log.allow(crate::common::clock::now_ms(), DENIED_LOG_EVERY_MS)
                            {
                                tracing::error!(
                                    node,
                                    status,
                                    "Elasticsearch: {} for _bulk ({excerpt}); retrying {n} documents in {wait:?}, none dropped ({held} more refusals since the last message)",
                                    denied_words(status)
                                );
                            }
                        }
                    }
                    pending
                }
                Step::RejectAll(err) => {
                    self.stats.es_errors.fetch_add(1, Ordering::Relaxed);
                    let rejected: Vec<_> = pending.iter().map(|&i| (i, err.clone())).collect();
                    self.reject_all(&req, &pairs, &plain, &rejected).await;
                    Vec::new()
                }
                Step::PerItem => self.per_item(&req, &pairs, &mut plain, &pending, &outcomes, backoff.peek()).await,
            };
            if retry.is_empty() {
                backoff.reset();
            } else {
                self.stats.docs_retried.fetch_add(retry.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(backoff.next_wait()).await;
                work.push(retry);
            }
        }
    }

    /// Acts on each item of a classified answer for the documents `pending`:
    /// stored ones are acknowledged, merged ones refused over their fields
    /// get a `plain` version, the ones refused for good go to the dead
    /// letter; returns the ones to send again (in `wait`, for the log).
    async fn per_item(
        &self,
        req: &Request,
        pairs: &[Range<usize>],
        plain: &mut HashMap<usize, Bytes>,
        pending: &[usize],
        outcomes: &Outcomes,
        wait: Duration,
    ) -> Vec<usize> {
        let mut retry = Vec::new();
        let mut rejected = Vec::new();
        let mut first_retry = None;
        let now = crate::common::clock::now_ms();
        for (k, outcome) in outcomes.iter().enumerate() {
            let i = pending[k];
            match outcome {
                ItemOutcome::Done => {
                    self.stats.docs_indexed.fetch_add(1, Ordering::Relaxed);
                    self.acked(req, i, now);
                }
                ItemOutcome::Duplicate => {
                    self.stats.docs_duplicate.fetch_add(1, Ordering::Relaxed);
                    self.acked(req, i, now);
                }
                ItemOutcome::Retry(err) => {
                    first_retry.get_or_insert_with(|| err.clone());
                    self.stats.es_error(err.status, 1);
                    retry.push(i);
                }
                ItemOutcome::Reject(err) => {
                    self.stats.es_error(err.status, 1);
                    let unmerged = (is_mapping_refusal(err) && !plain.contains_key(&i))
                        .then(|| unmerged_pair(&req.body[pairs[i].clone()]))
                        .flatten();
                    match unmerged {
                        Some(p) => {
                            let slot = &req.slots[req.docs[i] as usize];
                            tracing::warn!(topic = %slot.topic, partition = slot.partition, "document refused over a field merged from its JSON line ({err}); sending it again with the line in message only");
                            self.stats.docs_unmerged.fetch_add(1, Ordering::Relaxed);
                            plain.insert(i, p);
                            retry.push(i);
                        }
                        None => rejected.push((i, err.clone())),
                    }
                }
            }
        }
        if let Some(err) = first_retry {
            tracing::warn!("{} documents refused for now (first: {err}); retrying them in {wait:?}", retry.len());
        }
        if !rejected.is_empty() {
            self.reject_all(req, pairs, plain, &rejected).await;
        }
        retry
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
    async fn reject_all(
        &self,
        req: &Request,
        pairs: &[Range<usize>],
        plain: &HashMap<usize, Bytes>,
        rejected: &[(usize, ItemError)],
    ) {
        if let Some((i, err)) = rejected.first() {
            let slot = &req.slots[req.docs[*i] as usize];
            tracing::error!(topic = %slot.topic, partition = slot.partition, "{} documents refused for good, sent to the dead letter; first: {err}", rejected.len());
        }
        for (i, err) in rejected {
            let slot = &req.slots[req.docs[*i] as usize];
            let pair = pair_of(&req.body, pairs, plain, *i);
            // The source line: the second line of the pair, without its newline.
            let nl = memchr::memchr(b'\n', pair).map(|p| p + 1).unwrap_or(0);
            let doc = pair[nl..].strip_suffix(b"\n").unwrap_or(&pair[nl..]);
            tracing::debug!(topic = %slot.topic, partition = slot.partition, "document refused for good: {err}");
            if self.dead_letter.put(&slot.topic, doc, err, self.backoff()).await {
                self.stats.docs_dead_letter_fallback.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.docs_dead_lettered.fetch_add(1, Ordering::Relaxed);
            self.acked(req, *i, crate::common::clock::now_ms());
        }
    }
}

/// What to do with a request's pending documents once it was answered:
/// the retry policy, apart from the I/O that carries it out.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// 413 for more than one document: each half is sent on its own.
    Split,
    /// Nothing was stored: every pending document is sent again after a wait.
    RetryAll(Resend),
    /// The request itself was refused for good (or one document alone is
    /// too large): every pending document goes to the dead letter with this
    /// error.
    RejectAll(ItemError),
    /// A 2xx answer, classified: each item says what becomes of its document.
    PerItem,
}

/// Why a whole request is sent again.
#[derive(Debug, PartialEq, Eq)]
enum Resend {
    /// No answer.
    Unreachable(String),
    /// 429 or 5xx: refused for now; the start of the answer.
    Refused { status: u16, excerpt: String },
    /// A 2xx answer that does not match the request.
    Unclassified(ClassifyError),
    /// 401 or 403: our credentials were refused; the start of the answer.
    Denied { status: u16, excerpt: String },
}

/// The [`Step`] after `answer` to a request of `pending` documents. A 2xx
/// answer is classified into `outcomes` (item `k` answers the `k`-th pending
/// document), which [`Step::PerItem`] leaves filled.
fn next_step(answer: Answer, pending: usize, outcomes: &mut Outcomes) -> Step {
    match answer {
        Answer::Unreachable(e) => Step::RetryAll(Resend::Unreachable(e)),
        Answer::Status(413, _) if pending > 1 => Step::Split,
        Answer::Status(status, text) if status == 429 || status >= 500 => {
            Step::RetryAll(Resend::Refused { status, excerpt: excerpt(&text, ANSWER_EXCERPT) })
        }
        // Credentials refused: an operator's mistake or a rotation under
        // way, never the documents' fault, so they wait rather than go to
        // the dead letter.
        Answer::Status(status @ (401 | 403), text) => {
            Step::RetryAll(Resend::Denied { status, excerpt: excerpt(&text, ANSWER_EXCERPT) })
        }
        Answer::Status(status, text) if !(200..300).contains(&status) => Step::RejectAll(ItemError {
            status,
            kind: "request_refused".into(),
            reason: excerpt(&text, ANSWER_EXCERPT),
        }),
        Answer::Status(_, mut text) => match classify(&mut text, pending, outcomes) {
            Ok(()) => Step::PerItem,
            Err(e) => Step::RetryAll(Resend::Unclassified(e)),
        },
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
        for w in es.warnings() {
            tracing::warn!("{w}");
        }
        let client = EsClient::new(es, Purpose::Write)?;
        let dead_letter = rt.block_on(DeadLetterSink::open(&es.dead_letter, es.dead_letter_max_bytes, kafka))?;
        let worker = Arc::new(Worker {
            client,
            dead_letter,
            stats,
            max_backoff: Duration::from_millis(es.retry_max_backoff_ms),
            denied_log: Throttle::default(),
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

/// Document `i`'s action+source pair: its `plain` version if it has one,
/// else its bytes in `body`.
fn pair_of<'a>(body: &'a [u8], pairs: &[Range<usize>], plain: &'a HashMap<usize, Bytes>, i: usize) -> &'a [u8] {
    plain.get(&i).map_or(&body[pairs[i].clone()], |p| &p[..])
}

/// A body of only the documents `pick` (indices into `pairs`), each in its
/// `plain` version where it has one.
fn subset(body: &[u8], pairs: &[Range<usize>], pick: &[usize], plain: &HashMap<usize, Bytes>) -> Bytes {
    let mut out = Vec::with_capacity(pick.iter().map(|&i| pair_of(body, pairs, plain, i).len()).sum());
    for &i in pick {
        out.extend_from_slice(pair_of(body, pairs, plain, i));
    }
    Bytes::from(out)
}

/// A refusal over a document's fields rather than the request: a field's
/// type conflicting with the mapping, a strict mapping, or the index's
/// field limit.
fn is_mapping_refusal(err: &ItemError) -> bool {
    err.status == 400
        && (matches!(
            err.kind.as_str(),
            "mapper_parsing_exception" | "document_parsing_exception" | "strict_dynamic_mapping_exception"
        ) || (err.kind == "illegal_argument_exception" && err.reason.contains("field")))
}

/// The action+source pair of a merged document with only our fields
/// (see [`crate::elastic::body::without_merged_fields`]); `None` when it
/// has none merged.
fn unmerged_pair(pair: &[u8]) -> Option<Bytes> {
    let nl = memchr::memchr(b'\n', pair)? + 1;
    let doc = pair[nl..].strip_suffix(b"\n").unwrap_or(&pair[nl..]);
    let plain = crate::elastic::body::without_merged_fields(doc)?;
    let mut out = Vec::with_capacity(nl + plain.len() + 1);
    out.extend_from_slice(&pair[..nl]);
    out.extend_from_slice(&plain);
    out.push(b'\n');
    Some(Bytes::from(out))
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
        let none = HashMap::new();
        assert_eq!(&subset(body, &r, &[2, 0], &none)[..], b"{\"create\":{}}\n{\"m\":3}\n{\"create\":{}}\n{\"m\":1}\n");
        assert!(doc_ranges(b"").is_empty());
        let plain = HashMap::from([(0, Bytes::from_static(b"{\"create\":{}}\n{\"p\":1}\n"))]);
        assert_eq!(&subset(body, &r, &[2, 0], &plain)[..], b"{\"create\":{}}\n{\"m\":3}\n{\"create\":{}}\n{\"p\":1}\n");
    }

    #[test]
    fn a_merged_document_refused_over_a_field_gets_a_plain_pair() {
        let e = |status, kind: &str, reason: &str| ItemError { status, kind: kind.into(), reason: reason.into() };
        assert!(is_mapping_refusal(&e(400, "mapper_parsing_exception", "failed to parse field [status]")));
        assert!(is_mapping_refusal(&e(400, "document_parsing_exception", "[1:2] object mapping for [status]")));
        assert!(is_mapping_refusal(&e(
            400,
            "illegal_argument_exception",
            "Limit of total fields [1000] has been exceeded"
        )));
        assert!(!is_mapping_refusal(&e(400, "illegal_argument_exception", "something else")));
        assert!(!is_mapping_refusal(&e(413, "mapper_parsing_exception", "")));
        let pair = b"{\"create\":{\"_id\":\"x\"}}\n{\"message\":\"m\",\"status\":1}\n";
        let unmerged = unmerged_pair(pair).unwrap();
        let (action, doc) = unmerged.split_at(memchr::memchr(b'\n', &unmerged).unwrap() + 1);
        assert_eq!(action, b"{\"create\":{\"_id\":\"x\"}}\n");
        assert!(doc.ends_with(b"}\n") && doc.iter().filter(|&&b| b == b'\n').count() == 1);
        let doc: serde_json::Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(doc, serde_json::json!({"message": "m", "log": {"flags": ["json_unmerged"]}}));
        assert_eq!(unmerged_pair(b"{\"create\":{}}\n{\"message\":\"m\"}\n"), None, "nothing merged");
    }

    #[test]
    fn throttle_lets_one_through_per_period_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow(1_000, 10_000), Some(0));
        assert_eq!(t.allow(5_000, 10_000), None);
        assert_eq!(t.allow(10_999, 10_000), None);
        assert_eq!(t.allow(11_000, 10_000), Some(2));
        assert_eq!(t.allow(11_001, 10_000), None);
    }

    #[test]
    fn next_step_table() {
        use Resend::{Refused, Unclassified, Unreachable};
        use Step::*;
        let reject = |status, reason: &str| {
            RejectAll(ItemError { status, kind: "request_refused".into(), reason: reason.into() })
        };
        let busy = |status, excerpt: &str| RetryAll(Refused { status, excerpt: excerpt.into() });
        let long = "x".repeat(ANSWER_EXCERPT + 100);
        let cut = format!("{}…", &long[..ANSWER_EXCERPT]);
        // (status, 0: no answer; body, or why there was none; pending documents; step)
        let table: Vec<(u16, &str, usize, Step)> = vec![
            (
                0,
                "http://es1:9200: connection refused",
                3,
                RetryAll(Unreachable("http://es1:9200: connection refused".into())),
            ),
            (0, "", 0, RetryAll(Unreachable(String::new()))),
            // 2xx: per item, or everything again when the answer does not match.
            (200, r#"{"errors":false}"#, 2, PerItem),
            (201, r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400}}]}"#, 2, PerItem),
            (
                200,
                r#"{"errors":true,"items":[{"create":{"status":201}}]}"#,
                2,
                RetryAll(Unclassified(ClassifyError::ItemCount { expected: 2, got: 1 })),
            ),
            (
                200,
                "[1,2]",
                1,
                RetryAll(Unclassified(ClassifyError::Malformed {
                    what: "not a JSON object".into(),
                    excerpt: "[1,2]".into(),
                })),
            ),
            (
                299,
                r#"{"error":{"type":"t","reason":"r"},"status":400}"#,
                1,
                RetryAll(Unclassified(ClassifyError::Request {
                    status: Some(400),
                    kind: "t".into(),
                    reason: "r".into(),
                })),
            ),
            // 413: halves while there is more than one document.
            (413, "", 2, Split),
            (413, "", 1000, Split),
            (413, "too large", 1, reject(413, "too large")),
            // 429, 5xx: everything again.
            (429, "queue full", 2, busy(429, "queue full")),
            (500, "", 1, busy(500, "")),
            (503, "<html>\n503\n</html>", 1, busy(503, "<html> 503 </html>")),
            (599, &long, 4, busy(599, &cut)),
            // Anything else: refused for good, every document.
            (400, r#"{"error":"bad"}"#, 2, reject(400, r#"{"error":"bad"}"#)),
            (401, "unauthorized", 2, RetryAll(Resend::Denied { status: 401, excerpt: "unauthorized".into() })),
            (403, "forbidden", 1, RetryAll(Resend::Denied { status: 403, excerpt: "forbidden".into() })),
            (404, &long, 1, reject(404, &cut)),
            (301, "", 1, reject(301, "")),
            (100, "", 1, reject(100, "")),
            (300, "", 1, reject(300, "")),
        ];
        let mut outcomes = Outcomes::new();
        for (status, body, pending, want) in table {
            let answer = match status {
                0 => Answer::Unreachable(body.into()),
                s => Answer::Status(s, body.as_bytes().to_vec()),
            };
            let step = next_step(answer, pending, &mut outcomes);
            if step == PerItem {
                assert_eq!(outcomes.len(), pending, "{status} {body}");
            }
            assert_eq!(step, want, "{status} {body} for {pending}");
        }
    }
}
