//! End-to-end scenarios for `logcollect validate`: the binary against a
//! real Kafka-compatible broker (Tansu), etcd and noida-db, healthy and
//! with one destination gone; exit statuses and the table read back.

mod common;

use common::es::Noida;
use common::*;
use std::path::Path;
use std::process::Command;

/// The key of `host = test-host`.
const KEY: &str = "/logagent/test-host/collect_config";

/// What `logcollect validate` printed and its exit status.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Writes `config` to `dir/config.ini` and runs `logcollect validate` on it
/// with `args`; a 3 s bound on each check.
fn validate(dir: &Path, config: &str, args: &[&str]) -> Run {
    let path = dir.join("config.ini");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .args(["validate", "--timeout", "3", "--config"])
        .arg(&path)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!("exit {}\n{}{}", run.code, run.stdout, run.stderr);
    run
}

/// `[agent]` for `dir`, as `test-host`.
fn agent(dir: &Path) -> String {
    format!("[agent]\ndata_dir = {}\nhost = test-host\n", dir.join("data").display())
}

/// The table row of `destination`.
fn row<'a>(run: &'a Run, destination: &str) -> &'a str {
    let prefix = format!("{destination} ");
    run.stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {destination} row"))
}

/// The version number noida-db answers `GET /` with.
fn es_version(es: &Noida) -> String {
    let (status, body) = http_get(&es.url());
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["version"]["number"].as_str().unwrap().to_string()
}

#[test]
fn a_healthy_setup_shows_every_destination_ok() {
    let dir = tempfile::tempdir().unwrap();
    let kafka = Tansu::start();
    kafka.create_topic("web_log", 1);
    let etcd = Etcd::start();
    etcd.put(KEY, r#"[{"path":"/var/log/a/*.log","topic":"web_log"},{"path":"/var/log/b.log","topic":"app_log"}]"#);
    let es = Noida::start(dir.path());
    let config = format!(
        "[kafka]\naddress = {}\ntopic = web_log\n[etcd]\naddress = {}\ntimeout = 3\n[es]\naddress = {}\n{}\
         [collect]\nweb_log = /var/log/web/*.log\n",
        kafka.brokers(),
        etcd.endpoint(),
        es.url(),
        agent(dir.path())
    );
    let run = validate(dir.path(), &config, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("config ok: 1 entry in [collect], data_dir "), "{}", run.stdout);
    let header = run.stdout.lines().nth(1).unwrap();
    assert!(header.starts_with("DESTINATION    ADDRESS"), "{header}");
    let kafka_row = row(&run, "kafka");
    assert!(kafka_row.contains(&format!(" {} ", kafka.brokers())), "{kafka_row}");
    assert!(kafka_row.contains(" ok ") && kafka_row.contains("1 broker answered"), "{kafka_row}");
    assert!(kafka_row.ends_with("; topic web_log exists"), "{kafka_row}");
    let etcd_row = row(&run, "etcd");
    assert!(etcd_row.contains(" ok ") && etcd_row.contains(KEY), "{etcd_row}");
    assert!(etcd_row.ends_with(": 2 entries"), "{etcd_row}");
    let es_row = row(&run, "elasticsearch");
    let want = format!("version {}; template logcollect-web_log installed", es_version(&es));
    assert!(es_row.contains(" ok ") && es_row.ends_with(&want), "{es_row}\nwant: {want}");
    // Each column starts where its header does.
    let at = header.find("STATUS").unwrap();
    for r in [kafka_row, etcd_row, es_row] {
        assert_eq!(&r[at..at + 3], "ok ", "{r}");
    }
    let (status, _) = http_get(&format!("{}/_index_template/logcollect-web_log", es.url()));
    assert_eq!(status, 200, "the template is installed for real");
}

#[test]
fn a_broker_with_nothing_listening_fails_naming_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let es = Noida::start(dir.path());
    let brokers = format!("127.0.0.1:{}", free_port());
    let config = format!("[kafka]\naddress = {brokers}\n[es]\naddress = {}\n{}", es.url(), agent(dir.path()));
    let started = std::time::Instant::now();
    let run = validate(dir.path(), &config, &[]);
    assert_eq!(run.code, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "refused connections end the check early");
    let kafka_row = row(&run, "kafka");
    assert!(kafka_row.contains(" FAILED ") && kafka_row.contains("Connection refused"), "{kafka_row}");
    assert!(row(&run, "elasticsearch").contains(" ok "), "{}", run.stdout);
    assert!(run.stderr.contains(&format!("logcollect: kafka {brokers}: ")), "{}", run.stderr);
}

#[test]
fn elasticsearch_down_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = format!("http://127.0.0.1:{}", free_port());
    let config = format!("[es]\naddress = {node}\n{}[collect]\nweb_log = /var/log/*.log\n", agent(dir.path()));
    let run = validate(dir.path(), &config, &[]);
    assert_eq!(run.code, 1);
    let es_row = row(&run, "elasticsearch");
    assert!(es_row.contains(" FAILED ") && es_row.contains("cannot connect"), "{es_row}");
    assert!(
        run.stderr.contains(&format!("logcollect: elasticsearch {node}: {node}: cannot connect")),
        "{}",
        run.stderr
    );
}

#[test]
fn an_invalid_collect_list_in_etcd_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    etcd.put(KEY, r#"[{"path":"/var/log/*.log","topic":"bad topic"}]"#);
    let config = format!("[etcd]\naddress = {}\ntimeout = 3\n{}", etcd.endpoint(), agent(dir.path()));
    let run = validate(dir.path(), &config, &[]);
    assert_eq!(run.code, 2);
    let etcd_row = row(&run, "etcd");
    assert!(etcd_row.contains(" INVALID ") && etcd_row.contains("invalid collect list"), "{etcd_row}");
    assert!(run.stderr.contains(&format!("logcollect: etcd {}: {KEY}", etcd.endpoint())), "{}", run.stderr);
}

#[test]
fn a_bad_key_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[kafka]\naddress = 127.0.0.1:9\nbatch_sise = 10\n{}", agent(dir.path()));
    let run = validate(dir.path(), &config, &[]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("config kafka.batch_sise: "), "{}", run.stderr);
}

#[test]
fn no_connect_checks_the_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = free_port();
    let config = format!(
        "[kafka]\naddress = 127.0.0.1:{nowhere}\ntopic = web_log\n[etcd]\naddress = 127.0.0.1:{nowhere}\n\
         [es]\naddress = http://127.0.0.1:{nowhere}\n{}",
        agent(dir.path())
    );
    let run = validate(dir.path(), &config, &["--no-connect"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.ends_with("destinations not contacted (--no-connect)\n"), "{}", run.stdout);
    assert!(dir.path().join("data").is_dir(), "data_dir is prepared as the start does");
}
