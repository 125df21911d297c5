//! End-to-end scenarios for hot reload: SIGHUP and `POST /api/reload` make
//! a running agent (and `logcollect run`) re-read `config.ini`; a changed
//! `[collect]` applies live without losing or repeating a line, and an
//! invalid file is refused while the running config stays.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Sends SIGHUP to the process.
fn sighup(a: &Agent) {
    assert_eq!(unsafe { libc::kill(a.pid() as i32, libc::SIGHUP) }, 0);
}

/// `POST http://<[http] listen>/api/reload`: (status, JSON body).
fn post_reload(a: &Agent) -> (u16, serde_json::Value) {
    let url = format!("http://{}/api/reload", a.http.as_deref().unwrap());
    let r = reqwest::blocking::Client::new().post(url).timeout(Duration::from_secs(10)).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

/// Rewrites the agent's config file keeping its `[http]` port.
fn rewrite(a: &Agent, config: &str) {
    let text = format!("{config}\n[http]\nlisten = {}\n", a.http.as_deref().unwrap());
    std::fs::write(&a.config, text).unwrap();
}

/// (file, seq) of each record, with how many times it arrived.
fn counted(recs: &[Rec]) -> BTreeMap<(usize, usize), usize> {
    let mut m = BTreeMap::new();
    for r in recs {
        let v = std::str::from_utf8(&r.value).unwrap();
        let num = |k: &str| v.split(k).nth(1).unwrap().split(' ').next().unwrap().parse::<usize>().unwrap();
        *m.entry((num("file="), num("seq="))).or_insert(0) += 1;
    }
    m
}

/// Exactly lines `from..to` of file `f`, each once.
fn exactly(f: usize, from: usize, to: usize) -> BTreeMap<(usize, usize), usize> {
    (from..to).map(|i| ((f, i), 1)).collect()
}

fn collect_line(topic: &str, path: &Path) -> String {
    format!("{topic} = {}", path.display())
}

#[test]
fn sighup_applies_a_new_collect_list_live_and_refuses_an_invalid_file() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    kafka.create_topic("db", 1);
    let dir = tempfile::tempdir().unwrap();
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append_lines(&a_log, 0, 0, 100);
    append_lines(&b_log, 1, 0, 50);
    let only_a = agent_config(&kafka.brokers(), dir.path(), "", &collect_line("app", &a_log));
    let mut agent = Agent::start(dir.path(), &only_a);
    let recs = consume(&kafka.brokers(), "app", 100, Duration::from_millis(500), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(0, 0, 100));

    // b.log joins: read from its beginning (read_from = beginning), a.log's
    // reader keeps its position.
    let both = agent_config(
        &kafka.brokers(),
        dir.path(),
        "",
        &format!("{}\n{}", collect_line("app", &a_log), collect_line("db", &b_log)),
    );
    rewrite(&agent, &both);
    sighup(&agent);
    let recs = consume(&kafka.brokers(), "db", 50, Duration::from_millis(500), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(1, 0, 50), "the new entry is collected");
    append_lines(&a_log, 0, 100, 120);
    let recs = consume(&kafka.brokers(), "app", 121, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(0, 0, 120), "the unchanged entry neither repeats nor loses a line");
    assert!(agent.is_running(), "SIGHUP does not end the agent");

    // An invalid file is refused, naming the key; the running list stays.
    rewrite(&agent, &both.replace("[kafka]\n", "[kafka]\nbatch_sise = 3\n"));
    sighup(&agent);
    assert!(wait_until(Duration::from_secs(10), || agent.log_text().contains("not reloaded")), "{}", agent.log_text());
    let (status, body) = post_reload(&agent);
    assert_eq!(status, 400, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(reason.contains("batch_sise") && reason.contains("the running config stays"), "{reason}");
    append_lines(&b_log, 1, 50, 60);
    let recs = consume(&kafka.brokers(), "db", 61, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(1, 0, 60), "still collecting after a refused reload");

    // Over HTTP: b.log leaves; lines appended to it afterwards stay home.
    rewrite(&agent, &only_a);
    let (status, body) = post_reload(&agent);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["collect_entries"], 1, "{body}");
    assert_eq!(body["restart_needed"], serde_json::json!([]), "{body}");
    std::thread::sleep(Duration::from_millis(800));
    append_lines(&b_log, 1, 60, 70);
    append_lines(&a_log, 0, 120, 130);
    let recs = consume(&kafka.brokers(), "app", 131, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(0, 0, 130));
    let recs = consume(&kafka.brokers(), "db", 71, Duration::from_secs(2), Duration::from_secs(10));
    assert_eq!(counted(&recs), exactly(1, 0, 60), "a removed entry ships nothing more");

    // A section that cannot change live is named, not applied.
    rewrite(&agent, &only_a.replace("scan_interval_ms = 200", "scan_interval_ms = 300"));
    let (status, body) = post_reload(&agent);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["restart_needed"], serde_json::json!(["[agent]"]), "{body}");
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn sighup_to_logcollect_run_adds_a_file_to_the_embedded_index() {
    let dir = tempfile::tempdir().unwrap();
    let (a_log, b_log) = (dir.path().join("a.log"), dir.path().join("b.log"));
    std::fs::write(&a_log, "alpha one\nalpha two\n").unwrap();
    std::fs::write(&b_log, "bravo one\nbravo two\nbravo three\n").unwrap();
    let port = free_port();
    let config = |collect: &str| {
        format!(
            "[agent]\ndata_dir = {}\nhost = test-host\nread_from = beginning\nscan_interval_ms = 200\n\
             [index]\ncommit_interval_ms = 200\n[collect]\n{collect}\n",
            dir.path().join("data").display()
        )
    };
    let total = |q: &str| -> Option<u64> {
        let (status, body) = http_get(&format!("http://127.0.0.1:{port}/api/search?q={q}&size=1"));
        (status == 200).then(|| serde_json::from_str::<serde_json::Value>(&body).ok()?["total"].as_u64()).flatten()
    };
    let mut run = Agent::start_as(
        dir.path(),
        "run",
        "run.ini",
        &format!("{}[http]\nlisten = 127.0.0.1:{port}\n", config(&collect_line("app", &a_log))),
    );
    assert!(wait_until(Duration::from_secs(30), || total("alpha") == Some(2)), "{}", run.log_text());
    assert_eq!(total("bravo"), Some(0));
    rewrite(&run, &config(&format!("{}\n{}", collect_line("app", &a_log), collect_line("db", &b_log))));
    sighup(&run);
    assert!(wait_until(Duration::from_secs(30), || total("bravo") == Some(3)), "{}", run.log_text());
    assert_eq!(total("alpha"), Some(2), "a.log is not indexed again");
    assert!(run.is_running());
    assert_eq!(run.terminate().0, Some(0));
}

#[test]
fn a_topic_changed_by_sighup_continues_the_file_in_the_new_topic() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    kafka.create_topic("db", 1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a.log");
    append_lines(&log, 0, 0, 100);
    let mut agent =
        Agent::start(dir.path(), &agent_config(&kafka.brokers(), dir.path(), "", &collect_line("app", &log)));
    let recs = consume(&kafka.brokers(), "app", 100, Duration::from_millis(500), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(0, 0, 100));
    rewrite(&agent, &agent_config(&kafka.brokers(), dir.path(), "", &collect_line("db", &log)));
    sighup(&agent);
    assert!(wait_until(Duration::from_secs(10), || agent.log_text().contains("applying its [collect] list")));
    append_lines(&log, 0, 100, 200);
    let recs = consume(&kafka.brokers(), "db", 100, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(counted(&recs), exactly(0, 100, 200), "the new topic continues where the old one stopped");
    let recs = consume(&kafka.brokers(), "app", 100, Duration::from_secs(1), Duration::from_secs(10));
    assert_eq!(counted(&recs), exactly(0, 0, 100), "the old topic got nothing more");
    assert_eq!(agent.terminate().0, Some(0));
}
