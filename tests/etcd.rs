//! End-to-end scenarios for the collect list in etcd: a real etcd and a
//! real Kafka-compatible broker (Tansu) per test, the agent binary between
//! them, exact counts read back from Kafka.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The key of the tests' agents (`host = HOST`).
const HOST: &str = "test-host";

fn key(host: &str) -> String {
    format!("/logagent/{host}/collect_config")
}

/// An agent config reading its collect list from `etcd` as `host`; files
/// are read from the beginning unless `extra_agent` says otherwise.
fn config(brokers: &str, dir: &Path, etcd: &str, host: &str, extra_agent: &str, collect: &str) -> String {
    let read_from = if extra_agent.contains("read_from") { "" } else { "read_from = beginning\n" };
    format!(
        "[kafka]\naddress = {brokers}\n[etcd]\naddress = {etcd}\ntimeout = 1\n\
         [agent]\ndata_dir = {}\nhost = {host}\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n\
         {read_from}{extra_agent}\n[collect]\n{collect}\n",
        dir.join("data").display()
    )
}

/// A JSON collect list from (path, topic, extra fields) triples.
fn list(entries: &[(&Path, &str, &str)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(p, t, extra)| {
            let extra = if extra.is_empty() { String::new() } else { format!(",{extra}") };
            format!(r#"{{"path":{:?},"topic":"{t}"{extra}}}"#, p.to_str().unwrap())
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Parses `file=F seq=I` out of a line written by `common::line`.
fn seq_of(v: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(v).unwrap();
    let f = s.split("file=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let i = s.split("seq=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    (f, i)
}

/// The sorted (file, seq) pairs of records.
fn seqs(recs: &[Rec]) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = recs.iter().map(|r| seq_of(&r.value)).collect();
    v.sort();
    v
}

fn range(f: usize, from: usize, to: usize) -> Vec<(usize, usize)> {
    (from..to).map(|i| (f, i)).collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Waits until the agent's log has a line containing every one of `words`
/// (the `n`-th such line); panics with the log if it does not come.
fn wait_log(agent: &Agent, words: &[&str], n: usize, timeout: Duration) {
    let count = || agent.log_text().lines().filter(|l| words.iter().all(|w| l.contains(w))).count();
    assert!(wait_until(timeout, || count() >= n), "agent log has no {n} lines with {words:?}:\n{}", agent.log_text());
}

fn log_count(agent: &Agent, words: &[&str]) -> usize {
    agent.log_text().lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}

#[test]
fn an_entry_added_ships_within_a_second_removed_stops_added_back_resumes_topic_change_moves_new_lines() {
    let kafka = Tansu::start();
    kafka.create_topic("a", 1);
    kafka.create_topic("b", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.log");
    append_lines(&one, 0, 0, 50);
    // The seed's default: files present when an entry is first seen are read
    // from the end; the entry below asks for the beginning.
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "read_from = end", "");
    let agent = Agent::start(dir.path(), &cfg);
    wait_log(&agent, &["no collect list in etcd"], 1, Duration::from_secs(10));

    // Added: shipping starts within a second of the put.
    let put_ms = now_ms();
    etcd.put(&key(HOST), &list(&[(&one, "a", r#""read_from":"beginning""#)]));
    let recs = consume(&kafka.brokers(), "a", 50, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 0, 50));
    let last_read = recs.iter().map(|r| r.timestamp_ms.unwrap()).max().unwrap();
    eprintln!("put to the last of 50 lines read: {} ms", last_read - put_ms);
    assert!(last_read - put_ms < 1000, "shipping started {} ms after the put", last_read - put_ms);

    // Removed: its reader stops; lines written meanwhile stay in the file.
    etcd.put(&key(HOST), "[]");
    wait_log(&agent, &["collect entry removed", "topic=a"], 1, Duration::from_secs(10));
    append_lines(&one, 0, 50, 100);
    thread::sleep(Duration::from_secs(1));
    let recs = consume(&kafka.brokers(), "a", 50, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 0, 50), "nothing shipped while removed");

    // Added back: resumes at its checkpoint, no line twice.
    etcd.put(&key(HOST), &list(&[(&one, "a", "")]));
    let recs = consume(&kafka.brokers(), "a", 100, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 0, 100));

    // Topic changed: the file continues in the new topic from where the old
    // one was acknowledged (not from `read_from`), none go to the old one.
    etcd.put(&key(HOST), &list(&[(&one, "b", "")]));
    wait_log(&agent, &["following file", "topic=b"], 1, Duration::from_secs(10));
    append_lines(&one, 0, 100, 150);
    let recs = consume(&kafka.brokers(), "b", 50, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 100, 150));
    assert_eq!(consume(&kafka.brokers(), "a", 100, Duration::from_secs(1), Duration::from_secs(30)).len(), 100);

    // Deleted key: collect nothing.
    etcd.delete(&key(HOST));
    wait_log(&agent, &["collect entry removed", "topic=b"], 1, Duration::from_secs(10));
    append_lines(&one, 0, 150, 200);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(consume(&kafka.brokers(), "b", 50, Duration::from_secs(2), Duration::from_secs(30)).len(), 50);
}

#[test]
fn per_entry_options_take_effect_for_their_readers() {
    let kafka = Tansu::start();
    kafka.create_topic("opts", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // Present before the agent: read from the end by [agent], from the
    // beginning by the entry that says so.
    append_lines(&logs.join("old-end.log"), 0, 0, 20);
    append_lines(&logs.join("old-begin.log"), 1, 0, 20);
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "read_from = end", "");
    etcd.put(
        &key(HOST),
        &list(&[
            (&logs.join("old-end.log"), "opts", ""),
            (&logs.join("old-begin.log"), "opts", r#""read_from":"beginning""#),
            (&logs.join("*.txt"), "opts", r#""exclude":["skip-*.txt"],"max_line_bytes":64,"parse_json":true"#),
        ]),
    );
    let agent = Agent::start(dir.path(), &cfg);
    wait_log(&agent, &["following file", "old-end.log"], 1, Duration::from_secs(10));
    append_lines(&logs.join("old-end.log"), 0, 20, 25);
    append_lines(&logs.join("skip-me.txt"), 2, 0, 10);
    std::fs::write(logs.join("keep.txt"), format!("{}\n{{\"short\":1}}\n", "y".repeat(150))).unwrap();
    // 5 + 20 + keep.txt's two lines, the first cut in 3 parts of at most 64 bytes.
    let recs = consume(&kafka.brokers(), "opts", 29, Duration::from_secs(2), Duration::from_secs(30));
    let groups = by_path(&recs);
    let lines = |name: &str| groups.get(logs.join(name).to_str().unwrap()).cloned().unwrap_or_default();
    let nums = |name: &str| lines(name).iter().map(|r| seq_of(&r.value).1).collect::<Vec<_>>();
    assert_eq!(nums("old-end.log"), (20..25).collect::<Vec<_>>(), "[agent] read_from = end");
    assert_eq!(nums("old-begin.log"), (0..20).collect::<Vec<_>>(), "the entry's read_from = beginning");
    assert!(lines("skip-me.txt").is_empty(), "excluded");
    let keep = lines("keep.txt");
    let sizes: Vec<usize> = keep.iter().map(|r| r.value.len()).collect();
    assert_eq!(sizes, vec![64, 64, 22, 11], "max_line_bytes = 64 splits the long line");
    assert_eq!(keep[0].header("split"), "1");
    assert!(keep.iter().all(|r| r.header("json") == "1"), "parse_json marks the records");
    assert!(lines("old-end.log").iter().all(|r| r.header("json").is_empty()));
    assert_eq!(recs.len(), 29);
}

/// Appends lines `0..lines` of file `f` to `path`, `chunk` at a time with a
/// pause between; returns how many it wrote.
fn writer(
    path: std::path::PathBuf,
    f: usize,
    lines: usize,
    chunk: usize,
    pause: Duration,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut i = 0;
        while i < lines {
            let to = (i + chunk).min(lines);
            append_lines(&path, f, i, to);
            i = to;
            thread::sleep(pause);
        }
        i
    })
}

/// xorshift64*: the test's randomness, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_hundred_random_config_changes_lose_and_duplicate_no_line_of_files_that_stay_configured() {
    const FILES: usize = 5;
    const INITIAL: usize = 1_000;
    /// At most this many lines per file (about 20,000 per second are written).
    const MAX_LINES: usize = 60_000;
    const CHANGES: usize = 100;
    let kafka = Tansu::start();
    kafka.create_topic("stay", 3);
    kafka.create_topic("churn", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let files: Vec<_> = (0..FILES).map(|f| logs.join(format!("f{f}.log"))).collect();
    let others: Vec<_> = (0..3).map(|k| logs.join(format!("x{k}.log"))).collect();
    for (f, p) in files.iter().enumerate() {
        append_lines(p, f, 0, INITIAL);
    }
    for (k, p) in others.iter().enumerate() {
        append_lines(p, 10 + k, 0, 100);
    }
    let base = list(&files.iter().map(|p| (p.as_path(), "stay", "")).collect::<Vec<_>>());
    etcd.put(&key(HOST), &base);
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let agent = Agent::start(dir.path(), &cfg);
    let first = consume(&kafka.brokers(), "stay", FILES * INITIAL, Duration::ZERO, Duration::from_secs(30));
    assert_eq!(first.len(), FILES * INITIAL);

    // Appended continuously (chunks of 100 lines, a few ms apart, per file)
    // for as long as the list changes 100 times: each f-file stays configured
    // to "stay" throughout, with random options (any change restarts its
    // reader), beside entries that come and go: the same files to another
    // topic, a glob over them to the same topic (it may take over their
    // readers), other files.
    let changing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(f, p)| {
            let (p, changing) = (p.clone(), changing.clone());
            thread::spawn(move || {
                let mut i = INITIAL;
                while changing.load(Ordering::Acquire) && i < MAX_LINES {
                    append_lines(&p, f, i, i + 100);
                    i += 100;
                    thread::sleep(Duration::from_millis(5));
                }
                i
            })
        })
        .collect();
    let seed = now_ms() as u64 | 1;
    eprintln!("random config changes: seed {seed}");
    let mut rng = Rng(seed);
    let glob = logs.join("f*.log");
    let t = Instant::now();
    for _ in 0..CHANGES {
        let mut entries: Vec<(&Path, &str, String)> = Vec::new();
        for p in &files {
            let mut opts = Vec::new();
            match rng.below(3) {
                0 => opts.push(r#""read_from":"end""#.to_string()),
                1 => opts.push(r#""read_from":"beginning""#.to_string()),
                _ => {}
            }
            match rng.below(3) {
                0 => opts.push(r#""max_line_bytes":65536"#.to_string()),
                1 => opts.push(r#""exclude":["*.gz","/nonexistent/*"]"#.to_string()),
                _ => {}
            }
            if rng.below(4) == 0 {
                opts.push(r#""parse_json":true"#.to_string());
            }
            entries.push((p.as_path(), "stay", opts.join(",")));
            if rng.below(4) == 0 {
                entries.push((p.as_path(), "churn", String::new()));
            }
        }
        if rng.below(3) == 0 {
            entries.push((glob.as_path(), "stay", r#""read_from":"end""#.to_string()));
        }
        for p in &others {
            if rng.below(2) == 0 {
                entries.push((p.as_path(), "stay", String::new()));
            }
        }
        // Shuffled: order in the list means nothing.
        for i in (1..entries.len()).rev() {
            entries.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let refs: Vec<(&Path, &str, &str)> = entries.iter().map(|(p, t, o)| (*p, *t, o.as_str())).collect();
        etcd.put(&key(HOST), &list(&refs));
        thread::sleep(Duration::from_millis(5 + rng.below(40)));
    }
    etcd.put(&key(HOST), &base);
    changing.store(false, Ordering::Release);
    let written: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let total: usize = written.iter().sum();
    eprintln!("{CHANGES} changes in {:?} while {written:?} lines were written", t.elapsed());
    let recs = consume(&kafka.brokers(), "stay", total, Duration::from_secs(3), Duration::from_secs(120));
    let mut count: HashMap<(usize, usize), usize> = HashMap::new();
    for r in &recs {
        let (f, i) = seq_of(&r.value);
        if f < FILES {
            assert_eq!(r.value, line(f, i).as_bytes());
            *count.entry((f, i)).or_default() += 1;
        }
    }
    let missing: Vec<_> =
        (0..FILES).flat_map(|f| (0..written[f]).map(move |i| (f, i))).filter(|k| !count.contains_key(k)).collect();
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (*k, *n)).collect();
    let applied = log_count(&agent, &["collect list from etcd"]);
    let restarts = log_count(&agent, &["collect entry changed"]);
    eprintln!("lists applied {applied}, entry restarts {restarts}, records in stay {}", recs.len());
    assert!(missing.is_empty(), "{} lines lost, first {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(twice.is_empty(), "{} lines twice, e.g. {:?}", twice.len(), &twice[..twice.len().min(5)]);
    assert!(restarts >= 50, "the changes restarted readers: {restarts}");
}

#[test]
fn etcd_killed_and_restarted_mid_run_the_agent_keeps_shipping_and_applies_a_later_change() {
    const LINES: usize = 30_000;
    let kafka = Tansu::start();
    kafka.create_topic("a", 1);
    kafka.create_topic("b", 1);
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (f, g) = (dir.path().join("f.log"), dir.path().join("g.log"));
    append_lines(&g, 1, 0, 100);
    etcd.put(&key(HOST), &list(&[(&f, "a", "")]));
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let agent = Agent::start(dir.path(), &cfg);
    wait_log(&agent, &["watching the collect list"], 1, Duration::from_secs(10));
    // About 6 s of appends; etcd is down for 2 s in the middle.
    let w = writer(f.clone(), 0, LINES, 100, Duration::from_millis(20));
    thread::sleep(Duration::from_millis(1500));
    etcd.kill();
    thread::sleep(Duration::from_secs(2));
    etcd.restart();
    wait_log(&agent, &["watching the collect list"], 2, Duration::from_secs(15));
    etcd.put(&key(HOST), &list(&[(&f, "a", ""), (&g, "b", "")]));
    let t = Instant::now();
    let recs = consume(&kafka.brokers(), "b", 100, Duration::ZERO, Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(1, 0, 100), "the change after the restart applied");
    eprintln!("change after etcd's restart shipped in {:?}", t.elapsed());
    assert!(w.join().unwrap() == LINES);
    let recs = consume(&kafka.brokers(), "a", LINES, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(seqs(&recs), range(0, 0, LINES), "shipping went on, no line lost or twice");
    assert_eq!(log_count(&agent, &["keeping the running collect list, retrying"]), 1, "one warning for the outage");
}

#[test]
fn changes_made_while_cut_off_from_etcd_apply_on_reconnect_in_order_or_after_compaction() {
    let kafka = Tansu::start();
    for t in ["a", "b", "c"] {
        kafka.create_topic(t, 1);
    }
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.port);
    let dir = tempfile::tempdir().unwrap();
    let p: Vec<_> = (0..3).map(|k| dir.path().join(format!("{k}.log"))).collect();
    for (k, path) in p.iter().enumerate() {
        append_lines(path, k, 0, 10);
    }
    etcd.put(&key(HOST), &list(&[(&p[0], "a", "")]));
    let cfg = config(&kafka.brokers(), dir.path(), &proxy.endpoint(), HOST, "", "");
    let agent = Agent::start(dir.path(), &cfg);
    wait_log(&agent, &["watching the collect list"], 1, Duration::from_secs(10));

    // Cut off: two changes; on reconnect the watch resumes after the last
    // revision the agent saw and gets both, in order.
    proxy.cut();
    wait_log(&agent, &["retrying with backoff"], 1, Duration::from_secs(10));
    etcd.put(&key(HOST), &list(&[(&p[0], "a", ""), (&p[1], "b", "")]));
    let rev = etcd.put(&key(HOST), &list(&[(&p[1], "b", "")]));
    proxy.restore();
    wait_log(&agent, &["collect list from etcd", &format!("revision={rev} ")], 1, Duration::from_secs(15));
    let applied = |r: i64| {
        let l = agent.log_text();
        l.find(&format!("collect list from etcd key={} revision={r} ", key(HOST)))
    };
    let (before, last) = (applied(rev - 1), applied(rev));
    assert!(before.is_some() && before < last, "missed changes arrive, in order:\n{}", agent.log_text());
    assert_eq!(
        seqs(&consume(&kafka.brokers(), "b", 10, Duration::from_secs(1), Duration::from_secs(30))),
        range(1, 0, 10)
    );

    // Cut off again, and the history compacted past what the agent saw: it
    // reads the key afresh.
    proxy.cut();
    wait_log(&agent, &["retrying with backoff"], 2, Duration::from_secs(10));
    etcd.put(&key(HOST), &list(&[(&p[1], "b", ""), (&p[2], "c", r#""parse_json":true"#)]));
    etcd.put(&key(HOST), &list(&[(&p[1], "b", ""), (&p[2], "c", "")]));
    etcd.compact();
    proxy.restore();
    wait_log(&agent, &["compacted"], 1, Duration::from_secs(15));
    assert_eq!(
        seqs(&consume(&kafka.brokers(), "c", 10, Duration::from_secs(1), Duration::from_secs(30))),
        range(2, 0, 10)
    );
    // p[0] left the list in the first outage: nothing more from it.
    append_lines(&p[0], 0, 10, 20);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(consume(&kafka.brokers(), "a", 10, Duration::from_secs(1), Duration::from_secs(30)).len(), 10);
}

#[test]
fn an_invalid_value_is_logged_with_the_key_and_the_running_list_stays() {
    let kafka = Tansu::start();
    kafka.create_topic("a", 1);
    kafka.create_topic("b", 1);
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (f, g) = (dir.path().join("f.log"), dir.path().join("g.log"));
    append_lines(&f, 0, 0, 100);
    append_lines(&g, 1, 0, 100);
    etcd.put(&key(HOST), &list(&[(&f, "a", "")]));
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let agent = Agent::start(dir.path(), &cfg);
    consume(&kafka.brokers(), "a", 100, Duration::ZERO, Duration::from_secs(30));
    // (bad value, words the agent's log line must have besides the key)
    let bad = [
        (r#"[{"path": "/x.log", "topic": "a""#.to_string(), "invalid JSON"),
        (r#"[{"path": "", "topic": "a"}]"#.to_string(), "[0].path: must not be empty"),
        (list(&[(&g, "b", r#""max_line_bytes":"big""#)]), "[0].max_line_bytes"),
        (list(&[(&g, "b", ""), (&g, "b", "")]), "[1]: same path and topic as [0]"),
        (list(&[(&g, "b", r#""Topic":"c""#)]), "unknown field"),
    ];
    for (i, (value, words)) in bad.iter().enumerate() {
        etcd.put(&key(HOST), value);
        wait_log(&agent, &["invalid collect list in etcd", &key(HOST), words], 1, Duration::from_secs(10));
        assert_eq!(log_count(&agent, &["invalid collect list in etcd"]), i + 1);
    }
    append_lines(&f, 0, 100, 200);
    let recs = consume(&kafka.brokers(), "a", 200, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 0, 200), "the running list stayed");
    assert_eq!(consume(&kafka.brokers(), "b", 0, Duration::from_secs(1), Duration::from_secs(10)).len(), 0);
    // The watch goes on: a good value applies.
    etcd.put(&key(HOST), &list(&[(&f, "a", ""), (&g, "b", "")]));
    assert_eq!(seqs(&consume(&kafka.brokers(), "b", 100, Duration::ZERO, Duration::from_secs(30))), range(1, 0, 100));
}

#[test]
fn an_agent_started_while_etcd_is_down_collects_the_cached_list_else_the_static_one() {
    let kafka = Tansu::start();
    kafka.create_topic("a", 1);
    kafka.create_topic("s", 1);
    let mut etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let (f, g) = (dir.path().join("f.log"), dir.path().join("g.log"));
    append_lines(&f, 0, 0, 100);
    append_lines(&g, 1, 0, 100);
    etcd.put(&key(HOST), &list(&[(&f, "a", "")]));
    // The static list is the fallback of last resort only.
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", &format!("s = {}", g.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    consume(&kafka.brokers(), "a", 100, Duration::ZERO, Duration::from_secs(30));
    assert_eq!(agent.terminate().0, Some(0));
    assert!(dir.path().join("data/etcd_collect.json").exists());

    etcd.kill();
    append_lines(&f, 0, 100, 200);
    agent.restart();
    wait_log(&agent, &["collecting the cached list"], 1, Duration::from_secs(10));
    let recs = consume(&kafka.brokers(), "a", 200, Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(seqs(&recs), range(0, 0, 200), "resumed from the cached list, no line twice");
    assert_eq!(consume(&kafka.brokers(), "s", 0, Duration::from_secs(1), Duration::from_secs(10)).len(), 0);

    // Another host's agent, no cache: the static list, said so; once etcd
    // is back, its key (absent) rules: collect nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 =
        config(&kafka.brokers(), dir2.path(), &etcd.endpoint(), "other-host", "", &format!("s = {}", g.display()));
    let other = Agent::start(dir2.path(), &cfg2);
    wait_log(&other, &["none cached: collecting the static [collect] list"], 1, Duration::from_secs(10));
    assert_eq!(seqs(&consume(&kafka.brokers(), "s", 100, Duration::ZERO, Duration::from_secs(30))), range(1, 0, 100));
    etcd.restart();
    wait_log(&other, &["no collect list in etcd", "collecting nothing"], 1, Duration::from_secs(15));
    wait_log(&other, &["collect entry removed", "topic=s"], 1, Duration::from_secs(5));
}

/// Runs `logcollect config ARGS`, returning (exit code, stdout, stderr).
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_logcollect")).arg("config").args(args).current_dir(dir).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn config_cli_put_get_hosts_watch_delete_and_put_refuses_invalid_lists() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let ep = etcd.endpoint();
    let good = r#"[{"path":"/var/log/nginx/*.log","topic":"web_log"}]"#;
    let (code, out, err) = cli(dir.path(), &["--etcd", &ep, "put", "--host", "10.0.0.5", good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/logagent/10.0.0.5/collect_config: 1 entries written"), "{out}");
    let (code, out, _) = cli(dir.path(), &["get", "--host", "10.0.0.5", "--etcd", &ep]);
    assert_eq!((code, out.trim()), (0, good));

    // --file, and a config file with its own key layout and the address.
    let file = dir.path().join("entries.json");
    std::fs::write(&file, r#"[{"path":"/srv/app/*.log","topic":"app","exclude":["*.gz"],"parse_json":true}]"#).unwrap();
    std::fs::write(dir.path().join("config.ini"), format!("[etcd]\naddress = {ep}\ncollect_log_key = /team/%s/logs\n"))
        .unwrap();
    let (code, _, err) = cli(dir.path(), &["put", "--host", "web-1", "--file", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(etcd.get("/team/web-1/logs").is_some());
    cli(dir.path(), &["put", "--host", "web-2", "[]"]);
    etcd.put("/team/web-3/other", "x");
    let (code, out, _) = cli(dir.path(), &["hosts", "--names"]);
    assert_eq!((code, out.as_str()), (0, "web-1\nweb-2\n"));
    // --hosts: one list to several hosts; the table shows each one's
    // entries and last change, and says when a list is invalid.
    let (code, out, err) = cli(dir.path(), &["put", "--hosts", "web-4,web-5", good]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/team/web-4/logs: 1 entries written") && out.ends_with("2 hosts written\n"), "{out}");
    let (code, _, err) = cli(dir.path(), &["put", "--hosts", "web-6,a/b", good]);
    assert_eq!(code, 2);
    assert!(err.contains("--hosts: host \"a/b\" has '/'"), "{err}");
    assert!(etcd.get("/team/web-6/logs").is_none(), "nothing written when one host is refused");
    let rev = etcd.put("/team/web-5/logs", "[7]");
    let (code, out, _) = cli(dir.path(), &["hosts"]);
    assert_eq!(code, 0);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["HOST", "REVISION", "ENTRIES"], "{out}");
    assert_eq!(rows.iter().skip(1).map(|r| r[0]).collect::<Vec<_>>(), ["web-1", "web-2", "web-4", "web-5"], "{out}");
    assert_eq!(rows[2][2], "0", "{out}");
    assert_eq!(rows[3][2], "1", "{out}");
    assert_eq!(rows[4][1..3], [rev.to_string().as_str(), "invalid:"], "{out}");
    let (code, _, err) = cli(dir.path(), &["--config", "/nonexistent.ini", "--etcd", &ep, "hosts"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = cli(dir.path(), &["--config", "/dev/null", "--etcd", &ep, "hosts", "--names"]);
    assert_eq!((code, out.as_str()), (0, "10.0.0.5\n"), "the default key layout");

    // Invalid lists are refused before anything is written.
    for (bad, words) in [
        ("[{\"path\":\"/a\",\"topic\":\"t\"", "invalid JSON"),
        ("[{\"path\":\"\",\"topic\":\"t\"}]", "[0].path: must not be empty"),
        ("[{\"path\":\"/a\",\"topic\":\"t\",\"paht\":1}]", "unknown field"),
        ("{}", "JSON array"),
    ] {
        let (code, _, err) = cli(dir.path(), &["put", "--host", "web-1", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("/team/web-1/logs") && err.contains(words), "{bad}: {err}");
    }
    let (_, out, _) = cli(dir.path(), &["get", "--host", "web-1"]);
    assert!(out.contains("/srv/app/*.log"), "the stored list stayed: {out}");

    // watch: the list, then every change, until Ctrl-C.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .args(["config", "watch", "--host", "web-2"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let reader = thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout).lines() {
            seen2.lock().unwrap().push(l.unwrap());
        }
    });
    let has = |w: &str| wait_until(Duration::from_secs(10), || seen.lock().unwrap().iter().any(|l| l.contains(w)));
    assert!(has(": []"), "{:?}", seen.lock().unwrap());
    etcd.put("/team/web-2/logs", "[7]");
    assert!(has("invalid, agents keep their running list"), "{:?}", seen.lock().unwrap());
    assert_eq!(cli(dir.path(), &["delete", "--host", "web-2"]).0, 0);
    assert!(has("(no collect list)"), "{:?}", seen.lock().unwrap());
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    assert_eq!(watch.wait().unwrap().code(), Some(0));
    reader.join().unwrap();

    let (code, _, err) = cli(dir.path(), &["get", "--host", "web-2"]);
    assert_eq!(code, 1);
    assert!(err.contains("/team/web-2/logs: no collect list"), "{err}");
    let (code, _, err) = cli(dir.path(), &["--etcd", "127.0.0.1:1", "get", "--host", "x"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = cli(dir.path(), &["--config", "/dev/null", "hosts"]);
    assert_eq!(code, 2);
    assert!(err.contains("etcd.address"), "{err}");

    // A TLS file that cannot be read is a config error (exit 2), for the
    // commands and for the agent, not an etcd that does not answer.
    let bad = dir.path().join("bad.ini");
    std::fs::write(
        &bad,
        format!("[kafka]\naddress = 127.0.0.1:1\n[etcd]\naddress = {ep}\nca_file = /nonexistent/ca.pem\n"),
    )
    .unwrap();
    let (code, _, err) = cli(dir.path(), &["--config", bad.to_str().unwrap(), "get", "--host", "h"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("etcd.ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect")).args(["agent", "--config"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.lines().any(|l| l.starts_with("logcollect: config etcd.ca_file")), "{err}");
}

#[test]
fn tls_with_a_client_certificate_and_a_password() {
    let kafka = Tansu::start();
    kafka.create_topic("a", 1);
    let certs = tempfile::tempdir().unwrap();
    let tls = TlsFiles::generate(certs.path());
    let mut etcd = Etcd::start_tls(tls.clone());
    etcd.enable_auth("s3cret");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.log");
    append_lines(&f, 0, 0, 100);
    let secure = |password: &str| {
        format!(
            "timeout = 2\nca_file = {}\ncert_file = {}\nkey_file = {}\nusername = root\npassword = {password}\n",
            tls.ca.display(),
            tls.client_cert.display(),
            tls.client_key.display()
        )
    };
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "")
        .replace("timeout = 1\n", &secure("s3cret"));
    std::fs::write(dir.path().join("config.ini"), &cfg).unwrap();
    // The operator's put goes over TLS with the password too.
    let (code, _, err) = cli(dir.path(), &["put", "--host", HOST, &list(&[(&f, "a", "")])]);
    assert_eq!(code, 0, "{err}");
    let _agent = Agent::start(dir.path(), &cfg);
    assert_eq!(seqs(&consume(&kafka.brokers(), "a", 100, Duration::ZERO, Duration::from_secs(30))), range(0, 0, 100));

    // A wrong password, or no CA to check the server by: refused, exit 1.
    let wrong = tempfile::tempdir().unwrap();
    std::fs::write(wrong.path().join("config.ini"), cfg.replace("password = s3cret", "password = nope")).unwrap();
    let (code, _, err) = cli(wrong.path(), &["get", "--host", HOST]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    let ca_line = format!("ca_file = {}\n", tls.ca.display());
    std::fs::write(wrong.path().join("config.ini"), cfg.replace(&ca_line, "")).unwrap();
    let (code, _, err) = cli(wrong.path(), &["get", "--host", HOST]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("certificate"), "{err}");
}

/// Waits until `topic` holds exactly `want` (sorted (file, seq) pairs),
/// then a quiet second passes; returns what it holds (for the assert).
fn holds(brokers: &str, topic: &str, want: &[(usize, usize)]) -> Vec<(usize, usize)> {
    seqs(&consume(brokers, topic, want.len(), Duration::from_secs(1), Duration::from_secs(30)))
}

#[test]
fn a_topic_change_continues_the_file_in_the_new_topic_with_no_line_lost_or_repeated() {
    // Issue 17, as the operator saw it: `fa3` had 100 lines, the entry moved
    // to `fb3`, 100 more were appended, and `fb3` got all 200.
    let kafka = Tansu::start();
    for t in ["fa3", "fb3"] {
        kafka.create_topic(t, 1);
    }
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let a3 = logs.join("a3.log");
    append_lines(&a3, 3, 0, 100);
    // read_from = beginning: a topic change that fell back on it would
    // send the first 100 lines again.
    etcd.put(&key(HOST), &list(&[(&a3, "fa3", "")]));
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let agent = Agent::start(dir.path(), &cfg);
    assert_eq!(holds(&kafka.brokers(), "fa3", &range(3, 0, 100)), range(3, 0, 100));

    etcd.put(&key(HOST), &list(&[(&a3, "fb3", "")]));
    wait_log(&agent, &["following file", "topic=fb3"], 1, Duration::from_secs(10));
    append_lines(&a3, 3, 100, 200);
    assert_eq!(holds(&kafka.brokers(), "fb3", &range(3, 100, 200)), range(3, 100, 200));
    assert_eq!(holds(&kafka.brokers(), "fa3", &range(3, 0, 100)), range(3, 0, 100), "fa3 kept its 100");

    // The same while lines are being written (tagged file=4), back and
    // forth, with the entry's options and its glob changing too: every
    // line lands once, in one topic or the other.
    let w = writer(a3.clone(), 4, 1_200, 20, Duration::from_millis(20));
    let steps: [(&Path, &str, &str); 4] = [
        (&logs.join("a*.log"), "fa3", ""),
        (&logs.join("a*.log"), "fa3", r#""max_line_bytes":4096"#),
        (&a3, "fb3", r#""long_lines":"truncate""#),
        (&logs.join("*.log"), "fa3", ""),
    ];
    for (path, topic, extra) in steps {
        thread::sleep(Duration::from_millis(250));
        etcd.put(&key(HOST), &list(&[(path, topic, extra)]));
    }
    assert_eq!(w.join().unwrap(), 1_200);
    wait_log(&agent, &["collect entry added", "logs/*.log"], 1, Duration::from_secs(10));
    let mut want = range(3, 0, 200);
    want.extend(range(4, 0, 1_200));
    let read = |t: &str| consume(&kafka.brokers(), t, 0, Duration::from_millis(500), Duration::from_secs(10));
    wait_until(Duration::from_secs(30), || read("fa3").len() + read("fb3").len() >= want.len());
    thread::sleep(Duration::from_secs(1));
    let (fa3, fb3) = (read("fa3"), read("fb3"));
    let mut both = seqs(&fa3);
    both.extend(seqs(&fb3));
    both.sort();
    let (lost, twice) = lost_and_twice(&both, &want);
    assert!(lost.is_empty() && twice.is_empty(), "lost {lost:?}, twice {twice:?}");
    // Each topic got its lines in file order.
    for recs in [&fa3, &fb3] {
        let offsets: Vec<u64> = recs.iter().map(|r| r.header("offset").parse().unwrap()).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
    eprintln!("fa3 {} lines, fb3 {} lines", fa3.len(), fb3.len());
}

/// A line written by `common::line`: (file, seq).
type Seq = (usize, usize);

/// The lines of `want` missing from `got`, and the ones `got` has more
/// than once (both sorted).
fn lost_and_twice(got: &[Seq], want: &[Seq]) -> (Vec<Seq>, Vec<Seq>) {
    let mut counts: HashMap<Seq, usize> = HashMap::new();
    for k in got {
        *counts.entry(*k).or_default() += 1;
    }
    let lost = want.iter().filter(|k| !counts.contains_key(k)).copied().take(5).collect();
    let mut twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).map(|(k, _)| *k).collect();
    twice.sort();
    twice.truncate(5);
    (lost, twice)
}

#[test]
fn a_topic_changed_while_the_agent_was_down_continues_where_the_old_topic_stopped() {
    let kafka = Tansu::start();
    for t in ["fa", "fb"] {
        kafka.create_topic(t, 1);
    }
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.log");
    append_lines(&f, 0, 0, 100);
    etcd.put(&key(HOST), &list(&[(&f, "fa", "")]));
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let mut agent = Agent::start(dir.path(), &cfg);
    assert_eq!(holds(&kafka.brokers(), "fa", &range(0, 0, 100)), range(0, 0, 100));
    assert_eq!(agent.terminate().0, Some(0));
    // The old topic's entry is simply absent when the agent starts again.
    etcd.put(&key(HOST), &list(&[(&f, "fb", "")]));
    append_lines(&f, 0, 100, 200);
    agent.restart();
    assert_eq!(holds(&kafka.brokers(), "fb", &range(0, 100, 200)), range(0, 100, 200));
    assert_eq!(holds(&kafka.brokers(), "fa", &range(0, 0, 100)), range(0, 0, 100));
    wait_log(&agent, &["file moves to another topic", "topic=fb"], 1, Duration::from_secs(10));
}

#[test]
fn two_entries_sending_one_file_to_two_topics_give_each_topic_every_line_once() {
    let kafka = Tansu::start();
    for t in ["one", "two"] {
        kafka.create_topic(t, 1);
    }
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let f = logs.join("a.log");
    append_lines(&f, 0, 0, 100);
    // One entry names the file, the other finds it through a glob.
    let both = list(&[(&f, "one", ""), (&logs.join("*.log"), "two", "")]);
    etcd.put(&key(HOST), &both);
    let cfg = config(&kafka.brokers(), dir.path(), &etcd.endpoint(), HOST, "", "");
    let mut agent = Agent::start(dir.path(), &cfg);
    for t in ["one", "two"] {
        assert_eq!(holds(&kafka.brokers(), t, &range(0, 0, 100)), range(0, 0, 100), "{t}");
    }
    // Across a restart, each continues at its own position.
    assert_eq!(agent.terminate().0, Some(0));
    append_lines(&f, 0, 100, 200);
    agent.restart();
    for t in ["one", "two"] {
        assert_eq!(holds(&kafka.brokers(), t, &range(0, 0, 200)), range(0, 0, 200), "{t}");
    }
    // `two` dropped while `one` goes on; added back, it resumes where it
    // stopped (its own position: `one` never stopped collecting the file).
    etcd.put(&key(HOST), &list(&[(&f, "one", "")]));
    wait_log(&agent, &["collect entry removed", "topic=two"], 1, Duration::from_secs(10));
    append_lines(&f, 0, 200, 300);
    assert_eq!(holds(&kafka.brokers(), "one", &range(0, 0, 300)), range(0, 0, 300));
    etcd.put(&key(HOST), &both);
    append_lines(&f, 0, 300, 400);
    for t in ["one", "two"] {
        assert_eq!(holds(&kafka.brokers(), t, &range(0, 0, 400)), range(0, 0, 400), "{t}");
    }
}
