//! The journal export format (`journalctl --output=export`), parsed
//! incrementally: pure code over bytes, no I/O (fuzzed by
//! `fuzz/fuzz_targets/journal_export.rs`).
//!
//! ```text
//! __CURSOR=s=…;i=2a;b=…;m=…;t=…;x=…\n
//! __REALTIME_TIMESTAMP=1733300000000000\n
//! MESSAGE=text\n                       a text field: NAME=value
//! MESSAGE\n<u64 LE length><bytes>\n    a binary field: NAME, newline, length, bytes, newline
//! \n                                   an empty line ends the entry
//! ```
//!
//! A value is text unless it holds control characters other than tab, or
//! is not UTF-8: then journalctl writes it binary, length-prefixed. Both
//! forms give the same bytes here ([`Entry::message`] is the raw value), so a
//! binary `MESSAGE` is shipped as bytes, not dropped. Only the fields the
//! source ships are kept; every other field is skipped without copying.

use std::fmt;

/// Longest entry accepted, in bytes. journald itself caps an entry at
/// 768 MiB (`ENTRY_SIZE_MAX`) but its default line limits keep messages
/// far below this; an entry longer than this is a stream that is not the
/// export format, and reading stops instead of buffering without bound.
pub const MAX_ENTRY_BYTES: usize = 64 << 20;

/// The fields of one entry the source uses, borrowed from the read buffer.
/// A field given twice keeps its last value (journald allows repeated
/// fields; for these one value is what the document can hold).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry<'a> {
    /// `__CURSOR`: where the entry is, for `--after-cursor`.
    pub cursor: Option<&'a [u8]>,
    /// `__REALTIME_TIMESTAMP`, in µs since the epoch; `None` when absent or
    /// not a decimal number.
    pub realtime_us: Option<u64>,
    /// `MESSAGE`: any bytes.
    pub message: Option<&'a [u8]>,
    /// `_SYSTEMD_UNIT`.
    pub unit: Option<&'a [u8]>,
    /// `_PID`.
    pub pid: Option<&'a [u8]>,
    /// `SYSLOG_IDENTIFIER`.
    pub ident: Option<&'a [u8]>,
    /// `PRIORITY` (0–7, as text).
    pub priority: Option<&'a [u8]>,
    /// `_HOSTNAME`.
    pub hostname: Option<&'a [u8]>,
    /// Fields in the entry, those not kept included.
    pub fields: usize,
}

/// Why the bytes are not the export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportError {
    /// A field name that is empty or holds a byte journald never writes in
    /// one (`A-Z`, `0-9`, `_`; the offset of the field's first byte).
    BadName(usize),
    /// A binary field's bytes not followed by a newline (its offset).
    BadBinary(usize),
    /// An entry longer than [`MAX_ENTRY_BYTES`].
    TooLong,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::BadName(at) => write!(f, "not a journal field name at byte {at} of the entry"),
            ExportError::BadBinary(at) => write!(f, "binary field at byte {at} of the entry does not end in a newline"),
            ExportError::TooLong => write!(f, "entry longer than {MAX_ENTRY_BYTES} bytes"),
        }
    }
}

impl std::error::Error for ExportError {}

/// The first entry of `buf`: `Ok(Some((entry, consumed)))` with the bytes
/// it took, the empty line after it included; `Ok(None)` while the entry is
/// incomplete (read more and call again with the same start). Empty lines
/// before an entry are skipped (consumed with it); an entry of no fields is
/// never returned.
pub fn next_entry(buf: &[u8]) -> Result<Option<(Entry<'_>, usize)>, ExportError> {
    let mut e = Entry::default();
    let mut i = 0;
    // Leading empty lines (between entries) are not entries.
    while buf.get(i) == Some(&b'\n') {
        i += 1;
    }
    loop {
        if i > MAX_ENTRY_BYTES {
            return Err(ExportError::TooLong);
        }
        let Some(&first) = buf.get(i) else { return Ok(None) };
        if first == b'\n' {
            return Ok(Some((e, i + 1)));
        }
        let Some(nl) = memchr::memchr(b'\n', &buf[i..]).map(|n| i + n) else {
            return if buf.len() - i > MAX_ENTRY_BYTES { Err(ExportError::TooLong) } else { Ok(None) };
        };
        let line = &buf[i..nl];
        let (name, value, next) = match memchr::memchr(b'=', line) {
            Some(eq) => (&line[..eq], &line[eq + 1..], nl + 1),
            None => {
                // Binary: NAME\n, 8 bytes of length (little endian), the bytes, \n.
                let Some(len) = buf.get(nl + 1..nl + 9) else { return Ok(None) };
                let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
                if len > MAX_ENTRY_BYTES as u64 {
                    return Err(ExportError::TooLong);
                }
                let start = nl + 9;
                let end = start + len as usize;
                match buf.get(end) {
                    None => return Ok(None),
                    Some(b'\n') => {}
                    Some(_) => return Err(ExportError::BadBinary(i)),
                }
                (line, &buf[start..end], end + 1)
            }
        };
        if !valid_name(name) {
            return Err(ExportError::BadName(i));
        }
        e.fields += 1;
        match name {
            b"__CURSOR" => e.cursor = Some(value),
            b"__REALTIME_TIMESTAMP" => e.realtime_us = parse_decimal(value),
            b"MESSAGE" => e.message = Some(value),
            b"_SYSTEMD_UNIT" => e.unit = Some(value),
            b"_PID" => e.pid = Some(value),
            b"SYSLOG_IDENTIFIER" => e.ident = Some(value),
            b"PRIORITY" => e.priority = Some(value),
            b"_HOSTNAME" => e.hostname = Some(value),
            _ => {}
        }
        i = next;
    }
}

/// What journald accepts in a field name (`journal_field_valid`), with
/// lowercase allowed too: journalctl prints what the file holds, and files
/// written by other tools may not be as strict.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 64 && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

pub use crate::record::parse_decimal;

/// What identifies an entry in its journal, read from its cursor
/// (`s=<seqnum id>;i=<seqnum, hex>;b=<boot id>;m=…;t=…;x=…`): the sequence
/// number is unique within the sequence number id's journal (journald
/// writes one sequence for all its files, system and user), which is what
/// the document id is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorId<'a> {
    /// `s=`: the sequence number id, 32 hex digits.
    pub seqnum_id: &'a str,
    /// `i=`: the entry's sequence number.
    pub seqnum: u64,
    /// `b=`: the boot id.
    pub boot_id: &'a str,
}

impl<'a> CursorId<'a> {
    /// Reads `s=`, `i=` and `b=` of a cursor; `None` unless all three are
    /// there (`s` and `b` hex, `i` a hex number).
    pub fn parse(cursor: &'a [u8]) -> Option<CursorId<'a>> {
        let text = std::str::from_utf8(cursor).ok()?;
        let (mut s, mut i, mut b) = (None, None, None);
        for part in text.split(';') {
            let (k, v) = part.split_once('=')?;
            let hex = !v.is_empty() && v.bytes().all(|c| c.is_ascii_hexdigit());
            match k {
                "s" if hex => s = Some(v),
                "i" if hex => i = u64::from_str_radix(v, 16).ok(),
                "b" if hex => b = Some(v),
                _ => {}
            }
        }
        Some(CursorId { seqnum_id: s?, seqnum: i?, boot_id: b? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binary(name: &str, value: &[u8]) -> Vec<u8> {
        let mut out = name.as_bytes().to_vec();
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
        out
    }

    const CURSOR: &str = "s=0123456789abcdef0123456789abcdef;i=2a;b=fedcba9876543210fedcba9876543210;m=1f;t=5f0;x=ab";

    fn sample() -> Vec<u8> {
        let mut v = format!(
            "__CURSOR={CURSOR}\n__REALTIME_TIMESTAMP=1733300000123456\n__MONOTONIC_TIMESTAMP=99\n_BOOT_ID=fedcba\n\
             _HOSTNAME=web1\nPRIORITY=6\nSYSLOG_IDENTIFIER=sshd\n_PID=4242\n_SYSTEMD_UNIT=ssh.service\n"
        )
        .into_bytes();
        v.extend(binary("MESSAGE", b"bin\x00ary\nline\xff"));
        v.extend_from_slice(b"\n");
        v
    }

    #[test]
    fn parses_text_and_binary_fields() {
        let buf = sample();
        let (e, used) = next_entry(&buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(e.cursor, Some(CURSOR.as_bytes()));
        assert_eq!(e.realtime_us, Some(1_733_300_000_123_456));
        assert_eq!(e.message, Some(&b"bin\x00ary\nline\xff"[..]));
        assert_eq!(e.unit, Some(&b"ssh.service"[..]));
        assert_eq!(e.pid, Some(&b"4242"[..]));
        assert_eq!(e.ident, Some(&b"sshd"[..]));
        assert_eq!(e.priority, Some(&b"6"[..]));
        assert_eq!(e.hostname, Some(&b"web1"[..]));
        assert_eq!(e.fields, 10);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let buf = sample();
        for n in 0..buf.len() {
            assert_eq!(next_entry(&buf[..n]), Ok(None), "prefix of {n} bytes");
        }
    }

    #[test]
    fn edge_cases() {
        // (input, outcome: None incomplete, Some(Ok(consumed, fields)), Some(Err))
        type Want = Option<Result<(usize, usize), ExportError>>;
        let table: &[(&[u8], Want)] = &[
            (b"", None),
            (b"\n", None),
            (b"\n\n", None),
            (b"A=1\n", None),
            (b"A=1\n\n", Some(Ok((5, 1)))),
            (b"\n\nA=1\n\nB=2\n\n", Some(Ok((7, 1)))),
            (b"A=\n\n", Some(Ok((4, 1)))),
            (b"A=x=y\n\n", Some(Ok((7, 1)))),
            (b"=x\n\n", Some(Err(ExportError::BadName(0)))),
            (b"A-B=x\n\n", Some(Err(ExportError::BadName(0)))),
            (b"A=1\nB\n\x01\0\0\0\0\0\0\0xY\n", Some(Err(ExportError::BadBinary(4)))),
            (b"B\n\x01\0\0\0\0\0\0\0x\n\n", Some(Ok((13, 1)))),
            (b"B\n\0\0\0\0\0\0\0\0\n\n", Some(Ok((12, 1)))),
            (b"B\n\xff\xff\xff\xff\xff\xff\xff\xff", Some(Err(ExportError::TooLong))),
        ];
        for &(input, want) in table {
            let got = next_entry(input).map(|o| o.map(|(e, n)| (n, e.fields)));
            let got = match got {
                Ok(None) => None,
                Ok(Some(x)) => Some(Ok(x)),
                Err(e) => Some(Err(e)),
            };
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn realtime_must_be_decimal() {
        for (v, want) in [("1", Some(1)), ("", None), ("-1", None), ("12x", None), ("18446744073709551616", None)] {
            let text = format!("__REALTIME_TIMESTAMP={v}\n\n");
            let (e, _) = next_entry(text.as_bytes()).unwrap().unwrap();
            assert_eq!(e.realtime_us, want, "{v:?}");
        }
    }

    #[test]
    fn cursor_ids() {
        assert_eq!(
            CursorId::parse(CURSOR.as_bytes()),
            Some(CursorId {
                seqnum_id: "0123456789abcdef0123456789abcdef",
                seqnum: 42,
                boot_id: "fedcba9876543210fedcba9876543210"
            })
        );
        for bad in ["", "s=ab;i=1", "s=ab;i=zz;b=cd", "s=;i=1;b=cd", "s=ab;i=1;b=cd;junk", "s=xy;i=1;b=cd"] {
            assert_eq!(CursorId::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    /// What journalctl 252 printed for 5 entries written by
    /// systemd-journal-remote, the third with a binary MESSAGE.
    #[test]
    fn parses_real_journalctl_output() {
        let real: &[u8] = include_bytes!("testdata/journalctl.export");
        let mut rest = real;
        let mut got = Vec::new();
        while let Some((e, used)) = next_entry(rest).unwrap() {
            let id = CursorId::parse(e.cursor.unwrap()).unwrap();
            got.push((id.seqnum, e.message.unwrap().to_vec(), e.priority, e.unit));
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        let want: Vec<_> = (0..5u8)
            .map(|i| {
                let msg = if i == 2 { b"bin\x00ary 2".to_vec() } else { format!("entry {i}").into_bytes() };
                const PRIORITIES: [&[u8]; 5] = [b"0", b"1", b"2", b"3", b"4"];
                (u64::from(i) + 1, msg, Some(PRIORITIES[usize::from(i)]), Some(&b"app.service"[..]))
            })
            .collect();
        assert_eq!(got, want);
    }

    /// The model: entries of (name, value) written in export format, text
    /// when the value allows it, binary otherwise, as journalctl does.
    fn write_export(entries: &[Vec<(String, Vec<u8>)>]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            for (name, value) in e {
                let text = std::str::from_utf8(value).is_ok_and(|s| !s.chars().any(|c| c.is_control() && c != '\t'));
                if text {
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(value);
                    out.push(b'\n');
                } else {
                    out.extend(binary(name, value));
                }
            }
            out.push(b'\n');
        }
        out
    }

    proptest! {
        /// Any entries, fed in any chunking: every entry comes out once, in
        /// order, with its MESSAGE, whatever its bytes.
        #[test]
        fn chunked_stream_matches_the_model(
            entries in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(("[A-Z_]{1,8}", prop::collection::vec(any::<u8>(), 0..12)), 0..4)),
                1..8),
            chunk in 1usize..64,
        ) {
            let model: Vec<Vec<(String, Vec<u8>)>> = entries.iter().map(|(msg, rest)| {
                let mut e: Vec<(String, Vec<u8>)> = rest.iter().filter(|(n, _)| n != "MESSAGE").cloned().collect();
                e.push(("MESSAGE".into(), msg.clone()));
                e
            }).collect();
            let stream = write_export(&model);
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some((e, used)) = next_entry(&buf).unwrap() {
                    got.push((e.message.map(<[u8]>::to_vec), e.fields));
                    buf.drain(..used);
                }
            }
            prop_assert!(buf.is_empty());
            let want: Vec<_> = model.iter().map(|e| (Some(e.last().unwrap().1.clone()), e.len())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
