//! The record model every stage shares: a log line as it travels, borrowed
//! from wherever it lies ([`Record`]), where the agent read it ([`Origin`],
//! [`Cut`]), and the document id both Elasticsearch and the embedded index
//! give it ([`doc_id()`]). Plain data, no I/O.

mod doc_id;

pub use doc_id::{doc_id, doc_id_with, DocId};

/// How a shipped line relates to the line it came from in the file (the
/// splitter cuts, the agent's headers carry the cut, documents mark it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A whole line.
    Whole,
    /// Part `n` (1-based) of a line longer than `max_line_bytes`; the last part
    /// is marked too, so a reader can tell the line is complete.
    Part(u32),
    /// The first `max_line_bytes` of a longer line; the rest was skipped.
    Truncated,
    /// The unfinished last line of a file, flushed after the idle timeout
    /// without its newline.
    Partial,
}

/// One line on its way to a document, as a Kafka record or straight from a
/// reader: borrowed, nothing copied.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The log line (the record value), without its newline. Any bytes.
    pub value: &'a [u8],
    /// The Kafka topic (or the collect entry's topic).
    pub topic: &'a str,
    /// Kafka partition ([`NOT_FROM_KAFKA`] for lines from the readers).
    pub partition: i32,
    /// Kafka offset of the record in its partition.
    pub offset: i64,
    /// Record timestamp in ms since the Unix epoch, if the record has one.
    pub timestamp_ms: Option<i64>,
    /// Where the agent read the line; `None` for records of other producers.
    pub origin: Option<Origin<'a>>,
}

/// [`Record::partition`] of a line that did not come through Kafka (`logcollect
/// run` writing straight to Elasticsearch): its document has no `kafka` field.
pub const NOT_FROM_KAFKA: i32 = -1;

/// The agent's record headers (written by the agent's `ship` stage): where a line was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `host` header.
    pub host: &'a [u8],
    /// `path` header: the path the file was found under.
    pub path: &'a [u8],
    /// `offset` header: file offset of the line's first byte.
    pub offset: u64,
    /// `fid` header: the file identity, as text.
    pub fid: &'a [u8],
    /// From the `split` / `truncated` / `partial` headers; `Whole` without them.
    pub cut: Cut,
    /// With the `journal` header: the record is a systemd journal entry
    /// (`path` is `journal`, `fid` its journal, `offset` its sequence number).
    pub journal: Option<Journal<'a>>,
}

/// The fields of a journal entry its document shows (ECS names in
/// brackets), from the agent's `unit`, `ident`, `pid` and `priority`
/// headers; each is `None` when the entry had none (or, for the numbers,
/// an unparsable one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Journal<'a> {
    /// `_SYSTEMD_UNIT` (`systemd.unit`).
    pub unit: Option<&'a [u8]>,
    /// `SYSLOG_IDENTIFIER` (`process.name`).
    pub ident: Option<&'a [u8]>,
    /// `_PID` (`process.pid`).
    pub pid: Option<u64>,
    /// `PRIORITY`, 0..=7 (`log.syslog.priority`, and `log.level` its name).
    pub priority: Option<u8>,
}

impl<'a> Origin<'a> {
    /// Reads the agent's headers from `(key, value)` pairs; other keys are
    /// ignored. `None` unless `host`, `path`, `fid` and a decimal `offset`
    /// are all there: a record with only some of them did not come from the
    /// agent and is treated as foreign (Kafka-coordinate id, no `host`/`log`).
    /// An unparsable `split` number leaves the line `Whole`.
    pub fn from_headers<I>(headers: I) -> Option<Origin<'a>>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let (mut host, mut path, mut offset, mut fid) = (None, None, None, None);
        let mut cut = Cut::Whole;
        let (mut is_journal, mut journal) = (false, Journal::default());
        for (key, value) in headers {
            match key {
                "host" => host = Some(value),
                "path" => path = Some(value),
                "offset" => offset = parse_decimal(value),
                "fid" => fid = Some(value),
                "split" => {
                    if let Some(n) = parse_decimal(value).and_then(|n| u32::try_from(n).ok()) {
                        cut = Cut::Part(n);
                    }
                }
                "truncated" => cut = Cut::Truncated,
                "partial" => cut = Cut::Partial,
                "journal" => is_journal = true,
                "unit" => journal.unit = Some(value),
                "ident" => journal.ident = Some(value),
                "pid" => journal.pid = parse_decimal(value),
                "priority" => journal.priority = parse_decimal(value).filter(|&p| p <= 7).map(|p| p as u8),
                _ => {}
            }
        }
        let journal = is_journal.then_some(journal);
        Some(Origin { host: host?, path: path?, offset: offset?, fid: fid?, cut, journal })
    }
}

/// Plain ASCII decimal, no sign, no spaces; `None` on overflow (header
/// values, journal fields).
pub fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Records for the tests of the modules that make documents of them.

    use super::{Cut, Origin, Record};

    pub(crate) fn origin(offset: u64) -> Origin<'static> {
        Origin {
            host: b"web1",
            path: b"/var/log/app.log",
            offset,
            fid: b"803-1a2b-00112233aabbccdd",
            cut: Cut::Whole,
            journal: None,
        }
    }

    pub(crate) fn rec(value: &[u8]) -> Record<'_> {
        Record {
            value,
            topic: "app",
            partition: 3,
            offset: 98765,
            timestamp_ms: Some(1_795_603_474_123), // 2026-11-25T10:44:34.123Z
            origin: Some(origin(1234)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::origin;
    use super::*;

    #[test]
    fn origin_from_headers() {
        let full: Vec<(&str, &[u8])> = vec![
            ("host", b"web1"),
            ("path", b"/var/log/app.log"),
            ("offset", b"1234"),
            ("fid", b"803-1a2b-00112233aabbccdd"),
        ];
        assert_eq!(Origin::from_headers(full.clone()), Some(origin(1234)));
        // (extra headers, expected cut)
        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cuts: &[(Headers, Cut)] = &[
            (&[("split", b"3")], Cut::Part(3)),
            (&[("split", b"x")], Cut::Whole),
            (&[("truncated", b"1")], Cut::Truncated),
            (&[("partial", b"1")], Cut::Partial),
            (&[("traceparent", b"00-ab")], Cut::Whole),
        ];
        for &(extra, cut) in cuts {
            let h = full.iter().copied().chain(extra.iter().copied());
            assert_eq!(Origin::from_headers(h).map(|o| o.cut), Some(cut), "{extra:?}");
        }
        // A journal entry's headers.
        let j: Vec<(&str, &[u8])> =
            vec![("journal", b"1"), ("unit", b"ssh.service"), ("ident", b"sshd"), ("pid", b"42"), ("priority", b"9")];
        let got = Origin::from_headers(full.iter().copied().chain(j.iter().copied())).unwrap().journal;
        let want = Journal { unit: Some(b"ssh.service"), ident: Some(b"sshd"), pid: Some(42), priority: None };
        assert_eq!(got, Some(want), "priority 9 is not a syslog priority");
        let no_mark = full.iter().copied().chain(j[1..].iter().copied());
        assert_eq!(Origin::from_headers(no_mark).unwrap().journal, None, "without the journal header: a file line");
        for missing in ["host", "path", "offset", "fid"] {
            let h = full.iter().copied().filter(|h| h.0 != missing);
            assert_eq!(Origin::from_headers(h), None, "without {missing}");
        }
        // (offset header, parsed)
        let offsets: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-1", None),
            (b"+1", None),
            (b" 1", None),
            (b"12a", None),
        ];
        for &(text, want) in offsets {
            let h = full.iter().copied().map(|(k, v)| (k, if k == "offset" { text } else { v }));
            assert_eq!(Origin::from_headers(h).map(|o| o.offset), want, "{text:?}");
        }
    }
}
