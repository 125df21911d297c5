//! CPU time and memory of a process, from /proc (Linux only).

use crate::Args;
use std::fs;

/// What one look at /proc/PID says.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    /// utime + stime, in seconds (all threads, this process only).
    pub cpu_s: f64,
    /// VmHWM: peak resident set size, in KiB.
    pub hwm_kb: u64,
    /// VmRSS: current resident set size, in KiB.
    pub rss_kb: u64,
}

/// `pid` is a number or "self".
pub fn read(pid: &str) -> Result<ProcStat, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'. Field 3 (state) is index 0 after it,
    // so utime (field 14) is index 11 and stime (field 15) index 12.
    let after =
        stat.rfind(')').map(|i| &stat[i + 1..]).ok_or_else(|| format!("/proc/{pid}/stat: no ')' in {stat:?}"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        f.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| format!("/proc/{pid}/stat: bad field {}", i + 3))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = (ticks(11)? + ticks(12)?) as f64 / hz;

    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStat { cpu_s, hwm_kb: kb("VmHWM"), rss_kb: kb("VmRSS") })
}

/// `proc-stat --pid P`: one RESULT line (used for the broker's CPU).
pub fn main(args: &Args) -> Result<(), String> {
    let pid = args.req("--pid")?;
    let s = read(pid)?;
    println!("RESULT cpu_s={:.3} hwm_kb={} rss_kb={}", s.cpu_s, s.hwm_kb, s.rss_kb);
    Ok(())
}
