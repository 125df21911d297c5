//! The one HTTP server of a process, on `[http] listen`: `/metrics` and
//! health always, the search page and `/api/` too under `logcollect run`
//! (the caller merges the routers). Started either on a runtime the caller
//! owns ([`Server::spawn`]) or on a thread of its own with a small runtime
//! ([`Server::spawn_thread`], for the agent and the transfer, whose data
//! path needs no async runtime).

use axum::Router;
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
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await
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
