//! Exponential backoff with jitter, the one retry pace of every stage.

use std::time::Duration;

/// Waits that double from `min` up to `max`, each spread by ±25 % so that
/// many workers or agents retrying the same server do not do so in
/// lockstep. [`Backoff::reset`] after a success starts again at `min`.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The next wait before jitter; always within `min..=max`.
    current: Duration,
}

impl Backoff {
    /// From `min` up to `max` (`max` below `min` counts as `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max: max.max(min), current: min }
    }

    /// The wait before the next attempt; the one after it is twice as long
    /// (up to `max`).
    pub fn next_wait(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        jitter(d)
    }

    /// The next wait without jitter and without moving on (for messages).
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// Back to `min`, after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// `d` ± 25 %. The spread comes from the clock's nanoseconds: retries need
/// decorrelation, not randomness of quality.
pub fn jitter(d: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.subsec_nanos()).unwrap_or(0);
    let f = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(100 * MS, 500 * MS);
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(b.peek());
            let w = b.next_wait();
            let base = *seen.last().unwrap();
            assert!(w >= base.mul_f64(0.75) && w <= base.mul_f64(1.25), "{w:?} around {base:?}");
        }
        assert_eq!(seen, [100 * MS, 200 * MS, 400 * MS, 500 * MS, 500 * MS]);
        b.reset();
        assert_eq!(b.peek(), 100 * MS);
        assert_eq!(Backoff::new(100 * MS, MS).peek(), 100 * MS);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_millis(1000);
        for _ in 0..100 {
            let j = jitter(d);
            assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250));
        }
    }
}
