//! `watch-agent` and `watch-transfer`: wait until the agent or the
//! transfer has everything acknowledged, then measure it.
//!
//! "Acknowledged" is what the agent itself persists: `checkpoints.json` in
//! its data dir, whose `offset` only moves over lines Kafka acknowledged.
//! The file is polled every 20 ms (the agent rewrites it at most every
//! `checkpoint_interval_ms`); when an entry reaches `--offset` (the file
//! size), the agent's CPU time and peak RSS are read from /proc while it is
//! still running, and the wall time is taken from `--t0-ns` (CLOCK_REALTIME
//! ns, `date +%s%N` just before the agent was started).
//!
//! For the transfer, "acknowledged" is the `bulk-sink`'s count: it writes
//! `--done-file` (`done_ns=… first_ns=…`) when the last expected document
//! was answered, and the transfer's CPU and peak RSS are read then.

use crate::{now_ns, procfs, Args};
use std::time::{Duration, Instant};

/// The largest `offset` of any entry, or `None` while the file is missing
/// or unreadable (not written yet). Version 2 keeps the offsets per topic
/// under each file, version 1 on each entry.
fn max_offset(path: &str) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let files = v.get("files")?.as_array()?;
    let topics = files.iter().flat_map(|f| f.get("topics").and_then(|t| t.as_array()).into_iter().flatten());
    files.iter().chain(topics).filter_map(|e| e.get("offset")?.as_u64()).max()
}

/// `watch-agent --pid P --checkpoints FILE --offset N --t0-ns NS [--broker-pid B] [--timeout-s S]`:
/// fails at once if the agent or the broker dies.
pub fn main(args: &Args) -> Result<(), String> {
    let pid = args.req("--pid")?;
    let path = args.req("--checkpoints")?;
    let target: u64 = args.num("--offset", None)?;
    let t0_ns: u128 = args.num("--t0-ns", None)?;
    let timeout = Duration::from_secs(args.num("--timeout-s", Some(900))?);
    let broker = args.opt("--broker-pid");
    let start = Instant::now();
    let mut next_note = Instant::now() + Duration::from_secs(5);
    loop {
        // Sample before looking at the checkpoint, so a dead agent is seen.
        let stat = procfs::read(pid).map_err(|e| format!("agent {pid} is gone? {e}"))?;
        if let Some(b) = broker {
            procfs::read(b).map_err(|e| format!("broker {b} is gone? {e}"))?;
        }
        let offset = max_offset(path);
        if offset.is_some_and(|o| o >= target) {
            let wall_s = (now_ns().saturating_sub(t0_ns)) as f64 / 1e9;
            // Read again: the CPU time up to this moment.
            let end = procfs::read(pid)?;
            println!(
                "RESULT wall_s={wall_s:.3} cpu_s={:.3} hwm_kb={} rss_kb={} offset={}",
                end.cpu_s,
                end.hwm_kb,
                end.rss_kb,
                offset.unwrap_or(0)
            );
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?}: checkpoint offset {offset:?} of {target}"));
        }
        if Instant::now() >= next_note {
            eprintln!(
                "watch-agent: offset {} of {target} ({:.0}%), rss {} MB",
                offset.unwrap_or(0),
                100.0 * offset.unwrap_or(0) as f64 / target.max(1) as f64,
                stat.rss_kb / 1024
            );
            next_note += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `key=value` words of the sink's done file.
fn done_field(text: &str, key: &str) -> Option<u128> {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// `watch-transfer --pid P --done-file F --t0-ns NS [--broker-pid B] [--sink-pid S] [--timeout-s S]`:
/// fails at once if the transfer, the broker or the sink dies.
pub fn transfer(args: &Args) -> Result<(), String> {
    let pid = args.req("--pid")?;
    let path = args.req("--done-file")?;
    let t0_ns: u128 = args.num("--t0-ns", None)?;
    let timeout = Duration::from_secs(args.num("--timeout-s", Some(900))?);
    let others: Vec<(&str, &str)> = [("broker", args.opt("--broker-pid")), ("sink", args.opt("--sink-pid"))]
        .into_iter()
        .filter_map(|(what, p)| Some((what, p?)))
        .collect();
    let start = Instant::now();
    let mut next_note = Instant::now() + Duration::from_secs(5);
    loop {
        procfs::read(pid).map_err(|e| format!("transfer {pid} is gone? {e}"))?;
        for (what, p) in &others {
            procfs::read(p).map_err(|e| format!("{what} {p} is gone? {e}"))?;
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            let end = procfs::read(pid)?;
            let done_ns = done_field(&text, "done_ns").ok_or_else(|| format!("{path}: no done_ns in {text:?}"))?;
            println!(
                "RESULT wall_s={:.3} cpu_s={:.3} hwm_kb={} rss_kb={} done_ns={done_ns} first_ns={}",
                done_ns.saturating_sub(t0_ns) as f64 / 1e9,
                end.cpu_s,
                end.hwm_kb,
                end.rss_kb,
                done_field(&text, "first_ns").unwrap_or(0)
            );
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {path}"));
        }
        if Instant::now() >= next_note {
            let s = procfs::read(pid)?;
            eprintln!(
                "watch-transfer: {:.0}s, cpu {:.1}s, rss {} MB",
                start.elapsed().as_secs_f64(),
                s.cpu_s,
                s.rss_kb / 1024
            );
            next_note += Duration::from_secs(5);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
