//! Elasticsearch over TLS with credentials, end to end: a real nginx
//! terminating TLS (a CA and server certificate the test makes) with basic
//! auth or an API key check, in front of noida-db; `logcollect run` writes
//! through it and its search page reads back through it.

mod common;

use common::es::Noida;
use common::tls_proxy::{ProxyAuth, TlsProxy};
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const LINES: usize = 300;

fn basic(password: &str) -> ProxyAuth {
    ProxyAuth::Basic { user: "writer".into(), password: password.into() }
}

/// A `run` config: files under `logs` to topic `app`, `es` as the `[es]` body.
fn run_config(dir: &Path, port: u16, es: &str) -> String {
    format!(
        "[agent]\ndata_dir = {data}\nhost = h\nread_from = beginning\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n\
         [http]\nlisten = 127.0.0.1:{port}\n[es]\nbulk_max_wait_ms = 100\nretry_max_backoff_ms = 1000\n{es}\n\
         [collect]\napp = {logs}/*.log\n",
        data = dir.join("data").display(),
        logs = dir.join("logs").display(),
    )
}

fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

/// Total hits of the page's `/api/search` over all time; `None` while it fails.
fn total(port: u16) -> Option<u64> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/api/search?q=&from=0&size=1"));
    let v: Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| v["total"].as_u64()).flatten()
}

fn write_lines(dir: &Path) {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    append_lines(&logs.join("a.log"), 0, 0, LINES);
}

#[test]
fn run_over_https_with_a_private_ca_a_password_file_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let noida = Noida::start(dir.path());
    let proxy = TlsProxy::start(dir.path(), &tls, noida.port, basic("right"), true);
    write_lines(dir.path());
    let port = free_port();
    let es = format!(
        "address = {}\nusername = writer\npassword_file = {}\nca_file = {}\ncert_file = {}\nkey_file = {}\n",
        proxy.url(),
        secret_file(dir.path(), "pw", "right"),
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let mut run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, &es));
    let ok = wait_until(Duration::from_secs(90), || total(port) == Some(LINES as u64));
    assert!(ok, "got {:?}\n{}\nnginx: {}", total(port), run.log_text(), proxy.error_log());
    assert_eq!(noida.count("app"), LINES as u64, "each line once");
    let (_, page) = http_get(&format!("http://127.0.0.1:{port}/api/search?q=%22seq%3D000000007%22&from=0"));
    let page: Value = serde_json::from_str(&page).unwrap();
    assert_eq!(page["hits"][0]["message"], line(0, 7));
    let log = run.log_text();
    assert!(!log.contains("right"), "the password is never logged");
    assert!(!log.contains("plain http"), "no plaintext warning over https");
    assert_eq!(run.terminate().0, Some(0), "{}", run.log_text());

    // Without the client certificate nginx refuses every request: nothing
    // is stored, the page is not ready, and the log says why.
    let dir2 = tempfile::tempdir().unwrap();
    write_lines(dir2.path());
    let port2 = free_port();
    let es = format!(
        "address = {}\nusername = writer\npassword = right\nca_file = {}\nindex = nocert\n",
        proxy.url(),
        tls.ca.display()
    );
    let mut run = Agent::start_as(dir2.path(), "run", "run.ini", &run_config(dir2.path(), port2, &es));
    let refused =
        wait_until(Duration::from_secs(30), || proxy.error_log().contains("client sent no required SSL certificate"));
    assert!(refused, "{}\nnginx: {}", run.log_text(), proxy.error_log());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(noida.count("nocert"), 0);
    run.terminate();
}

#[test]
fn a_wrong_password_is_retried_not_dropped_until_the_proxy_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let noida = Noida::start(dir.path());
    let mut proxy = TlsProxy::start(dir.path(), &tls, noida.port, basic("other"), false);
    write_lines(dir.path());
    let port = free_port();
    let es = format!(
        "address = {}\nusername = writer\npassword_file = {}\nca_file = {}\n",
        proxy.url(),
        secret_file(dir.path(), "pw", "right"),
        tls.ca.display()
    );
    let mut run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, &es));
    let denied = wait_until(Duration::from_secs(30), || {
        run.log_text().contains("authentication failed") && proxy.answered(401) >= 3
    });
    assert!(denied, "{}", run.log_text());
    let (status, ready) = http_get(&format!("http://127.0.0.1:{port}/health/ready"));
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("authentication failed (401)"), "{ready}");
    let log = run.log_text();
    assert!(!log.contains("dead letter"), "not dead-lettered: {log}");
    assert!(!log.contains("right"), "the password is never logged");
    let denials = log.matches("authentication failed for _bulk").count();
    assert!(denials <= 4, "rate-limited: {denials} lines in the log");

    proxy.reload(basic("right"));
    let ok = wait_until(Duration::from_secs(60), || noida.count("app") == LINES as u64);
    assert!(ok, "got {}\n{}", noida.count("app"), run.log_text());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(noida.count("app"), LINES as u64, "every line once");
    assert!(wait_until(Duration::from_secs(10), || http_get(&format!("http://127.0.0.1:{port}/health/ready")).0 == 200));
    assert_eq!(run.terminate().0, Some(0), "{}", run.log_text());
}

#[test]
fn an_api_key_and_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(dir.path());
    let noida = Noida::start(dir.path());
    let proxy = TlsProxy::start(dir.path(), &tls, noida.port, ProxyAuth::ApiKey("a2V5OnNlY3JldA==".into()), false);
    write_lines(dir.path());
    let port = free_port();
    let es = format!(
        "address = {}\napi_key_file = {}\nca_file = {}\n",
        proxy.url(),
        secret_file(dir.path(), "key", "a2V5OnNlY3JldA=="),
        tls.ca.display()
    );
    let mut run = Agent::start_as(dir.path(), "run", "run.ini", &run_config(dir.path(), port, &es));
    let ok = wait_until(Duration::from_secs(90), || total(port) == Some(LINES as u64));
    assert!(ok, "got {:?}\n{}", total(port), run.log_text());
    assert_eq!(run.terminate().0, Some(0));

    // A CA that did not sign nginx's certificate: a clear error, nothing stored.
    let other = tempfile::tempdir().unwrap();
    let other_tls = TlsFiles::generate(other.path());
    let dir2 = tempfile::tempdir().unwrap();
    write_lines(dir2.path());
    let port2 = free_port();
    let es = format!(
        "address = {}\napi_key = a2V5OnNlY3JldA==\nca_file = {}\nindex = unknownca\n",
        proxy.url(),
        other_tls.ca.display()
    );
    let mut run = Agent::start_as(dir2.path(), "run", "run.ini", &run_config(dir2.path(), port2, &es));
    // Both test CAs have the same name, so rustls finds the issuer and
    // fails on its signature (BadSignature); a CA of another name gives
    // UnknownIssuer. Either way: "invalid peer certificate", and the node.
    let said = wait_until(Duration::from_secs(30), || run.log_text().contains("invalid peer certificate"));
    let log = run.log_text();
    assert!(said, "{log}");
    assert!(log.contains(&proxy.url()), "names the node: {log}");
    assert!(!log.contains("a2V5OnNlY3JldA=="), "the key is never logged");
    assert_eq!(noida.count("unknownca"), 0);
    let (status, _) = http_get(&format!("http://127.0.0.1:{port2}/health/ready"));
    assert_eq!(status, 503);
    run.terminate();
}
