//! Whether a store (the checkpoint file, the embedded index's commits)
//! can be written: failures counted for `/metrics`, and the last one kept
//! while it lasts for `/health/ready`. Touched once per write attempt,
//! never on the hot path.

use crate::common::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Failed writes so far, and the error of the last attempt if it failed.
#[derive(Debug, Default)]
pub struct WriteHealth {
    errors_total: AtomicU64,
    /// `Some(message)` from a failed attempt until one succeeds.
    failing: Mutex<Option<String>>,
}

impl WriteHealth {
    /// A write succeeded: whatever failed before is over.
    pub fn ok(&self) {
        let mut f = lock(&self.failing);
        if f.take().is_some() {
            tracing::info!("writing works again");
        }
    }

    /// A write failed with `message` (which names what was written).
    pub fn failed(&self, message: String) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.failing) = Some(message);
    }

    /// Failed writes since the start (monotonic).
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }

    /// The last error while writes fail; `None` once one succeeded.
    pub fn failing(&self) -> Option<String> {
        lock(&self.failing).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_and_last_until_a_success() {
        let h = WriteHealth::default();
        assert_eq!((h.errors_total(), h.failing()), (0, None));
        h.failed("a: disk full".into());
        h.failed("b: disk full".into());
        assert_eq!((h.errors_total(), h.failing().as_deref()), (2, Some("b: disk full")));
        h.ok();
        assert_eq!((h.errors_total(), h.failing()), (2, None));
    }
}
