//! What travels from a reader to a sink, and how acknowledgements come back.
//!
//! A [`Batch`] is one block of complete lines of one file: the frozen bytes,
//! a [`Span`] per line, and a shared [`BatchAck`] that the sink counts down
//! as lines are acknowledged. Each file's [`Progress`] keeps its batches in
//! read order; the checkpoint may move to the end of a batch only when it and
//! every batch before it are fully acknowledged, so acknowledgements arriving
//! out of order (lines spread over partitions) never move it past a gap.

use crate::identity::FileId;
use crate::split::{Block, Cut, Span};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One collected file under one topic: what every record of it carries.
#[derive(Debug)]
pub struct Source {
    pub topic: Arc<str>,
    /// The path the file was found under.
    pub path: Arc<str>,
    pub fid: FileId,
    /// `fid` rendered once: the `fid` header and the record key.
    pub fid_text: Box<str>,
    pub progress: Progress,
}

impl Source {
    pub fn new(topic: Arc<str>, path: Arc<str>, fid: FileId, committed: u64) -> Self {
        Source { topic, path, fid, fid_text: fid.to_string().into(), progress: Progress::new(committed) }
    }
}

/// A line as a sink sees it.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// File offset of the line's first byte.
    pub offset: u64,
    pub cut: Cut,
}

/// Complete lines of one file, read together.
#[derive(Debug)]
pub struct Batch {
    pub source: Arc<Source>,
    pub block: Block,
    /// One per line, in file order; never empty for a batch that is sent.
    pub spans: Vec<Span>,
    /// When the block was read, in ms since the Unix epoch.
    pub read_ms: i64,
    pub ack: Arc<BatchAck>,
    /// The lines are JSON the transfer should merge (records carry `json: 1`).
    pub parse_json: bool,
}

impl Batch {
    pub fn lines(&self) -> impl ExactSizeIterator<Item = Line<'_>> + '_ {
        let data = &self.block.data[..];
        let base = self.block.offset;
        self.spans.iter().map(move |s| Line { bytes: &data[s.range()], offset: base + s.start as u64, cut: s.cut })
    }

    /// A line as an owned zero-copy slice of the block.
    pub fn line_bytes(&self, span: &Span) -> Bytes {
        self.block.data.slice(span.range())
    }

    /// Total bytes of the lines (newlines excluded).
    pub fn line_bytes_total(&self) -> u64 {
        self.spans.iter().map(|s| s.len as u64).sum()
    }
}

/// Counts a batch's lines down as the sink acknowledges them.
#[derive(Debug)]
pub struct BatchAck {
    remaining: AtomicU32,
    failed: AtomicBool,
}

impl BatchAck {
    pub fn new(lines: usize) -> Self {
        BatchAck { remaining: AtomicU32::new(lines as u32), failed: AtomicBool::new(false) }
    }

    /// One line was stored by the next stage.
    pub fn ack(&self) {
        self.remaining.fetch_sub(1, Ordering::AcqRel);
    }

    /// `n` lines were stored at once.
    pub fn ack_many(&self, n: u32) {
        self.remaining.fetch_sub(n, Ordering::AcqRel);
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
}

impl Progress {
    pub fn new(committed: u64) -> Self {
        Progress {
            inflight: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(committed),
            held: AtomicBool::new(false),
            resume: AtomicU64::new(committed),
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
            q.pop_front();
        }
        self.committed.load(Ordering::Acquire)
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
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
