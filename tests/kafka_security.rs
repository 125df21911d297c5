//! Secured Kafka end to end: the agent's producer over TLS to a real
//! broker, an unknown CA refused with a clear error and readiness 503 and
//! no line lost, then every line exactly once with the right CA; an expired
//! broker certificate named and retried until it is renewed.
//!
//! What Tansu 0.6 (the test broker) supports, as found here:
//! - TLS: no. `tansu broker --cert X --key Y` is refused by its argument
//!   parser ("the argument '--cert <CERT>' cannot be used with '--key
//!   <KEY>'"); with `--cert` (cert and key in one PEM) or `--key` alone it
//!   starts but its listener still speaks plaintext (a TLS ClientHello gets
//!   no answer). So TLS is terminated by a rustls front in the test
//!   (`common::kafka_tls`), forwarding to Tansu, which advertises the TLS
//!   address: every byte between librdkafka and the broker goes over TLS.
//! - SASL: `--authentication` makes Tansu require SASL (rsasl inside:
//!   SCRAM-SHA-256 and SCRAM-SHA-512; `tansu user create --mechanism
//!   scram256|scram512 NAME PASSWORD` sends AlterUserScramCredentials). On
//!   a broker started with `--authentication` that request is itself
//!   refused (`NotAuthenticated`: the CLI does not authenticate), and the
//!   memory storage cannot be shared with a second, unauthenticated
//!   broker, so no user can exist: every SASL login fails. What is tested
//!   is therefore the failure side: a SASL/SCRAM agent against it logs a
//!   clear authentication error naming the broker, `/health/ready` is 503,
//!   and no line is lost (the lines arrive once the agent is pointed at a
//!   listener it can log in to).

mod common;

use common::kafka_tls::{consume_values, SecureTansu};
use common::{agent_config, append_lines, dump_logs, line, wait_until, Agent, TlsFiles};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const LINES: usize = 3000;

/// The agent's config for `brokers` with `[kafka]` security keys `sec`.
fn secured_config(brokers: &str, dir: &Path, sec: &str) -> String {
    let base = agent_config(brokers, dir, "", &format!("app = {}/logs/*.log", dir.display()));
    base.replacen("[kafka]\n", &format!("[kafka]\n{sec}\n"), 1)
}

/// Every line of file 0 arrived exactly once.
fn assert_every_line_once(values: &[Vec<u8>], n: usize) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for v in values {
        *seen.entry(v.as_slice()).or_default() += 1;
    }
    for i in 0..n {
        let want = line(0, i);
        assert_eq!(seen.get(want.as_bytes()).copied(), Some(1), "line {i} not there exactly once");
    }
    assert_eq!(values.len(), n, "no record beside the lines");
}

fn tls_reader_props(ca: &Path) -> Vec<(&'static str, String)> {
    vec![("security.protocol", "ssl".into()), ("ssl.ca.location", ca.display().to_string())]
}

#[test]
fn agent_ships_every_line_once_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let broker = SecureTansu::start(Some(&tls), false, &dir.path().join("tansu.log"));
    broker.create_topic("app", 2);
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append_lines(&dir.path().join("logs/a.log"), 0, 0, LINES);
    let sec = format!("security_protocol = ssl\nssl_ca_file = {}", tls.ca.display());
    let agent = Agent::start(dir.path(), &secured_config(&broker.brokers(), dir.path(), &sec));
    let props = tls_reader_props(&tls.ca);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let got = consume_values(&broker.brokers(), &props, "app", LINES, Duration::from_secs(2), Duration::from_secs(60));
    if got.len() != LINES {
        dump_logs(dir.path());
    }
    assert_every_line_once(&got, LINES);
    assert!(wait_until(Duration::from_secs(15), || agent.get("/health/ready").0 == 200), "ready over TLS");
}

#[test]
fn unknown_ca_is_refused_clearly_and_no_line_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let other_dir = dir.path().join("other-ca");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = TlsFiles::generate(&other_dir);
    let broker = SecureTansu::start(Some(&tls), false, &dir.path().join("tansu.log"));
    broker.create_topic("app", 2);
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append_lines(&dir.path().join("logs/a.log"), 0, 0, LINES);

    // A CA that did not sign the broker's certificate.
    let wrong = format!("security_protocol = ssl\nssl_ca_file = {}", other.ca.display());
    let mut agent = Agent::start(dir.path(), &secured_config(&broker.brokers(), dir.path(), &wrong));
    let named = wait_until(Duration::from_secs(30), || {
        let log = agent.log_text();
        log.contains("TLS failed")
            && log.contains(&broker.brokers())
            && log.contains("certificate verify failed")
            && log.contains("the broker's certificate is not signed by a CA in ssl_ca_file")
    });
    if !named {
        dump_logs(dir.path());
    }
    assert!(named, "a warning names the broker and the failed certificate verification");
    assert!(wait_until(Duration::from_secs(20), || agent.get("/health/ready").0 == 503), "not ready");
    let (_, body) = agent.get("/health/ready");
    assert!(body.contains("kafka producer"), "the reason names the producer: {body}");
    assert!(agent.is_running(), "retried, not fatal");
    let log = agent.log_text();
    assert!(log.matches("TLS failed").count() <= 6, "rate-limited: {} warnings", log.matches("TLS failed").count());
    let (code, _) = agent.terminate();
    assert_eq!(code, Some(0));

    // The right CA: every line exactly once.
    let right = format!("security_protocol = ssl\nssl_ca_file = {}", tls.ca.display());
    std::fs::write(&agent.config, secured_config(&broker.brokers(), dir.path(), &right) + &http_section(&agent))
        .unwrap();
    agent.restart();
    let props = tls_reader_props(&tls.ca);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let got = consume_values(&broker.brokers(), &props, "app", LINES, Duration::from_secs(3), Duration::from_secs(60));
    if got.len() != LINES {
        dump_logs(dir.path());
    }
    assert_every_line_once(&got, LINES);
    assert!(wait_until(Duration::from_secs(15), || agent.get("/health/ready").0 == 200), "ready with the right CA");
}

/// The `[http]` section the harness added at the first start.
fn http_section(agent: &Agent) -> String {
    format!("\n[http]\nlisten = {}\n", agent.http.as_deref().unwrap())
}

#[test]
fn sasl_refused_by_the_broker_is_reported_and_no_line_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let broker = SecureTansu::start(None, true, &dir.path().join("tansu.log"));
    let plain = SecureTansu::start(None, false, &dir.path().join("tansu-plain.log"));
    plain.create_topic("app", 1);
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append_lines(&dir.path().join("logs/a.log"), 0, 0, LINES);
    let pw = dir.path().join("kafka.pw");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let sec = format!(
        "security_protocol = sasl_plaintext\nsasl_mechanism = SCRAM-SHA-512\nsasl_username = alice\nsasl_password_file = {}",
        pw.display()
    );
    let mut agent = Agent::start(dir.path(), &secured_config(&broker.brokers(), dir.path(), &sec));
    let named = wait_until(Duration::from_secs(30), || {
        let log = agent.log_text();
        log.contains("SASL authentication failed") && log.contains(&broker.brokers())
    });
    if !named {
        dump_logs(dir.path());
    }
    assert!(named, "a warning names the broker and the failed authentication");
    assert!(!agent.log_text().contains("wrong-password"), "the password is never logged");
    assert!(wait_until(Duration::from_secs(20), || agent.get("/health/ready").0 == 503), "not ready");
    assert!(agent.is_running(), "retried, not fatal");
    let (code, _) = agent.terminate();
    assert_eq!(code, Some(0));

    // Nothing was acknowledged, so nothing was lost: pointed at a broker it
    // can reach, the agent ships every line once.
    std::fs::write(&agent.config, secured_config(&plain.brokers(), dir.path(), "") + &http_section(&agent)).unwrap();
    agent.restart();
    let got = consume_values(&plain.brokers(), &[], "app", LINES, Duration::from_secs(3), Duration::from_secs(60));
    if got.len() != LINES {
        dump_logs(dir.path());
    }
    assert_every_line_once(&got, LINES);
}

/// Signs the broker's certificate again with `days` of validity (-1: it
/// expired yesterday), in place.
fn resign_server_cert(dir: &Path, days: i32) {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
        .args(["-out", "server.pem", "-days", &days.to_string(), "-extfile", "server.ext"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_expired_broker_certificate_is_named_and_retried_until_it_is_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    // The broker's certificate expired yesterday (the front reads it per connection).
    resign_server_cert(dir.path(), -1);
    let broker = SecureTansu::start(Some(&tls), false, &dir.path().join("tansu.log"));
    broker.create_topic("app", 2);
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    append_lines(&dir.path().join("logs/a.log"), 0, 0, LINES);
    let sec = format!("security_protocol = ssl\nssl_ca_file = {}", tls.ca.display());
    let agent = Agent::start(dir.path(), &secured_config(&broker.brokers(), dir.path(), &sec));
    let named = wait_until(Duration::from_secs(30), || {
        let log = agent.log_text();
        log.contains("TLS failed")
            && log.contains(&format!("TLS to {}: the broker's certificate has expired", broker.brokers()))
    });
    if !named {
        dump_logs(dir.path());
    }
    assert!(named, "a warning names the broker and the expired certificate");
    assert!(wait_until(Duration::from_secs(20), || agent.get("/health/ready").0 == 503), "not ready");
    // Renewed: the same agent, never restarted, ships every line once.
    resign_server_cert(dir.path(), 2);
    let props = tls_reader_props(&tls.ca);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let got = consume_values(&broker.brokers(), &props, "app", LINES, Duration::from_secs(3), Duration::from_secs(90));
    if got.len() != LINES {
        dump_logs(dir.path());
    }
    assert_every_line_once(&got, LINES);
    assert!(wait_until(Duration::from_secs(30), || agent.get("/health/ready").0 == 200), "ready once renewed");
}
