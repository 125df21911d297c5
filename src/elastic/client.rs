//! The HTTP side of Elasticsearch: the nodes in rotation, auth and TLS, and
//! the requests logcollect makes: `_bulk`, index templates, searches, and
//! `GET /` for readiness.

use crate::config::{EsAuth, EsConfig, Secret};
use crate::elastic::classify::excerpt;
use crate::elastic::error::EsError;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How requests authenticate: the API key header is built once and marked
/// sensitive, so reqwest and hyper never print it; basic auth goes through
/// reqwest's `basic_auth`, which marks it the same way.
fn auth_of(auth: &EsAuth) -> Result<Auth, EsError> {
    match auth {
        EsAuth::None => Ok(Auth::None),
        EsAuth::Basic { username, password } => Ok(Auth::Basic(username.clone(), password.clone())),
        EsAuth::ApiKey(key) => {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("ApiKey {}", key.expose()))
                .map_err(|_| EsError::Client("es api_key holds characters an HTTP header cannot carry".into()))?;
            v.set_sensitive(true);
            Ok(Auth::Header(v))
        }
    }
}

/// Why a request got no answer, with its causes (the TLS or connection
/// error is in the source chain) and without the URL.
fn reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = e.source();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    out.push_str(kind);
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.ends_with(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// What follows a node's base URL in a `_bulk` request: Elasticsearch
/// answers only what the classifier reads.
const BULK_PATH: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error";

/// Bytes of an answer quoted in messages.
pub(crate) const ANSWER_EXCERPT: usize = 300;

/// Largest answer read from Elasticsearch: `_bulk` answers are small
/// (`filter_path`); a search page of 1,000 hits of long lines is what
/// this stops.
pub const ANSWER_MAX_BYTES: usize = 64 << 20;

/// Nodes in rotation, auth, TLS.
pub struct EsClient {
    http: reqwest::Client,
    /// Base URLs (`http://host:9200`, no trailing `/`, never userinfo:
    /// `[es] address` refuses it); never empty.
    nodes: Vec<String>,
    /// Counts requests; request `n` goes to `nodes[n % nodes.len()]`.
    next: AtomicUsize,
    auth: Auth,
}

/// The `Authorization` header value, built once; marked sensitive so
/// reqwest and hyper never print it.
enum Auth {
    None,
    Basic(String, Secret),
    Header(reqwest::header::HeaderValue),
}

/// Which credentials a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `_bulk` and templates: `[es] username`/`api_key`.
    Write,
    /// The search page: `[es] search_*`, else the write credentials.
    Search,
}

/// What came back for a `_bulk` request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// HTTP status and body.
    Status(u16, Vec<u8>),
    /// No answer: connection refused, reset, timed out.
    Unreachable(String),
}

impl EsClient {
    /// The client `cfg` describes for `purpose`; fails on a bad `ca_file`,
    /// `cert_file` or `key_file`. A `ca_file` replaces the built-in roots:
    /// only servers it signed are trusted.
    pub fn new(cfg: &EsConfig, purpose: Purpose) -> Result<EsClient, EsError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.workers);
        if let Some(ca) = &cfg.ca_file {
            let tls_error = |message: String| EsError::TlsFile { key: "es.ca_file", path: ca.clone(), message };
            let pem = std::fs::read(ca).map_err(|e| tls_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| tls_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(tls_error("no PEM certificate in the file".into()));
            }
            b = b.tls_built_in_root_certs(false);
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            let read = |k: &'static str, p: &std::path::Path| {
                std::fs::read(p).map_err(|e| EsError::TlsFile { key: k, path: p.to_path_buf(), message: e.to_string() })
            };
            let mut pem = read("es.cert_file", cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read("es.key_file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| EsError::TlsFile {
                key: "es.cert_file",
                path: cert.clone(),
                message: format!("with es.key_file {}: {}", key.display(), e.without_url()),
            })?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| EsError::Client(e.without_url().to_string()))?;
        let auth = match purpose {
            Purpose::Search => cfg.search_auth.as_ref().unwrap_or(&cfg.auth),
            Purpose::Write => &cfg.auth,
        };
        let auth = auth_of(auth)?;
        Ok(EsClient { http, nodes: cfg.nodes.clone(), next: AtomicUsize::new(0), auth })
    }

    /// The base URL of the node the next request goes to.
    fn next_node(&self) -> &str {
        &self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.expose())),
            Auth::Header(v) => req.header(reqwest::header::AUTHORIZATION, v.clone()),
        }
    }

    /// Sends `req` (addressed to `node`) with the auth applied: the status
    /// and the whole answer, or why there was none. The reason never holds
    /// the URL (nodes carry no userinfo, and the path is said by the caller).
    /// An answer over [`ANSWER_MAX_BYTES`] is an error, read no further
    /// (review finding 5: a search page of huge lines must not take the
    /// process's memory).
    async fn send(&self, node: &str, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), EsError> {
        let unreachable = |message: String| EsError::Unreachable { node: node.to_string(), message };
        let mut resp = self.authorize(req).send().await.map_err(|e| unreachable(reason(&e)))?;
        let status = resp.status().as_u16();
        let too_large = || EsError::AnswerTooLarge { node: node.to_string(), limit: ANSWER_MAX_BYTES };
        if resp.content_length().is_some_and(|n| n > ANSWER_MAX_BYTES as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| unreachable(format!("reading the answer: {}", reason(&e))))?
        {
            if body.len() + chunk.len() > ANSWER_MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// Posts a `_bulk` body to the next node in rotation: that node, and
    /// its answer.
    pub(crate) async fn post_bulk(&self, body: Bytes) -> (&str, Answer) {
        let node = self.next_node();
        let req =
            self.http.post(format!("{node}{BULK_PATH}")).header("Content-Type", "application/x-ndjson").body(body);
        let answer = match self.send(node, req).await {
            Ok((status, body)) => Answer::Status(status, body),
            Err(e) => Answer::Unreachable(e.to_string()),
        };
        (node, answer)
    }

    /// Installs (or replaces) the index template `name`. An error that
    /// [`EsError::is_transient`] is worth trying again later; any other is
    /// a refusal for good.
    pub async fn put_template(&self, name: &str, body: Vec<u8>) -> Result<(), EsError> {
        let node = self.next_node();
        let path = format!("/_index_template/{name}");
        let req = self.http.put(format!("{node}{path}")).header("Content-Type", "application/json").body(body);
        match self.send(node, req).await? {
            (200..=299, _) => Ok(()),
            (status, text) => Err(EsError::Refused {
                node: node.to_string(),
                path,
                status,
                body_excerpt: excerpt(&text, ANSWER_EXCERPT),
            }),
        }
    }

    /// `GET /` on the next node in rotation: the version number it
    /// answers with (`version.number`).
    pub async fn version(&self) -> Result<String, EsError> {
        let node = self.next_node();
        let text = match self.send(node, self.http.get(format!("{node}/"))).await? {
            (200..=299, text) => text,
            (status, text) => {
                let body_excerpt = excerpt(&text, ANSWER_EXCERPT);
                return Err(EsError::Refused { node: node.to_string(), path: "/".into(), status, body_excerpt });
            }
        };
        let answer: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        match answer["version"]["number"].as_str() {
            Some(v) => Ok(v.to_string()),
            None => Err(EsError::Client(format!(
                "{node}/: no version.number in the answer: {}",
                excerpt(&text, ANSWER_EXCERPT)
            ))),
        }
    }

    /// `GET path` on the next node in rotation: the status and the answer.
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), EsError> {
        let node = self.next_node();
        let url = format!("{node}/{}", path.trim_start_matches('/'));
        self.send(node, self.http.get(&url)).await
    }

    /// `DELETE path` on the next node in rotation: the status and the answer.
    pub async fn delete(&self, path: &str) -> Result<(u16, Vec<u8>), EsError> {
        let node = self.next_node();
        let url = format!("{node}/{}", path.trim_start_matches('/'));
        self.send(node, self.http.delete(&url)).await
    }

    /// POSTs a JSON body to `path` (`index/_search?…`) on the next node in
    /// rotation (the search page over Elasticsearch, see
    /// [`crate::search::backend`]): the status and the answer, or why there
    /// was none.
    pub async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), EsError> {
        let node = self.next_node();
        let url = format!("{node}/{}", path.trim_start_matches('/'));
        self.send(node, self.http.post(&url).header("Content-Type", "application/json").body(body)).await
    }
}
