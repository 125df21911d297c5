//! The multiline aggregator over any lines, for every preset.
//!
//! Input layout (missing header bytes read as 0):
//! - byte 0: the preset (`b % 8`, in `Preset::WORDS` order; `custom` is
//!   `^\S` / `^\s` / the mode `b / 8 % 4`);
//! - byte 1: `max_lines = 1 + b % 8`; byte 2: `max_bytes = 1 + b` (small, so
//!   events are cut into parts);
//! - the rest: the file; each line is pushed at its offset, a line whose
//!   first byte is `\x01` also ticks past the timeout.
//!
//! Checks: no panic; every event is the file's bytes at its offset (the
//! lines are joined by `\n`, as in the file); every line lands in exactly
//! one event (the events' line counts add up); a `Whole` event is within
//! `max_bytes` unless it is one line; the boundary is a line start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| logcollect::multiline::assert_invariants(input));
