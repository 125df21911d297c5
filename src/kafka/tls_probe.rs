//! What librdkafka leaves out of a failed TLS handshake. Its message says
//! "certificate verify failed" whatever the cause (an unknown CA, an
//! expired certificate, a name mismatch). When a client reports a TLS
//! failure, a probe connects to the broker it names, verifies the broker's
//! certificate with the same CA file (`ssl.ca.location`), and logs the
//! cause in words: the operator learns *what* to fix, not only where.
//!
//! The probe only completes a handshake and closes: it sends no Kafka
//! request and never trusts the broker with anything.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The CA file the Kafka clients verify brokers with (the last one built).
static CA: Mutex<Option<PathBuf>> = Mutex::new(None);

/// How long the probe waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Called for each client built with `ssl.ca.location`.
pub(super) fn remember_ca(path: &str) {
    *CA.lock().unwrap_or_else(|e| e.into_inner()) = Some(PathBuf::from(path));
}

/// Probes the broker named in librdkafka's `reason` on a thread of its own
/// and logs what is wrong with its certificate. Without a CA file (system
/// roots) or a broker address in the text, it does nothing.
pub(super) fn explain_later(client: &str, reason: &str) {
    let Some(ca) = CA.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
    let Some((host, port)) = broker_of(reason) else { return };
    let client = client.to_string();
    let _ = std::thread::Builder::new().name("tls-probe".into()).spawn(move || {
        let cause = match probe(&host, port, &ca) {
            Ok(()) => return, // verifies: the failure is elsewhere (client certificate, …)
            Err(cause) => cause,
        };
        tracing::warn!(broker = %format!("{host}:{port}"), "kafka {client}: TLS to {host}:{port}: {cause}");
    });
}

/// `host` and `port` of the first `ssl://host:port/` or `sasl_ssl://…` in
/// librdkafka's text.
fn broker_of(reason: &str) -> Option<(String, u16)> {
    let start = reason.find("ssl://")? + "ssl://".len();
    let rest = &reason[start..];
    let addr = &rest[..rest.find(['/', ' ']).unwrap_or(rest.len())];
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// Completes a TLS handshake with `host:port`, verifying its certificate
/// with the CAs in `ca`: `Err` says why it fails.
fn probe(host: &str, port: u16, ca: &std::path::Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("ssl_ca_file {}: {e}", ca.display()))?;
    for c in certs.flatten() {
        let _ = roots.add(c);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let addr = (host, port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or("cannot resolve the broker")?;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) => {
                let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).cloned();
                return match tls {
                    Some(t) => Err(explain(&t, host, ca)),
                    // Closed or timed out before a verdict: say nothing new.
                    None => Ok(()),
                };
            }
        }
    }
    Ok(())
}

/// A certificate verdict in the operator's words.
fn explain(e: &rustls::Error, host: &str, ca: &std::path::Path) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => {
                format!("the broker's certificate has expired ({e}): renew it on the broker")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("the broker's certificate is not valid yet ({e}): check the clocks")
            }
            C::UnknownIssuer => {
                format!("the broker's certificate is not signed by a CA in ssl_ca_file {}", ca.display())
            }
            C::BadSignature => format!(
                "the broker's certificate is not signed by a CA in ssl_ca_file {} (a CA of the same name is there, but another key signed the certificate)",
                ca.display()
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("the broker's certificate is not valid for the name {host} ({e})")
            }
            _ => format!("the broker's certificate is refused: {e}"),
        },
        _ => format!("the TLS handshake fails: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_read_from_librdkafka_text() {
        let reason = "ssl://127.0.0.1:43789/bootstrap: SSL handshake failed: error:0A000086";
        assert_eq!(broker_of(reason), Some(("127.0.0.1".into(), 43789)));
        assert_eq!(broker_of("sasl_ssl://kafka-1.example:9093/1: x"), Some(("kafka-1.example".into(), 9093)));
        assert_eq!(broker_of("ssl://[::1]:9093/bootstrap: x"), Some(("::1".into(), 9093)));
        assert_eq!(broker_of("no broker here"), None);
    }

    #[test]
    fn verdicts_are_said_in_words() {
        use rustls::CertificateError as C;
        let ca = std::path::Path::new("/etc/ca.pem");
        let say = |c: C| explain(&rustls::Error::InvalidCertificate(c), "b1", ca);
        assert!(say(C::Expired).contains("has expired"));
        assert!(say(C::NotValidYet).contains("not valid yet"));
        assert!(say(C::UnknownIssuer).contains("not signed by a CA in ssl_ca_file /etc/ca.pem"));
        assert!(say(C::NotValidForName).contains("not valid for the name b1"));
        assert!(say(C::BadSignature).contains("another key signed"));
    }
}
