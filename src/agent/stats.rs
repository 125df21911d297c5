//! The agent's counters: plain relaxed atomics, added to per batch (not per
//! line) on the hot path; no locks, no formatting. Observability reads them
//! at scrape time; the agent also logs a summary of them.

use crate::common::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The agent's counters. Each is monotonic unless its doc says otherwise.
#[derive(Debug, Default)]
pub struct Stats {
    pub bytes_read: AtomicU64,
    /// Lines handed to the next stage (parts of cut lines count one each;
    /// with `multiline`, an event counts one, each of its parts one).
    pub lines_read: AtomicU64,
    /// Lines the next stage acknowledged.
    pub lines_acked: AtomicU64,
    /// Lines the next stage rejected for good.
    pub lines_failed: AtomicU64,
    /// Parts of lines longer than `max_line_bytes` (split or truncated).
    pub lines_cut: AtomicU64,
    /// Records the broker refused for their size and that were cut in two
    /// (each half then counts in `lines_read`).
    pub records_recut: AtomicU64,
    /// Unfinished last lines shipped after the idle timeout.
    pub lines_partial: AtomicU64,
    /// Multiline events of more than one line shipped (whole or in parts).
    pub multiline_events: AtomicU64,
    /// Records that are a part of a multiline event cut at
    /// `multiline_max_lines` / `multiline_max_bytes`.
    pub multiline_parts: AtomicU64,
    pub rotations: AtomicU64,
    pub truncations: AtomicU64,
    /// Files found by a glob and refused (a symlink, a FIFO, outside
    /// `allowed_paths`, ...), counted each time the refusal is reported.
    pub files_refused: AtomicU64,
    /// Files found that wait for a reader because `max_open_files` readers
    /// run (goes up and down; as of the last scan).
    pub files_waiting: AtomicU64,
    /// Files closed for inactivity or to make room, to be reopened from
    /// their checkpoint when they grow.
    pub files_closed_idle: AtomicU64,
    /// Readers running now (goes up and down).
    pub files_open: AtomicU64,
    /// Files renamed out of their glob with unread bytes (while the agent
    /// ran or while it was down) found again by identity and read to
    /// their end.
    pub files_finished: AtomicU64,
    /// Bytes that can no longer be read: their file was deleted, truncated
    /// or replaced before they were (each also logged with its path and
    /// offsets).
    pub lost_bytes: AtomicU64,
    /// `lost_bytes` by path, at most [`LOST_PATHS_MAX`] paths (the rest
    /// under [`LOST_OTHER`]). Written only when bytes are lost: rare.
    pub lost_by_path: Mutex<BTreeMap<String, u64>>,
    /// From a batch being read to Kafka acknowledging its last line.
    pub delivery_latency: Histogram,
}

/// Most paths [`Stats::lost_by_path`] names.
pub const LOST_PATHS_MAX: usize = 1000;
/// Where lost bytes of further paths are counted.
pub const LOST_OTHER: &str = "(other paths)";

impl Stats {
    /// Counts `bytes` of `path` that can no longer be read.
    pub fn lost(&self, path: &str, bytes: u64) {
        self.lost_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut by = self.lost_by_path.lock().unwrap_or_else(|e| e.into_inner());
        let key = if by.contains_key(path) || by.len() < LOST_PATHS_MAX { path } else { LOST_OTHER };
        *by.entry(key.to_string()).or_default() += bytes;
    }

    /// `lost_bytes` by path, sorted.
    pub fn lost_paths(&self) -> Vec<(String, u64)> {
        let by = self.lost_by_path.lock().unwrap_or_else(|e| e.into_inner());
        by.iter().map(|(p, n)| (p.clone(), *n)).collect()
    }

    /// The counters `/api/status` shows and the agent logs at exit, by name.
    pub fn totals(&self) -> [(&'static str, u64); 9] {
        let g = Stats::get;
        [
            ("bytes_read", g(&self.bytes_read)),
            ("lines_read", g(&self.lines_read)),
            ("lines_acked", g(&self.lines_acked)),
            ("lines_failed", g(&self.lines_failed)),
            ("lines_cut", g(&self.lines_cut)),
            ("files_open", g(&self.files_open)),
            ("files_waiting", g(&self.files_waiting)),
            ("files_finished", g(&self.files_finished)),
            ("lost_bytes", g(&self.lost_bytes)),
        ]
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
