//! Search: what the `/api/` endpoints ask and answer, served by the
//! embedded index or by Elasticsearch through the same [`Backend`].
//!
//! - **search**: matches in a time range, newest first, with highlights, and
//!   an opaque `cursor` for the next page (`search_after` in Elasticsearch;
//!   (`@timestamp`, `_seq`) in the embedded index).
//! - **histogram**: counts per fixed interval (a "nice" one, chosen for
//!   about the number of buckets asked), buckets aligned to multiples of
//!   the interval since the epoch (as Elasticsearch's `fixed_interval`).
//! - **context**: the lines around one line in its file (same host and
//!   path), in file order: (`@timestamp`, `_seq`) in the embedded index,
//!   (`@timestamp`, `log.offset`, `log.part`) with `search_after` in
//!   Elasticsearch. The time comes first so that a rotated file's
//!   successor at the same path follows it instead of interleaving by offset.
//! - **fields**: the most frequent values of host, path and topic (and, in
//!   Elasticsearch, of fields parsed from JSON lines) over a query's
//!   matches: postings counted against the matches in the embedded index,
//!   `terms` aggregations in Elasticsearch.
//! - **live**: lines that became searchable since the last poll. The
//!   embedded index numbers documents as it indexes them (`_seq`), so it
//!   follows exactly; Elasticsearch is asked for the last
//!   [`LIVE_LOOKBACK_MS`] again each time and ids already sent are skipped,
//!   since documents may become visible out of timestamp order.

use crate::common::clock::rfc3339_ms;
use crate::elastic::client::EsClient;
use crate::embedded::index::{Store, StoredField, StoredHit};
use crate::search::query::{self, Node};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Most hits one page returns.
pub const MAX_PAGE: usize = 1000;
/// Most buckets a histogram returns.
pub const MAX_BUCKETS: usize = 1000;
/// Most lines one live poll returns; past that, live skips ahead.
pub const LIVE_MAX: usize = 500;
/// Most lines `/api/context` returns on either side of a line.
pub const MAX_CONTEXT: usize = 500;
/// Most values `/api/fields` returns per field.
pub const MAX_FIELD_VALUES: usize = 50;
/// Most fields parsed from JSON lines `/api/fields` counts (Elasticsearch).
pub const MAX_PARSED_FIELDS: usize = 8;
/// How far back each live poll of Elasticsearch looks again.
pub const LIVE_LOOKBACK_MS: i64 = 30_000;

/// One matching line.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Hit {
    /// The document id (the same in both backends for the same line).
    pub id: String,
    /// RFC 3339, ms, UTC.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub ts_ms: i64,
    pub message: String,
    pub host: Option<String>,
    pub path: Option<String>,
    pub offset: Option<u64>,
    pub topic: String,
    /// Character ranges `[start, end)` of `message` the query matched.
    pub highlights: Vec<[usize; 2]>,
    /// `message` was cut ([`truncate`]); `GET /api/line?id=` has it whole.
    pub truncated: bool,
}

/// Cuts `h.message` to at most `max_bytes` (at a UTF-8 boundary), marking
/// it `truncated` and dropping the highlights past the cut.
pub fn truncate(h: &mut Hit, max_bytes: usize) {
    if h.message.len() <= max_bytes {
        return;
    }
    let cut = crate::common::text::prefix(&h.message, max_bytes).len();
    h.message.truncate(cut);
    h.message.shrink_to_fit();
    let chars = h.message.chars().count();
    h.highlights.retain(|r| r[1] <= chars);
    h.truncated = true;
}

/// A page of results.
#[derive(Serialize, Debug)]
pub struct Page {
    /// Every match in the range (not just this page).
    pub total: u64,
    pub hits: Vec<Hit>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub took_ms: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct Bucket {
    pub key_ms: i64,
    pub count: u64,
}

/// Matches per time bucket.
#[derive(Serialize, Debug)]
pub struct Histogram {
    pub from_ms: i64,
    pub to_ms: i64,
    pub interval_ms: i64,
    pub total: u64,
    pub buckets: Vec<Bucket>,
    pub took_ms: u64,
}

/// A line and its neighbours in its file (`GET /api/context`).
#[derive(Serialize, Debug)]
pub struct Context {
    /// The line asked for.
    pub hit: Hit,
    /// Lines before it, oldest first.
    pub before: Vec<Hit>,
    /// Lines after it, oldest first.
    pub after: Vec<Hit>,
    /// The file has lines before `before[0]` (ask again with its id).
    pub more_before: bool,
    /// The file has lines after the last of `after`.
    pub more_after: bool,
    pub took_ms: u64,
}

/// One value of a field and how many matches have it.
#[derive(Serialize, Debug, PartialEq)]
pub struct FieldValue {
    pub value: String,
    pub count: u64,
}

/// A field's most frequent values over the matches.
#[derive(Serialize, Debug, PartialEq)]
pub struct FieldTop {
    /// The name a query writes: `host`, `path`, `topic`, or a parsed field.
    pub field: String,
    pub values: Vec<FieldValue>,
    /// Matches whose value is not among `values`.
    pub other: u64,
    /// Counted over part of the values only (the embedded index counts at
    /// most 10,000 distinct values of a field per segment).
    pub partial: bool,
}

/// The field panel's counts (`GET /api/fields`).
#[derive(Serialize, Debug)]
pub struct Fields {
    /// Matches in the range.
    pub total: u64,
    pub fields: Vec<FieldTop>,
    pub took_ms: u64,
}

impl From<StoredField> for FieldTop {
    fn from(f: StoredField) -> FieldTop {
        FieldTop {
            field: f.name,
            values: f.values.into_iter().map(|(value, count)| FieldValue { value, count }).collect(),
            other: f.other,
            partial: f.partial,
        }
    }
}

/// Why a search failed: the HTTP layer maps these to 400, 502 and 500.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("bad query {0}")]
    Query(#[from] query::ParseError),
    /// A bad parameter: which one, and why.
    #[error("{param}: {message}")]
    BadRequest { param: &'static str, message: String },
    /// Elasticsearch did not answer, or failed.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn bad(param: &'static str, message: impl Into<String>) -> SearchError {
    SearchError::BadRequest { param, message: message.into() }
}

/// Where searches go.
pub enum Backend {
    Embedded(Arc<Store>),
    Elasticsearch(EsSearch),
}

/// Where a live view stands.
#[derive(Debug)]
pub enum LiveCursor {
    /// Embedded: the last `_seq` sent.
    Seq(u64),
    /// Elasticsearch: newest timestamp seen, and the ids sent within the lookback.
    Time { newest_ms: i64, sent: HashMap<String, i64> },
}

/// One page asked for: `size` matches of `q` in `[from_ms, to_ms)`,
/// newest first, after `cursor` (from the previous page).
#[derive(Clone, Copy)]
pub struct PageQuery<'a> {
    /// What to match.
    pub q: &'a Node,
    /// Start of the time range, ms since the epoch, included.
    pub from_ms: i64,
    /// End of the time range, excluded.
    pub to_ms: i64,
    /// Matches per page.
    pub size: usize,
    /// Where the previous page ended.
    pub cursor: Option<&'a str>,
    /// Messages longer than this are cut ([`truncate`]) as they are read
    /// (`[http] message_max_bytes`), so a page of huge lines never sits in
    /// memory whole (review finding 5).
    pub message_max_bytes: usize,
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::Elasticsearch(_) => "elasticsearch",
        }
    }

    /// One page of matches, newest first.
    pub async fn search(&self, p: PageQuery<'_>) -> Result<Page, SearchError> {
        let started = std::time::Instant::now();
        let PageQuery { q, from_ms, to_ms, cursor, message_max_bytes, .. } = p;
        let size = p.size.clamp(1, MAX_PAGE);
        let (total, hits, cursor) = match self {
            Backend::Embedded(store) => {
                let before = cursor.map(parse_index_cursor).transpose()?;
                let (store, q2) = (store.clone(), q.clone());
                let (total, stored) =
                    blocking(move || store.search(&q2, from_ms, to_ms, size, before, message_max_bytes)).await?;
                let next = (stored.len() == size)
                    .then(|| stored.last().map(|h| format!("ix:{}:{}", h.ts_ms, h.seq)))
                    .flatten();
                (total, stored.into_iter().map(hit_of).collect::<Vec<_>>(), next)
            }
            Backend::Elasticsearch(es) => es.search(PageQuery { size, ..p }).await?,
        };
        let hits = highlighted(q, hits).await?;
        Ok(Page { total, hits, cursor, took_ms: started.elapsed().as_millis() as u64 })
    }

    /// Matches in `[from_ms, to_ms)` per bucket, about `want` buckets.
    pub async fn histogram(&self, q: &Node, from_ms: i64, to_ms: i64, want: usize) -> Result<Histogram, SearchError> {
        let started = std::time::Instant::now();
        let interval = interval_for(to_ms.saturating_sub(from_ms), want.clamp(1, MAX_BUCKETS));
        let start = from_ms.div_euclid(interval).saturating_mul(interval);
        let n = (to_ms.saturating_sub(start).saturating_add(interval - 1) / interval).clamp(1, MAX_BUCKETS as i64 * 2)
            as usize;
        let counts = match self {
            Backend::Embedded(store) => {
                let (store, q2) = (store.clone(), q.clone());
                blocking(move || store.histogram(&q2, from_ms, to_ms, start, interval, n)).await?
            }
            Backend::Elasticsearch(es) => es.histogram(q, from_ms, to_ms, start, interval, n).await?,
        };
        let total = counts.iter().sum();
        let buckets = counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| Bucket { key_ms: start.saturating_add((i as i64).saturating_mul(interval)), count })
            .collect();
        Ok(Histogram {
            from_ms,
            to_ms,
            interval_ms: interval,
            total,
            buckets,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The whole line whose id is `id` (`None` when there is none).
    pub async fn line(&self, id: &str) -> Result<Option<Hit>, SearchError> {
        match self {
            Backend::Embedded(store) => {
                let (store, id) = (store.clone(), id.to_string());
                Ok(blocking(move || store.by_id(&id)).await?.map(hit_of))
            }
            Backend::Elasticsearch(es) => es.line(id).await,
        }
    }

    /// The lines around `id` in its file: up to `before` before it and
    /// `after` after it (each at most [`MAX_CONTEXT`]), messages cut to
    /// `message_max_bytes`. `None` when no line has this id.
    pub async fn context(
        &self,
        id: &str,
        before: usize,
        after: usize,
        message_max_bytes: usize,
    ) -> Result<Option<Context>, SearchError> {
        let started = std::time::Instant::now();
        let (before, after) = (before.min(MAX_CONTEXT), after.min(MAX_CONTEXT));
        let c = match self {
            Backend::Embedded(store) => {
                let (store, id) = (store.clone(), id.to_string());
                let Some(c) = blocking(move || store.context(&id, before, after, message_max_bytes)).await? else {
                    return Ok(None);
                };
                Context {
                    hit: hit_of(c.hit),
                    before: c.before.into_iter().map(hit_of).collect(),
                    after: c.after.into_iter().map(hit_of).collect(),
                    more_before: c.more_before,
                    more_after: c.more_after,
                    took_ms: 0,
                }
            }
            Backend::Elasticsearch(es) => match es.context(id, before, after, message_max_bytes).await? {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        Ok(Some(Context { took_ms: started.elapsed().as_millis() as u64, ..c }))
    }

    /// The `top` (at most [`MAX_FIELD_VALUES`]) most frequent values of
    /// each field over the matches of `q` in `[from_ms, to_ms)`.
    pub async fn fields(&self, q: &Node, from_ms: i64, to_ms: i64, top: usize) -> Result<Fields, SearchError> {
        let started = std::time::Instant::now();
        let top = top.clamp(1, MAX_FIELD_VALUES);
        let (total, fields) = match self {
            Backend::Embedded(store) => {
                let (store, q2) = (store.clone(), q.clone());
                let f = blocking(move || store.fields(&q2, from_ms, to_ms, top)).await?;
                (f.total, f.fields.into_iter().map(FieldTop::from).collect())
            }
            Backend::Elasticsearch(es) => es.fields(q, from_ms, to_ms, top).await?,
        };
        Ok(Fields { total, fields, took_ms: started.elapsed().as_millis() as u64 })
    }

    /// Where a live view starts: only lines that become searchable after now.
    pub async fn live_start(&self, q: &Node, now_ms: i64, message_max_bytes: usize) -> Result<LiveCursor, SearchError> {
        match self {
            Backend::Embedded(store) => Ok(LiveCursor::Seq(store.last_seq())),
            Backend::Elasticsearch(_) => {
                let mut cur = LiveCursor::Time { newest_ms: now_ms, sent: HashMap::new() };
                // What is already there counts as sent.
                self.live_poll(q, &mut cur, now_ms, message_max_bytes).await?;
                Ok(cur)
            }
        }
    }

    /// Lines that became searchable since the last poll, oldest first.
    /// Messages are cut at `message_max_bytes` as they are read.
    pub async fn live_poll(
        &self,
        q: &Node,
        cur: &mut LiveCursor,
        now_ms: i64,
        message_max_bytes: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        let hits = match (self, cur) {
            (Backend::Embedded(store), LiveCursor::Seq(seq)) => {
                let (store2, q2, after) = (store.clone(), q.clone(), *seq);
                let stored = blocking(move || store2.since(&q2, after, LIVE_MAX, message_max_bytes)).await?;
                if let Some(last) = stored.last() {
                    *seq = last.seq;
                }
                if stored.len() == LIVE_MAX {
                    // More than a screen full: jump to the newest.
                    *seq = store.last_seq().max(*seq);
                }
                stored.into_iter().map(hit_of).collect()
            }
            (Backend::Elasticsearch(es), LiveCursor::Time { newest_ms, sent }) => {
                let from = *newest_ms - LIVE_LOOKBACK_MS;
                let to_ms = now_ms.max(*newest_ms) + 86_400_000;
                let page = es
                    .search(PageQuery { q, from_ms: from, to_ms, size: LIVE_MAX, cursor: None, message_max_bytes })
                    .await?;
                let mut fresh: Vec<Hit> = page.1.into_iter().filter(|h| !sent.contains_key(&h.id)).collect();
                for h in &fresh {
                    sent.insert(h.id.clone(), h.ts_ms);
                    *newest_ms = (*newest_ms).max(h.ts_ms);
                }
                let keep_from = *newest_ms - LIVE_LOOKBACK_MS;
                sent.retain(|_, ts| *ts >= keep_from);
                fresh.reverse();
                fresh
            }
            _ => return Err(SearchError::Internal("live cursor of another backend".into())),
        };
        highlighted(q, hits).await
    }
}

/// `hits` with their highlights, computed off the async runtime (bounded
/// per message, see [`Node::highlights`], but a page holds many).
async fn highlighted(q: &Node, mut hits: Vec<Hit>) -> Result<Vec<Hit>, SearchError> {
    let q = q.clone();
    blocking(move || {
        for h in &mut hits {
            h.highlights = q.highlights(&h.message).into_iter().map(|r| [r.start, r.end]).collect();
        }
        Ok(hits)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::embedded::index::IndexError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SearchError::Internal(format!("search task: {e}")))?.map_err(|e| {
        match e {
            e @ crate::embedded::index::IndexError::TooBroad { .. } => bad("q", e.to_string()),
            e => SearchError::Internal(e.to_string()),
        }
    })
}

fn hit_of(h: StoredHit) -> Hit {
    Hit {
        id: h.id,
        timestamp: rfc3339_ms(h.ts_ms),
        ts_ms: h.ts_ms,
        message: h.message,
        host: h.host,
        path: h.path,
        offset: h.offset,
        topic: h.topic,
        highlights: Vec::new(),
        truncated: h.truncated,
    }
}

fn parse_index_cursor(c: &str) -> Result<(i64, u64), SearchError> {
    let err = || bad("cursor", format!("{c:?} is not a cursor of this backend (pass back the one a page returned)"));
    let rest = c.strip_prefix("ix:").ok_or_else(err)?;
    let (ts, seq) = rest.split_once(':').ok_or_else(err)?;
    Ok((ts.parse().map_err(|_| err())?, seq.parse().map_err(|_| err())?))
}

/// Bucket widths the histogram picks from, in ms.
const NICE_MS: &[i64] = &[
    1_000,
    2_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
    172_800_000,
    604_800_000,
];

/// The smallest nice interval giving at most `want` buckets over `span_ms`
/// (whole weeks past the list).
pub fn interval_for(span_ms: i64, want: usize) -> i64 {
    let span = span_ms.max(1);
    let want = want.max(1) as i64;
    NICE_MS.iter().copied().find(|&i| span.saturating_add(i - 1) / i <= want).unwrap_or_else(|| {
        let week = 604_800_000;
        (span / want / week).saturating_add(1).saturating_mul(week)
    })
}

// ---------------------------------------------------------------------------
// Elasticsearch
// ---------------------------------------------------------------------------

/// The search side of an Elasticsearch cluster.
pub struct EsSearch {
    pub client: EsClient,
    /// Indices searched (a pattern).
    pub indices: String,
}

/// Newest first; the later keys only break ties so `search_after` is exact:
/// the transfer's documents are unique by Kafka coordinates, documents
/// written without Kafka by host, path and offset. The string keys are the
/// `keyword` fields of the transfer's index template (`es.manage_template`).
fn es_sort() -> Value {
    json!([
        {"@timestamp": {"order": "desc"}},
        {"log.offset": {"order": "desc", "unmapped_type": "long"}},
        {"kafka.offset": {"order": "desc", "unmapped_type": "long"}},
        {"kafka.partition": {"order": "desc", "unmapped_type": "long"}},
        {"topic": {"order": "desc", "unmapped_type": "keyword"}},
        {"host.name": {"order": "desc", "unmapped_type": "keyword"}},
        {"log.file.path": {"order": "desc", "unmapped_type": "keyword"}}
    ])
}

impl EsSearch {
    async fn post(&self, body: &Value) -> Result<Value, SearchError> {
        self.post_bounded(body).await?.ok_or_else(|| {
            SearchError::Unavailable(format!(
                "Elasticsearch's answer is over {} MiB",
                crate::elastic::client::ANSWER_MAX_BYTES >> 20
            ))
        })
    }

    /// [`EsSearch::post`], or `None` when the answer is over
    /// [`crate::elastic::client::ANSWER_MAX_BYTES`].
    async fn post_bounded(&self, body: &Value) -> Result<Option<Value>, SearchError> {
        let path = format!("{}/_search?ignore_unavailable=true&allow_no_indices=true", self.indices);
        let (status, text) = match self.client.post_json(&path, serde_json::to_vec(body).expect("json")).await {
            Ok(answer) => answer,
            Err(crate::elastic::error::EsError::AnswerTooLarge { .. }) => return Ok(None),
            Err(e) => return Err(SearchError::Unavailable(format!("Elasticsearch unreachable: {e}"))),
        };
        let v: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(Some(v));
        }
        let reason = v["error"]["root_cause"][0]["reason"]
            .as_str()
            .or(v["error"]["reason"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned());
        if status == 400 {
            Err(bad("q", format!("Elasticsearch refused the search: {reason}")))
        } else {
            Err(SearchError::Unavailable(format!("Elasticsearch answered {status}: {reason}")))
        }
    }

    /// [`EsSearch::post_bounded`] of a search asking for `size` hits; an
    /// answer over the size limit is asked again at half the size. Returns
    /// the answer and the size it was for.
    async fn post_shrinking(&self, mut body: Value, mut size: usize) -> Result<(Value, usize), SearchError> {
        loop {
            body["size"] = size.into();
            match self.post_bounded(&body).await? {
                Some(v) => return Ok((v, size)),
                None if size > 1 => size /= 2,
                None => {
                    return Err(SearchError::Unavailable(format!(
                        "Elasticsearch's answer for one hit is over {} MiB",
                        crate::elastic::client::ANSWER_MAX_BYTES >> 20
                    )))
                }
            }
        }
    }

    /// See [`Backend::context`]: `search_after` from the line's
    /// (`@timestamp`, `log.offset`, `log.part`) both ways, within its host
    /// and path.
    async fn context(
        &self,
        id: &str,
        before: usize,
        after: usize,
        message_max_bytes: usize,
    ) -> Result<Option<Context>, SearchError> {
        let body = json!({
            "size": 1,
            "query": {"ids": {"values": [id]}},
            "sort": es_sort(),
            "_source": ["message", "host.name", "log.file.path", "log.offset", "log.part", "topic"],
        });
        let v = self.post(&body).await?;
        let Some(mut hit) = Self::hits_of(&v).into_iter().next() else { return Ok(None) };
        truncate(&mut hit, message_max_bytes);
        let part = v["hits"]["hits"][0]["_source"]["log"]["part"].as_u64().unwrap_or(0);
        let empty = |hit| Context {
            hit,
            before: Vec::new(),
            after: Vec::new(),
            more_before: false,
            more_after: false,
            took_ms: 0,
        };
        let (Some(host), Some(path), Some(offset)) = (hit.host.clone(), hit.path.clone(), hit.offset) else {
            return Ok(Some(empty(hit)));
        };
        let side = |order: &'static str, want: usize| {
            let body = json!({
                "query": {"bool": {"filter": [
                    {"term": {"host.name": {"value": host}}},
                    {"term": {"log.file.path": {"value": path}}}
                ]}},
                "sort": [
                    {"@timestamp": {"order": order}},
                    {"log.offset": {"order": order, "unmapped_type": "long"}},
                    {"log.part": {"order": order, "unmapped_type": "long", "missing": 0}}
                ],
                "search_after": [hit.ts_ms, offset, part],
                "_source": ["message", "host.name", "log.file.path", "log.offset", "topic"],
                "track_total_hits": false,
            });
            async move {
                let (v, asked) = self.post_shrinking(body, want + 1).await?;
                let mut lines = Self::hits_of(&v);
                // A smaller page than asked for (the answer was too large) may
                // still have more past it.
                let more = lines.len() > want || (asked <= want && lines.len() == asked);
                lines.truncate(want);
                for l in &mut lines {
                    truncate(l, message_max_bytes);
                }
                Ok::<_, SearchError>((lines, more))
            }
        };
        let (mut before_lines, more_before) = side("desc", before).await?;
        before_lines.reverse();
        let (after_lines, more_after) = side("asc", after).await?;
        Ok(Some(Context { before: before_lines, after: after_lines, more_before, more_after, ..empty(hit) }))
    }

    /// Fields merged from JSON lines (`parse_json`) that a `terms`
    /// aggregation can count: aggregatable fields outside the document's own
    /// ([`crate::elastic::body::OWN_FIELDS`]), a text field's `.keyword`
    /// under the text field's name; at most [`MAX_PARSED_FIELDS`], by name.
    /// (name shown, field aggregated).
    async fn parsed_fields(&self) -> Result<Vec<(String, String)>, SearchError> {
        let path = format!("{}/_field_caps?fields=*&ignore_unavailable=true&allow_no_indices=true", self.indices);
        let (status, text) = self
            .client
            .get(&path)
            .await
            .map_err(|e| SearchError::Unavailable(format!("Elasticsearch unreachable: {e}")))?;
        if !(200..300).contains(&status) {
            return Ok(Vec::new());
        }
        Ok(countable_fields(&serde_json::from_slice(&text).unwrap_or(Value::Null)))
    }

    /// See [`Backend::fields`]: one `terms` aggregation per field.
    async fn fields(
        &self,
        q: &Node,
        from_ms: i64,
        to_ms: i64,
        top: usize,
    ) -> Result<(u64, Vec<FieldTop>), SearchError> {
        let mut fields: Vec<(String, String)> = [("host", "host.name"), ("path", "log.file.path"), ("topic", "topic")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        fields.extend(self.parsed_fields().await?);
        let mut aggs = serde_json::Map::new();
        for (i, (_, f)) in fields.iter().enumerate() {
            aggs.insert(format!("f{i}"), json!({"terms": {"field": f, "size": top}}));
        }
        let body = json!({
            "size": 0,
            "track_total_hits": true,
            "query": query::es_query_in_range(q, from_ms, to_ms),
            "aggs": aggs,
        });
        let v = self.post(&body).await?;
        let total = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
        let out = fields
            .into_iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let a = &v["aggregations"][format!("f{i}")];
                let values = a["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| {
                        let value = match (&b["key_as_string"], &b["key"]) {
                            (Value::String(s), _) | (_, Value::String(s)) => s.clone(),
                            (_, Value::Null) => return None,
                            (_, k) => k.to_string(),
                        };
                        Some(FieldValue { value, count: b["doc_count"].as_u64().unwrap_or(0) })
                    })
                    .collect();
                FieldTop {
                    field: name,
                    values,
                    other: a["sum_other_doc_count"].as_u64().unwrap_or(0),
                    partial: a["doc_count_error_upper_bound"].as_u64().unwrap_or(0) > 0,
                }
            })
            .filter(|f: &FieldTop| f.field == "host" || f.field == "path" || f.field == "topic" || !f.values.is_empty())
            .collect();
        Ok((total, out))
    }

    async fn line(&self, id: &str) -> Result<Option<Hit>, SearchError> {
        let body = json!({
            "size": 1,
            "query": {"ids": {"values": [id]}},
            "sort": es_sort(),
            "_source": ["message", "host.name", "log.file.path", "log.offset", "topic"],
        });
        let v = self.post(&body).await?;
        Ok(Self::hits_of(&v).into_iter().next())
    }

    async fn search(&self, p: PageQuery<'_>) -> Result<(u64, Vec<Hit>, Option<String>), SearchError> {
        let PageQuery { q, from_ms, to_ms, mut size, cursor, message_max_bytes } = p;
        let mut body = json!({
            "size": size,
            "track_total_hits": true,
            "query": query::es_query_in_range(q, from_ms, to_ms),
            "sort": es_sort(),
            "_source": ["message", "host.name", "log.file.path", "log.offset", "topic"],
        });
        if let Some(c) = cursor {
            let after = c
                .strip_prefix("es:")
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                .filter(Value::is_array)
                .ok_or_else(|| {
                    bad("cursor", format!("{c:?} is not a cursor of this backend (pass back the one a page returned)"))
                })?;
            body["search_after"] = after;
        }
        // A page whose answer is too large is asked again at half the size
        // (its cursor then continues after the smaller page).
        let v = loop {
            match self.post_bounded(&body).await? {
                Some(v) => break v,
                None if size > 1 => {
                    size /= 2;
                    body["size"] = size.into();
                }
                None => {
                    return Err(SearchError::Unavailable(format!(
                        "Elasticsearch's answer for one hit is over {} MiB",
                        crate::elastic::client::ANSWER_MAX_BYTES >> 20
                    )))
                }
            }
        };
        let total = v["hits"]["total"]["value"].as_u64().unwrap_or(0);
        let raw = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let next = (raw.len() == size).then(|| raw.last().map(|h| format!("es:{}", h["sort"]))).flatten();
        let mut hits = Self::hits_of(&v);
        for h in &mut hits {
            truncate(h, message_max_bytes);
        }
        Ok((total, hits, next))
    }

    fn hits_of(v: &Value) -> Vec<Hit> {
        v["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| {
                let s = &h["_source"];
                let ts_ms = h["sort"][0].as_i64().unwrap_or(0);
                let text = |v: &Value| v.as_str().map(str::to_string);
                Hit {
                    id: h["_id"].as_str().unwrap_or_default().to_string(),
                    timestamp: rfc3339_ms(ts_ms),
                    ts_ms,
                    message: text(&s["message"]).unwrap_or_default(),
                    host: text(&s["host"]["name"]),
                    path: text(&s["log"]["file"]["path"]),
                    offset: s["log"]["offset"].as_u64(),
                    topic: text(&s["topic"]).unwrap_or_default(),
                    highlights: Vec::new(),
                    truncated: false,
                }
            })
            .collect()
    }

    async fn histogram(
        &self,
        q: &Node,
        from_ms: i64,
        to_ms: i64,
        start: i64,
        interval: i64,
        n: usize,
    ) -> Result<Vec<u64>, SearchError> {
        let body = json!({
            "size": 0,
            "query": query::es_query_in_range(q, from_ms, to_ms),
            "aggs": {"h": {"date_histogram": {
                "field": "@timestamp",
                "fixed_interval": format!("{}s", interval / 1000),
                "min_doc_count": 0,
                "extended_bounds": {"min": start, "max": start + (n as i64 - 1) * interval},
            }}},
        });
        let v = self.post(&body).await?;
        let mut counts = vec![0u64; n];
        for b in v["aggregations"]["h"]["buckets"].as_array().into_iter().flatten() {
            let (Some(key), Some(c)) = (b["key"].as_i64(), b["doc_count"].as_u64()) else { continue };
            let i = (key - start).div_euclid(interval);
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
                *slot += c;
            }
        }
        Ok(counts)
    }
}

/// The fields of a `_field_caps` answer that [`EsSearch::parsed_fields`]
/// counts: (name shown, field aggregated).
fn countable_fields(v: &Value) -> Vec<(String, String)> {
    let own = |name: &str| {
        crate::elastic::body::OWN_FIELDS
            .iter()
            .any(|o| name == *o || name.strip_prefix(o).is_some_and(|r| r.starts_with('.')))
    };
    const COUNTABLE: &[&str] = &["keyword", "long", "integer", "short", "byte", "boolean", "ip"];
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, types) in v["fields"].as_object().into_iter().flatten() {
        let Some(types) = types.as_object() else { continue };
        // A field mapped differently in two indices is left out.
        let mut kinds = types.iter();
        let (Some((kind, caps)), None) = (kinds.next(), kinds.next()) else { continue };
        if name.starts_with('_') || own(name) || !COUNTABLE.contains(&kind.as_str()) {
            continue;
        }
        if caps["aggregatable"] != Value::Bool(true) || caps["metadata_field"] == Value::Bool(true) {
            continue;
        }
        let shown = name.strip_suffix(".keyword").unwrap_or(name).to_string();
        if out.iter().all(|(s, _)| *s != shown) {
            out.push((shown, name.clone()));
        }
    }
    out.sort();
    out.truncate(MAX_PARSED_FIELDS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_fields_are_the_countable_ones_outside_our_own() {
        let caps = json!({"fields": {
            "_id": {"_id": {"type": "_id", "aggregatable": false, "metadata_field": true}},
            "_index": {"_index": {"type": "_index", "aggregatable": true, "metadata_field": true}},
            "host.name": {"keyword": {"type": "keyword", "aggregatable": true, "metadata_field": false}},
            "log.offset": {"long": {"type": "long", "aggregatable": true, "metadata_field": false}},
            "message": {"text": {"type": "text", "aggregatable": false, "metadata_field": false}},
            "level": {"text": {"type": "text", "aggregatable": false, "metadata_field": false}},
            "level.keyword": {"keyword": {"type": "keyword", "aggregatable": true, "metadata_field": false}},
            "status": {"long": {"type": "long", "aggregatable": true, "metadata_field": false}},
            "hostname": {"keyword": {"type": "keyword", "aggregatable": true, "metadata_field": false}},
            "took": {"float": {"type": "float", "aggregatable": true, "metadata_field": false}},
            "mixed": {"long": {"type": "long", "aggregatable": true}, "keyword": {"type": "keyword", "aggregatable": true}},
            "ok": {"boolean": {"type": "boolean", "aggregatable": true, "metadata_field": false}},
        }});
        let got = countable_fields(&caps);
        let want: Vec<(String, String)> =
            [("hostname", "hostname"), ("level", "level.keyword"), ("ok", "ok"), ("status", "status")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        assert_eq!(got, want);
        assert!(countable_fields(&Value::Null).is_empty());
        let many: serde_json::Map<String, Value> = (0..20)
            .map(|i| (format!("f{i:02}"), json!({"keyword": {"type": "keyword", "aggregatable": true}})))
            .collect();
        assert_eq!(countable_fields(&json!({"fields": many})).len(), MAX_PARSED_FIELDS);
    }

    #[test]
    fn intervals_are_nice_and_bound_the_bucket_count() {
        // (span, wanted buckets, interval)
        let table: &[(i64, usize, i64)] = &[
            (900_000, 60, 15_000),
            (3_600_000, 60, 60_000),
            (86_400_000, 60, 1_800_000),
            (1, 60, 1_000),
            (0, 1, 1_000),
            (7 * 86_400_000, 60, 10_800_000),
            (365 * 86_400_000, 10, 6 * 604_800_000),
        ];
        for &(span, want, interval) in table {
            assert_eq!(interval_for(span, want), interval, "{span} / {want}");
            assert!((span + interval - 1) / interval <= want as i64);
        }
    }

    #[test]
    fn cursors_and_times() {
        assert_eq!(parse_index_cursor("ix:-5:7").unwrap(), (-5, 7));
        for bad in ["", "ix:1", "es:[1]", "ix:a:b"] {
            assert!(matches!(parse_index_cursor(bad), Err(SearchError::BadRequest { param: "cursor", .. })), "{bad}");
        }
    }
}
