//! Stopping: the signal flag every role runs until, and waits that end as
//! soon as it is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a waiting loop looks at its stop flag: the longest a stop
/// request waits to be noticed.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);

/// A flag SIGTERM and SIGINT set; a second signal exits at once.
pub fn term_flag() -> std::io::Result<Arc<AtomicBool>> {
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, term.clone())?;
        signal_hook::flag::register(sig, term.clone())?;
    }
    Ok(term)
}

/// Whether `stop` is set.
pub fn is_set(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Acquire)
}

/// Blocks until `stop` is set or `done()` is true, looking every
/// [`CHECK_EVERY`]; `tick` runs at each look (periodic chores of the
/// waiting thread: checkpoint saves, reports).
pub fn wait(stop: &AtomicBool, mut done: impl FnMut() -> bool, mut tick: impl FnMut()) {
    while !is_set(stop) && !done() {
        std::thread::sleep(CHECK_EVERY);
        tick();
    }
}

/// What a sleep until `until` does next: `Err(stopped)` when it is over
/// (`stopped`: ended by `stop`), else `Ok(nap)` to sleep before looking again.
fn next_nap(stop: &AtomicBool, until: Instant) -> Result<Duration, bool> {
    if is_set(stop) {
        return Err(true);
    }
    match until.saturating_duration_since(Instant::now()) {
        left if left.is_zero() => Err(false),
        left => Ok(left.min(CHECK_EVERY)),
    }
}

/// Sleeps `d`, or less if `stop` is set meanwhile; returns whether it was.
pub async fn sleep_async(stop: &AtomicBool, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        match next_nap(stop, until) {
            Ok(nap) => tokio::time::sleep(nap).await,
            Err(stopped) => return stopped,
        }
    }
}

/// A chore due every `every`: [`Every::due`] says when.
pub struct Every {
    every: Duration,
    next: Instant,
}

impl Every {
    /// First due one `every` from now.
    pub fn new(every: Duration) -> Self {
        Every { every, next: Instant::now() + every }
    }

    /// True once per `every` (the next time counts from now).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_end_early_on_stop() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        assert!(!rt.block_on(sleep_async(&stop, Duration::from_millis(60))));
        assert!(t.elapsed() >= Duration::from_millis(60));
        stop.store(true, Ordering::Release);
        let t = Instant::now();
        assert!(rt.block_on(sleep_async(&stop, Duration::from_secs(60))));
        assert!(t.elapsed() < Duration::from_secs(1));
        wait(&stop, || false, || panic!("no tick once stopped"));
    }

    #[test]
    fn wait_ends_when_done_and_ticks_meanwhile() {
        let stop = AtomicBool::new(false);
        let mut ticks = 0;
        let mut looks = 0;
        wait(
            &stop,
            || {
                looks += 1;
                looks > 3
            },
            || ticks += 1,
        );
        assert_eq!(ticks, 3);
        let mut e = Every::new(Duration::ZERO);
        assert!(e.due());
    }
}
