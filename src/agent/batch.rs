//! What travels from a reader to a sink, and how acknowledgements come back.
//!
//! A [`Batch`] is one block of complete lines of one file: the frozen bytes,
//! a [`Span`] per line (per event, with `multiline`: the block then holds
//! the events' joined lines), and a shared [`BatchAck`] that the sink counts
//! down as lines are acknowledged. Each file's [`Progress`] keeps its batches in
//! read order; the checkpoint may move to the end of a batch only when it and
//! every batch before it are fully acknowledged, so acknowledgements arriving
//! out of order (lines spread over partitions) never move it past a gap.

use crate::agent::identity::FileId;
use crate::agent::split::{Block, Span};
use crate::common::ack::{BatchAck, Progress};
use crate::record::Cut;
use bytes::Bytes;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

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
    pub stats: SourceStats,
}

impl Source {
    pub fn new(topic: Arc<str>, path: Arc<str>, fid: FileId, committed: u64) -> Self {
        Source {
            topic,
            path,
            fid,
            fid_text: fid.to_string().into(),
            progress: Progress::new(committed),
            stats: SourceStats::default(),
        }
    }
}

/// What the reader of one file reports about it (per read, never per
/// line); `/metrics` and `logcollect status` show it per file.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Bytes read from the file by this process.
    pub read_bytes: AtomicU64,
    /// File offset just past the last byte read.
    pub read_offset: AtomicU64,
    /// File size at the last look.
    pub size: AtomicU64,
    /// When data was last read (ms since the epoch; 0: not yet).
    pub last_read_ms: AtomicI64,
    /// Times the file was seen rotated away.
    pub rotations: AtomicU64,
}

impl SourceStats {
    /// Bytes a restart would read again: the larger of the size and the
    /// read offset (the size is only looked at when the reader reaches the
    /// end), minus the checkpoint.
    pub fn behind(&self, committed: u64) -> u64 {
        let end = self.size.load(Ordering::Relaxed).max(self.read_offset.load(Ordering::Relaxed));
        end.saturating_sub(committed)
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
    /// Empty for lines (a line's offset is `block.offset + span.start`).
    /// For multiline events, whose lines were joined into `block`, the file
    /// offset of each event's first line: one per span.
    pub offsets: Vec<u64>,
    /// Where the file's checkpoint may move once this batch and every one
    /// before it are acknowledged: the block's end for lines; with
    /// `multiline`, the first line of the event still open, if one is.
    pub end: u64,
    /// When the block was read, in ms since the Unix epoch.
    pub read_ms: i64,
    pub ack: Arc<BatchAck>,
    /// The lines are JSON the transfer should merge (records carry `json: 1`).
    pub parse_json: bool,
    /// Set for journal entries (`agent::journal`): one per span, each
    /// line's sequence number, time and fields; `None` for file lines.
    pub journal: Option<crate::agent::journal::JournalLines>,
}

impl Batch {
    pub fn lines(&self) -> impl ExactSizeIterator<Item = Line<'_>> + '_ {
        let data = &self.block.data[..];
        let base = self.block.offset;
        let offsets = &self.offsets[..];
        self.spans.iter().enumerate().map(move |(i, s)| Line {
            bytes: &data[s.range()],
            offset: offsets.get(i).copied().unwrap_or(base + s.start as u64),
            cut: s.cut,
        })
    }

    /// A line as an owned zero-copy slice of the block.
    pub fn line_bytes(&self, span: &Span) -> Bytes {
        self.block.data.slice(span.range())
    }
}
