//! The one HTTP server of a process, on `[http] listen`: `/metrics` and
//! health always, the search page and `/api/` too under `logcollect run`
//! (the caller merges the routers). Started either on a runtime the caller
//! owns ([`Server::spawn`]) or on a thread of its own with a small runtime
//! ([`Server::spawn_thread`], for the agent and the transfer, whose data
//! path needs no async runtime).

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Binds `addr` for [`Server::spawn`] / [`Server::spawn_thread`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `router` on `listener` until `shutdown` completes.
async fn serve(listener: TcpListener, router: Router, shutdown: oneshot::Receiver<()>) -> std::io::Result<()> {
    let loopback = listener.local_addr()?.ip().is_loopback();
    let router = router.layer(axum::middleware::from_fn(move |req, next| guard(loopback, req, next)));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await
}

/// What every request goes through, on every route:
/// - on a loopback address, a `Host` that is not a loopback name is refused
///   (421): a page on another site whose name was rebound to 127.0.0.1
///   (DNS rebinding) must not read the API with the operator's browser;
/// - `/api/` refuses requests a browser marks as cross-site (403);
/// - answers carry a content security policy that allows only the page's
///   own files, no framing, no MIME sniffing and no referrer.
async fn guard(loopback: bool, req: Request, next: Next) -> Response {
    if loopback {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !is_loopback_host(host) {
            return (StatusCode::MISDIRECTED_REQUEST, "this server answers loopback names only\n").into_response();
        }
    }
    let cross_site = req.headers().get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site && req.uri().path().starts_with("/api/") {
        return (StatusCode::FORBIDDEN, "cross-site requests to /api/ are refused\n").into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
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
    pub fn spawn(rt: &tokio::runtime::Handle, listener: TcpListener, router: Router) -> Server {
        let (tx, rx) = oneshot::channel();
        let task = rt.spawn(serve(listener, router, rx));
        Server { shutdown: Some(tx), task: Some(task) }
    }

    /// Serves on a thread of its own. Not joined at shutdown: a client
    /// holding a connection open must not hold up the exit; the thread
    /// ends with its last connection or the process.
    pub fn spawn_thread(listener: TcpListener, router: Router) -> std::io::Result<Server> {
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new().name("http".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("http: {e}"),
            };
            if let Err(e) = rt.block_on(serve(listener, router, rx)) {
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
