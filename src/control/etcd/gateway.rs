//! The few etcd v3 calls logcollect makes, over etcd's JSON gRPC-gateway
//! (`POST /v3/...` with JSON bodies) instead of gRPC, so that building needs
//! no `protoc`: range, put, a transaction of puts, delete range, watch and authenticate.
//!
//! The gateway's JSON is protobuf's mapping: `bytes` fields (keys, values)
//! are base64, `int64` fields are strings, and fields at their zero value are
//! left out (a value of `""`, `deleted` 0, a `PUT` event's `type`). A watch
//! answers with a stream of JSON objects, one a line, each
//! `{"result": WatchResponse}` or `{"error": {...}}`.
//!
//! Connections are HTTP/1.1 (http or https), the same on both: a watch is
//! one create request, then only what etcd sends (over HTTP/1.1 the client
//! cannot send more of its request once the answer streams). With user and
//! password, a token
//! from `/v3/auth/authenticate` goes in the `Authorization` header, and a
//! call that etcd answers "invalid auth token" (the token expired) is sent
//! again once with a new token.

use super::EtcdError;
use crate::config::{EtcdConfig, Secret};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// TCP keepalive on every connection, probes this far apart after this long
/// idle, [`TCP_KEEPALIVE_RETRIES`] of them: a host gone without a word
/// (down, network cut) fails the connection in about 40 s even when
/// nothing is being sent. A hung etcd process still answers them: see the
/// watch check in `session` (the parent module).
const TCP_KEEPALIVE: Duration = Duration::from_secs(10);
const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// The most a watch may hold of a message not yet ended by its newline (a
/// value is at most 1.5 MiB by etcd's default, and base64 grows it by 4/3).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A client of one etcd cluster: its endpoints, TLS, and the auth token.
pub struct Client {
    http: reqwest::Client,
    /// Base URLs (`http(s)://host:port`, no trailing `/`); never empty.
    endpoints: Vec<String>,
    /// Index into `endpoints` of the one that answered last: tried first.
    current: usize,
    /// User and password; `None`: etcd without auth.
    credentials: Option<(String, Secret)>,
    /// The `Authorization` header (marked sensitive); `None` without
    /// credentials, and until the first authentication.
    token: Option<HeaderValue>,
    /// The bound on connecting and on each unary call.
    timeout: Duration,
}

/// A key and its value as the gateway sends them, decoded.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub key: Vec<u8>,
    /// Empty when the value is empty, and in a delete event.
    #[serde(default, deserialize_with = "base64_bytes")]
    pub value: Vec<u8>,
    /// The revision of the key's last change.
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
}

/// A response header: the store's revision when the call was served.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Absent (0) in a compaction's watch response.
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

/// `/v3/kv/range`'s answer.
#[derive(Deserialize, Debug, Default)]
pub struct RangeResponse {
    pub header: Option<Header>,
    /// At most one for a single key; sorted by key for a range.
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
}

#[derive(Deserialize, Debug, Default)]
struct PutResponse {
    header: Option<Header>,
}

/// `/v3/kv/deleterange`'s answer.
#[derive(Deserialize, Debug, Default)]
pub struct DeleteResponse {
    /// How many keys were deleted.
    #[serde(default, deserialize_with = "int64")]
    pub deleted: i64,
}

#[derive(Deserialize, Debug, Default)]
struct AuthenticateResponse {
    #[serde(default)]
    token: String,
}

/// One message of a watch stream.
#[derive(Deserialize, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    /// The answer to the create request.
    #[serde(default)]
    pub created: bool,
    /// The watch is over; `cancel_reason` says why.
    #[serde(default)]
    pub canceled: bool,
    #[serde(default)]
    pub cancel_reason: String,
    /// Above 0: the revision asked for has been compacted away, up to this
    /// one (the watch is canceled too).
    #[serde(default, deserialize_with = "int64")]
    pub compact_revision: i64,
    /// Empty in a progress notification.
    #[serde(default)]
    pub events: Vec<WatchEvent>,
}

/// A change of a watched key.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Left out for a put (protobuf's zero value).
    #[serde(default, rename = "type")]
    pub kind: EventKind,
    pub kv: Option<KeyValue>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventKind {
    #[default]
    Put,
    Delete,
}

/// What a watch stream gave next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Message(WatchResponse),
    /// Nothing at all arrived for the idle time given.
    Idle,
}

/// A watch stream, from its first message after `created`.
pub struct Watch {
    /// The URL it was created at, for messages.
    url: String,
    resp: reqwest::Response,
    /// Bytes received and not yet returned: at most one unfinished message
    /// after the last newline, and whole lines before it.
    buf: Vec<u8>,
    /// A message read while creating the watch that is the caller's: one
    /// that reports a compaction instead of confirming the watch.
    pending: Option<WatchResponse>,
}

impl Client {
    /// A client for `cfg`'s endpoints with its TLS files (a `ca_file`
    /// replaces the built-in roots; endpoints without a scheme then use
    /// https) and, with a user, authenticated at once.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
        let mut c = Client::new(cfg)?;
        if c.credentials.is_some() {
            c.authenticate().await?;
        }
        Ok(c)
    }

    /// The client, without a call yet.
    pub fn new(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let tls = cfg.ca_file.is_some() || cfg.cert_file.is_some();
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .connect_timeout(timeout)
            .tcp_keepalive(TCP_KEEPALIVE)
            .tcp_keepalive_interval(TCP_KEEPALIVE)
            .tcp_keepalive_retries(TCP_KEEPALIVE_RETRIES);
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| EtcdError::File { key, path: path.to_path_buf(), message: e.to_string() })
        };
        if let Some(ca) = &cfg.ca_file {
            let file_error = |message: String| EtcdError::File { key: "etcd.ca_file", path: ca.clone(), message };
            let certs = reqwest::Certificate::from_pem_bundle(&read("etcd.ca_file", ca)?)
                .map_err(|e| file_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(file_error("no PEM certificate in the file".into()));
            }
            b = b.tls_built_in_root_certs(false);
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            let mut pem = read("etcd.cert_file", cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read("etcd.key_file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| EtcdError::File {
                key: "etcd.cert_file",
                path: cert.clone(),
                message: format!("with etcd.key_file {}: {}", key.display(), e.without_url()),
            })?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| EtcdError::Client {
            endpoint: cfg.endpoints.join(";"),
            message: format!("building the HTTP client: {}", e.without_url()),
        })?;
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Client {
            http,
            endpoints: cfg.endpoints.iter().map(|e| base_url(e, tls)).collect(),
            current: 0,
            credentials,
            token: None,
            timeout,
        })
    }

    /// Gets a token for the configured user.
    pub async fn authenticate(&mut self) -> Result<(), EtcdError> {
        let Some((name, password)) = &self.credentials else { return Ok(()) };
        let body = json!({"name": name, "password": password.expose()});
        self.token = None;
        let (url, answer): (_, AuthenticateResponse) = self.unary("/v3/auth/authenticate", &body).await?;
        let mut v = HeaderValue::from_str(&answer.token).map_err(|_| EtcdError::Client {
            endpoint: url,
            message: "the token is not a valid header value".into(),
        })?;
        v.set_sensitive(true);
        self.token = Some(v);
        Ok(())
    }

    /// The value of `key`, or with `prefix` every key starting with it;
    /// `keys_only` leaves values out.
    pub async fn range(&mut self, key: &[u8], prefix: bool, keys_only: bool) -> Result<RangeResponse, EtcdError> {
        let mut body = json!({"key": BASE64.encode(key), "keys_only": keys_only});
        if prefix {
            body["range_end"] = BASE64.encode(prefix_end(key)).into();
        }
        Ok(self.call("/v3/kv/range", &body).await?.1)
    }

    /// Writes `value` at `key`; returns the revision of the write.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
        let body = json!({"key": BASE64.encode(key), "value": BASE64.encode(value)});
        let (url, r): (_, PutResponse) = self.call("/v3/kv/put", &body).await?;
        r.header.map(|h| h.revision).ok_or_else(|| no_header(url))
    }

    /// Writes every `(key, value)` in one transaction (all or none);
    /// returns its revision. etcd refuses more than its `--max-txn-ops`
    /// (128 by default) in one.
    pub async fn put_all(&mut self, kvs: &[(String, &[u8])]) -> Result<i64, EtcdError> {
        let ops: Vec<_> = kvs
            .iter()
            .map(|(k, v)| json!({"request_put": {"key": BASE64.encode(k), "value": BASE64.encode(v)}}))
            .collect();
        let (url, r): (_, PutResponse) = self.call("/v3/kv/txn", &json!({"success": ops})).await?;
        r.header.map(|h| h.revision).ok_or_else(|| no_header(url))
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: &[u8]) -> Result<DeleteResponse, EtcdError> {
        let body = json!({"key": BASE64.encode(key)});
        Ok(self.call("/v3/kv/deleterange", &body).await?.1)
    }

    /// Watches `key` from `start_revision`, with progress notifications
    /// asked for (etcd sends one when the watch has been quiet for its
    /// `--experimental-watch-progress-notify-interval`, 10 minutes by
    /// default). Returns once etcd confirmed the watch.
    pub async fn watch(&mut self, key: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({"create_request": {
            "key": BASE64.encode(key),
            "start_revision": start_revision.to_string(),
            "progress_notify": true,
        }});
        let mut reauthenticated = false;
        loop {
            let (url, resp) = self.send("/v3/watch", &body, false).await?;
            let resp = ok_status(&url, resp, self.timeout).await?;
            let mut watch = Watch { url, resp, buf: Vec::new(), pending: None };
            let first = match watch.next(self.timeout).await? {
                Next::Message(m) => m,
                Next::Idle => return Err(watch.error(format!("no answer within {} s", self.timeout.as_secs()))),
            };
            // etcd 3.4 confirms, then reports a compaction in a message of
            // its own; one that reports it at once is the caller's too.
            if first.compact_revision > 0 {
                watch.pending = Some(first);
                return Ok(watch);
            }
            if first.canceled {
                if invalid_token(&first.cancel_reason) && self.credentials.is_some() && !reauthenticated {
                    reauthenticated = true;
                    self.authenticate().await?;
                    continue;
                }
                return Err(watch.error(format!("watch refused: {}", first.cancel_reason)));
            }
            if !first.created {
                return Err(watch.error("the first message does not confirm the watch".into()));
            }
            return Ok(watch);
        }
    }

    /// A unary call, sent again once with a new token when the token was
    /// refused. Returns the URL that answered and the answer.
    async fn call<T: DeserializeOwned + Default>(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(String, T), EtcdError> {
        match self.unary(path, body).await {
            Err(EtcdError::Refused { message, .. }) if invalid_token(&message) && self.credentials.is_some() => {
                self.authenticate().await?;
                self.unary(path, body).await
            }
            r => r,
        }
    }

    async fn unary<T: DeserializeOwned + Default>(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(String, T), EtcdError> {
        let (url, resp) = self.send(path, body, true).await?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&url, &e, "reading the answer"))?;
        if !status.is_success() {
            return Err(refused(&url, status.as_u16(), &bytes));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| EtcdError::Client {
            endpoint: url.clone(),
            message: format!("unexpected answer ({e}): {}", excerpt(&bytes)),
        })?;
        Ok((url, value))
    }

    /// Posts `body` to `path` at the endpoints in turn, from the one that
    /// answered last, until one answers (any HTTP status). `whole`: the
    /// timeout bounds the whole call; otherwise (a watch) only the wait for
    /// the response's head.
    async fn send(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        whole: bool,
    ) -> Result<(String, reqwest::Response), EtcdError> {
        let mut errors = Vec::new();
        for i in 0..self.endpoints.len() {
            let at = (self.current + i) % self.endpoints.len();
            let url = format!("{}{path}", self.endpoints[at]);
            let mut req = self.http.post(&url).header(CONTENT_TYPE, "application/json").body(body.to_string());
            if let Some(t) = &self.token {
                req = req.header(AUTHORIZATION, t.clone());
            }
            let sent = if whole {
                req.timeout(self.timeout).send().await
            } else {
                match tokio::time::timeout(self.timeout, req.send()).await {
                    Ok(r) => r,
                    Err(_) => {
                        errors.push(EtcdError::Timeout { endpoint: url, secs: self.timeout.as_secs() });
                        continue;
                    }
                }
            };
            match sent {
                Ok(resp) => {
                    self.current = at;
                    return Ok((url, resp));
                }
                Err(e) => errors.push(self.transport_error(&url, &e, "")),
            }
        }
        Err(all_failed(errors))
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error, doing: &str) -> EtcdError {
        if e.is_timeout() {
            return EtcdError::Timeout { endpoint: url.to_string(), secs: self.timeout.as_secs() };
        }
        let message = if doing.is_empty() { reason(e) } else { format!("{doing}: {}", reason(e)) };
        EtcdError::Client { endpoint: url.to_string(), message }
    }
}

impl Watch {
    /// The next message; [`Next::Idle`] when not a byte came for `idle`.
    /// An error when the stream broke or ended, or etcd sent an error.
    pub async fn next(&mut self, idle: Duration) -> Result<Next, EtcdError> {
        if let Some(m) = self.pending.take() {
            return Ok(Next::Message(m));
        }
        loop {
            while let Some(line) = take_line(&mut self.buf) {
                if let Some(m) = parse_watch_line(&line).map_err(|m| self.error(m))? {
                    return Ok(Next::Message(m));
                }
            }
            if self.buf.len() > MAX_MESSAGE_BYTES {
                return Err(self.error(format!("a message of over {MAX_MESSAGE_BYTES} bytes")));
            }
            // `chunk` is cancel-safe: a timeout loses no bytes.
            match tokio::time::timeout(idle, self.resp.chunk()).await {
                Err(_) => return Ok(Next::Idle),
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => return Err(self.error("the watch stream ended".into())),
                Ok(Err(e)) => return Err(self.error(format!("the watch stream broke: {}", reason(&e)))),
            }
        }
    }

    /// An error about this watch.
    pub fn error(&self, message: String) -> EtcdError {
        EtcdError::Client { endpoint: self.url.clone(), message }
    }
}

/// Checks the status of a streaming answer; the error body of a refusal
/// is read (within `timeout`) for its message.
async fn ok_status(url: &str, resp: reqwest::Response, timeout: Duration) -> Result<reqwest::Response, EtcdError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = tokio::time::timeout(timeout, resp.bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
    Err(refused(url, status.as_u16(), &body))
}

/// One line of a watch stream: `Ok(None)` for a blank line, `Err` with a
/// message for etcd's `{"error": ...}` or what cannot be read.
pub(crate) fn parse_watch_line(line: &[u8]) -> Result<Option<WatchResponse>, String> {
    #[derive(Deserialize)]
    struct Line {
        result: Option<WatchResponse>,
        error: Option<serde_json::Value>,
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let l: Line = serde_json::from_slice(line).map_err(|e| format!("unexpected message ({e}): {}", excerpt(line)))?;
    match (l.result, l.error) {
        (_, Some(e)) => Err(format!("etcd: {}", error_text(&e))),
        (Some(r), None) => Ok(Some(r)),
        (None, None) => Err(format!("unexpected message: {}", excerpt(line))),
    }
}

/// Removes and returns the first whole line of `buf` (without its `\n`).
pub(crate) fn take_line(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let end = memchr::memchr(b'\n', buf)?;
    let mut line: Vec<u8> = buf.drain(..=end).collect();
    line.pop();
    Some(line)
}

/// The base URL of an endpoint: its scheme (http, or https with TLS files
/// configured, when it has none) and host, no trailing `/`.
pub(crate) fn base_url(endpoint: &str, tls: bool) -> String {
    let e = endpoint.trim().trim_end_matches('/');
    if e.starts_with("http://") || e.starts_with("https://") {
        e.to_string()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    }
}

/// The `range_end` that makes a range "every key starting with `prefix`":
/// the prefix with its last byte below 0xff incremented and what follows
/// dropped; `\0` (every key) when there is no such byte.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Whether etcd's message says the token is not (or no longer) good.
pub(crate) fn invalid_token(message: &str) -> bool {
    message.contains("invalid auth token")
}

/// etcd's refusal: its message, the HTTP status and the gRPC code. The
/// gateway's error body is `{"error": "...", "message": "...", "code": N}`.
fn refused(url: &str, status: u16, body: &[u8]) -> EtcdError {
    let mut message = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => error_text(&v),
        Err(_) => excerpt(body),
    };
    // etcd's own words (embed/serve.go) say what, not what to do.
    if message.contains("CommonName of client sending a request against gateway") {
        message.push_str(
            " (with --client-cert-auth and auth on, etcd's JSON gateway refuses client certificates \
             that have a Common Name: use one without, the user comes from username/password)",
        );
    }
    EtcdError::Refused { endpoint: url.to_string(), status, message }
}

/// The message of an error object (`message`, else `error`) and its gRPC
/// code (`code`, or `grpc_code` in a stream).
fn error_text(v: &serde_json::Value) -> String {
    let text = ["message", "error"].iter().find_map(|k| v.get(k).and_then(|m| m.as_str()).filter(|m| !m.is_empty()));
    let code = ["code", "grpc_code"].iter().find_map(|k| v.get(k).and_then(serde_json::Value::as_i64));
    match (text, code) {
        (Some(t), Some(c)) => format!("{t} (gRPC code {c})"),
        (Some(t), None) => t.to_string(),
        _ => excerpt(v.to_string().as_bytes()),
    }
}

/// One error from the errors of every endpoint tried (never empty).
fn all_failed(mut errors: Vec<EtcdError>) -> EtcdError {
    if errors.len() == 1 {
        return errors.pop().expect("one error");
    }
    let message = errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ");
    EtcdError::Client { endpoint: format!("{} endpoints", errors.len()), message }
}

fn no_header(url: String) -> EtcdError {
    EtcdError::Client { endpoint: url, message: "answered without a header".into() }
}

/// Why a request got no answer, with its causes (the TLS or connection
/// error is in the source chain) and without the URL.
fn reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = String::from(if e.is_connect() { "cannot connect" } else { "request failed" });
    let mut cur = e.source();
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

/// The start of an answer, for messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]);
    crate::common::text::printable(text.trim(), false).to_string()
}

/// An `int64` field: a JSON string in protobuf's mapping, a number accepted.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(|_| D::Error::custom(format!("not an integer: {s:?}"))),
    }
}

/// A `bytes` field: base64 with padding.
fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    BASE64.decode(s.as_bytes()).map_err(|e| D::Error::custom(format!("not base64 ({e}): {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_lose_the_trailing_slash() {
        let cases = [
            ("127.0.0.1:2379", false, "http://127.0.0.1:2379"),
            ("127.0.0.1:2379", true, "https://127.0.0.1:2379"),
            ("http://e:1/", true, "http://e:1"),
            ("https://e:1", false, "https://e:1"),
            (" e:1 ", false, "http://e:1"),
        ];
        for (endpoint, tls, want) in cases {
            assert_eq!(base_url(endpoint, tls), want, "{endpoint} tls={tls}");
        }
    }

    #[test]
    fn prefix_ends() {
        let cases: [(&[u8], &[u8]); 5] =
            [(b"/logagent/", b"/logagent0"), (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0")];
        for (prefix, want) in cases {
            assert_eq!(prefix_end(prefix), want, "{prefix:?}");
        }
    }

    #[test]
    fn lines_come_whole_across_chunks() {
        // (chunks, lines taken after each chunk)
        type Lines<'a> = &'a [&'a [u8]];
        let cases: [(Lines, Lines); 5] = [
            (&[], &[]),
            (&[b"\n\n"], &[b"", b""]),
            (&[b"{\"a\":1}"], &[]),
            (&[b"{\"a\"", b":1}\n{", b"}\n"], &[b"{\"a\":1}", b"{}"]),
            (&[b"x\ny\nz"], &[b"x", b"y"]),
        ];
        for (chunks, want) in cases {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for c in chunks {
                buf.extend_from_slice(c);
                while let Some(l) = take_line(&mut buf) {
                    got.push(l);
                }
            }
            assert_eq!(got, want.iter().map(|l| l.to_vec()).collect::<Vec<_>>(), "{chunks:?}");
        }
    }

    /// Messages as etcd 3.4's gateway sends them.
    #[test]
    fn watch_messages_decode() {
        let created = br#"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"created":true}}"#;
        let m = parse_watch_line(created).unwrap().unwrap();
        assert_eq!((m.created, m.header.revision, m.events.len()), (true, 4, 0));

        let events = br#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L2s=","create_revision":"2","mod_revision":"2","version":"1","value":"djE="}},{"kv":{"key":"L2s=","mod_revision":"3","version":"2"}},{"type":"DELETE","kv":{"key":"L2s=","mod_revision":"4"}}]}}"#;
        let m = parse_watch_line(events).unwrap().unwrap();
        let got: Vec<_> = m
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap();
                (e.kind, kv.key, kv.value, kv.mod_revision)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Put, b"/k".to_vec(), b"v1".to_vec(), 2),
                (EventKind::Put, b"/k".to_vec(), vec![], 3),
                (EventKind::Delete, b"/k".to_vec(), vec![], 4),
            ]
        );

        let compacted =
            br#"{"result":{"header":{"cluster_id":"1","raft_term":"2"},"canceled":true,"compact_revision":"3"}}"#;
        let m = parse_watch_line(compacted).unwrap().unwrap();
        assert_eq!((m.canceled, m.compact_revision, m.header.revision), (true, 3, 0));

        let refused = br#"{"result":{"header":{"revision":"4"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}}"#;
        let m = parse_watch_line(refused).unwrap().unwrap();
        assert!(m.canceled && invalid_token(&m.cancel_reason));

        let error = br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        assert_eq!(parse_watch_line(error).unwrap_err(), "etcd: etcdserver: no leader (gRPC code 14)");
        assert_eq!(parse_watch_line(b"  \r").unwrap(), None);
        for bad in [
            &b"{\"result\":{\"compact_revision\":\"x\"}}"[..],
            b"{}",
            b"[1",
            b"{\"result\":{\"events\":[{\"kv\":{\"value\":\"*\"}}]}}",
        ] {
            assert!(parse_watch_line(bad).unwrap_err().starts_with("unexpected message"), "{bad:?}");
        }
    }

    #[test]
    fn unary_answers_decode() {
        let range: RangeResponse = serde_json::from_slice(br#"{"header":{"revision":"3"},"kvs":[{"key":"L2s=","create_revision":"2","mod_revision":"3","version":"2"}],"count":"1"}"#).unwrap();
        assert_eq!(range.header.unwrap().revision, 3);
        assert_eq!(range.kvs, vec![KeyValue { key: b"/k".to_vec(), value: vec![], mod_revision: 3 }]);
        let empty: RangeResponse = serde_json::from_slice(br#"{"header":{"revision":"1"}}"#).unwrap();
        assert!(empty.kvs.is_empty());
        let deleted: DeleteResponse = serde_json::from_slice(br#"{"header":{"revision":4},"deleted":"1"}"#).unwrap();
        assert_eq!(deleted.deleted, 1);
        let none: DeleteResponse = serde_json::from_slice(br#"{"header":{"revision":"4"}}"#).unwrap();
        assert_eq!(none.deleted, 0);
    }

    #[test]
    fn refusals_name_the_endpoint_and_say_what_etcd_said() {
        let url = "http://e:1/v3/auth/authenticate";
        let body = br#"{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}"#;
        assert_eq!(
            refused(url, 400, body).to_string(),
            "etcd http://e:1/v3/auth/authenticate: etcdserver: authentication failed, invalid user ID or password \
             (gRPC code 3) (HTTP 400)"
        );
        assert_eq!(refused(url, 502, b"Bad Gateway\n").to_string(), format!("etcd {url}: Bad Gateway (HTTP 502)"));
        let cn = refused(
            url,
            400,
            b"CommonName of client sending a request against gateway will be ignored and not used as expected\n",
        );
        assert!(cn.to_string().contains("use one without"), "{cn}");
        let expired = refused(url, 401, br#"{"error":"etcdserver: invalid auth token","code":16}"#);
        assert!(matches!(&expired, EtcdError::Refused { message, .. } if invalid_token(message)), "{expired}");
        let two = all_failed(vec![
            EtcdError::Timeout { endpoint: "http://a:1/v3/kv/range".into(), secs: 2 },
            EtcdError::Client { endpoint: "http://b:2/v3/kv/range".into(), message: "cannot connect".into() },
        ]);
        assert_eq!(
            two.to_string(),
            "etcd 2 endpoints: etcd http://a:1/v3/kv/range: no answer within 2 s; \
             etcd http://b:2/v3/kv/range: cannot connect"
        );
    }
}
