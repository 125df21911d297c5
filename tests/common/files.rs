//! Helpers for the file-safety scenarios (`tests/agent_files.rs`): FIFOs,
//! symlinks, a private tmpfs, process exits, metric values.

use super::Agent;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Writes `lines` (each with a newline) to `path`, replacing it.
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// `n` distinct lines tagged `tag`.
pub fn tagged(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} line {i:06}")).collect()
}

/// A tmpfs mounted at a fresh directory (the tests run as root), unmounted
/// on drop: a file system that can be made full or read-only.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`"16m"`) with `options` (`"ro,mode=0700"`).
    pub fn mount(at: &Path, size: &str, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let opts = if options.is_empty() { format!("size={size}") } else { format!("size={size},{options}") };
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(at).status().unwrap();
        assert!(st.success(), "mount tmpfs at {} (the tests run as root)", at.display());
        Tmpfs { dir: at.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Waits for the process to exit by itself; its exit code (`None`: still
/// running at `timeout`, or killed by a signal).
pub fn wait_exit(agent: &mut Agent, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    let child = agent.child.as_mut()?;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            agent.child = None;
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The value of the unlabelled sample `name` on `/metrics` (0 if absent).
pub fn metric(agent: &Agent, name: &str) -> f64 {
    let (_, body) = agent.get("/metrics");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Lines of the process log containing every one of `words`.
pub fn log_lines(agent: &Agent, words: &[&str]) -> usize {
    agent.log_text().lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}
