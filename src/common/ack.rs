//! Acknowledgements: how a stage learns its records were taken by the next.
//!
//! A [`BatchAck`] counts one group of records down as the next stage
//! acknowledges them. A [`Progress`] keeps a source's groups in order (a
//! file's batches, a Kafka partition's requests); the position it reports may
//! move to the end of a group only when it and every group before it are
//! fully acknowledged, so acknowledgements arriving out of order never move
//! it past a gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counts a batch's lines down as the sink acknowledges them.
#[derive(Debug)]
pub struct BatchAck {
    remaining: AtomicU32,
    /// Lines in the batch.
    lines: u32,
    failed: AtomicBool,
    /// When the batch was read (ms since the epoch; 0: unknown), for the
    /// delivery latency.
    read_ms: i64,
}

impl BatchAck {
    pub fn new(lines: usize) -> Self {
        BatchAck::read_at(lines, 0)
    }

    /// A batch of `lines` read at `read_ms`.
    pub fn read_at(lines: usize, read_ms: i64) -> Self {
        BatchAck {
            remaining: AtomicU32::new(lines as u32),
            lines: lines as u32,
            failed: AtomicBool::new(false),
            read_ms,
        }
    }

    /// One line was stored by the next stage. True when that was the last
    /// line of the batch.
    pub fn ack(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// `n` lines were stored at once. True when they were the last.
    pub fn ack_many(&self, n: u32) -> bool {
        n > 0 && self.remaining.fetch_sub(n, Ordering::AcqRel) == n
    }

    /// `n` more records to wait for: a record was cut into `n + 1`.
    pub fn grow(&self, n: u32) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    pub fn lines(&self) -> u32 {
        self.lines
    }

    pub fn read_ms(&self) -> i64 {
        self.read_ms
    }

    /// One line was rejected for good: the checkpoint must not pass it.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn is_done(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// A file's batches in flight, oldest first, and the offset they confirm.
#[derive(Debug)]
pub struct Progress {
    /// (acknowledgement, file offset just past the batch), in read order.
    inflight: Mutex<VecDeque<(Arc<BatchAck>, u64)>>,
    /// Every byte before this offset has been acknowledged. Never moves past
    /// a line that was rejected for good.
    committed: AtomicU64,
    /// Set once a line was rejected for good: `committed` stays where it is.
    held: AtomicBool,
    /// Where the next reader of this file continues (set by a reader that
    /// stops; lines before it are in flight or acknowledged).
    resume: AtomicU64,
    /// Lines of completed batches (acknowledged, or rejected for good).
    done_lines: AtomicU64,
}

impl Progress {
    pub fn new(committed: u64) -> Self {
        Progress {
            inflight: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(committed),
            held: AtomicBool::new(false),
            resume: AtomicU64::new(committed),
            done_lines: AtomicU64::new(0),
        }
    }

    /// Registers a batch ending at `end`, before it is handed to the sink.
    pub fn push(&self, ack: Arc<BatchAck>, end: u64) {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).push_back((ack, end));
    }

    /// Pops every leading batch that is complete and returns the committed
    /// offset. A failed batch pins the offset at its start for good (the
    /// lines after it are still shipped, and shipped again after a restart).
    pub fn advance(&self) -> u64 {
        let mut q = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((ack, end)) = q.front() {
            if !ack.is_done() {
                break;
            }
            if ack.is_failed() {
                self.held.store(true, Ordering::Release);
            }
            if !self.held.load(Ordering::Acquire) {
                self.committed.store(*end, Ordering::Release);
            }
            self.done_lines.fetch_add(u64::from(ack.lines()), Ordering::Relaxed);
            q.pop_front();
        }
        self.committed.load(Ordering::Acquire)
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Lines of the batches [`Progress::advance`] found complete so far.
    pub fn done_lines(&self) -> u64 {
        self.done_lines.load(Ordering::Relaxed)
    }

    /// True when a line was rejected for good and the checkpoint is pinned.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Batches not yet fully acknowledged (after the last `advance`).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn set_resume(&self, offset: u64) {
        self.resume.store(offset, Ordering::Release);
    }

    pub fn resume(&self) -> u64 {
        self.resume.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(n: usize) -> Vec<Arc<BatchAck>> {
        (0..n).map(|_| Arc::new(BatchAck::new(2))).collect()
    }

    #[test]
    fn commits_only_a_contiguous_acknowledged_prefix() {
        let p = Progress::new(0);
        let a = acks(3);
        for (i, ack) in a.iter().enumerate() {
            p.push(ack.clone(), (i as u64 + 1) * 100);
        }
        assert_eq!(p.advance(), 0);
        // the last batch completes first: nothing moves
        a[2].ack_many(2);
        assert_eq!(p.advance(), 0);
        a[0].ack();
        assert_eq!(p.advance(), 0);
        a[0].ack();
        assert_eq!(p.advance(), 100);
        a[1].ack_many(2);
        assert_eq!(p.advance(), 300);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_rejected_line_pins_the_checkpoint() {
        let p = Progress::new(7);
        let a = acks(2);
        p.push(a[0].clone(), 50);
        p.push(a[1].clone(), 90);
        a[0].ack();
        a[0].fail();
        a[1].ack_many(2);
        assert_eq!(p.advance(), 7);
        assert!(p.is_held());
        // later batches still drain, so the queue stays bounded
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn empty_batches_commit_at_once() {
        let p = Progress::new(0);
        p.push(Arc::new(BatchAck::new(0)), 42);
        assert_eq!(p.advance(), 42);
    }
}
