//! Wake: unparks a reader the moment its file changes, so idle readers can
//! sleep long instead of polling.
//!
//! One inotify instance and one small thread serve every reader. A reader
//! registers the file it has open (through `/proc/self/fd/N`, so the watch
//! is on the very inode it reads even if the path was renamed or replaced a
//! moment ago); writes, truncation, renames and unlinks (`IN_MODIFY`,
//! `IN_ATTRIB`, `IN_MOVE_SELF`, ...) unpark its thread. Readers still wake on
//! a timer as a safety net, for file systems where inotify says nothing
//! (NFS, FUSE); without inotify at all (no instance, or `max_user_watches`
//! reached) they fall back to plain polling, logged once.

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, Thread};

/// Readers waiting on each watched inode (several readers may share one:
/// the same file under two topics).
type Waiters = HashMap<WatchDescriptor, Vec<(u64, Thread)>>;

/// The shared inotify instance.
pub struct Wake {
    watches: Mutex<Watches>,
    waiters: Arc<Mutex<Waiters>>,
    next_id: Mutex<u64>,
    /// Set once a watch could not be added (limit reached): said once.
    warned: AtomicBool,
}

/// A reader's registration; dropping it removes the watch (when it was the
/// last reader of that inode).
pub struct Registration {
    wake: Arc<Wake>,
    wd: WatchDescriptor,
    id: u64,
}

impl Wake {
    /// Starts the inotify thread. `None` when inotify is unavailable: the
    /// readers then poll.
    pub fn start() -> Option<Arc<Wake>> {
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("inotify unavailable ({e}): idle files are polled");
                return None;
            }
        };
        let waiters: Arc<Mutex<Waiters>> = Arc::default();
        let wake = Arc::new(Wake {
            watches: Mutex::new(inotify.watches()),
            waiters: waiters.clone(),
            next_id: Mutex::new(0),
            warned: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&waiters);
        let spawned = thread::Builder::new().name("wake".into()).stack_size(64 << 10).spawn(move || run(inotify, weak));
        match spawned {
            Ok(_) => Some(wake),
            Err(e) => {
                tracing::warn!("cannot start the inotify thread ({e}): idle files are polled");
                None
            }
        }
    }

    /// Unparks the calling thread whenever `file` changes. `None` when the
    /// watch cannot be added; the caller then polls.
    pub fn register(self: &Arc<Wake>, file: &File) -> Option<Registration> {
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mask = WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVE_SELF
            | WatchMask::DELETE_SELF;
        let wd = match lock(&self.watches).add(&fd_path, mask) {
            Ok(wd) => wd,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "inotify watch failed ({e}; see fs.inotify.max_user_watches): such files are polled"
                    );
                }
                return None;
            }
        };
        let id = {
            let mut n = lock(&self.next_id);
            *n += 1;
            *n
        };
        lock(&self.waiters).entry(wd.clone()).or_default().push((id, thread::current()));
        Some(Registration { wake: self.clone(), wd, id })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiters = lock(&self.wake.waiters);
        let Some(list) = waiters.get_mut(&self.wd) else { return };
        list.retain(|(id, _)| *id != self.id);
        if list.is_empty() {
            waiters.remove(&self.wd);
            // The inode may be gone already (its watch removed by the kernel).
            let _ = lock(&self.wake.watches).remove(self.wd.clone());
        }
    }
}

/// The inotify thread: waits for events (a second at most, to notice that
/// the `Wake` is gone) and unparks the readers of every changed inode.
fn run(mut inotify: Inotify, waiters: Weak<Mutex<Waiters>>) {
    let mut buf = vec![0u8; 16 << 10];
    let fd = inotify.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, owned by this frame.
        let ready = unsafe { libc::poll(&mut pfd, 1, 1000) };
        let Some(waiters) = waiters.upgrade() else { return };
        if ready <= 0 {
            continue;
        }
        let events = match inotify.read_events(&mut buf) {
            Ok(ev) => ev,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!("inotify read failed ({e}): idle files are polled from now on");
                return;
            }
        };
        let w = lock(&waiters);
        for ev in events {
            if let Some(list) = w.get(&ev.wd) {
                for (_, t) in list {
                    t.unpark();
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    /// Parks until unparked or `limit`; returns how long it took.
    fn park_for(limit: Duration) -> Duration {
        let t = Instant::now();
        thread::park_timeout(limit);
        t.elapsed()
    }

    #[test]
    fn a_write_a_rename_and_an_unlink_each_wake_the_reader() {
        let Some(wake) = Wake::start() else { panic!("inotify is available on Linux") };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let w = File::create(&path).unwrap();
        let r = File::open(&path).unwrap();
        let reg = wake.register(&r).expect("watch added");
        // Drain a wakeup token left by anything earlier.
        thread::park_timeout(Duration::from_millis(10));
        type Action<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let actions: [Action<'_>; 3] = [
            ("write", Box::new(|| (&w).write_all(b"x\n").unwrap())),
            ("rename", Box::new(|| std::fs::rename(&path, dir.path().join("f.log.1")).unwrap())),
            ("unlink", Box::new(|| std::fs::remove_file(dir.path().join("f.log.1")).unwrap())),
        ];
        for (what, act) in actions.iter() {
            act();
            let took = park_for(Duration::from_secs(5));
            assert!(took < Duration::from_secs(2), "{what} did not wake the reader ({took:?})");
            // Several events may come of one action: let them all arrive.
            thread::sleep(Duration::from_millis(50));
            thread::park_timeout(Duration::from_millis(1));
        }
        drop(reg);
        assert!(lock(&wake.waiters).is_empty());
    }

    #[test]
    fn two_readers_of_one_inode_share_the_watch() {
        let wake = Wake::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        File::create(&path).unwrap();
        let (a, b) = (File::open(&path).unwrap(), File::open(&path).unwrap());
        let ra = wake.register(&a).unwrap();
        let rb = wake.register(&b).unwrap();
        assert_eq!(lock(&wake.waiters).len(), 1);
        drop(ra);
        assert_eq!(lock(&wake.waiters).values().next().unwrap().len(), 1, "b still watched");
        drop(rb);
        assert!(lock(&wake.waiters).is_empty());
    }
}
