//! The line splitter: turns bytes read from a file into whole lines.
//!
//! [`LineBuffer`] owns the reader's chunk buffer. Bytes are read straight into
//! its spare capacity; [`LineBuffer::take_lines`] searches the new bytes for
//! `\n` once with `memchr`, splits the prefix that holds complete lines off the
//! buffer as one frozen [`Bytes`] block and describes each line as a [`Span`]
//! of that block. Lines are never copied: a consumer slices the block. The
//! unfinished tail stays in the buffer; it is the only data ever copied, when
//! the chunk is full and the tail moves to a fresh (or reclaimed) chunk.
//!
//! Chunks are pooled: a chunk whose lines are still in flight is parked in a
//! small pool, and is taken back (`BytesMut::try_reclaim`) once every slice of
//! it has been dropped, so a steady stream reuses the same few allocations.
//!
//! Over-long lines are cut at `max_line_bytes` ([`LongLines`]): split into
//! parts, or truncated with the rest of the line skipped. A CR before LF is
//! stripped. Any other byte (NUL, invalid UTF-8) passes through untouched.

use crate::config::{AgentConfig, LongLines};
use crate::record::Cut;
use bytes::{Bytes, BytesMut};
use std::io::{self, Read};

/// One line inside a block: `block[start .. start + len]`, without its `\n`
/// (and without a `\r` before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index of the line's first byte in the block.
    pub start: u32,
    /// Length of the line; `start + len` is always within the block.
    pub len: u32,
    /// How the span relates to its line in the file.
    pub cut: Cut,
}

impl Span {
    /// The span as a range of the block.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// A run of complete lines split off the buffer.
#[derive(Clone, Debug)]
pub struct Block {
    /// The bytes: every line of the run, and the newlines between them.
    pub data: Bytes,
    /// File offset of `data[0]`.
    pub offset: u64,
}

impl Block {
    /// File offset just past the block: where reading resumes after it.
    pub fn end_offset(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

/// Sizing of the line buffer.
#[derive(Clone, Copy, Debug)]
pub struct SplitConfig {
    /// Lines longer than this are cut (see [`LongLines`]). At least 1.
    pub max_line_bytes: usize,
    /// What happens to lines over `max_line_bytes`.
    pub long_lines: LongLines,
    /// Size of one chunk (one read asks for up to this much).
    pub chunk_bytes: usize,
}

impl From<&AgentConfig> for SplitConfig {
    fn from(a: &AgentConfig) -> Self {
        SplitConfig { max_line_bytes: a.max_line_bytes, long_lines: a.long_lines, chunk_bytes: a.read_chunk_bytes }
    }
}

impl Default for SplitConfig {
    /// An empty `[agent]`'s.
    fn default() -> Self {
        SplitConfig::from(&AgentConfig::default())
    }
}

/// Reads ask for at least this much room; below it a new chunk is taken.
const MIN_READ: usize = 8 << 10;
/// The first chunk of a buffer (and the first after an idle release).
const FIRST_CHUNK: usize = MIN_READ * 2;
/// Chunks with lines still in flight that a reader keeps for reuse.
const POOL_CHUNKS: usize = 4;

/// A reader's buffer: bytes read but not yet handed out as lines.
pub struct LineBuffer {
    /// Unconsumed bytes; `buf[0]` is at file offset `offset`.
    buf: BytesMut,
    /// File offset of `buf[0]`.
    offset: u64,
    /// `buf[..scanned]` is known to hold no `\n` (never search it twice).
    scanned: usize,
    /// Truncate mode: the start of the current line was shipped; skip until `\n`.
    discarding: bool,
    /// Split mode: parts of the current over-long line already shipped.
    parts: u32,
    /// Retired chunks whose slices may still be alive; reclaimed when unique.
    pool: Vec<BytesMut>,
    /// Chunks allocated so far (reuse keeps this small).
    chunks_allocated: u64,
    /// Size of the next chunk: starts at [`FIRST_CHUNK`] and doubles up to
    /// `cfg.chunk_bytes` each time a read fills all the room it had, so a
    /// slow or small file never holds a big chunk and a fast one soon reads
    /// in full-size chunks.
    chunk_now: usize,
    cfg: SplitConfig,
}

impl LineBuffer {
    /// A buffer whose first byte will be the file's byte at `offset`.
    pub fn new(offset: u64, cfg: SplitConfig) -> Self {
        assert!(cfg.max_line_bytes >= 1 && cfg.max_line_bytes <= u32::MAX as usize / 2);
        let chunk_bytes = cfg.chunk_bytes.max(FIRST_CHUNK);
        let cfg = SplitConfig { chunk_bytes, ..cfg };
        LineBuffer {
            // Nothing is allocated until the first read.
            buf: BytesMut::new(),
            offset,
            scanned: 0,
            discarding: false,
            parts: 0,
            pool: Vec::new(),
            chunks_allocated: 0,
            chunk_now: FIRST_CHUNK,
            cfg,
        }
    }

    /// File offset of the first byte not yet handed out (where a restart
    /// would have to read again).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// File offset just past the last byte read.
    pub fn read_offset(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Bytes read but not handed out: an unfinished line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer holds no chunk (new, or released while idle): a
    /// reader can then check the file size before reading, so an idle file
    /// costs no allocation.
    pub fn is_released(&self) -> bool {
        self.buf.capacity() == 0
    }

    /// Chunks this buffer has allocated.
    pub fn chunks_allocated(&self) -> u64 {
        self.chunks_allocated
    }

    /// Forget everything buffered and continue at `offset` (after truncation).
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.offset = offset;
        self.scanned = 0;
        self.discarding = false;
        self.parts = 0;
    }

    /// Gives the chunk memory back while the file is idle: when nothing is
    /// pending, the current chunk and the pool are dropped (slices still in
    /// flight keep their own chunk alive until they are acknowledged). The
    /// next read allocates again. A thousand quiet files then hold no
    /// buffers at all.
    pub fn release_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
            self.pool.clear();
            self.chunk_now = FIRST_CHUNK;
        }
    }

    /// Reads once from `r` into the buffer; returns the bytes read (0 at EOF).
    /// A reader that claims more bytes than it was given room for is an
    /// error, not a read past the buffer.
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        self.make_room();
        let len = self.buf.len();
        let room = self.buf.capacity() - len;
        // SAFETY: every byte of the buffer's capacity is initialized: chunks
        // are allocated zeroed (`make_room`), `extend` zeroes what a growth
        // adds, and nothing de-initializes bytes later. So the spare bytes
        // may be lent to `read` as a `&mut [u8]`, as `Read` requires.
        let spare = unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().add(len), room) };
        let n = loop {
            match r.read(spare) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n > room {
            return Err(io::Error::other(format!("read returned {n} bytes into a buffer of {room}")));
        }
        // SAFETY: `len + n` is within the capacity (checked above) and those
        // bytes are initialized (see above); `read` wrote the `n` new ones.
        unsafe { self.buf.set_len(len + n) };
        if n == room && self.chunk_now < self.cfg.chunk_bytes {
            // More is probably waiting: read in bigger chunks from now on.
            self.chunk_now = (self.chunk_now * 2).min(self.cfg.chunk_bytes);
        }
        Ok(n)
    }

    /// Appends bytes (tests, fuzzing and benches feed the buffer this way).
    pub fn extend(&mut self, data: &[u8]) {
        let cap = self.buf.capacity();
        self.buf.extend_from_slice(data);
        if self.buf.capacity() != cap {
            // A new allocation: zero its spare bytes, so `read_from` may lend
            // them out (see there).
            let len = self.buf.len();
            self.buf.resize(self.buf.capacity(), 0);
            self.buf.truncate(len);
        }
    }

    /// Ensures at least `MIN_READ` bytes of spare capacity, reusing a chunk
    /// whose slices have all been dropped when there is one.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() >= MIN_READ {
            return;
        }
        let want = self.chunk_now.max(self.buf.len() + MIN_READ);
        // The current chunk, if nothing else refers to it any more.
        if self.buf.try_reclaim(want - self.buf.len()) {
            return;
        }
        // A pooled chunk whose lines have all been consumed.
        let reusable = self.pool.iter_mut().position(|c| c.try_reclaim(want));
        let mut fresh = match reusable {
            Some(i) => self.pool.swap_remove(i),
            None => {
                self.chunks_allocated += 1;
                // Zeroed once, at allocation: `read_from` lends the spare
                // bytes to `read`, which must only see initialized memory.
                let mut chunk = BytesMut::with_capacity(want);
                chunk.resize(chunk.capacity(), 0);
                chunk.clear();
                chunk
            }
        };
        debug_assert!(fresh.is_empty());
        // The unfinished line is the only data that is ever copied.
        fresh.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, fresh);
        old.clear();
        if self.pool.len() >= POOL_CHUNKS {
            self.pool.remove(0);
        }
        self.pool.push(old);
    }

    /// Splits off every complete line found so far. Spans are appended to
    /// `spans`; the returned block holds their bytes. `None` when no line
    /// (or line part) is complete yet.
    pub fn take_lines(&mut self, spans: &mut Vec<Span>) -> Option<Block> {
        let len = self.buf.len();
        let mut start = 0usize; // start of the current line in buf
        let mut from = self.scanned; // where the search resumes
        while let Some(i) = memchr::memchr(b'\n', &self.buf[from..]) {
            let nl = from + i;
            self.emit(start, nl, true, spans);
            start = nl + 1;
            from = start;
        }
        // buf[start..] is an unfinished line; cut it if it is already too long.
        start = self.emit(start, len, false, spans);
        self.scanned = len - start;
        if start == 0 {
            return None;
        }
        let data = self.buf.split_to(start).freeze();
        let block = Block { data, offset: self.offset };
        self.offset += start as u64;
        Some(block)
    }

    /// Hands out the unfinished last line as it is (idle timeout, or a file
    /// that will never grow again). `None` when nothing is pending.
    pub fn take_partial(&mut self, spans: &mut Vec<Span>) -> Option<Block> {
        let len = self.buf.len();
        if len == 0 {
            return None;
        }
        if !self.discarding {
            let cut = if self.parts > 0 { Cut::Part(self.parts + 1) } else { Cut::Partial };
            spans.push(Span { start: 0, len: len as u32, cut });
        }
        self.discarding = false;
        self.parts = 0;
        self.scanned = 0;
        let data = self.buf.split_to(len).freeze();
        let block = Block { data, offset: self.offset };
        self.offset += len as u64;
        Some(block)
    }

    /// Emits the line `buf[start..end]` (`complete`: it ended in `\n` at
    /// `end`), cutting it when over-long. Returns how far the buffer may be
    /// consumed: `end + 1` for a complete line; for an unfinished one, the
    /// start of what must stay buffered.
    fn emit(&mut self, mut start: usize, end: usize, complete: bool, spans: &mut Vec<Span>) -> usize {
        let max = self.cfg.max_line_bytes;
        let mut stop = end;
        if complete && stop > start && self.buf[stop - 1] == b'\r' {
            stop -= 1;
        }
        // An unfinished line may end in the `\r` of a `\r\n`: keep one byte
        // more before deciding it is over-long.
        let limit = if complete { max } else { max + 1 };
        match self.cfg.long_lines {
            LongLines::Split => {
                while stop - start > limit {
                    self.parts += 1;
                    spans.push(Span { start: start as u32, len: max as u32, cut: Cut::Part(self.parts) });
                    start += max;
                }
                if !complete {
                    return start;
                }
                let cut = if self.parts > 0 { Cut::Part(self.parts + 1) } else { Cut::Whole };
                spans.push(Span { start: start as u32, len: (stop - start) as u32, cut });
                self.parts = 0;
            }
            LongLines::Truncate => {
                if !self.discarding {
                    if stop - start > limit {
                        spans.push(Span { start: start as u32, len: max as u32, cut: Cut::Truncated });
                        self.discarding = true;
                    } else if complete {
                        spans.push(Span { start: start as u32, len: (stop - start) as u32, cut: Cut::Whole });
                    } else {
                        return start;
                    }
                }
                if !complete {
                    // Skipping: nothing of this line needs to stay buffered.
                    return end;
                }
                self.discarding = false;
            }
        }
        end + 1
    }
}

/// The naive model the splitter is tested against: split on `\n`, strip one
/// `\r` before it, cut over-long lines into `max`-byte parts (or keep the
/// first `max` bytes). An unfinished last line longer than `max + 1` bytes is
/// cut already (it can no longer be a whole line). Returns (line, cut) pairs
/// and the bytes still pending. Public for the fuzz target and benches.
#[doc(hidden)]
pub fn naive_split(input: &[u8], max: usize, mode: LongLines) -> (Vec<(Vec<u8>, Cut)>, Vec<u8>) {
    let mut out = Vec::new();
    let mut lines = input.split(|&b| b == b'\n').collect::<Vec<_>>();
    let tail = lines.pop().unwrap_or(&[]);
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() <= max {
            out.push((line.to_vec(), Cut::Whole));
        } else if mode == LongLines::Truncate {
            out.push((line[..max].to_vec(), Cut::Truncated));
        } else {
            for (i, c) in line.chunks(max).enumerate() {
                out.push((c.to_vec(), Cut::Part(i as u32 + 1)));
            }
        }
    }
    let mut pending = tail;
    if tail.len() > max + 1 {
        if mode == LongLines::Truncate {
            out.push((tail[..max].to_vec(), Cut::Truncated));
            pending = &[];
        } else {
            let mut n = 0;
            while pending.len() > max + 1 {
                n += 1;
                out.push((pending[..max].to_vec(), Cut::Part(n)));
                pending = &pending[max..];
            }
        }
    }
    (out, pending.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(max: usize, mode: LongLines) -> SplitConfig {
        SplitConfig { max_line_bytes: max, long_lines: mode, chunk_bytes: 16 << 10 }
    }

    /// Feeds `input` in the given chunk sizes, collecting every line and the
    /// offset it was reported at.
    fn run(input: &[u8], chunks: &[usize], max: usize, mode: LongLines) -> (Vec<(Vec<u8>, Cut, u64)>, LineBuffer) {
        let mut lb = LineBuffer::new(0, cfg(max, mode));
        let mut out = Vec::new();
        let mut spans = Vec::new();
        let mut rest = input;
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks.get(i % chunks.len().max(1)).copied().unwrap_or(rest.len()).clamp(1, rest.len());
            i += 1;
            lb.read_from(&mut &rest[..n]).unwrap();
            rest = &rest[n..];
            spans.clear();
            if let Some(block) = lb.take_lines(&mut spans) {
                for s in &spans {
                    out.push((block.data[s.range()].to_vec(), s.cut, block.offset + s.start as u64));
                }
            }
        }
        (out, lb)
    }

    #[test]
    fn edge_cases() {
        // (input, expected lines, expected unfinished tail)
        type Case<'a> = (&'a [u8], &'a [&'a [u8]], &'a [u8]);
        let table: &[Case<'_>] = &[
            (b"", &[], b""),
            (b"\n", &[b""], b""),
            (b"\n\n", &[b"", b""], b""),
            (b"a", &[], b"a"),
            (b"a\nb", &[b"a"], b"b"),
            (b"a\r\nb\r\n", &[b"a", b"b"], b""),
            (b"\r\n", &[b""], b""),
            (b"a\r\r\n", &[b"a\r"], b""),
            (b"x\ry\n", &[b"x\ry"], b""),
            (b"nul\0byte\n\xff\xfe\n", &[b"nul\0byte", b"\xff\xfe"], b""),
        ];
        for &(input, lines, tail) in table {
            for chunks in [&[1usize][..], &[2], &[3, 1], &[1000]] {
                let (out, lb) = run(input, chunks, 1 << 20, LongLines::Split);
                let got: Vec<&[u8]> = out.iter().map(|l| &l.0[..]).collect();
                assert_eq!(got, lines, "input {input:?} chunks {chunks:?}");
                assert_eq!(lb.pending(), tail.len(), "input {input:?}");
                assert!(out.iter().all(|l| l.1 == Cut::Whole));
            }
        }
    }

    #[test]
    fn offsets_point_at_line_starts() {
        let (out, lb) = run(b"ab\r\ncde\n\nf\ng", &[2], 100, LongLines::Split);
        let offsets: Vec<u64> = out.iter().map(|l| l.2).collect();
        assert_eq!(offsets, vec![0, 4, 8, 9]);
        assert_eq!(lb.offset(), 11);
        assert_eq!(lb.read_offset(), 12);
    }

    #[test]
    fn long_lines_split_into_numbered_parts() {
        // capacity 1 and exact multiples are the edges
        let (out, _) = run(b"abcdefg\nhi\nabcd\n", &[3], 2, LongLines::Split);
        let got: Vec<(&[u8], Cut)> = out.iter().map(|l| (&l.0[..], l.1)).collect();
        assert_eq!(
            got,
            vec![
                (&b"ab"[..], Cut::Part(1)),
                (b"cd", Cut::Part(2)),
                (b"ef", Cut::Part(3)),
                (b"g", Cut::Part(4)),
                (b"hi", Cut::Whole),
                (b"ab", Cut::Part(1)),
                (b"cd", Cut::Part(2)),
            ]
        );
        let (out, _) = run(b"abc\n", &[1], 1, LongLines::Split);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn long_lines_truncated_and_rest_skipped() {
        let (out, lb) = run(b"abcdefg\nhi\nabcd", &[1], 2, LongLines::Truncate);
        let got: Vec<(&[u8], Cut)> = out.iter().map(|l| (&l.0[..], l.1)).collect();
        assert_eq!(got, vec![(&b"ab"[..], Cut::Truncated), (b"hi", Cut::Whole), (b"ab", Cut::Truncated)]);
        // the skipped rest is not kept in memory
        assert_eq!(lb.pending(), 0);
        assert_eq!(out[2].2, 11);
    }

    #[test]
    fn unfinished_line_flushed_as_partial() {
        let mut lb = LineBuffer::new(10, cfg(100, LongLines::Split));
        lb.extend(b"one\ntwo");
        let mut spans = Vec::new();
        let b = lb.take_lines(&mut spans).unwrap();
        assert_eq!((b.offset, b.end_offset()), (10, 14));
        spans.clear();
        let b = lb.take_partial(&mut spans).unwrap();
        assert_eq!(&b.data[spans[0].range()], b"two");
        assert_eq!(spans[0].cut, Cut::Partial);
        assert_eq!(lb.offset(), 17);
        assert!(lb.take_partial(&mut spans).is_none());
    }

    #[test]
    fn a_reader_that_claims_too_much_is_an_error() {
        /// Reports one byte more than it was lent, and checks that what it
        /// was lent reads as initialized bytes.
        struct Liar;
        impl Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                assert!(buf.iter().all(|&b| b == 0), "a fresh chunk lends zeroed bytes");
                Ok(buf.len() + 1)
            }
        }
        let mut lb = LineBuffer::new(0, cfg(64, LongLines::Split));
        let e = lb.read_from(&mut Liar).unwrap_err();
        assert!(e.to_string().contains("into a buffer of"), "{e}");
        assert_eq!((lb.pending(), lb.read_offset()), (0, 0), "nothing kept");
        // `extend` growing the buffer keeps the spare bytes initialized too.
        lb.extend(&[b'x'; 100_000]);
        assert_eq!(lb.pending(), 100_000);
    }

    #[test]
    fn a_huge_line_never_holds_more_than_max_plus_a_read() {
        let max = 1000;
        let mut lb = LineBuffer::new(0, cfg(max, LongLines::Split));
        let mut spans = Vec::new();
        let mut total = 0;
        let chunk = vec![b'x'; 4096];
        for _ in 0..1000 {
            lb.read_from(&mut &chunk[..]).unwrap();
            spans.clear();
            if let Some(b) = lb.take_lines(&mut spans) {
                total += spans.iter().map(|s| s.len as usize).sum::<usize>();
                drop(b);
            }
            assert!(lb.pending() <= max + 1, "pending {}", lb.pending());
        }
        assert_eq!(total + lb.pending(), 4096 * 1000);
    }

    #[test]
    fn chunks_are_reused_once_lines_are_dropped() {
        let mut lb = LineBuffer::new(0, cfg(1 << 20, LongLines::Split));
        let line = [b'y'; 199].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        let mut spans = Vec::new();
        let mut held = std::collections::VecDeque::new();
        for _ in 0..10_000 {
            lb.read_from(&mut &line[..]).unwrap();
            spans.clear();
            // keep the last few blocks alive, as lines in flight would be
            held.push_back(lb.take_lines(&mut spans));
            if held.len() > 50 {
                held.pop_front();
            }
        }
        // 2 MB went through 16 KiB chunks: reuse keeps allocations to a handful
        assert!(lb.chunks_allocated() <= 6, "{} chunks allocated", lb.chunks_allocated());
    }

    #[test]
    fn idle_release_keeps_pending_bytes_and_offsets() {
        let mut lb = LineBuffer::new(100, cfg(1 << 20, LongLines::Split));
        let mut spans = Vec::new();
        lb.read_from(&mut &b"one\ntw"[..]).unwrap();
        let first = lb.take_lines(&mut spans).unwrap();
        // An unfinished line is pending: nothing is given back.
        lb.release_idle();
        assert_eq!(lb.pending(), 2);
        lb.read_from(&mut &b"o\n"[..]).unwrap();
        spans.clear();
        let second = lb.take_lines(&mut spans).unwrap();
        assert_eq!((&second.data[..], second.offset), (&b"two\n"[..], 104));
        // Nothing pending: the chunk goes, even with lines still in flight.
        lb.release_idle();
        assert_eq!(lb.pending(), 0);
        drop(first);
        lb.read_from(&mut &b"three\n"[..]).unwrap();
        spans.clear();
        let third = lb.take_lines(&mut spans).unwrap();
        assert_eq!((&third.data[..], third.offset), (&b"three\n"[..], 108));
        assert_eq!(&second.data[..], b"two\n", "a slice in flight outlives the release");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The splitter agrees with the naive model over random inputs and
        /// random chunkings, for every long-line mode.
        #[test]
        fn matches_naive_model(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0u8), any::<u8>(), Just(b'a')], 0..600),
            chunks in proptest::collection::vec(1usize..64, 1..8),
            max in 1usize..40,
            truncate in any::<bool>(),
        ) {
            let mode = if truncate { LongLines::Truncate } else { LongLines::Split };
            let (out, lb) = run(&input, &chunks, max, mode);
            let (want, tail) = naive_split(&input, max, mode);
            let got: Vec<(Vec<u8>, Cut)> = out.iter().map(|l| (l.0.clone(), l.1)).collect();
            prop_assert_eq!(got, want);
            // Every byte is accounted for: handed out, skipped, or pending.
            prop_assert_eq!(lb.read_offset(), input.len() as u64);
            prop_assert_eq!(lb.pending(), tail.len());
        }
    }
}
