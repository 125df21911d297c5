//! End-to-end scenarios for the agent: files -> agent -> a real Kafka-
//! compatible broker (Tansu) -> read back by a consumer, with exact counts
//! and content.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Parses `file=F seq=I` out of a line written by `common::line`.
fn seq_of(v: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(v).unwrap();
    let f = s.split("file=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let i = s.split("seq=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    (f, i)
}

/// Checkpoint offset the agent saved for `path`, if any.
fn checkpoint_of(data: &Path, path: &Path) -> Option<u64> {
    let want = path.to_str().unwrap();
    checkpoint_rows(data).into_iter().filter(|(p, _, _)| p == want).map(|(_, _, offset)| offset).max()
}

/// How many file identities the checkpoint file holds.
fn fids_in_checkpoints(data: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(data.join("checkpoints.json")) else { return 0 };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["files"].as_array().map(|a| a.len()).unwrap_or(0)
}

#[test]
fn a_million_lines_from_four_growing_files_arrive_in_order_and_intact() {
    const FILES: usize = 4;
    const LINES: usize = 250_000;
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    // The files appear and grow while the agent runs.
    let writers: Vec<_> = (0..FILES)
        .map(|f| {
            let path = logs.join(format!("f{f}.log"));
            thread::spawn(move || {
                for k in 0..10 {
                    append_lines(&path, f, k * LINES / 10, (k + 1) * LINES / 10);
                    thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let t = Instant::now();
    let recs = consume(&kafka.brokers(), "app", FILES * LINES, Duration::from_secs(2), Duration::from_secs(240));
    eprintln!("consumed {} records in {:?}", recs.len(), t.elapsed());
    assert_eq!(recs.len(), FILES * LINES, "exactly one record per line");
    let groups = by_path(&recs);
    assert_eq!(groups.len(), FILES);
    for f in 0..FILES {
        let path = logs.join(format!("f{f}.log"));
        let got = &groups[path.to_str().unwrap()];
        // One file, one partition, in file order there.
        assert!(got.iter().all(|r| r.partition == got[0].partition), "file {f} spread over partitions");
        let mut by_kafka = got.clone();
        by_kafka.sort_by_key(|r| r.offset);
        let mut file_offset = 0u64;
        for (i, r) in by_kafka.iter().enumerate() {
            let want = line(f, i);
            assert_eq!(r.value, want.as_bytes(), "file {f} line {i}");
            assert_eq!(r.header("offset").parse::<u64>().unwrap(), file_offset, "file {f} line {i} offset");
            assert_eq!(r.header("host"), "test-host");
            assert!(!r.header("fid").is_empty());
            file_offset += want.len() as u64 + 1;
        }
    }
    let (code, took) = agent.terminate();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    for f in 0..FILES {
        let path = logs.join(format!("f{f}.log"));
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(checkpoint_of(&dir.path().join("data"), &path), Some(size), "final checkpoint of {f}");
    }
}

#[test]
fn kill_9_mid_stream_then_restart_loses_no_line() {
    const FILES: usize = 2;
    const LINES: usize = 100_000;
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    let writers: Vec<_> = (0..FILES)
        .map(|f| {
            let path = logs.join(format!("f{f}.log"));
            thread::spawn(move || {
                for k in 0..50 {
                    append_lines(&path, f, k * LINES / 50, (k + 1) * LINES / 50);
                    thread::sleep(Duration::from_millis(40));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1000));
    agent.kill9();
    thread::sleep(Duration::from_millis(700));
    agent.restart();
    for w in writers {
        w.join().unwrap();
    }
    let recs = consume(&kafka.brokers(), "app", FILES * LINES, Duration::from_secs(3), Duration::from_secs(120));
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for r in &recs {
        let (f, i) = seq_of(&r.value);
        assert_eq!(r.value, line(f, i).as_bytes());
        *seen.entry((f, i)).or_default() += 1;
    }
    let missing: Vec<_> =
        (0..FILES).flat_map(|f| (0..LINES).map(move |i| (f, i))).filter(|k| !seen.contains_key(k)).collect();
    let dups = recs.len() - seen.len();
    eprintln!("records {} unique {} duplicates {dups} (the unacknowledged tail at the kill)", recs.len(), seen.len());
    assert!(missing.is_empty(), "{} lines lost, first {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert!(dups < LINES, "duplicates should be only the tail in flight at the kill: {dups}");
}

#[test]
fn rename_rotation_mid_stream_loses_no_line() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let cfg = agent_config(&kafka.brokers(), dir.path(), "rotate_wait_ms = 1000", &format!("app = {}", path.display()));
    let _agent = Agent::start(dir.path(), &cfg);
    thread::sleep(Duration::from_millis(500));
    // logrotate `create`: rename, a new file under the old name, writing goes
    // on there. Each rename comes as soon as the agent has begun to follow the
    // file, so most of it is read after the rename, from the renamed file. (A
    // file renamed away before the agent ever saw it is found only by a glob
    // that matches rotated names too.)
    let data = dir.path().join("data");
    for k in 0..3 {
        append_lines(&path, 0, k * 30_000, (k + 1) * 30_000);
        if k < 2 {
            assert!(wait_until(Duration::from_secs(20), || fids_in_checkpoints(&data) > k), "agent follows file {k}");
            std::fs::rename(&path, dir.path().join(format!("app.log.{}", k + 1))).unwrap();
        }
    }
    let recs = consume(&kafka.brokers(), "app", 90_000, Duration::from_secs(2), Duration::from_secs(90));
    let seqs: HashSet<usize> = recs.iter().map(|r| seq_of(&r.value).1).collect();
    assert_eq!(seqs.len(), 90_000, "lines lost: {}", 90_000 - seqs.len());
    assert_eq!(recs.len(), 90_000, "no line twice");
    // Every identity (three files) was read from its start.
    let fids: HashSet<&str> = recs.iter().map(|r| r.header("fid")).collect();
    assert_eq!(fids.len(), 3);
}

#[test]
fn copytruncate_rotation_mid_stream_loses_no_line() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let data = dir.path().join("data");
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}", path.display()));
    let _agent = Agent::start(dir.path(), &cfg);
    thread::sleep(Duration::from_millis(500));
    let mut written = 0;
    for round in 0..3 {
        append_lines(&path, 0, written, written + 30_000);
        written += 30_000;
        // copytruncate copies, then truncates: lines a writer adds between the
        // two steps are in neither file, whatever reads them (the tool's own
        // race). The test writes nothing during those two steps, and lets the
        // agent read up to the end first: lines not yet read when the file is
        // truncated are gone from it (they live on only in the copy).
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(wait_until(Duration::from_secs(30), || checkpoint_of(&data, &path) >= Some(size)), "agent caught up");
        std::fs::copy(&path, dir.path().join(format!("app.log.{round}"))).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        // Writing resumes at once: the file may outgrow the old offset before
        // the reader looks, so truncation is told by the head, not the size.
    }
    append_lines(&path, 0, written, written + 10_000);
    written += 10_000;
    let recs = consume(&kafka.brokers(), "app", written, Duration::from_secs(2), Duration::from_secs(90));
    let seqs: HashSet<usize> = recs.iter().map(|r| seq_of(&r.value).1).collect();
    assert_eq!(seqs.len(), written, "lines lost: {}", written - seqs.len());
    assert_eq!(recs.len(), written, "no line twice");
    for r in &recs {
        assert_eq!(r.value, line(0, seq_of(&r.value).1).as_bytes());
    }
}

#[test]
fn bad_input_ships_as_bytes_and_long_lines_are_split_and_marked() {
    let kafka = Tansu::start();
    kafka.create_topic("raw", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.log");
    let cfg =
        agent_config(&kafka.brokers(), dir.path(), "partial_line_flush_ms = 500", &format!("raw = {}", path.display()));
    let _agent = Agent::start(dir.path(), &cfg);
    thread::sleep(Duration::from_millis(500));
    // The default max_line_bytes: 960 KiB.
    const PART: usize = 960 << 10;
    let big = vec![b'z'; 5 * PART];
    let mut content = Vec::new();
    content.extend_from_slice(b"crlf line\r\n");
    content.extend_from_slice(b"bad utf8 \xff\xfe \xc3\x28 end\n");
    content.extend_from_slice(b"nul\0inside\0\n");
    content.extend_from_slice(&big);
    content.push(b'\n');
    content.extend_from_slice(b"after the big one\n");
    content.extend_from_slice(b"no newline at the end");
    std::fs::write(&path, &content).unwrap();
    let recs = consume(&kafka.brokers(), "raw", 10, Duration::from_secs(2), Duration::from_secs(60));
    let values: Vec<&[u8]> = recs.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values.len(), 10, "records: {:?}", recs.iter().map(|r| r.value.len()).collect::<Vec<_>>());
    assert_eq!(values[0], b"crlf line");
    assert_eq!(values[1], b"bad utf8 \xff\xfe \xc3\x28 end");
    assert_eq!(values[2], b"nul\0inside\0");
    for k in 0..5 {
        assert_eq!(values[3 + k], &big[..PART], "part {k}");
        assert_eq!(recs[3 + k].header("split"), (k + 1).to_string());
    }
    assert_eq!(values[8], b"after the big one");
    assert_eq!(recs[8].header("split"), "");
    assert_eq!(values[9], b"no newline at the end");
    assert_eq!(recs[9].header("partial"), "1");
}

#[test]
fn a_record_refused_for_its_size_is_cut_until_it_fits_and_the_checkpoint_moves_on() {
    // librdkafka's message.max.bytes lowered to 20,000: a 99,999-byte line
    // is refused for its size and must go through as halves of halves
    // (8 records of 12,499-12,500 bytes), each cut at a character boundary,
    // with the offset of its first byte.
    let kafka = Tansu::start();
    kafka.create_topic("big", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let cfg = format!(
        "{}\n[kafka.producer]\nmessage.max.bytes = 20000\n",
        agent_config(&kafka.brokers(), dir.path(), "", &format!("big = {}", path.display()))
    );
    let mut agent = Agent::start(dir.path(), &cfg);
    // 33,333 three-byte characters: halves must not split one.
    let wide = "\u{20ac}".repeat(33_333);
    let content = format!("before\n{wide}\nafter\n");
    std::fs::write(&path, &content).unwrap();
    let mut recs = consume(&kafka.brokers(), "big", 10, Duration::from_secs(3), Duration::from_secs(60));
    assert_eq!(recs.len(), 10, "records: {:?}", recs.iter().map(|r| r.value.len()).collect::<Vec<_>>());
    // The halves are sent after the records already queued behind the line
    // ("after"): in file order by their offsets.
    recs.sort_by_key(|r| r.header("offset").parse::<u64>().unwrap());
    assert!(recs[0].value == b"before" && recs[9].value == b"after", "before and after are whole");
    let mut joined = Vec::new();
    let mut at = 7u64;
    for r in &recs[1..9] {
        assert!(r.value.len() <= 20_000 && std::str::from_utf8(&r.value).is_ok(), "a half of {} bytes", r.value.len());
        assert_eq!(r.header("offset"), at.to_string(), "each half carries the offset of its first byte");
        assert!(!r.header("split").is_empty(), "halves of a whole line are marked as parts");
        at += r.value.len() as u64;
        joined.extend_from_slice(&r.value);
    }
    assert!(joined == wide.as_bytes(), "the halves put together are the line");
    let size = content.len() as u64;
    assert!(wait_until(Duration::from_secs(10), || checkpoint_of(&dir.path().join("data"), &path) == Some(size)));
    assert!(agent.log_text().contains("refused the record for its size"), "the cut is logged");
    let (_, metrics) = agent.get("/metrics");
    assert!(metrics.contains("logcollect_records_recut_total 7"), "7 cuts for 8 records:\n{metrics}");
    // Nothing is sent again after a kill -9 and a restart: the checkpoint passed it.
    agent.kill9();
    agent.restart();
    thread::sleep(Duration::from_secs(3));
    let again = consume(&kafka.brokers(), "big", 11, Duration::from_secs(2), Duration::from_secs(6));
    assert_eq!(again.len(), 10, "nothing sent twice");
}

#[test]
fn a_broker_stalled_for_10_s_loses_nothing_and_memory_stays_bounded() {
    const LINES: usize = 300_000;
    let kafka = Tansu::start();
    kafka.create_topic("app", 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}", path.display()));
    let agent = Agent::start(dir.path(), &cfg);
    thread::sleep(Duration::from_millis(500));
    let p = path.clone();
    let writer = thread::spawn(move || {
        for k in 0..100 {
            append_lines(&p, 0, k * LINES / 100, (k + 1) * LINES / 100);
            thread::sleep(Duration::from_millis(100));
        }
    });
    thread::sleep(Duration::from_secs(2));
    kafka.pause();
    thread::sleep(Duration::from_secs(10));
    let rss_stalled = agent.peak_rss();
    kafka.resume();
    writer.join().unwrap();
    let recs = consume(&kafka.brokers(), "app", LINES, Duration::from_secs(2), Duration::from_secs(120));
    let seqs: HashSet<usize> = recs.iter().map(|r| seq_of(&r.value).1).collect();
    assert_eq!(seqs.len(), LINES, "lines lost: {}", LINES - seqs.len());
    let peak = agent.peak_rss();
    let file_mb = std::fs::metadata(&path).unwrap().len() >> 20;
    eprintln!(
        "records {} (dups {}), peak RSS {} MB (stalled {} MB), file {file_mb} MB",
        recs.len(),
        recs.len() - seqs.len(),
        peak >> 20,
        rss_stalled >> 20
    );
    assert!(peak < 160 << 20, "peak RSS {} MB", peak >> 20);
}

#[test]
fn files_present_at_start_are_read_from_the_end_and_new_files_from_the_beginning() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let old = logs.join("old.log");
    append_lines(&old, 0, 0, 100);
    let cfg = agent_config(&kafka.brokers(), dir.path(), "read_from = end", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    thread::sleep(Duration::from_millis(800));
    append_lines(&old, 0, 100, 110);
    let t = Instant::now();
    append_lines(&logs.join("new.log"), 1, 0, 50);
    let recs = consume(&kafka.brokers(), "app", 60, Duration::from_secs(1), Duration::from_secs(30));
    assert!(t.elapsed() < Duration::from_secs(5));
    let mut got: Vec<(usize, usize)> = recs.iter().map(|r| seq_of(&r.value)).collect();
    got.sort();
    let want: Vec<(usize, usize)> = (100..110).map(|i| (0, i)).chain((0..50).map(|i| (1, i))).collect();
    assert_eq!(got, want);
    // A file deleted after it was read is let go: no descriptor kept open.
    std::fs::remove_file(logs.join("new.log")).unwrap();
    let pid = agent.pid();
    let held = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
            .any(|l| l.to_string_lossy().contains("new.log"))
    };
    assert!(wait_until(Duration::from_secs(5), || !held()), "deleted file still open");
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn a_config_error_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.ini");
    for (text, key) in [
        ("[kafka]\naddress = 127.0.0.1:1\n[agent]\nread_from = middle\n", "agent.read_from"),
        ("[kafka]\naddress = 127.0.0.1:1\nbogus = 1\n", "kafka.bogus"),
        ("[kafka]\naddress = 127.0.0.1:1\n[kafka.producer]\nno.such.property = 1\n", "kafka.producer"),
        ("[agent]\n", "kafka.address"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logcollect"))
            .args(["agent", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        // The reason is one line of its own (log lines may precede it).
        let reason =
            err.lines().find(|l| l.starts_with("logcollect: config")).unwrap_or_else(|| panic!("{text:?}: {err}"));
        assert!(reason.contains(key), "{text:?}: {err}");
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn a_thousand_idle_files_cost_little_memory_and_cpu_and_a_new_line_still_arrives_at_once() {
    const FILES: usize = 1000;
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    for f in 0..FILES {
        append_lines(&logs.join(format!("f{f}.log")), f, 0, 1);
    }
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("app = {}/*.log", logs.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    let first = consume(&kafka.brokers(), "app", FILES, Duration::from_millis(500), Duration::from_secs(60));
    assert_eq!(first.len(), FILES);
    // Idle now: every reader parked.
    thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_seconds(agent.pid());
    thread::sleep(Duration::from_secs(10));
    let idle_cpu = cpu_seconds(agent.pid()) - cpu0;
    let rss_mb = proc_status_kb(agent.pid(), "VmRSS:") / 1024;
    eprintln!("{FILES} idle files: {idle_cpu:.2} CPU-s over 10 s, RSS {rss_mb} MB");
    // Generous bounds: polling a thousand files every 250 ms, or a chunk
    // buffer (or a huge page) per reader, would break them.
    assert!(idle_cpu < 1.0, "{idle_cpu} CPU-s in 10 s idle");
    assert!(rss_mb < 250, "RSS {rss_mb} MB for {FILES} idle files");
    // A line written to one of them is woken for at once (inotify), not at
    // the next poll.
    let t = Instant::now();
    append_lines(&logs.join("f500.log"), 500, 1, 2);
    let recs = consume(&kafka.brokers(), "app", FILES + 1, Duration::from_millis(10), Duration::from_secs(10));
    let took = t.elapsed();
    assert_eq!(recs.len(), FILES + 1);
    eprintln!("a new line in an idle file arrived after {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(agent.terminate().0, Some(0));
}

#[test]
fn a_topic_changed_in_config_ini_while_the_agent_was_down_continues_the_file_in_the_new_topic() {
    let kafka = Tansu::start();
    kafka.create_topic("fa", 1);
    kafka.create_topic("fb", 1);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.log");
    append_lines(&f, 0, 0, 100);
    // read_from = beginning (agent_config's): falling back on it would
    // repeat the first 100 lines in `fb`.
    let cfg = agent_config(&kafka.brokers(), dir.path(), "", &format!("fa = {}", f.display()));
    let mut agent = Agent::start(dir.path(), &cfg);
    let got = |t: &str, n: usize| {
        let mut v: Vec<(usize, usize)> =
            consume(&kafka.brokers(), t, n, Duration::from_secs(1), Duration::from_secs(30))
                .iter()
                .map(|r| seq_of(&r.value))
                .collect();
        v.sort();
        v
    };
    let lines = |from: usize, to: usize| (from..to).map(|i| (0, i)).collect::<Vec<_>>();
    assert_eq!(got("fa", 100), lines(0, 100));
    assert_eq!(agent.terminate().0, Some(0));
    let text = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(&agent.config, text.replace(&format!("fa = {}", f.display()), &format!("fb = {}", f.display())))
        .unwrap();
    append_lines(&f, 0, 100, 200);
    agent.restart();
    assert_eq!(got("fb", 100), lines(100, 200));
    assert_eq!(got("fa", 100), lines(0, 100));
    assert_eq!(agent.terminate().0, Some(0));
    let rows = checkpoint_rows(&dir.path().join("data"));
    let size = std::fs::metadata(&f).unwrap().len();
    assert_eq!(rows, vec![(f.to_str().unwrap().to_string(), "fb".to_string(), size)], "the position moved to fb");
}
