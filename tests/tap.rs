//! End-to-end scenarios for `logcollect tap`: what it prints is what the
//! agent ships to a real Kafka-compatible broker (Tansu), record for record
//! and header for header, without moving a checkpoint.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `logcollect tap --config <dir>/config.ini` with `args`: exit
/// status, stdout lines, stderr.
fn tap(dir: &Path, args: &[&str]) -> (i32, Vec<String>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .args(["tap", "--config"])
        .arg(dir.join("config.ini"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (
        out.status.code().unwrap_or(-1),
        stdout.lines().map(String::from).collect(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// (value, headers) of each printed record.
fn printed(lines: &[String]) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let headers: HashMap<String, String> = v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().into()))
                .collect();
            assert_eq!(v["key"], headers["fid"], "the key is the file identity");
            let value = match v.get("value_base64") {
                Some(b) => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.decode(b.as_str().unwrap()).unwrap()
                }
                None => v["value"].as_str().unwrap().as_bytes().to_vec(),
            };
            (value, headers)
        })
        .collect()
}

#[test]
fn tap_prints_exactly_what_the_agent_ships_and_moves_no_checkpoint() {
    let kafka = Tansu::start();
    kafka.create_topic("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append_lines(&log, 0, 0, 200);
    // A line past max_line_bytes (split in parts), invalid UTF-8, a CR.
    let mut odd = vec![b'x'; 2500];
    odd.extend_from_slice(b"\nbad \xff\xfe bytes\nwindows\r\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .map(|mut f| std::io::Write::write_all(&mut f, &odd))
        .unwrap()
        .unwrap();
    let collect = format!("app = {}", log.display());
    let config = agent_config(&kafka.brokers(), dir.path(), "max_line_bytes = 1024", &collect);
    std::fs::write(dir.path().join("config.ini"), &config).unwrap();

    let (code, lines, stderr) = tap(dir.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("205 records from 1 files"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "tap writes nothing under data_dir");
    let mut tapped = printed(&lines);

    let mut agent = Agent::start(dir.path(), &config);
    let shipped = consume(&kafka.brokers(), "app", 205, Duration::from_secs(1), Duration::from_secs(30));
    assert_eq!(agent.terminate().0, Some(0));
    let mut shipped: Vec<(Vec<u8>, HashMap<String, String>)> =
        shipped.into_iter().map(|r| (r.value, r.headers)).collect();
    let by_offset = |v: &(Vec<u8>, HashMap<String, String>)| {
        (v.1["offset"].parse::<u64>().unwrap(), v.1.get("split").cloned().unwrap_or_default())
    };
    tapped.sort_by_key(by_offset);
    shipped.sort_by_key(by_offset);
    assert_eq!(tapped.len(), shipped.len());
    for (t, s) in tapped.iter().zip(&shipped) {
        assert_eq!(t, s, "offset {}", t.1["offset"]);
    }
    assert_eq!(tapped.iter().filter(|t| t.1.contains_key("split")).count(), 3, "2,500 bytes in 1,024-byte parts");

    // From a byte offset, a limit, and documents.
    let offset = shipped[100].1["offset"].clone();
    let (code, lines, _) = tap(dir.path(), &["--from", &offset, "--limit", "3"]);
    assert_eq!(code, 0);
    let from: Vec<_> = printed(&lines);
    assert_eq!(from.len(), 3);
    assert_eq!(from[0], shipped[100]);
    let (code, lines, _) = tap(dir.path(), &["--documents", "--limit", "1"]);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2, "an action line and a document");
    let action: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(action["create"]["_index"], "app");
    let doc: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(doc["message"], String::from_utf8(shipped[0].0.clone()).unwrap());
    assert_eq!(doc["log"]["offset"], 0);
    assert_eq!(doc["host"]["name"], "test-host");
}

#[test]
fn tap_names_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.ini"), "[agent]\ndata_dir = ./data\n[collect]\n").unwrap();
    let (code, _, stderr) = tap(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("[collect] is empty"), "{stderr}");
    let fifo = dir.path().join("pipe.log");
    assert_eq!(unsafe { libc::mkfifo(std::ffi::CString::new(fifo.to_str().unwrap()).unwrap().as_ptr(), 0o600) }, 0);
    let (code, lines, stderr) = tap(dir.path(), &["--path", fifo.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(lines.is_empty());
    assert!(stderr.contains("a FIFO, not a regular file") && stderr.contains("pipe.log"), "{stderr}");
    let (code, _, stderr) = tap(dir.path(), &["--path", "x", "--from", "middle"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"middle\" is not beginning, end or a byte offset"), "{stderr}");
}
