//! End-to-end scenarios for what the agent may read and where it writes:
//! symlinks, FIFOs, `[agent] allowed_paths` against the static list and
//! etcd's, an unwritable `data_dir`, checkpoint writes failing mid-run, and
//! the embedded index's commits failing in `run` on a full disk; and how
//! multiline entries read them (a Java fixture's events, a kill -9 in the
//! middle of an event); and files renamed out of the glob or deleted while
//! the agent is down with unread bytes. Real Tansu, etcd, and the binary as
//! a child; exact records read back.

mod common;

use common::files::*;
use common::*;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HOST: &str = "test-host";

fn key() -> String {
    format!("/logagent/{HOST}/collect_config")
}

/// The record values, as text, sorted.
fn values(recs: &[Rec]) -> Vec<String> {
    let mut v: Vec<String> = recs.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// An agent config with its collect list in `etcd` (none static).
fn etcd_config(brokers: &str, dir: &Path, etcd: &str, extra_agent: &str) -> String {
    format!(
        "[kafka]\naddress = {brokers}\n[etcd]\naddress = {etcd}\ntimeout = 1\n\
         [agent]\ndata_dir = {}\nhost = {HOST}\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n\
         read_from = beginning\n{extra_agent}\n",
        dir.join("data").display()
    )
}

#[test]
fn a_symlink_to_a_secret_is_not_shipped_and_is_reported() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let secret = dir.path().join("shadow");
    write_lines(&secret, &tagged("SECRET", 5));
    write_lines(&logs.join("a.log"), &tagged("a", 100));
    symlink(&secret, logs.join("x.log")).unwrap();
    // A symlinked directory the glob's '*' reaches: refused as well.
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    write_lines(&etc.join("b.log"), &tagged("SECRET-DIR", 5));
    symlink(&etc, logs.join("sub")).unwrap();
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {0}/*.log; {0}/*/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    let recs = consume(&kafka.brokers(), "app", 100, Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(values(&recs), sorted(tagged("a", 100)), "only the regular file's lines");
    let link = logs.join("x.log");
    let words = ["refusing", link.to_str().unwrap(), "a symlink", secret.to_str().unwrap()];
    assert!(wait_until(Duration::from_secs(10), || log_lines(&agent, &words) >= 1), "{}", agent.log_text());
    assert!(log_lines(&agent, &["refusing", "symlinked directory"]) >= 1, "{}", agent.log_text());
    // Reported once in the window, not once per scan (200 ms).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(log_lines(&agent, &words), 1, "rate-limited");
    assert!(metric(&agent, "logcollect_files_refused_total") >= 2.0);
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn with_follow_symlinks_a_link_ships_its_target_and_exclude_matches_the_target() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (logs, targets) = (dir.path().join("logs"), dir.path().join("targets"));
    std::fs::create_dir(&logs).unwrap();
    std::fs::create_dir(&targets).unwrap();
    write_lines(&targets.join("app-1.log"), &tagged("target", 50));
    write_lines(&targets.join("skip-me.log"), &tagged("EXCLUDED", 5));
    write_lines(&dir.path().join("outside.log"), &tagged("OUTSIDE", 5));
    symlink(targets.join("app-1.log"), logs.join("c1.log")).unwrap();
    symlink(targets.join("skip-me.log"), logs.join("c2.log")).unwrap();
    symlink(dir.path().join("outside.log"), logs.join("c3.log")).unwrap();
    // The container-log shape: links in one directory, targets in another.
    let list =
        format!(r#"[{{"path":"{}/*.log","topic":"app","exclude":["skip-*"],"follow_symlinks":true}}]"#, logs.display());
    etcd.put(&key(), &list);
    let extra = format!("allowed_paths = {}; {}\n", logs.display(), targets.display());
    let mut agent = Agent::start(dir.path(), &etcd_config(&kafka.brokers(), dir.path(), &etcd.endpoint(), &extra));
    let recs = consume(&kafka.brokers(), "app", 50, Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(values(&recs), sorted(tagged("target", 50)), "the followed link only");
    let link = logs.join("c1.log");
    assert!(recs.iter().all(|r| r.header("path") == link.to_str().unwrap()), "records name the link");
    let c3 = logs.join("c3.log");
    let words = ["refusing", c3.to_str().unwrap(), "outside [agent] allowed_paths"];
    assert!(wait_until(Duration::from_secs(10), || log_lines(&agent, &words) >= 1), "{}", agent.log_text());
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn a_fifo_in_the_glob_does_not_block_discovery_of_a_new_file() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    mkfifo(&logs.join("pipe.log"));
    write_lines(&logs.join("a.log"), &tagged("a", 10));
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    assert_eq!(consume(&kafka.brokers(), "app", 10, Duration::from_millis(500), Duration::from_secs(60)).len(), 10);
    // A file created later is found: discovery was not stuck in open().
    write_lines(&logs.join("b.log"), &tagged("b", 10));
    let recs = consume(&kafka.brokers(), "app", 20, Duration::from_secs(2), Duration::from_secs(60));
    let want: Vec<String> = tagged("a", 10).into_iter().chain(tagged("b", 10)).collect();
    assert_eq!(values(&recs), sorted(want));
    let fifo = logs.join("pipe.log");
    assert!(log_lines(&agent, &["refusing", fifo.to_str().unwrap(), "a FIFO"]) >= 1, "{}", agent.log_text());
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn entries_outside_allowed_paths_are_refused_from_config_and_from_etcd() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    kafka.create_topic("secrets", 1);
    let dir = tempfile::tempdir().unwrap();
    let (logs, private) = (dir.path().join("logs"), dir.path().join("private"));
    std::fs::create_dir(&logs).unwrap();
    std::fs::create_dir(&private).unwrap();
    write_lines(&logs.join("a.log"), &tagged("a", 20));
    write_lines(&private.join("id_rsa"), &tagged("KEY", 3));
    let extra = format!("allowed_paths = {}\n", logs.display());

    // The static list: the start is refused, naming the entry.
    let bad = agent_config(&kafka.brokers(), dir.path(), &extra, &format!("secrets = {}/*", private.display()));
    let mut agent = Agent::start(dir.path(), &bad);
    assert_eq!(wait_exit(&mut agent, Duration::from_secs(20)), Some(2), "{}", agent.log_text());
    let text = agent.log_text();
    assert!(text.contains("collect.secrets") && text.contains("outside [agent] allowed_paths"), "{text}");
    assert!(text.contains(&format!("{}/*", private.display())), "names the path: {text}");

    // etcd's list: the entry outside is refused with an error naming it,
    // the one inside ships.
    let etcd = Etcd::start();
    let list = format!(
        r#"[{{"path":"{}/*.log","topic":"app"}},{{"path":"{}/*","topic":"secrets"}}]"#,
        logs.display(),
        private.display()
    );
    etcd.put(&key(), &list);
    let run = dir.path().join("run2");
    std::fs::create_dir(&run).unwrap();
    let mut agent = Agent::start(&run, &etcd_config(&kafka.brokers(), &run, &etcd.endpoint(), &extra));
    let recs = consume(&kafka.brokers(), "app", 20, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(values(&recs), sorted(tagged("a", 20)));
    let words = ["collect entry", &format!("{}/*", private.display()), "secrets", "refused", "allowed_paths"];
    assert!(wait_until(Duration::from_secs(10), || log_lines(&agent, &words) >= 1), "{}", agent.log_text());
    assert!(consume(&kafka.brokers(), "secrets", 0, Duration::from_secs(1), Duration::from_secs(3)).is_empty());
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn an_unwritable_data_dir_is_refused_at_start() {
    let kafka = Tansu::start();
    let dir = tempfile::tempdir().unwrap();
    // Read-only even for root: a read-only mount (0700, so only the probe fails).
    let ro = Tmpfs::mount(&dir.path().join("data"), "1m", "ro,mode=0700");
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", "app = /nonexistent/*.log");
    let mut agent = Agent::start(dir.path(), &cfg);
    assert_eq!(wait_exit(&mut agent, Duration::from_secs(20)), Some(2), "{}", agent.log_text());
    let text = agent.log_text();
    assert!(text.contains("agent.data_dir") && text.contains(ro.dir.to_str().unwrap()), "{text}");
    assert!(text.contains("not writable"), "{text}");
}

#[test]
fn checkpoint_write_failures_show_in_metrics_and_readiness_and_recover() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("a.log");
    append_lines(&log, 0, 0, 100);
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    assert!(wait_until(Duration::from_secs(30), || agent.get("/health/ready").0 == 200), "{}", agent.log_text());
    let data = dir.path().join("data");
    assert!(wait_until(Duration::from_secs(30), || data.join("checkpoints.json").exists()));
    // Root ignores permissions: a directory where the temp file goes makes
    // every write fail (EISDIR), as a full or read-only disk would.
    let blocker = data.join("checkpoints.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("keep"), "x").unwrap();
    append_lines(&log, 0, 100, 200);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (code, body) = agent.get("/health/ready");
            code == 503 && body.contains("checkpoints") && body.contains("checkpoints.json")
        }),
        "not ready while checkpoints fail: {:?}",
        agent.get("/health/ready")
    );
    assert!(metric(&agent, "logcollect_checkpoint_write_errors_total") >= 1.0);
    assert_eq!(metric(&agent, "logcollect_ready"), 0.0);
    // Lines keep shipping meanwhile.
    assert_eq!(consume(&kafka.brokers(), "app", 200, Duration::from_secs(1), Duration::from_secs(60)).len(), 200);
    std::fs::remove_dir_all(&blocker).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || agent.get("/health/ready").0 == 200),
        "{:?}",
        agent.get("/health/ready")
    );
    // The checkpoint written after the recovery covers every line.
    let size = std::fs::metadata(&log).unwrap().len();
    let offset = || checkpoint_rows(&data).into_iter().map(|(_, _, offset)| offset).max();
    assert!(wait_until(Duration::from_secs(10), || offset() == Some(size)), "checkpoint {:?} of {size}", offset());
    assert_eq!(agent.terminate().0, Some(0));
    let errors = log_lines(&agent, &["ERROR", "writing checkpoints in"]);
    assert_eq!(errors, 1, "the failure is logged when it starts, not every second");
}

#[test]
fn run_keeps_serving_when_the_index_cannot_commit_and_indexes_everything_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("a.log");
    append_lines(&log, 0, 0, 100);
    let disk = Tmpfs::mount(&dir.path().join("data"), "64m", "mode=0700");
    let cfg = format!(
        "[agent]\ndata_dir = {}\nhost = test-host\nscan_interval_ms = 200\nread_from = beginning\n\
         [index]\ncommit_interval_ms = 200\n[collect]\napp = {}\n",
        disk.dir.display(),
        log.display()
    );
    let mut run = Agent::start_as(dir.path(), "run", "run.ini", &cfg);
    let docs = |run: &Agent| -> u64 {
        let (_, body) = run.get("/api/search?q=&from=0&size=1");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["total"].as_u64().unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(30), || docs(&run) == 100), "{}", run.log_text());
    // Fill the disk, then write more lines: the commits fail.
    let ballast = disk.dir.join("ballast");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", ballast.display()))
        .stderr(std::process::Stdio::null())
        .status();
    append_lines(&log, 0, 100, 5_000);
    assert!(
        wait_until(Duration::from_secs(30), || metric(&run, "logcollect_checkpoint_write_errors_total") >= 1.0),
        "{}",
        run.log_text()
    );
    assert!(run.is_running(), "a failed commit does not end run: {}", run.log_text());
    let (code, body) = run.get("/health/ready");
    assert!(code == 503 && body.contains("checkpoints"), "{code} {body}");
    assert_eq!(run.get("/health/live").0, 200);
    // Room again: every line is indexed, once.
    std::fs::remove_file(&ballast).unwrap();
    assert!(wait_until(Duration::from_secs(60), || docs(&run) == 5_000), "{} docs: {}", docs(&run), run.log_text());
    assert!(
        wait_until(Duration::from_secs(30), || run.get("/health/ready").0 == 200),
        "{:?}",
        run.get("/health/ready")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(docs(&run), 5_000, "nothing indexed twice");
    assert_eq!(run.terminate().0, Some(0));
    drop(disk);
}

#[test]
fn more_files_than_max_open_files_all_ship_every_line_once() {
    const FILES: usize = 8;
    const LINES: usize = 500;
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for f in 0..FILES {
        append_lines(&logs.join(format!("f{f}.log")), f, 0, LINES);
    }
    let cfg =
        agent_config(&kafka.brokers(), dir.path(), "max_open_files = 2\n", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    assert!(
        wait_until(Duration::from_secs(20), || log_lines(&agent, &["max_open_files (2) reached"]) >= 1),
        "{}",
        agent.log_text()
    );
    // Files closed to make room grow again: they are opened again, from
    // where they were.
    for f in 0..2 {
        append_lines(&logs.join(format!("f{f}.log")), f, LINES, 2 * LINES);
    }
    let want = FILES * LINES + 2 * LINES;
    let recs = consume(&kafka.brokers(), "app", want, Duration::from_secs(3), Duration::from_secs(120));
    let mut got: Vec<(String, String)> =
        recs.iter().map(|r| (r.header("path").to_string(), r.header("offset").to_string())).collect();
    got.sort();
    got.dedup();
    assert_eq!((recs.len(), got.len()), (want, want), "every line once: {}", agent.log_text());
    assert!(metric(&agent, "logcollect_files_open") <= 2.0);
    assert!(metric(&agent, "logcollect_files_closed_idle_total") >= 1.0);
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn close_inactive_closes_an_idle_file_and_reopens_it_from_its_checkpoint() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("a.log");
    append_lines(&log, 0, 0, 100);
    let cfg =
        agent_config(&kafka.brokers(), dir.path(), "close_inactive_ms = 500\n", &format!("app = {}", log.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    for round in 1..=3 {
        assert!(
            wait_until(Duration::from_secs(20), || log_lines(&agent, &["close_inactive_ms: closing the file"])
                >= round),
            "round {round}: {}",
            agent.log_text()
        );
        assert!(wait_until(Duration::from_secs(10), || metric(&agent, "logcollect_files_open") == 0.0));
        append_lines(&log, 0, round * 100, (round + 1) * 100);
    }
    let recs = consume(&kafka.brokers(), "app", 400, Duration::from_secs(3), Duration::from_secs(60));
    let mut seqs: Vec<String> = recs.iter().map(|r| r.header("offset").to_string()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!((recs.len(), seqs.len()), (400, 400), "no line lost or doubled: {}", agent.log_text());
    for (i, r) in by_path(&recs)[log.to_str().unwrap()].iter().enumerate() {
        assert_eq!(r.value, line(0, i).as_bytes(), "line {i}");
    }
    assert_eq!(agent.terminate().0, Some(0));
}

/// The Java fixture: a Spring Boot log with a servlet exception (a
/// `Suppressed:` block and two `Caused by:` with `... N more`) and an
/// uncaught one, between ordinary lines.
const JAVA_LOG: &str = include_str!("fixtures/multiline/java.log");

/// Where each event of [`JAVA_LOG`] starts: its line numbers (from 0).
const JAVA_EVENT_STARTS: [usize; 8] = [0, 1, 2, 3, 22, 23, 24, 28];

/// The events `text` groups into, given the first line of each: (value,
/// offset of the first line).
fn events_at(text: &str, starts: &[usize]) -> Vec<(String, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut offsets = vec![0u64];
    for l in &lines {
        offsets.push(offsets.last().unwrap() + l.len() as u64 + 1);
    }
    let ends = starts.iter().skip(1).copied().chain([lines.len()]);
    starts.iter().zip(ends).map(|(&s, e)| (lines[s..e].join("\n"), offsets[s])).collect()
}

/// The records' (value, offset), in file order.
fn in_file_order(recs: &[Rec]) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = recs
        .iter()
        .map(|r| (String::from_utf8_lossy(&r.value).into_owned(), r.header("offset").parse().unwrap()))
        .collect();
    v.sort_by_key(|(_, o)| *o);
    v
}

#[test]
fn java_stack_traces_ship_as_one_record_each_between_ordinary_lines() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("shop.log");
    std::fs::write(&log, JAVA_LOG).unwrap();
    let list = format!(
        r#"[{{"path":"{}/*.log","topic":"app","multiline":"java","multiline_timeout_ms":500}}]"#,
        logs.display()
    );
    etcd.put(&key(), &list);
    let mut agent = Agent::start(dir.path(), &etcd_config(&kafka.brokers(), dir.path(), &etcd.endpoint(), ""));
    let want = events_at(JAVA_LOG, &JAVA_EVENT_STARTS);
    // The last line is an event of its own once 500 ms passed without another.
    let recs = consume(&kafka.brokers(), "app", want.len(), Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(in_file_order(&recs), want, "{}", agent.log_text());
    assert!(want[3].0.starts_with("java.lang.IllegalStateException") && want[3].0.ends_with("\t... 18 more"));
    assert!(recs.iter().all(|r| r.header("path") == log.to_str().unwrap() && r.header("split").is_empty()));
    assert_eq!(metric(&agent, "logcollect_multiline_events_total"), 2.0);
    assert_eq!(metric(&agent, "logcollect_multiline_parts_total"), 0.0);
    assert!(log_lines(&agent, &["not applied"]) == 0, "no warning left: {}", agent.log_text());
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn a_kill_9_in_the_middle_of_a_long_event_ships_it_once_whole() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    // A long trace: 400 frames, a cause; a minute of timeout, so only the
    // next start (or the stop) ends it.
    let mut lines = vec![
        "2026-12-02 03:41:47.120  INFO 7 --- [main] c.e.App : started".to_string(),
        "2026-12-02 03:41:48.001 ERROR 7 --- [main] c.e.App : job failed".to_string(),
        "java.lang.RuntimeException: job 9 failed".to_string(),
    ];
    lines.extend((0..400).map(|i| format!("\tat com.example.job.Step{i}.run(Step{i}.java:{})", 10 + i)));
    lines.push("Caused by: java.io.UncheckedIOException: disk full".to_string());
    lines.push("\t... 398 more".to_string());
    lines.push("2026-12-02 03:41:50.000  INFO 7 --- [main] c.e.App : recovered".to_string());
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let split_at = text.find("\tat com.example.job.Step200.").unwrap();
    std::fs::write(&log, &text[..split_at]).unwrap();
    let list = format!(
        r#"[{{"path":"{}/*.log","topic":"app","multiline":"java","multiline_timeout_ms":60000}}]"#,
        logs.display()
    );
    etcd.put(&key(), &list);
    let data = dir.path().join("data");
    let mut agent = Agent::start(dir.path(), &etcd_config(&kafka.brokers(), dir.path(), &etcd.endpoint(), ""));
    // The two lines before the trace are acknowledged and checkpointed; the
    // checkpoint waits at the trace's first line, however long it waits.
    let trace_at = text.find("java.lang").unwrap() as u64;
    let at_trace = || checkpoint_rows(&data).iter().any(|(p, _, o)| p == log.to_str().unwrap() && *o == trace_at);
    assert!(wait_until(Duration::from_secs(30), at_trace), "{:?}\n{}", checkpoint_rows(&data), agent.log_text());
    std::thread::sleep(Duration::from_millis(600));
    assert!(at_trace(), "never into the open event: {:?}", checkpoint_rows(&data));
    agent.kill9();
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(&text.as_bytes()[split_at..]).unwrap();
    agent.restart();
    let want = events_at(&text, &[0, 1, 2, lines.len() - 1]);
    // The stop ships the last line's event.
    assert!(wait_until(Duration::from_secs(30), || metric(&agent, "logcollect_multiline_events_total") >= 1.0));
    assert_eq!(agent.terminate().0, Some(0));
    let recs = consume(&kafka.brokers(), "app", want.len(), Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(in_file_order(&recs), want, "each event once, the trace whole");
    assert_eq!(want[2].0.lines().count(), 403);
}

/// Lines `from..to` of file `f`: what `append_lines` writes, one string each.
fn lines_of(f: usize, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| line(f, i)).collect()
}

/// An agent over `logs/*.log` that has shipped `first` lines of
/// `logs/app.log`, then read `more` lines it could not deliver (the
/// broker paused), and was killed with kill -9. Returns the agent (not
/// running) and the bytes of the acknowledged lines.
fn killed_with_a_backlog(kafka: &Tansu, dir: &Path, logs: &Path, first: usize, more: usize) -> (Agent, u64) {
    let app = logs.join("app.log");
    append_lines(&app, 0, 0, first);
    let cfg = agent_config(&kafka.brokers(), dir, "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir, &cfg);
    assert!(
        wait_until(Duration::from_secs(30), || metric(&agent, "logcollect_lines_acked_total") >= first as f64),
        "{}",
        agent.log_text()
    );
    let acked = std::fs::metadata(&app).unwrap().len();
    // Time for a checkpoint save over the acknowledged lines.
    std::thread::sleep(Duration::from_millis(600));
    kafka.pause();
    append_lines(&app, 0, first, first + more);
    let size = std::fs::metadata(&app).unwrap().len();
    assert!(
        wait_until(Duration::from_secs(30), || metric(&agent, "logcollect_read_bytes_total") >= size as f64),
        "{}",
        agent.log_text()
    );
    // A checkpoint save that records how far the file was read.
    std::thread::sleep(Duration::from_millis(600));
    agent.kill9();
    kafka.resume();
    (agent, acked)
}

#[test]
fn a_file_renamed_out_of_the_glob_while_the_agent_is_down_is_read_to_its_end() {
    // Was: the renamed file (`app.log.1`, outside `*.log`) was never looked
    // at again, and the lines the killed agent had read but not delivered
    // were lost (Vector #22954).
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (mut agent, _) = killed_with_a_backlog(&kafka, dir.path(), &logs, 2_000, 10_000);
    let app = logs.join("app.log");
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    append_lines(&app, 1, 0, 1_000);
    agent.restart();
    let mut want = lines_of(0, 0, 12_000);
    want.extend(lines_of(1, 0, 1_000));
    let recs = consume(&kafka.brokers(), "app", want.len(), Duration::from_secs(3), Duration::from_secs(120));
    let mut got = values(&recs);
    let records = got.len();
    got.dedup();
    assert_eq!(got, sorted(want), "every line, once distinct ({records} records): {}", agent.log_text());
    assert_eq!(metric(&agent, "logcollect_files_finished_outside_glob_total"), 1.0);
    assert_eq!(metric(&agent, "logcollect_lost_bytes_total"), 0.0);
    assert_eq!(log_lines(&agent, &["renamed out of its glob with unread bytes", "app.log.1"]), 1);
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn a_file_deleted_unread_while_the_agent_is_down_is_counted_and_named_as_lost() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (mut agent, acked) = killed_with_a_backlog(&kafka, dir.path(), &logs, 1_000, 3_000);
    let app = logs.join("app.log");
    let size = std::fs::metadata(&app).unwrap().len();
    std::fs::remove_file(&app).unwrap();
    append_lines(&logs.join("other.log"), 2, 0, 10);
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(30), || metric(&agent, "logcollect_lost_bytes_total") > 0.0),
        "{}",
        agent.log_text()
    );
    let lost = size - acked;
    assert_eq!(metric(&agent, "logcollect_lost_bytes_total"), lost as f64);
    let (_, metrics) = agent.get("/metrics");
    let per_path = format!("logcollect_file_lost_bytes_total{{path=\"{}\"}} {lost}", app.display());
    assert!(metrics.lines().any(|l| l == per_path), "{per_path} in:\n{metrics}");
    let (_, status) = agent.get("/api/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["lost_bytes"][app.to_str().unwrap()], lost);
    assert_eq!(status["totals"]["lost_bytes"], lost);
    assert_eq!(
        log_lines(&agent, &["before it was read to its end: these bytes are lost", app.to_str().unwrap()]),
        1,
        "{}",
        agent.log_text()
    );
    // Everything else goes on.
    let recs = consume(&kafka.brokers(), "app", 1_010, Duration::from_secs(3), Duration::from_secs(60));
    let mut got = values(&recs);
    got.dedup();
    let mut want = lines_of(0, 0, 1_000);
    want.extend(lines_of(2, 0, 10));
    // What the paused broker took before the kill may be there too.
    let unsent: std::collections::HashSet<String> = lines_of(0, 1_000, 4_000).into_iter().collect();
    got.retain(|v| !unsent.contains(v));
    assert_eq!(got, sorted(want));
    assert_eq!(agent.terminate().0, Some(0));
}
