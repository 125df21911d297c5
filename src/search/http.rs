//! HTTP: the search page and the JSON API under `/api/`, on `[http] listen`.
//!
//! | route                 | answers                                               |
//! |-----------------------|-------------------------------------------------------|
//! | `GET /`               | the search page (HTML/CSS/JS built into the binary)   |
//! | `GET /api/search`     | a page of matches, newest first ([`super::backend::Page`])    |
//! | `GET /api/histogram`  | matches per time bucket ([`super::backend::Histogram`])       |
//! | `GET /api/live`       | Server-Sent Events: `hit` per new matching line       |
//! | `GET /api/info`       | which backend answers, and the version                |
//!
//! Parameters: `q` (the query language, see [`crate::search::query`]), `from` and
//! `to` ([`query::parse_time`]; default the last 15 minutes), `size`,
//! `cursor`, `buckets`. A bad query or parameter is a 400 with a JSON body
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
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(param, format!("{s:?} is not a whole number from 1 to {max}"))),
        },
    }
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
        None => {
            Ok((StatusCode::NOT_FOUND, Json(json!({"error": "no line with this id", "param": "id"}))).into_response())
        }
    }
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
