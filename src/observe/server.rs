//! The one HTTP server of a process, on `[http] listen`: `/metrics` and
//! health always, the search page and `/api/` too under `logcollect run`
//! (the caller merges the routers). Started either on a runtime the caller
//! owns ([`Server::spawn`]) or on a thread of its own with a small runtime
//! ([`Server::spawn_thread`], for the agent and the transfer, whose data
//! path needs no async runtime).

use crate::config::HttpSection;
use crate::observe::auth::Auth;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`bind`] waits for an address in use to be let go: a
/// predecessor killed with kill -9 a moment ago still holds its listening
/// socket until the kernel has torn it down, and supervisors restart within
/// 100 ms (issue 14).
pub const BIND_WAIT: Duration = Duration::from_secs(10);

/// Binds `addr` for [`Server::spawn`] / [`Server::spawn_thread`], after
/// raising the soft `RLIMIT_NOFILE` to the hard limit (connections share
/// the fd table with the tailers and librdkafka). An address in use is
/// tried again for up to [`BIND_WAIT`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_waiting(addr, BIND_WAIT)
}

/// [`bind`], waiting up to `wait` while the address is in use.
pub fn bind_waiting(addr: SocketAddr, wait: Duration) -> std::io::Result<TcpListener> {
    raise_nofile();
    let deadline = Instant::now() + wait;
    let mut logged = false;
    let l = loop {
        match TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !std::mem::replace(&mut logged, true) {
                    tracing::warn!(
                        "{addr} is in use; waiting up to {wait:?} for it to be let go (a predecessor dying?)"
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Soft `RLIMIT_NOFILE` up to the hard one; a failure is only logged.
fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                tracing::warn!("RLIMIT_NOFILE: could not raise {} to {}", lim.rlim_cur, lim.rlim_max);
            }
        }
    }
}

/// What the guard needs of `[http]`, shared by every connection.
struct Shared {
    /// A `Host` must be a loopback name or one of `allowed_hosts`.
    check_host: bool,
    allowed_hosts: Vec<String>,
    auth: Option<Auth>,
    request_timeout: Duration,
}

/// The TLS acceptor of `tls_cert` / `tls_key`; errors name the key.
pub(crate) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |k: &str, p: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("http.{k}: {}: {e}", p.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("tls_cert", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("tls_cert", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("tls_cert", cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("tls_key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("tls_cert", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad("tls_key", key, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `router` on `listener` until `shutdown` completes.
///
/// Each connection: HTTP/1.1 with hyper's header-read timeout
/// (`header_timeout_ms`, also for the TLS handshake), closed after
/// `idle_timeout_ms` with no byte either way. At most `max_connections` are
/// served at once: past it the server stops accepting, so new connections
/// wait in the kernel's backlog until one ends (they are not refused).
async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: HttpSection,
    shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let loopback = listener.local_addr()?.ip().is_loopback();
    let tls = match &cfg.tls {
        Some((c, k)) => Some(tls_acceptor(c, k)?),
        None => None,
    };
    if !loopback && !cfg.has_auth() {
        tracing::warn!(
            "http.insecure = true: serving {} WITHOUT AUTHENTICATION to everyone who can reach it",
            listener.local_addr()?
        );
    }
    let shared = Arc::new(Shared {
        check_host: loopback || !cfg.allowed_hosts.is_empty(),
        allowed_hosts: cfg.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        auth: Auth::new(&cfg),
        request_timeout: cfg.request_timeout,
    });
    let router = router.layer(axum::middleware::from_fn(move |req, next| guard(shared.clone(), req, next)));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let (header_timeout, idle) = (cfg.header_timeout, cfg.idle_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut shutdown => return Ok(()),
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::warn!("http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let (router, tls) = (router.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0) });
            let tcp = Tracked { inner: tcp, activity: activity.clone() };
            match tls {
                None => connection(tcp, peer, router, header_timeout, idle, activity).await,
                Some(acc) => match tokio::time::timeout(header_timeout, acc.accept(tcp)).await {
                    Ok(Ok(s)) => connection(s, peer, router, header_timeout, idle, activity).await,
                    Ok(Err(e)) => tracing::debug!("http: TLS handshake from {peer}: {e}"),
                    Err(_) => tracing::debug!("http: TLS handshake from {peer} timed out"),
                },
            }
        });
    }
}

/// One connection until it ends, fails, or stays idle for `idle`.
async fn connection<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: T,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    idle: Duration,
    activity: Arc<Activity>,
) {
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { tower::Service::call(&mut router, req.map(axum::body::Body::new)).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    let watchdog = async {
        loop {
            let quiet = activity.quiet();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        r = conn => if let Err(e) = r { tracing::debug!("http: connection from {peer}: {e}") },
        _ = watchdog => tracing::debug!("http: connection from {peer} idle for {idle:?}, closed"),
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    /// ms after `start` of the last read or write.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn quiet(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that records its activity (for the idle timeout).
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What every request goes through, on every route:
/// - when listening on loopback or with `allowed_hosts` set, a `Host` that
///   is neither a loopback name nor an allowed one is refused (421): a page
///   on another site whose name was rebound to us (DNS rebinding) must not
///   read the API with the operator's browser;
/// - `/api/` refuses requests a browser marks as cross-site (403);
/// - authentication ([`Auth::check`]), when configured;
/// - `/api/` (but the endless `/api/live`) answers 503 past `request_timeout_ms`;
/// - answers carry a content security policy that allows only the page's
///   own files, no framing, no MIME sniffing and no referrer.
async fn guard(shared: Arc<Shared>, req: Request, next: Next) -> Response {
    let mut resp = guarded(&shared, req, next).await;
    let h = resp.headers_mut();
    let csp = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

async fn guarded(shared: &Shared, req: Request, next: Next) -> Response {
    if shared.check_host {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !is_loopback_host(host) && !is_allowed_host(host, &shared.allowed_hosts) {
            return (StatusCode::MISDIRECTED_REQUEST, "this server does not answer for this Host\n").into_response();
        }
    }
    let path = req.uri().path();
    let api = path.starts_with("/api/");
    let cross_site = req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site && api {
        return (StatusCode::FORBIDDEN, "cross-site requests to /api/ are refused\n").into_response();
    }
    if let Some(auth) = &shared.auth {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        if let Err(resp) = auth.check(peer, path, req.headers()).await {
            return resp;
        }
    }
    if api && path != "/api/live" {
        return match tokio::time::timeout(shared.request_timeout, next.run(req)).await {
            Ok(r) => r,
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(serde_json::json!({"error": "the request took longer than http.request_timeout_ms"})),
            )
                .into_response(),
        };
    }
    next.run(req).await
}

/// Whether `host` (with or without a port) is one of `allowed` (lower case).
fn is_allowed_host(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a `Host` header names this machine's loopback: `localhost`, or
/// a loopback address, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A running server; dropping it asks it to stop.
pub struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    /// Present when served on the caller's runtime.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serves on `rt` (a task of the caller's runtime).
    pub fn spawn(rt: &tokio::runtime::Handle, listener: TcpListener, router: Router, cfg: &HttpSection) -> Server {
        let (tx, rx) = oneshot::channel();
        let task = rt.spawn(serve(listener, router, cfg.clone(), rx));
        Server { shutdown: Some(tx), task: Some(task) }
    }

    /// Serves on a thread of its own. Not joined at shutdown: a client
    /// holding a connection open must not hold up the exit; the thread
    /// ends with its last connection or the process.
    pub fn spawn_thread(listener: TcpListener, router: Router, cfg: &HttpSection) -> std::io::Result<Server> {
        let (tx, rx) = oneshot::channel();
        let cfg = cfg.clone();
        std::thread::Builder::new().name("http".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("http: {e}"),
            };
            if let Err(e) = rt.block_on(serve(listener, router, cfg, rx)) {
                tracing::error!("http: {e}");
            }
        })?;
        Ok(Server { shutdown: Some(tx), task: None })
    }

    /// Stops a server of [`Server::spawn`]: connections get a moment to
    /// finish (live views never end by themselves), then are cut.
    pub fn stop(mut self, rt: &tokio::runtime::Handle) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(mut task) = self.task.take() {
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), &mut task).await });
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_waits_for_an_address_let_go_and_refuses_one_kept() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        // Kept: refused after the wait, with the kernel's error.
        let t = Instant::now();
        let e = bind_waiting(addr, Duration::from_millis(200)).err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(t.elapsed() >= Duration::from_millis(200));
        // Let go while waiting: bound.
        let going = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let l = bind_waiting(addr, Duration::from_secs(5)).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        going.join().unwrap();
    }

    #[test]
    fn loopback_hosts() {
        let table = [
            ("127.0.0.1:8080", true),
            ("127.0.0.1", true),
            ("127.1.2.3:80", true),
            ("localhost:8080", true),
            ("LocalHost.", true),
            ("[::1]:8080", true),
            ("[::1]", true),
            ("", false),
            ("evil.example:8080", false),
            ("localhost.evil.example", false),
            ("10.0.0.5:8080", false),
            ("[::2]:80", false),
        ];
        for (host, want) in table {
            assert_eq!(is_loopback_host(host), want, "{host:?}");
        }
    }
}
