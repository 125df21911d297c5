//! A secured Kafka for the tests: a real Tansu broker, behind a TLS
//! listener when TLS is wanted, with SASL (`--authentication`) when asked.
//!
//! Tansu 0.6 has `--cert` and `--key` options but terminates no TLS: the
//! two options conflict in its argument parser (`--cert` cannot be used
//! with `--key`), and with either alone the listener still speaks plain
//! Kafka (a TLS ClientHello gets no answer; the binary has rustls' client
//! side only). So TLS is terminated in front of it here, the way stunnel or
//! a TLS-terminating load balancer fronts a broker: a rustls server (the
//! test's own certificate) that forwards the bytes to Tansu's plaintext
//! listener, with Tansu advertising the TLS address in its metadata so
//! every connection of the client (bootstrap and per-broker) goes through
//! TLS. The Kafka protocol, SASL included, is Tansu's.

use super::{free_port, tansu_bin, wait_for_port, TlsFiles};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Tansu broker, optionally behind TLS and with SASL required.
pub struct SecureTansu {
    child: Child,
    /// Tansu's own (plaintext) port: for the tansu CLI.
    pub inner_port: u16,
    /// The port clients use (the TLS front's when TLS is on).
    pub port: u16,
    front: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SecureTansu {
    /// Starts Tansu; with `tls`, behind a TLS front serving `tls`'s
    /// server certificate; with `auth`, Tansu requires SASL.
    pub fn start(tls: Option<&TlsFiles>, auth: bool, log: &Path) -> SecureTansu {
        let inner_port = free_port();
        let port = if tls.is_some() { free_port() } else { inner_port };
        let listen = format!("tcp://127.0.0.1:{inner_port}");
        let advertised = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_bin());
        cmd.args(["broker", "--listener-url", &listen, "--advertised-listener-url", &advertised]);
        if auth {
            cmd.arg("--authentication");
        }
        let out = std::fs::File::create(log).unwrap();
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.stdout(Stdio::null()).stderr(out).spawn().expect("start tansu");
        wait_for_port(inner_port, "tansu");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let front = tls.map(|t| start_front(t, port, inner_port, stop.clone()));
        if front.is_some() {
            wait_for_port(port, "tls front");
        }
        SecureTansu { child, inner_port, port, front, stop }
    }

    /// `bootstrap.servers` for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic through Tansu's plaintext listener.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        super::create_topic_at(self.inner_port, name, partitions);
    }
}

impl Drop for SecureTansu {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The front's thread ends with its runtime when the test ends.
        drop(self.front.take());
    }
}

/// A TLS server on `port` forwarding every connection to `target`. The
/// certificate and key are read again for each connection, so a test can
/// renew (or expire) the broker's certificate without restarting it.
fn start_front(
    tls: &TlsFiles,
    port: u16,
    target: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (cert, key) = (tls.server_cert.clone(), tls.server_key.clone());
    let acceptor = move || {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&cert).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    };
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let Ok(Ok((sock, _))) = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
                else {
                    continue;
                };
                let acceptor = acceptor();
                tokio::spawn(async move {
                    // A failed handshake (an unknown CA on the client's
                    // side) just closes the connection, as a broker would.
                    let Ok(mut tls) = acceptor.accept(sock).await else { return };
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    })
}

/// Counts every record of `topic` by value, read from the earliest offset
/// with the client properties `props` (TLS, SASL), until `want` records
/// arrived and `quiet` passed without more, or `timeout`.
pub fn consume_values(
    brokers: &str,
    props: &[(&str, &str)],
    topic: &str,
    want: usize,
    quiet: Duration,
    timeout: Duration,
) -> Vec<Vec<u8>> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers).set("group.id", "logcollect-test-reader").set("enable.auto.commit", "false");
    for (k, v) in props {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer = cfg.create().unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(want);
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while Instant::now() < deadline && !(out.len() >= want && last.elapsed() >= quiet) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push(m.payload().unwrap_or_default().to_vec());
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {}
        }
    }
    out
}
