//! Small things every stage uses: the clock, the acknowledgement protocol,
//! atomic file writes, retry backoff, shutdown, latency histograms, locks.

pub mod ack;
pub mod atomic_file;
pub mod backoff;
pub mod clock;
pub mod fs;
pub mod histogram;
pub mod shutdown;
pub mod sync;
pub mod text;
pub mod totals;
pub mod write_health;
