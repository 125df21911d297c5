//! `logcollect status`: what `top` is to processes, for a running
//! logcollect. It polls the process's `/api/status` ([`crate::observe`])
//! and redraws a compact table in place: one row per file (agent) and per
//! partition (transfer), with throughput computed between two polls and
//! how far behind each one is.
//!
//! [`render`] is a pure function of two snapshots, so the layout is tested
//! without a terminal.

use crate::common::text::printable;
use crate::observe::{FileRow, Status};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// How `logcollect status` reaches a server that asks for TLS and
/// credentials (`[http] tls_*`, `users`, `tokens`).
#[derive(Clone, Debug, Default)]
pub struct StatusAccess {
    /// PEM CA that verifies an `https://` server (replaces the built-in
    /// roots, as `[es] ca_file` does).
    pub ca_file: Option<std::path::PathBuf>,
    /// A bearer token (`[http] tokens`).
    pub token: Option<String>,
    /// A user and password (`[http] users`).
    pub user: Option<(String, String)>,
}

impl StatusAccess {
    /// The HTTP client: 5 s timeout, no idle connections kept, the CA if
    /// one is given.
    fn client(&self) -> Result<reqwest::Client, String> {
        // A fresh connection per poll: a server closes idle keep-alive
        // connections after its header timeout, which may be shorter than
        // the poll interval, and reusing one it is closing fails the poll.
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0);
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("--ca-file {}: {e}", ca.display()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("--ca-file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("--ca-file {}: no PEM certificate in the file", ca.display()));
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        b.build().map_err(|e| e.to_string())
    }

    /// `req` with the credentials, if any.
    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.token, &self.user) {
            (Some(t), _) => req.bearer_auth(t),
            (None, Some((u, p))) => req.basic_auth(u, Some(p)),
            (None, None) => req,
        }
    }
}

/// `e` and its causes, `: `-separated (reqwest's own message names only
/// the URL; the cause says what failed: refused, certificate, …).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Polls `addr` every `interval` and redraws; with `once`, prints one
/// table (after two polls, so rates are known) and returns.
pub fn run(addr: &str, interval: Duration, once: bool, access: &StatusAccess) -> Result<(), String> {
    let base = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
    let url = format!("{}/api/status", base.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let http = access.client()?;
    let fetch = || -> Result<Status, String> {
        rt.block_on(async {
            let resp = access.authorize(http.get(&url)).send().await.map_err(|e| format!("{url}: {}", chain(&e)))?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(format!(
                    "{url}: HTTP 401: the server asks for credentials (--token-file or LOGCOLLECT_TOKEN, or --user with LOGCOLLECT_PASSWORD)"
                ));
            }
            if !resp.status().is_success() {
                return Err(format!("{url}: HTTP {}", resp.status()));
            }
            let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not a logcollect status: {e}"))
        })
    };
    let mut prev: Option<(Instant, Status)> = None;
    let mut stdout = std::io::stdout();
    if !once {
        let _ = crossterm::execute!(stdout, crossterm::terminal::Clear(crossterm::terminal::ClearType::All));
    }
    loop {
        let now = Instant::now();
        let cur = match fetch() {
            Ok(s) => s,
            Err(e) if once || prev.is_none() => return Err(e),
            Err(e) => {
                // Keep the last table; say why it is not refreshing.
                let _ = writeln!(stdout, "\r{e}");
                std::thread::sleep(interval);
                continue;
            }
        };
        let width = crossterm::terminal::size().map(|(w, _)| w as usize).unwrap_or(120);
        let table = render(prev.as_ref().map(|(t, s)| (now.duration_since(*t).as_secs_f64(), s)), &cur, &base, width);
        if once {
            if prev.is_some() {
                print!("{table}");
                return Ok(());
            }
        } else {
            // Redraw in place: home, the table, clear what the last one left.
            let _ = crossterm::execute!(stdout, crossterm::cursor::MoveTo(0, 0));
            let _ = write!(stdout, "{}", table.replace('\n', "\x1b[K\n"));
            let _ =
                crossterm::execute!(stdout, crossterm::terminal::Clear(crossterm::terminal::ClearType::FromCursorDown));
            let _ = stdout.flush();
        }
        prev = Some((now, cur));
        std::thread::sleep(if once { Duration::from_millis(1000).min(interval) } else { interval });
    }
}

/// The table for snapshot `cur`; `prev` (seconds before, snapshot) gives rates.
pub fn render(prev: Option<(f64, &Status)>, cur: &Status, addr: &str, width: usize) -> String {
    let mut out = String::new();
    let state = if cur.ready {
        "ready".to_string()
    } else {
        format!("NOT READY: {}", printable(&cur.problems.join("; "), false))
    };
    let _ = writeln!(
        out,
        "logcollect {} {} at {addr}, up {}, {state}",
        cur.role,
        cur.version,
        duration(cur.uptime_seconds)
    );
    let rate = |name: &str| -> Option<f64> {
        let (dt, p) = prev?;
        let (a, b) = (p.totals.get(name)?, cur.totals.get(name)?);
        (dt > 0.0).then(|| b.saturating_sub(*a) as f64 / dt)
    };
    let mut totals = String::new();
    for (name, v) in &cur.totals {
        let r = rate(name).filter(|r| *r > 0.0).map(|r| format!(" ({}/s)", count(r))).unwrap_or_default();
        let _ = write!(totals, "{name} {}{r}  ", count(*v as f64));
    }
    for line in wrap(totals.trim_end(), width) {
        let _ = writeln!(out, "{line}");
    }
    if !cur.files.is_empty() {
        let prev_files: HashMap<(&str, &str), &FileRow> = prev
            .map(|(_, p)| p.files.iter().map(|f| ((f.path.as_str(), f.topic.as_str()), f)).collect())
            .unwrap_or_default();
        let dt = prev.map(|(dt, _)| dt).unwrap_or(0.0);
        let _ = writeln!(out);
        let mut rows = vec![["PATH", "TOPIC", "READ/s", "LINES/s", "BEHIND", "IDLE", "ROT"].map(String::from)];
        for f in &cur.files {
            let before = prev_files.get(&(f.path.as_str(), f.topic.as_str()));
            let per_s = |a: u64, b: Option<u64>| match b {
                Some(b) if dt > 0.0 => a.saturating_sub(b) as f64 / dt,
                _ => 0.0,
            };
            rows.push([
                printable(&f.path, false).into_owned(),
                printable(&f.topic, false).into_owned(),
                bytes(per_s(f.read_bytes, before.map(|b| b.read_bytes))),
                count(per_s(f.shipped_lines, before.map(|b| b.shipped_lines))),
                bytes(f.behind_bytes as f64),
                f.idle_seconds.map(duration).unwrap_or_else(|| "-".into()),
                f.rotations.to_string(),
            ]);
        }
        table(&mut out, &rows, width);
    }
    if !cur.partitions.is_empty() {
        let _ = writeln!(out);
        let mut rows = vec![["TOPIC", "PARTITION", "LAG", "COMMITTED", "HIGH"].map(String::from)];
        for p in &cur.partitions {
            rows.push([
                printable(&p.topic, false).into_owned(),
                p.partition.to_string(),
                count(p.lag as f64),
                p.committed_offset.to_string(),
                p.high_watermark.to_string(),
            ]);
        }
        table(&mut out, &rows, width);
    }
    out
}

/// Left-aligned columns; the first column is cut from the left (paths
/// keep their file name) when the table is wider than `width`.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]], width: usize) {
    let mut w = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let rest: usize = w[1..].iter().map(|x| x + 2).sum();
    w[0] = w[0].min(width.saturating_sub(rest).max(12));
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let n = c.chars().count();
            let cell: String = if n > w[i] {
                let skip = n - w[i] + 1;
                format!("…{}", c.chars().skip(skip).collect::<String>())
            } else {
                c.clone()
            };
            let _ = write!(line, "{cell:<width$}  ", width = w[i]);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for part in text.split("  ") {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + part.len() + 2 > width {
            lines.push(part.to_string());
        } else {
            if !last.is_empty() {
                last.push_str("  ");
            }
            last.push_str(part);
        }
    }
    lines
}

/// 1234567 -> "1.2M".
fn count(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.1}k", v / 1e3),
        v if v.fract() == 0.0 => format!("{v}"),
        v => format!("{v:.1}"),
    }
}

fn bytes(v: f64) -> String {
    match v {
        v if v >= (1u64 << 30) as f64 => format!("{:.1} GiB", v / (1u64 << 30) as f64),
        v if v >= (1 << 20) as f64 => format!("{:.1} MiB", v / (1 << 20) as f64),
        v if v >= (1 << 10) as f64 => format!("{:.1} KiB", v / (1 << 10) as f64),
        v => format!("{v:.0} B"),
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    match s {
        s if s < 60.0 => format!("{s:.1}s"),
        s if s < 3600.0 => format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
        s if s < 86400.0 => format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64),
        s => format!("{}d{:02}h", (s / 86400.0) as u64, ((s % 86400.0) / 3600.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::PartitionRow;

    fn snapshot(read: u64, lines: u64) -> Status {
        Status {
            role: "agent".into(),
            version: "0.1.0".into(),
            uptime_seconds: 3725.0,
            files: vec![FileRow {
                path: "/var/log/nginx/access.log".into(),
                topic: "web".into(),
                read_bytes: read,
                shipped_lines: lines,
                behind_bytes: 2048,
                idle_seconds: Some(0.25),
                rotations: 1,
                at_risk_bytes: 0,
            }],
            partitions: vec![PartitionRow {
                topic: "web".into(),
                partition: 2,
                lag: 15_000,
                committed_offset: 100,
                high_watermark: 15_100,
            }],
            totals: [("lines_acked".to_string(), lines)].into_iter().collect(),
            lost_bytes: Default::default(),
            ready: true,
            problems: vec![],
        }
    }

    #[test]
    fn rates_come_from_two_snapshots() {
        let a = snapshot(0, 0);
        let b = snapshot(2 << 20, 20_000);
        let text = render(Some((2.0, &a)), &b, "http://h:8080", 120);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "logcollect agent 0.1.0 at http://h:8080, up 1h02m, ready");
        assert_eq!(lines[1], "lines_acked 20.0k (10.0k/s)");
        assert!(lines[3].starts_with("PATH") && lines[3].contains("LINES/s"), "{text}");
        let row = lines[4];
        for cell in ["/var/log/nginx/access.log", "web", "1.0 MiB", "10.0k", "2.0 KiB", "0.2s", "1"] {
            assert!(row.contains(cell), "{cell:?} not in {row:?}");
        }
        assert!(lines[7].starts_with("web") && lines[7].contains("15.0k"), "{text}");
    }

    #[test]
    fn narrow_terminals_cut_paths_from_the_left_and_problems_show() {
        let mut s = snapshot(0, 0);
        s.ready = false;
        s.problems = vec!["kafka producer: no broker up".into()];
        let text = render(None, &s, "h", 50);
        assert!(text.lines().next().unwrap().ends_with("NOT READY: kafka producer: no broker up"));
        let row = text.lines().find(|l| l.contains("access.log")).unwrap();
        assert!(row.starts_with('…'), "{row:?}");
        assert!(row.chars().count() <= 60, "{row:?}");
    }

    #[test]
    fn units() {
        let table = [(0.0, "0"), (999.0, "999"), (12_345.0, "12.3k"), (2.5e6, "2.5M"), (3e9, "3.0G"), (1.5, "1.5")];
        for (v, want) in table {
            assert_eq!(count(v), want);
        }
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(duration(59.0), "59.0s");
        assert_eq!(duration(90061.0), "1d01h");
    }
}
