//! HTTP: the search page and the JSON API under `/api/`, on `[http] listen`.
//!
//! | route                 | answers                                               |
//! |-----------------------|-------------------------------------------------------|
//! | `GET /`               | the search page (HTML/CSS/JS built into the binary)   |
//! | `GET /api/search`     | a page of matches, newest first ([`super::backend::Page`])    |
//! | `GET /api/histogram`  | matches per time bucket ([`super::backend::Histogram`])       |
//! | `GET /api/live`       | Server-Sent Events: `hit` per new matching line       |
//! | `GET /api/line`       | one whole line by `id` ([`super::backend::Hit`])      |
//! | `GET /api/context`    | the lines around `id` in its file ([`super::backend::Context`]) |
//! | `GET /api/fields`     | top values of host, path, topic… ([`super::backend::Fields`]) |
//! | `GET /api/download`   | the matches as NDJSON or CSV, streamed, bounded       |
//! | `GET /api/info`       | which backend answers, and the version                |
//!
//! Parameters: `q` (the query language, see [`crate::search::query`]), `from` and
//! `to` ([`query::parse_time`]; default the last 15 minutes), `size`,
//! `cursor`, `buckets`; `id`, `before`, `after` (context); `top` (fields);
//! `format`, `limit` (download). A bad query or parameter is a 400 with a JSON body
//! naming the parameter (and, for `q`, the position and what was expected);
//! Elasticsearch failing is a 502. Never a 500 for bad input.
//!
//! [`router`] returns a plain `axum::Router`: other parts (metrics, health)
//! add their routes with `Router::merge` before [`crate::observe::server::Server::spawn`].

use crate::common::clock::now_ms;
use crate::search::backend::{Backend, PageQuery, SearchError};
use crate::search::query;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const PAGE: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// Default page size.
const DEFAULT_SIZE: usize = 100;
/// Default histogram bucket count.
const DEFAULT_BUCKETS: usize = 60;
/// Default lines of context on each side.
const DEFAULT_CONTEXT: usize = 10;
/// Default values per field.
const DEFAULT_TOP: usize = 5;
/// Most lines one download carries (and its default).
pub const DOWNLOAD_MAX_LINES: usize = 100_000;
/// Most bytes one download carries: it stops after the line that passes this.
pub const DOWNLOAD_MAX_BYTES: usize = 256 << 20;
/// Longest a download may take; it stops (cut short) after that.
pub const DOWNLOAD_MAX_TIME: Duration = Duration::from_secs(600);
/// Lines fetched per backend page while downloading.
const DOWNLOAD_PAGE: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<Backend>,
    /// How often a live view polls the backend.
    pub live_interval: Duration,
    /// Searches and histograms running at once (`[http] max_searches`).
    pub searches: Arc<tokio::sync::Semaphore>,
    /// Live views open at once (`[http] max_live`).
    pub lives: Arc<tokio::sync::Semaphore>,
    /// Messages longer than this are cut in answers (`[http] message_max_bytes`).
    pub message_max_bytes: usize,
}

impl AppState {
    /// The state for `backend` with the limits of `[http]`.
    pub fn new(backend: Backend, live_interval: Duration, http: &crate::config::HttpSection) -> AppState {
        AppState {
            backend: Arc::new(backend),
            live_interval,
            searches: Arc::new(tokio::sync::Semaphore::new(http.max_searches)),
            lives: Arc::new(tokio::sync::Semaphore::new(http.max_live)),
            message_max_bytes: http.message_max_bytes,
        }
    }
}

/// 503 with `Retry-After: 1`: a limit of `[http]` is reached.
fn busy(what: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], Json(json!({"error": what}))).into_response()
}

/// The page and the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/api/search", get(search))
        .route("/api/histogram", get(histogram))
        .route("/api/live", get(live))
        .route("/api/info", get(info))
        .route("/api/line", get(line))
        .route("/api/context", get(context))
        .route("/api/fields", get(fields))
        .route("/api/download", get(download))
        .with_state(state)
}

/// Every parameter, as text: each is checked by hand so a bad one gets a
/// JSON answer naming it.
#[derive(Deserialize, Default)]
struct Params {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    size: Option<String>,
    cursor: Option<String>,
    buckets: Option<String>,
    id: Option<String>,
    before: Option<String>,
    after: Option<String>,
    top: Option<String>,
    format: Option<String>,
    limit: Option<String>,
}

/// A failure as the API answers it.
struct ApiError(SearchError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self.0 {
            SearchError::Query(e) => (
                StatusCode::BAD_REQUEST,
                json!({"error": format!("q: {}", self.0), "param": "q", "position": e.position, "expected": e.expected, "found": e.found}),
            ),
            SearchError::BadRequest { param, .. } => {
                (StatusCode::BAD_REQUEST, json!({"error": self.0.to_string(), "param": param}))
            }
            SearchError::Unavailable(m) => (StatusCode::BAD_GATEWAY, json!({"error": m})),
            SearchError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": m})),
        };
        (status, Json(body)).into_response()
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        ApiError(e)
    }
}

fn bad(param: &'static str, message: String) -> ApiError {
    ApiError(SearchError::BadRequest { param, message })
}

/// The parsed common parameters.
struct Asked {
    q: query::Node,
    from_ms: i64,
    to_ms: i64,
}

fn common(p: &Params) -> Result<Asked, ApiError> {
    let now = now_ms();
    let q = query::parse(p.q.as_deref().unwrap_or("")).map_err(SearchError::from)?;
    let time = |param: &'static str, v: Option<&str>, default: &str| {
        query::parse_time(v.filter(|s| !s.trim().is_empty()).unwrap_or(default), now).map_err(|m| bad(param, m))
    };
    let from_ms = time("from", p.from.as_deref(), "now-15m")?;
    let to_ms = time("to", p.to.as_deref(), "now")?;
    // `to` is inclusive to the millisecond for the person asking.
    let to_ms = to_ms.saturating_add(1);
    if from_ms >= to_ms {
        return Err(bad("from", format!("the range is empty: from ({from_ms}) is not before to ({})", to_ms - 1)));
    }
    Ok(Asked { q, from_ms, to_ms })
}

fn number(param: &'static str, v: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    number_from(param, v, default, 1, max)
}

fn number_from(
    param: &'static str,
    v: Option<&str>,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(bad(param, format!("{s:?} is not a whole number from {min} to {max}"))),
        },
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "no line with this id", "param": "id"}))).into_response()
}

async fn search(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let a = common(&p)?;
    let size = number("size", p.size.as_deref(), DEFAULT_SIZE, crate::search::backend::MAX_PAGE)?;
    let cursor = p.cursor.as_deref().filter(|c| !c.is_empty());
    let Ok(_permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    let (from_ms, to_ms, message_max_bytes) = (a.from_ms, a.to_ms, st.message_max_bytes);
    let page = st.backend.search(PageQuery { q: &a.q, from_ms, to_ms, size, cursor, message_max_bytes }).await?;
    Ok(Json(page).into_response())
}

async fn histogram(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let a = common(&p)?;
    let buckets = number("buckets", p.buckets.as_deref(), DEFAULT_BUCKETS, crate::search::backend::MAX_BUCKETS)?;
    let Ok(_permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    let h = st.backend.histogram(&a.q, a.from_ms, a.to_ms, buckets).await?;
    Ok(Json(h).into_response())
}

/// The whole line `id` (a hit whose message was `truncated`).
async fn line(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let id = p.id.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| bad("id", "missing".into()))?;
    let Ok(_permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    match st.backend.line(id).await? {
        Some(h) => Ok(Json(h).into_response()),
        None => Ok(not_found()),
    }
}

/// The lines around `id` in its file: `before` and `after` (0 to
/// [`crate::search::backend::MAX_CONTEXT`], default 10) on either side.
async fn context(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let id = p.id.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| bad("id", "missing".into()))?;
    let max = crate::search::backend::MAX_CONTEXT;
    let before = number_from("before", p.before.as_deref(), DEFAULT_CONTEXT, 0, max)?;
    let after = number_from("after", p.after.as_deref(), DEFAULT_CONTEXT, 0, max)?;
    let Ok(_permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    match st.backend.context(id, before, after, st.message_max_bytes).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Ok(not_found()),
    }
}

/// The `top` most frequent values of each field over the matches.
async fn fields(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let a = common(&p)?;
    let top = number("top", p.top.as_deref(), DEFAULT_TOP, crate::search::backend::MAX_FIELD_VALUES)?;
    let Ok(_permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    Ok(Json(st.backend.fields(&a.q, a.from_ms, a.to_ms, top).await?).into_response())
}

/// A download's format.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Ndjson,
    Csv,
}

/// The matches, newest first, as NDJSON (one JSON object a line) or CSV,
/// streamed a backend page at a time: at most `limit` (default and most
/// [`DOWNLOAD_MAX_LINES`]) lines and about [`DOWNLOAD_MAX_BYTES`], each
/// message cut as in `/api/search`. The search permit is held until the
/// last byte, so downloads count against `http.max_searches`. A download
/// cut short by a bound ends with a line saying so; one whose backend
/// fails midway ends with an `error` line (the status is already sent).
async fn download(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let a = common(&p)?;
    let format = match p.format.as_deref().map(str::trim).unwrap_or("ndjson") {
        "" | "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => return Err(bad("format", format!("{other:?} is not ndjson or csv"))),
    };
    let limit = number("limit", p.limit.as_deref(), DOWNLOAD_MAX_LINES, DOWNLOAD_MAX_LINES)?;
    let Ok(permit) = st.searches.clone().try_acquire_owned() else {
        return Ok(busy("too many searches at once (http.max_searches)"));
    };
    // The first page before answering: a failing backend is a 502, not a
    // 200 with an error inside.
    let first = st
        .backend
        .search(PageQuery {
            q: &a.q,
            from_ms: a.from_ms,
            to_ms: a.to_ms,
            size: DOWNLOAD_PAGE.min(limit),
            cursor: None,
            message_max_bytes: st.message_max_bytes,
        })
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(4);
    let backend = st.backend.clone();
    let max_bytes = st.message_max_bytes;
    tokio::spawn(async move {
        let _permit = permit;
        let deadline = tokio::time::Instant::now() + DOWNLOAD_MAX_TIME;
        let (mut sent, mut bytes) = (0usize, 0usize);
        let mut page = first;
        let mut out = Vec::with_capacity(64 << 10);
        if format == Format::Csv {
            out.extend_from_slice(b"@timestamp,host,path,offset,topic,message\r\n");
        }
        let cut_short = loop {
            for h in &page.hits {
                if sent == limit {
                    break;
                }
                let before = out.len();
                download_line(&mut out, format, h);
                bytes += out.len() - before;
                sent += 1;
                if bytes >= DOWNLOAD_MAX_BYTES {
                    break;
                }
            }
            if !out.is_empty() && tx.send(Ok(bytes::Bytes::from(std::mem::take(&mut out)))).await.is_err() {
                return; // the client went away
            }
            if sent == limit {
                break page.total > limit as u64;
            }
            if bytes >= DOWNLOAD_MAX_BYTES || tokio::time::Instant::now() >= deadline {
                break true;
            }
            let Some(cursor) = page.cursor.take() else { break false };
            let next = backend
                .search(PageQuery {
                    q: &a.q,
                    from_ms: a.from_ms,
                    to_ms: a.to_ms,
                    size: DOWNLOAD_PAGE.min(limit - sent),
                    cursor: Some(&cursor),
                    message_max_bytes: max_bytes,
                })
                .await;
            match next {
                Ok(p) => page = p,
                Err(e) => {
                    let note = json!({"error": format!("the download stopped after {sent} lines: {e}")});
                    let _ = tx.send(Ok(trailer(format, &note.to_string()))).await;
                    return;
                }
            }
        };
        if cut_short {
            let note = json!({"truncated": true, "lines": sent, "error": format!(
                "the download stops here: at most {limit} lines, {} MiB, {} s", DOWNLOAD_MAX_BYTES >> 20, DOWNLOAD_MAX_TIME.as_secs()
            )});
            let _ = tx.send(Ok(trailer(format, &note.to_string()))).await;
        }
    });
    let (kind, ext) = match format {
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let name = format!("attachment; filename=\"logcollect-{}.{ext}\"", now_ms());
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, kind.to_string()), (header::CONTENT_DISPOSITION, name)], body).into_response())
}

/// The last line of a download cut short: JSON in NDJSON, a `#` comment in CSV.
fn trailer(format: Format, note: &str) -> bytes::Bytes {
    match format {
        Format::Ndjson => bytes::Bytes::from(format!("{note}\n")),
        Format::Csv => bytes::Bytes::from(format!("# {note}\r\n")),
    }
}

/// One line of a download.
fn download_line(out: &mut Vec<u8>, format: Format, h: &crate::search::backend::Hit) {
    match format {
        Format::Ndjson => {
            let v = json!({
                "id": h.id, "@timestamp": h.timestamp, "host": h.host, "path": h.path,
                "offset": h.offset, "topic": h.topic, "message": h.message, "truncated": h.truncated,
            });
            serde_json::to_writer(&mut *out, &v).expect("json");
            out.push(b'\n');
        }
        Format::Csv => {
            let offset = h.offset.map(|o| o.to_string()).unwrap_or_default();
            let cells = [
                h.timestamp.as_str(),
                h.host.as_deref().unwrap_or(""),
                h.path.as_deref().unwrap_or(""),
                offset.as_str(),
                h.topic.as_str(),
                h.message.as_str(),
            ];
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_cell(out, c);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A CSV cell (RFC 4180: quoted, `"` doubled). A cell a spreadsheet would
/// run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR: OWASP's
/// "CSV injection") gets a leading `'`, since a log line is whatever its
/// writer wanted.
fn csv_cell(out: &mut Vec<u8>, c: &str) {
    out.push(b'"');
    if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push(b'\'');
    }
    for b in c.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

async fn info(State(st): State<AppState>) -> Response {
    Json(json!({"backend": st.backend.name(), "version": env!("CARGO_PKG_VERSION")})).into_response()
}

/// Server-Sent Events: `ready` once, then `hit` per new matching line
/// (oldest first), `error` if the backend fails (the stream then ends).
async fn live(State(st): State<AppState>, Query(p): Query<Params>) -> Result<Response, ApiError> {
    let q = query::parse(p.q.as_deref().unwrap_or("")).map_err(SearchError::from)?;
    let Ok(permit) = st.lives.clone().try_acquire_owned() else {
        return Ok(busy("too many live views at once (http.max_live)"));
    };
    let mut cursor = st.backend.live_start(&q, now_ms(), st.message_max_bytes).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    let backend = st.backend.clone();
    let every = st.live_interval;
    let max_bytes = st.message_max_bytes;
    tokio::spawn(async move {
        let _permit = permit;
        if tx.send(Event::default().event("ready").data("{}")).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            match backend.live_poll(&q, &mut cursor, now_ms(), max_bytes).await {
                Ok(hits) => {
                    for h in hits {
                        let ev = Event::default().event("hit").data(serde_json::to_string(&h).expect("json"));
                        // A client whose queue stays full for a poll interval is dropped.
                        match tokio::time::timeout(every, tx.send(ev)).await {
                            Ok(Ok(())) => {}
                            _ => return, // the client went away or stopped reading
                        }
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Event::default().event("error").data(json!({"error": e.to_string()}).to_string()))
                        .await;
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let stream = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, std::convert::Infallible>,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        // (cell, as written)
        let table: &[(&str, &str)] = &[
            ("", r#""""#),
            ("plain", r#""plain""#),
            (r#"say "hi""#, r#""say ""hi""""#),
            ("a,b\nc", "\"a,b\nc\""),
            ("=cmd|' /C calc'!A0", r#""'=cmd|' /C calc'!A0""#),
            ("+1", r#""'+1""#),
            ("-x", r#""'-x""#),
            ("@SUM(1)", r#""'@SUM(1)""#),
            ("a=b", r#""a=b""#),
        ];
        for (cell, want) in table {
            let mut out = Vec::new();
            csv_cell(&mut out, cell);
            assert_eq!(String::from_utf8(out).unwrap(), *want, "{cell:?}");
        }
    }

    #[test]
    fn download_lines_in_both_formats() {
        let h = crate::search::backend::Hit {
            id: "i".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            ts_ms: 0,
            message: "<b>\"x\"</b>".into(),
            host: Some("h".into()),
            path: None,
            offset: Some(7),
            topic: "t".into(),
            highlights: vec![[0, 1]],
            truncated: false,
        };
        let mut out = Vec::new();
        download_line(&mut out, Format::Csv, &h);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"2026-01-01T00:00:00.000Z\",\"h\",\"\",\"7\",\"t\",\"<b>\"\"x\"\"</b>\"\r\n"
        );
        let mut out = Vec::new();
        download_line(&mut out, Format::Ndjson, &h);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["message"].as_str(), v["path"].is_null(), v["offset"].as_u64()),
            (Some("<b>\"x\"</b>"), true, Some(7))
        );
        assert!(out.ends_with(b"}\n") && !out[..out.len() - 1].contains(&b'\n'));
    }
}
