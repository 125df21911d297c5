//! The line splitter against its naive model, over every chunking.
//!
//! Input layout (missing header bytes read as 0):
//! - byte 0: `max_line_bytes = 1 + b % 64` (small, so lines get cut);
//! - byte 1: bit 0 long-line mode (0 `Split`, 1 `Truncate`); bit 1 feed with
//!   `read_from` (reaches the chunk reuse in `make_room`) instead of
//!   `extend`; bits 2..=4: how many chunk sizes follow (1..=8); bits 5..=7:
//!   how many returned blocks stay alive (0..=7), so chunks are sometimes
//!   still shared when the buffer wants to reuse them;
//! - byte 2: the data is the rest of the input repeated `1 + b % 16` times
//!   (inputs past 8 KiB make the 16 KiB chunk fill, move and be reclaimed);
//! - then the chunk sizes, one byte each: `1 + b` bytes, used in turn;
//! - the rest is the data.
//!
//! Checks: the (line, cut) pairs and the pending byte count equal
//! `naive_split`'s; each line sits in the input at the file offset it is
//! reported at (`block.offset + span.start`), and those offsets increase;
//! blocks are contiguous, and still hold their bytes when dropped (a chunk
//! is not reused under lines in flight); pending never exceeds `max + 1`;
//! the unfinished tail flushed at the end is the model's pending bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logcollect::split::{naive_split, Block, LineBuffer, SplitConfig};
use logcollect::config::LongLines;
use logcollect::record::Cut;
use std::collections::VecDeque;

fuzz_target!(|input: &[u8]| {
    let byte = |i: usize| input.get(i).copied().unwrap_or(0);
    let max = 1 + byte(0) as usize % 64;
    let flags = byte(1);
    let mode = if flags & 1 == 0 {
        LongLines::Split
    } else {
        LongLines::Truncate
    };
    let use_read = flags & 2 != 0;
    let n_chunks = 1 + (flags >> 2 & 7) as usize;
    let keep_alive = (flags >> 5) as usize;
    let repeat = 1 + byte(2) as usize % 16;
    let header = (3 + n_chunks).min(input.len());
    let chunks: Vec<usize> = (3..3 + n_chunks).map(|i| 1 + byte(i) as usize).collect();
    let data = input[header..].repeat(repeat);

    let cfg = SplitConfig {
        max_line_bytes: max,
        long_lines: mode,
        // the smallest the buffer allows (16 KiB)
        chunk_bytes: 0,
    };
    let mut lb = LineBuffer::new(0, cfg);
    let mut got: Vec<(Vec<u8>, Cut)> = Vec::new();
    let mut spans = Vec::new();
    let mut held = VecDeque::new();
    let mut next_block = 0u64; // where the next block must start
    let mut last_line: Option<u64> = None; // offset of the last line seen
    let mut rest = &data[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].min(rest.len());
        i += 1;
        if use_read {
            // A piece is at most 256 bytes and `make_room` promises 8 KiB
            // of room, so one read takes all of it.
            let mut r = &rest[..n];
            assert_eq!(lb.read_from(&mut r).unwrap(), n, "short read");
        } else {
            lb.extend(&rest[..n]);
        }
        rest = &rest[n..];
        if let Some(block) = lb.take_lines(&mut spans) {
            assert_eq!(block.offset, next_block, "blocks are contiguous");
            next_block = block.end_offset();
            for s in &spans {
                let line = &block.data[s.range()];
                let at = block.offset + s.start as u64;
                assert!(
                    last_line.map_or(true, |p| at > p),
                    "line offsets increase: {at} after {last_line:?}"
                );
                last_line = Some(at);
                assert_eq!(
                    &data[at as usize..at as usize + line.len()],
                    line,
                    "line at offset {at} is the input's bytes there"
                );
                got.push((line.to_vec(), s.cut));
            }
            held.push_back(block);
            if held.len() > keep_alive {
                check_intact(&data, held.pop_front());
            }
        } else {
            assert!(spans.is_empty(), "no block, no spans");
        }
        spans.clear();
        assert_eq!(lb.offset(), next_block);
        assert!(
            lb.pending() <= max + 1,
            "pending {} > max + 1 = {}",
            lb.pending(),
            max + 1
        );
    }
    assert_eq!(lb.read_offset(), data.len() as u64);
    // Lines still in flight were not overwritten by later reads.
    for block in held.drain(..) {
        check_intact(&data, Some(block));
    }

    let (want, pending) = naive_split(&data, max, mode);
    assert_eq!(got, want, "lines (max {max}, {mode:?})");
    assert_eq!(lb.pending(), pending.len(), "pending bytes");

    // The unfinished tail, flushed, is the model's pending bytes.
    if let Some(block) = lb.take_partial(&mut spans) {
        assert_eq!(block.offset, next_block);
        assert_eq!(spans.len(), 1);
        assert_eq!(&block.data[spans[0].range()], &pending[..]);
        // Parts of the unfinished line already shipped number the flush.
        let tail = data.len() - data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let shipped = tail - pending.len();
        let want_cut = if shipped == 0 {
            Cut::Partial
        } else {
            assert_eq!(mode, LongLines::Split);
            Cut::Part(1 + (shipped / max) as u32)
        };
        assert_eq!(spans[0].cut, want_cut, "flushed tail");
    } else {
        assert!(pending.is_empty());
    }
    assert_eq!(lb.offset(), data.len() as u64);
});

/// A block handed out earlier still holds the input's bytes at its offsets
/// (its chunk was not reused while it was alive).
fn check_intact(data: &[u8], block: Option<Block>) {
    if let Some(b) = block {
        assert_eq!(
            &b.data[..],
            &data[b.offset as usize..b.end_offset() as usize],
            "block at offset {} changed while in flight",
            b.offset
        );
    }
}
