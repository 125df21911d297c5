//! The HTTP side of Elasticsearch: the nodes in rotation, auth and TLS, and
//! the requests logcollect makes: `_bulk`, index templates, searches, and
//! `GET /` for readiness.

use crate::config::EsConfig;
use crate::elastic::classify::excerpt;
use crate::elastic::error::EsError;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What follows a node's base URL in a `_bulk` request: Elasticsearch
/// answers only what the classifier reads.
const BULK_PATH: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error";

/// Bytes of an answer quoted in messages.
pub(crate) const ANSWER_EXCERPT: usize = 300;

/// Nodes in rotation, auth, TLS.
pub struct EsClient {
    http: reqwest::Client,
    /// Base URLs (`http://host:9200`, no trailing `/`); never empty.
    nodes: Vec<String>,
    /// Counts requests; request `n` goes to `nodes[n % nodes.len()]`.
    next: AtomicUsize,
    auth: Auth,
}

enum Auth {
    None,
    Basic(String, String),
    ApiKey(String),
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
    /// The client `cfg` describes; fails on a bad `ca_file`.
    pub fn new(cfg: &EsConfig) -> Result<EsClient, EsError> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.workers);
        if let Some(ca) = &cfg.ca_file {
            let ca_error = |message: String| EsError::CaFile { path: ca.clone(), message };
            let pem = std::fs::read(ca).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| EsError::Client(e.to_string()))?;
        let auth = match (&cfg.api_key, &cfg.username, &cfg.password) {
            (Some(key), _, _) => Auth::ApiKey(format!("ApiKey {}", key.expose())),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.expose().to_string()),
            _ => Auth::None,
        };
        Ok(EsClient { http, nodes: cfg.nodes.clone(), next: AtomicUsize::new(0), auth })
    }

    /// The base URL of the node the next request goes to.
    fn next_node(&self) -> &str {
        &self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::ApiKey(k) => req.header("Authorization", k),
        }
    }

    /// Sends `req` (addressed to `node`) with the auth applied: the status
    /// and the whole answer, or why there was none.
    async fn send(&self, node: &str, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), EsError> {
        let unreachable = |message: String| EsError::Unreachable { node: node.to_string(), message };
        let resp = self.authorize(req).send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        Ok((status, body.to_vec()))
    }

    /// Posts a `_bulk` body to the next node in rotation.
    pub(crate) async fn post_bulk(&self, body: Bytes) -> Answer {
        let node = self.next_node();
        let req =
            self.http.post(format!("{node}{BULK_PATH}")).header("Content-Type", "application/x-ndjson").body(body);
        match self.send(node, req).await {
            Ok((status, body)) => Answer::Status(status, body),
            Err(e) => Answer::Unreachable(e.to_string()),
        }
    }

    /// Installs (or replaces) the index template `name`. An error that
    /// [`EsError::is_transient`] is worth trying again later; any other is
    /// a refusal for good.
    pub async fn put_template(&self, name: &str, body: Vec<u8>) -> Result<(), EsError> {
        let node = self.next_node();
        let url = format!("{node}/_index_template/{name}");
        let req = self.http.put(&url).header("Content-Type", "application/json").body(body);
        match self.send(node, req).await {
            Ok((200..=299, _)) => Ok(()),
            Ok((status, text)) => Err(EsError::Refused { url, status, body_excerpt: excerpt(&text, ANSWER_EXCERPT) }),
            Err(e) => {
                if let EsError::Unreachable { message, .. } = &e {
                    tracing::warn!("{url}: {message}");
                }
                Err(e)
            }
        }
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
