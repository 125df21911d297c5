//! JSON string escaping (RFC 8259) for the body: copies runs that need no
//! escaping whole, finding the next byte to escape 16 bytes at a time with
//! SSE2 on x86_64, then 8 at a time (SWAR), then byte by byte; bytes that are
//! not UTF-8 become U+FFFD exactly as `String::from_utf8_lossy` makes them.
//! The tests hold every fast path to a byte-by-byte model.

/// Per byte: 0 = copy as is; `u` = write `\u00XX`; else the character that
/// follows the backslash.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// High bit set in each byte of `w` that needs escaping (`< 0x20`, `"`,
/// `\`), clear in all others. SWAR without carries between bytes: adding
/// to the low 7 bits of a byte never reaches the next byte, so the mask is
/// exact and its lowest set bit finds the first byte to escape.
#[inline]
fn escape_mask(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of (low 7 bits + 0x60) is set iff the low 7 bits are ≥ 0x20.
    let ge_space = (w & LOW7) + LO * 0x60;
    let ctrl = !(ge_space | w);
    let is_zero = |v: u64| !(((v & LOW7) + LOW7) | v);
    let quote = is_zero(w ^ (LO * u64::from(b'"')));
    let backslash = is_zero(w ^ (LO * u64::from(b'\\')));
    (ctrl | quote | backslash) & HI
}

/// Appends the escape sequence of `b` (one that needs escaping).
#[inline]
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[b as usize] {
        b'u' => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]),
        e => out.extend_from_slice(&[b'\\', e]),
    }
}

/// Where [`next_escape`] stopped: the first byte at or after `from` that
/// needs escaping (`s.len()` if none), and whether a byte ≥ 0x80 of `s` was
/// seen on the way (bytes past `at` may count too: the caller only wants
/// to know whether `s` has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scan {
    at: usize,
    high: bool,
}

/// Finds the next byte of `s` to escape from `from` on: 16 bytes per step
/// with SSE2 on x86_64, then 8 per step (SWAR), then one by one for the
/// last few. `next_escape_naive` (tests) is the model.
#[inline]
fn next_escape(s: &[u8], from: usize) -> Scan {
    #[cfg(target_arch = "x86_64")]
    let (mut i, mut high) = match next_escape_sse2(s, from) {
        Ok(found) => return found,
        Err(rest) => (rest.at, rest.high),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (mut i, mut high) = (from, false);
    // Unaligned loads are fine; a chunk overlapping bytes already seen only
    // ORs their high bits in again.
    let mut seen = 0u64;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        seen |= w;
        let m = escape_mask(w);
        if m != 0 {
            return Scan { at: i + (m.trailing_zeros() / 8) as usize, high: high || seen & HI != 0 };
        }
        i += 8;
    }
    high |= seen & HI != 0;
    for (j, &b) in s.iter().enumerate().skip(i) {
        if ESCAPE[b as usize] != 0 {
            return Scan { at: j, high };
        }
        high |= b >= 0x80;
    }
    Scan { at: s.len(), high }
}

/// The 16-byte steps of [`next_escape`]: `Ok` with the byte to escape if
/// one is in the whole 16-byte steps from `from`, else `Err` with where
/// the steps ended (fewer than 16 bytes left) for the narrower loops.
#[cfg(target_arch = "x86_64")]
#[inline]
fn next_escape_sse2(s: &[u8], from: usize) -> Result<Scan, Scan> {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut i = from;
    let mut high_bits = 0u32;
    while let Some(chunk) = s.get(i..i + 16) {
        // SAFETY: SSE2 is part of the x86_64 baseline, so the intrinsics
        // exist on every CPU this code runs on; the load reads exactly the
        // 16 bytes of `chunk` (unaligned loads are allowed by `loadu`).
        let (special, high) = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            // Signed compare: bytes ≥ 0x80 are negative, so they are "< 0x20"
            // too; they are taken out with the sign bits below.
            let ctrl = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            let special = _mm_or_si128(ctrl, _mm_or_si128(quote, backslash));
            (_mm_movemask_epi8(special) as u32, _mm_movemask_epi8(v) as u32)
        };
        high_bits |= high;
        let escape = special & !high;
        if escape != 0 {
            return Ok(Scan { at: i + escape.trailing_zeros() as usize, high: high_bits != 0 });
        }
        i += 16;
    }
    Err(Scan { at: i, high: high_bits != 0 })
}

/// Appends `s` escaped, without quotes; copies unescaped runs whole. Returns
/// whether `s` has a byte ≥ 0x80 (then the caller must check it is UTF-8).
#[inline]
pub(super) fn escape_into(out: &mut Vec<u8>, s: &[u8]) -> bool {
    out.reserve(s.len());
    let mut high = false;
    let mut run = 0; // start of the bytes not yet copied
    loop {
        let scan = next_escape(s, run);
        high |= scan.high;
        out.extend_from_slice(&s[run..scan.at]);
        match s.get(scan.at) {
            Some(&b) => write_escape(out, b),
            None => return high,
        }
        run = scan.at + 1;
    }
}

/// Appends `s` as a JSON string, replacing what is not UTF-8 like
/// `String::from_utf8_lossy`. Returns whether anything was replaced.
pub(super) fn write_str(out: &mut Vec<u8>, s: &[u8]) -> bool {
    out.push(b'"');
    let start = out.len();
    // ASCII (the usual log line) is escaped in one pass; only text with high
    // bytes is validated, and only invalid text is escaped a second time.
    let lossy = escape_into(out, s) && std::str::from_utf8(s).is_err();
    if lossy {
        out.truncate(start);
        for chunk in s.utf8_chunks() {
            escape_into(out, chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                out.extend_from_slice(REPLACEMENT);
            }
        }
    }
    out.push(b'"');
    lossy
}

/// Appends a string known to be UTF-8 (from simd-json) as a JSON string.
pub(super) fn write_utf8(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elastic::body::testutil::{lossy_json, nasty_bytes};
    use proptest::prelude::*;

    #[test]
    fn escaping_table() {
        // (input, escaped JSON string, replaced)
        let table: &[(&[u8], &str, bool)] = &[
            (b"", r#""""#, false),
            (b"plain text", r#""plain text""#, false),
            (b"\"", r#""\"""#, false),
            (b"\\", r#""\\""#, false),
            (b"a\"b\\c", r#""a\"b\\c""#, false),
            (b"\x00", r#""\u0000""#, false),
            (b"\x01\x1f", r#""\u0001\u001f""#, false),
            (b"\x08\x09\x0a\x0c\x0d", r#""\b\t\n\f\r""#, false),
            (b"\x7f", "\"\x7f\"", false),
            (b"tab\tin the middle of a long line", r#""tab\tin the middle of a long line""#, false),
            (b"12345678\"", r#""12345678\"""#, false),
            (b"1234567\"", r#""1234567\"""#, false),
            ("é€😀".as_bytes(), "\"é€😀\"", false),
            ("\u{2028}".as_bytes(), "\"\u{2028}\"", false),
            (b"\xff", "\"\u{FFFD}\"", true),
            (b"\x80", "\"\u{FFFD}\"", true),
            (b"ab\xc3", "\"ab\u{FFFD}\"", true),
            (b"ab\xe2\x82", "\"ab\u{FFFD}\"", true),
            (b"ab\xf0\x9f\x98", "\"ab\u{FFFD}\"", true),
            (b"\xf0\x9f\x98\x80\xf0\x9f", "\"😀\u{FFFD}\"", true),
            (b"\xc0\x80", "\"\u{FFFD}\u{FFFD}\"", true), // overlong NUL
            (b"\xed\xa0\x80", "\"\u{FFFD}\u{FFFD}\u{FFFD}\"", true), // surrogate
            (b"\xff\n\"", "\"\u{FFFD}\\n\\\"\"", true),
        ];
        for &(input, want, replaced) in table {
            let mut out = Vec::new();
            let got = write_str(&mut out, input);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "input {input:?}");
            assert_eq!(got, replaced, "input {input:?}");
            assert_eq!(want, lossy_json(input), "serde_json agrees on {input:?}");
        }
    }

    #[test]
    fn every_byte_alone_and_in_a_word() {
        for b in 0..=255u8 {
            for input in [vec![b], [b"abcdefg".as_slice(), &[b], b"hijklmnop"].concat()] {
                let mut out = Vec::new();
                write_str(&mut out, &input);
                assert_eq!(std::str::from_utf8(&out).unwrap(), lossy_json(&input), "byte {b:#x}");
                assert!(!out.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn escape_mask_every_byte_every_position() {
        // Fillers next to the boundaries of the three tests (0x20, '"', '\\').
        for filler in [b'a', 0x00, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xff] {
            for b in 0..=255u8 {
                for pos in 0..8 {
                    let mut bytes = [filler; 8];
                    bytes[pos] = b;
                    let naive = bytes
                        .iter()
                        .enumerate()
                        .fold(0u64, |m, (k, &c)| m | if ESCAPE[c as usize] != 0 { 0x80 << (8 * k) } else { 0 });
                    assert_eq!(escape_mask(u64::from_le_bytes(bytes)), naive, "{bytes:02x?}");
                }
            }
        }
    }

    /// The model of [`next_escape`]: byte by byte.
    fn next_escape_naive(s: &[u8], from: usize) -> usize {
        s[from..].iter().position(|&b| ESCAPE[b as usize] != 0).map_or(s.len(), |k| from + k)
    }

    /// Checks [`next_escape`] against the model: the same stop, and `high`
    /// set if a byte before it is ≥ 0x80 but never when `s` has none.
    fn check_next_escape(s: &[u8], from: usize) {
        let scan = next_escape(s, from);
        assert_eq!(scan.at, next_escape_naive(s, from), "{s:02x?} from {from}");
        if s[from..scan.at].iter().any(|&b| b >= 0x80) {
            assert!(scan.high, "high bytes missed: {s:02x?} from {from}");
        }
        if scan.high {
            assert!(s.iter().any(|&b| b >= 0x80), "high without a high byte: {s:02x?} from {from}");
        }
    }

    #[test]
    fn next_escape_every_byte_every_position() {
        // Lengths around the 16- and 8-byte steps; fillers next to the
        // boundaries of the tests (0x20, '"', '\\', the sign bit).
        for len in [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47] {
            for filler in [b'a', 0x1f, 0x20, 0x21, 0x5d, 0x7f, 0x80, 0xff] {
                for b in 0..=255u8 {
                    for pos in 0..len {
                        let mut s = vec![filler; len];
                        s[pos] = b;
                        for from in [0, 1, pos, pos + 1, len] {
                            check_next_escape(&s, from.min(len));
                        }
                    }
                }
            }
        }
        check_next_escape(b"", 0);
    }

    /// The model of [`escape_into`]: byte by byte.
    fn escape_naive(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in s {
            if ESCAPE[b as usize] != 0 {
                write_escape(&mut out, b);
            } else {
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn escape_into_every_byte_every_position() {
        // Two escapes anywhere in 40 bytes: in one 16-byte step, in two,
        // in the tail.
        for filler in [b'a', 0x1f, 0x7f, 0x80, 0xff] {
            for b in 0..=255u8 {
                for pos in 0..40 {
                    for second in [0, pos / 2, 15, 16, 31, 32, 39] {
                        let mut s = vec![filler; 40];
                        s[second] = b'"';
                        s[pos] = b;
                        let mut out = b"prefix".to_vec();
                        let high = escape_into(&mut out, &s);
                        assert_eq!(&out[6..], &escape_naive(&s)[..], "{s:02x?}");
                        assert_eq!(high, s.iter().any(|&c| c >= 0x80), "{s:02x?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn escaping_matches_serde_json(v in nasty_bytes()) {
            let mut out = Vec::new();
            write_str(&mut out, &v);
            prop_assert_eq!(String::from_utf8(out).unwrap(), lossy_json(&v));
        }

        #[test]
        fn escape_mask_is_exact(bytes in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x9f), Just(0xa2), Just(0xdc)], 8)
        ) {
            let w = u64::from_le_bytes(bytes[..].try_into().unwrap());
            let naive = bytes.iter().enumerate().fold(0u64, |m, (k, &b)| {
                m | if ESCAPE[b as usize] != 0 { 0x80 << (8 * k) } else { 0 }
            });
            prop_assert_eq!(escape_mask(w), naive, "{:02x?}", bytes);
        }

        #[test]
        fn next_escape_matches_the_naive_scan(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x7f), 0x80u8..=0xff, b'a'..=b'z'], 0..80),
            from in 0usize..80,
        ) {
            check_next_escape(&bytes, from.min(bytes.len()));
        }

        #[test]
        fn escape_into_matches_the_naive_escaper(
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0u8..0x21, Just(0x7f), 0x80u8..=0xff, b'a'..=b'z'], 0..80),
        ) {
            let naive = escape_naive(&bytes);
            let mut out = b"prefix".to_vec();
            let high = escape_into(&mut out, &bytes);
            prop_assert_eq!(&out[6..], &naive[..]);
            prop_assert_eq!(high, bytes.iter().any(|&b| b >= 0x80));
        }
    }
}
