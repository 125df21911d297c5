//! The systemd journal source, end to end: real journal files written by
//! Debian's `systemd-journal-remote` from export-format input, read by the
//! agent through `journalctl`, shipped to a real broker (Tansu), read back
//! with a plain consumer and counted exactly.

mod common;

use common::*;
use logcollect::record::{doc_id, Origin, Record};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BOOT: &str = "0123456789abcdef0123456789abcdef";
/// 2026-12-04T08:00:00Z in µs.
const T0_US: u64 = 1_796_371_200_000_000;

fn journal_remote() -> &'static str {
    ["/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "systemd-journal-remote is not installed (apt-get install systemd-journal-remote; scripts/test.sh does)",
        )
}

/// The `MESSAGE` of entry `i`: text, and every 97th binary (a NUL, a
/// newline and a byte that is not UTF-8), which the export format gives
/// length-prefixed.
fn message(i: usize) -> Vec<u8> {
    if i % 97 == 5 {
        format!("binary\0entry {i}\nsecond line \u{e9}").into_bytes().into_iter().chain([0xff]).collect()
    } else {
        format!("entry {i} {}", "y".repeat(i % 50)).into_bytes()
    }
}

/// Writes entries `from..to` into the journal file `path` (created).
fn write_journal(path: &Path, from: usize, to: usize) {
    let mut input = Vec::new();
    for i in from..to {
        let us = T0_US + i as u64 * 1000;
        write!(
            input,
            "__REALTIME_TIMESTAMP={us}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT}\n_HOSTNAME=jhost\nPRIORITY={}\n\
             SYSLOG_IDENTIFIER=app{}\n_PID={}\n_SYSTEMD_UNIT=u{}.service\n",
            1_000_000 + i,
            i % 8,
            i % 3,
            1000 + i,
            i % 5
        )
        .unwrap();
        let m = message(i);
        input.extend_from_slice(b"MESSAGE\n");
        input.extend_from_slice(&(m.len() as u64).to_le_bytes());
        input.extend_from_slice(&m);
        input.extend_from_slice(b"\n\n");
    }
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    assert!(child.wait().unwrap().success(), "systemd-journal-remote failed");
}

fn config(brokers: &str, dir: &Path, journal: &Path, metrics_port: u16) -> String {
    format!(
        "[kafka]\naddress = {brokers}\n[agent]\ndata_dir = {}\nhost = test-host\ncheckpoint_interval_ms = 200\n\
         [http]\nlisten = 127.0.0.1:{metrics_port}\n[journald]\nenabled = true\ntopic = journal\ndirectory = {}\n",
        dir.join("data").display(),
        journal.display()
    )
}

/// Entry number of a record, from its message.
fn entry_of(v: &[u8]) -> usize {
    let s = String::from_utf8_lossy(v);
    let rest = s.split("entry ").nth(1).unwrap();
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// The document id the transfer gives a record.
fn id_of(r: &Rec) -> String {
    let h: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect();
    let origin = Origin::from_headers(h).expect("agent headers");
    let rec =
        Record { value: &r.value, topic: "journal", partition: 0, offset: 0, timestamp_ms: None, origin: Some(origin) };
    doc_id(&rec).to_string()
}

/// Every entry `0..n` is there with its fields; returns (records, distinct ids).
fn check(recs: &[Rec], n: usize) -> (usize, usize) {
    let mut by_entry: HashMap<usize, Vec<&Rec>> = HashMap::new();
    for r in recs {
        by_entry.entry(entry_of(&r.value)).or_default().push(r);
    }
    let mut ids = HashSet::new();
    for i in 0..n {
        let got = by_entry.get(&i).unwrap_or_else(|| panic!("entry {i} missing ({} records)", recs.len()));
        let first_id = id_of(got[0]);
        for r in got {
            assert_eq!(r.value, message(i), "entry {i}: MESSAGE as bytes");
            assert_eq!(r.header("journal"), "1");
            assert_eq!(r.header("path"), "journal");
            assert_eq!(r.header("host"), "test-host");
            assert_eq!(r.header("unit"), format!("u{}.service", i % 5));
            assert_eq!(r.header("ident"), format!("app{}", i % 3));
            assert_eq!(r.header("pid"), (1000 + i).to_string());
            assert_eq!(r.header("priority"), (i % 8).to_string());
            assert!(r.header("fid").starts_with("journal-"), "{:?}", r.headers);
            assert_eq!(r.timestamp_ms, Some(((T0_US + i as u64 * 1000) / 1000) as i64), "entry {i}: realtime");
            // A replayed entry gets the same id.
            assert_eq!(id_of(r), first_id, "entry {i}: ids of its copies");
        }
        ids.insert(first_id);
    }
    assert_eq!(by_entry.len(), n, "no entry beyond 0..{n}");
    (recs.len(), ids.len())
}

fn metric(port: u16, name: &str) -> Option<u64> {
    let (_, body) = http_get(&format!("http://127.0.0.1:{port}/metrics"));
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '_']))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok().map(|v| v as u64))
}

#[test]
fn journal_entries_reach_kafka_once_each_and_a_kill_9_loses_none() {
    const FIRST: usize = 30_000;
    const MORE: usize = 2_000;
    let kafka = Tansu::start();
    kafka.create_topic("journal", 3);
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    write_journal(&jdir.join("a.journal"), 0, FIRST);
    let port = free_port();
    let mut agent = Agent::start(dir.path(), &config(&kafka.brokers(), dir.path(), &jdir, port));
    // Killed once its first checkpoint is written: entries are in flight.
    let ckpt = dir.path().join("data/journal.json");
    assert!(wait_until(Duration::from_secs(60), || ckpt.exists()), "no journal checkpoint:\n{}", agent.log_text());
    agent.kill9();
    let before = std::fs::read_to_string(&ckpt).unwrap();
    eprintln!("killed with checkpoint {before}");
    agent.restart();
    // The journal grows while the agent follows it: a second file.
    std::thread::sleep(Duration::from_secs(1));
    write_journal(&jdir.join("b.journal"), FIRST, FIRST + MORE);
    let n = FIRST + MORE;
    let recs = consume(&kafka.brokers(), "journal", n, Duration::from_secs(3), Duration::from_secs(120));
    let (records, ids) = check(&recs, n);
    eprintln!("{n} entries: {records} records, {ids} distinct ids, {} duplicates after kill -9", records - n);
    assert_eq!(ids, n, "distinct ids = entries");
    assert!(records < n + FIRST, "more duplicates than the first file: {records}");
    assert!(
        wait_until(Duration::from_secs(10), || metric(port, "logcollect_journal_entries_read").is_some_and(|v| v > 0))
    );
    assert!(agent.log_text().contains("collecting the systemd journal"), "{}", agent.log_text());
    let (code, _) = agent.terminate();
    assert_eq!(code, Some(0), "{}", agent.log_text());
    // A clean stop leaves the checkpoint at the last entry: a start reads nothing again.
    let saved = std::fs::read_to_string(&ckpt).unwrap();
    assert!(saved.contains(&format!("i={:x};", MORE)), "{saved}");
}

#[test]
fn a_vacuumed_cursor_restarts_at_the_oldest_entry_and_counts_the_gap() {
    let kafka = Tansu::start();
    kafka.create_topic("journal", 1);
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    write_journal(&jdir.join("a.journal"), 0, 100);
    let port = free_port();
    let cfg = config(&kafka.brokers(), dir.path(), &jdir, port);
    let mut agent = Agent::start(dir.path(), &cfg);
    let recs = consume(&kafka.brokers(), "journal", 100, Duration::from_secs(1), Duration::from_secs(60));
    assert_eq!(check(&recs, 100), (100, 100));
    let (code, _) = agent.terminate();
    assert_eq!(code, Some(0), "{}", agent.log_text());
    // While the agent is down, the file holding the checkpoint is vacuumed
    // and a new one written.
    std::fs::remove_file(jdir.join("a.journal")).unwrap();
    write_journal(&jdir.join("b.journal"), 100, 150);
    agent.restart();
    let recs = consume(&kafka.brokers(), "journal", 150, Duration::from_secs(2), Duration::from_secs(60));
    assert_eq!(check(&recs, 150), (150, 150), "the new file read from its oldest entry, nothing twice");
    assert!(wait_until(Duration::from_secs(10), || metric(port, "logcollect_journal_gaps") == Some(1)));
    assert!(agent.log_text().contains("no longer holds the checkpoint"), "{}", agent.log_text());
}
