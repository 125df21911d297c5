//! `logcollect tap`: what the agent would ship, printed instead of shipped
//! (as `vector tap` and Fluent Bit's stdout output let users see it before
//! deploying). The files are found, checked and opened by the agent's own
//! [`guard`], split by its own [`LineBuffer`] with each entry's options,
//! and printed as one JSON object per Kafka record (topic, key, value,
//! headers), or as the exact `_bulk` lines the transfer would send
//! ([`BulkBody`]). Checkpoints are neither read nor written; nothing is
//! sent anywhere. Reading stops at each file's end as it is now.

use crate::agent::guard;
use crate::agent::identity::FileId;
use crate::agent::multiline::{Aggregator, Event};
use crate::agent::split::{LineBuffer, Span};
use crate::agent::tail::{entry_config, TailConfig};
use crate::config::allowed::fixed_prefix;
use crate::config::{absolute_text, CollectEntry, Config, IndexPattern};
use crate::elastic::batcher::message_mode;
use crate::elastic::body::{BulkBody, MessageMode};
use crate::elastic::index_name::IndexNames;
use crate::record::{Cut, Origin, Record, NOT_FROM_KAFKA};
use base64::Engine;
use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Where each file is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The whole file.
    Beginning,
    /// Only what is appended would ship: prints nothing of the file now.
    End,
    /// A byte offset (past the end: the end).
    Offset(u64),
}

/// What `logcollect tap` prints.
#[derive(Clone, Debug)]
pub struct Options {
    /// The entries to read: `--path`/`--topic`, or `[collect]`.
    pub entries: Vec<CollectEntry>,
    /// Where each file is read from.
    pub from: Position,
    /// `_bulk` lines instead of Kafka records.
    pub documents: bool,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// What a tap saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tapped {
    /// Files read.
    pub files: usize,
    /// Records printed (each a record, or a document's two lines).
    pub records: u64,
    /// Files found but refused or unreadable (each named on stderr).
    pub refused: usize,
}

/// Reads `opts.entries` as the agent of `cfg` would, printing to `out`;
/// problems with single files go to `err`, naming the file.
pub fn run(cfg: &Config, opts: &Options, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<Tapped> {
    let base = TailConfig::from(&cfg.agent);
    let host = crate::control::host::detect(cfg.agent.host.as_deref());
    let pattern = cfg.es.as_ref().map_or_else(|| IndexPattern::parse("{topic}").expect("valid"), |e| e.index.clone());
    let parse_json: &[String] = cfg.es.as_ref().map_or(&[], |e| &e.parse_json);
    let mut printer = Printer {
        out,
        host: &host,
        documents: opts.documents.then(|| (BulkBody::new(usize::MAX), IndexNames::new(pattern))),
        limit: opts.limit.unwrap_or(u64::MAX),
        tapped: Tapped::default(),
    };
    let mut seen = HashSet::new();
    for entry in &opts.entries {
        let tcfg = entry_config(&base, entry);
        let mode = if tcfg.parse_json { MessageMode::ParseJson } else { message_mode(parse_json, &entry.topic) };
        let paths = match glob::glob(&entry.path) {
            Ok(p) => p,
            Err(e) => {
                writeln!(err, "logcollect tap: bad glob {:?} for topic {}: {e}", entry.path, entry.topic)?;
                printer.tapped.refused += 1;
                continue;
            }
        };
        for item in paths {
            let path = match item {
                Ok(p) => std::path::absolute(&p).unwrap_or(p),
                Err(e) => {
                    writeln!(err, "logcollect tap: cannot read {}: {}", e.path().display(), e.error())?;
                    printer.tapped.refused += 1;
                    continue;
                }
            };
            let file = match open(entry, &tcfg, &path) {
                Ok(Some(f)) => f,
                Ok(None) => continue, // a directory, or excluded
                Err(reason) => {
                    writeln!(err, "logcollect tap: {reason}")?;
                    printer.tapped.refused += 1;
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else { continue };
            if !seen.insert((entry.topic.clone(), std::os::unix::fs::MetadataExt::ino(&meta))) {
                continue; // two globs of one topic found it
            }
            printer.tapped.files += 1;
            if let Err(e) = printer.file(file, &path, &entry.topic, &tcfg, mode, opts.from) {
                writeln!(err, "logcollect tap: reading {}: {e}", path.display())?;
                printer.tapped.refused += 1;
            }
            if printer.tapped.records >= printer.limit {
                return Ok(printer.tapped);
            }
        }
    }
    Ok(printer.tapped)
}

/// The agent's checks and open (see [`guard`]); `Ok(None)` for what the
/// agent skips silently.
fn open(entry: &CollectEntry, cfg: &TailConfig, path: &Path) -> Result<Option<std::fs::File>, String> {
    let refused = |r: guard::Refused| match r {
        guard::Refused::Directory | guard::Refused::Excluded => Ok(None),
        guard::Refused::Report(m) => Err(m),
    };
    let found = match guard::identify(path, cfg.follow_symlinks) {
        Ok(c) => c,
        Err(r) => return refused(r),
    };
    let glob = absolute_text(&entry.path);
    let fixed = fixed_prefix(&glob);
    let rules = guard::Rules {
        follow_symlinks: cfg.follow_symlinks,
        allowed: &cfg.allowed_paths,
        glob: &glob,
        fixed: &fixed,
        exclude: &entry.options.exclude,
    };
    match guard::admit(path, &found, rules) {
        Ok(f) => Ok(Some(f)),
        Err(r) => refused(r),
    }
}

struct Printer<'a> {
    out: &'a mut dyn Write,
    host: &'a str,
    documents: Option<(BulkBody, IndexNames)>,
    limit: u64,
    tapped: Tapped,
}

impl Printer<'_> {
    fn file(
        &mut self,
        mut file: std::fs::File,
        path: &Path,
        topic: &str,
        cfg: &TailConfig,
        mode: MessageMode,
        from: Position,
    ) -> io::Result<()> {
        let size = file.metadata()?.len();
        let start = match from {
            Position::Beginning => 0,
            Position::End => size,
            Position::Offset(n) => n.min(size),
        };
        // The agent names a file by its first line: none yet, nothing ships.
        let fid = match FileId::of(&file)? {
            Some(id) => id,
            None if cfg.partial_flush.is_some() && size > 0 => FileId::of_partial(&file)?,
            None => return Ok(()),
        };
        let fid = fid.to_string();
        file.seek(SeekFrom::Start(start))?;
        let mut file = file.take(size - start);
        let path = path.to_string_lossy();
        let mut buf = LineBuffer::new(start, cfg.split);
        let mut spans: Vec<Span> = Vec::new();
        // With `multiline`, the events the agent's reader would make: the
        // file is read at once, so only its end (a flush) ends the last one.
        let mut agg = cfg.multiline.as_ref().map(|m| Aggregator::new(m, cfg.split.max_line_bytes));
        let mut events: Vec<(Vec<u8>, u64, Cut)> = Vec::new();
        loop {
            let n = buf.read_from(&mut file)?;
            // At the end, the unfinished last line the agent ships after
            // partial_line_flush_ms (when set).
            spans.clear(); // both append
            let block = match buf.take_lines(&mut spans) {
                Some(b) => Some(b),
                None if n == 0 && cfg.partial_flush.is_some() => buf.take_partial(&mut spans),
                None => None,
            };
            let at_end = n == 0 && (buf.pending() == 0 || cfg.partial_flush.is_none());
            if let Some(agg) = agg.as_mut() {
                let mut keep = |e: Event<'_>| events.push((e.bytes.to_vec(), e.offset, e.cut));
                if let Some(block) = &block {
                    for span in &spans {
                        agg.push(
                            &block.data[span.range()],
                            block.offset + u64::from(span.start),
                            span.cut,
                            0,
                            &mut keep,
                        );
                    }
                }
                if at_end {
                    agg.flush(&mut keep);
                }
                for (value, offset, cut) in events.drain(..) {
                    let origin = Origin {
                        host: self.host.as_bytes(),
                        path: path.as_bytes(),
                        offset,
                        fid: fid.as_bytes(),
                        cut,
                        journal: None,
                    };
                    self.line(&value, topic, origin, cfg.parse_json, mode)?;
                    if self.tapped.records >= self.limit {
                        return Ok(());
                    }
                }
            } else if let Some(block) = block {
                for span in &spans {
                    let origin = Origin {
                        host: self.host.as_bytes(),
                        path: path.as_bytes(),
                        offset: block.offset + u64::from(span.start),
                        fid: fid.as_bytes(),
                        cut: span.cut,
                        journal: None,
                    };
                    self.line(&block.data[span.range()], topic, origin, cfg.parse_json, mode)?;
                    if self.tapped.records >= self.limit {
                        return Ok(());
                    }
                }
            }
            if at_end {
                return Ok(());
            }
        }
    }

    fn line(&mut self, value: &[u8], topic: &str, o: Origin<'_>, json: bool, mode: MessageMode) -> io::Result<()> {
        self.tapped.records += 1;
        let now = crate::common::clock::now_ms();
        let Some((body, names)) = &mut self.documents else {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let mut headers = serde_json::Map::new();
            for (k, v) in record_headers(&o, json) {
                headers.insert(k.into(), v.into());
            }
            let mut rec = serde_json::json!({
                "topic": topic,
                "key": text(o.fid),
                "value": text(value),
                "headers": headers,
                "timestamp": now,
            });
            if std::str::from_utf8(value).is_err() {
                rec["value_base64"] = base64::engine::general_purpose::STANDARD.encode(value).into();
            }
            serde_json::to_writer(&mut *self.out, &rec)?;
            return self.out.write_all(b"\n");
        };
        let rec =
            Record { value, topic, partition: NOT_FROM_KAFKA, offset: 0, timestamp_ms: Some(now), origin: Some(o) };
        let index = names.name(topic, now).map_err(|e| io::Error::other(e.to_string()))?.to_string();
        body.clear();
        let _ = body.push(&rec, &index, mode); // an empty body takes any document
        self.out.write_all(body.as_bytes())
    }
}

/// The headers the agent's `ship` stage gives a line (see the README's
/// "Records"), as text.
pub fn record_headers(o: &Origin<'_>, json: bool) -> Vec<(&'static str, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut h =
        vec![("host", text(o.host)), ("path", text(o.path)), ("offset", o.offset.to_string()), ("fid", text(o.fid))];
    match o.cut {
        Cut::Whole => {}
        Cut::Part(n) => h.push(("split", n.to_string())),
        Cut::Truncated => h.push(("truncated", "1".into())),
        Cut::Partial => h.push(("partial", "1".into())),
    }
    if json {
        h.push(("json", "1".into()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_read_back_as_the_origin_they_describe() {
        for cut in [Cut::Whole, Cut::Part(2), Cut::Truncated, Cut::Partial] {
            let o = Origin { host: b"h", path: b"/var/log/a.log", offset: 42, fid: b"1-2-3", cut, journal: None };
            let h = record_headers(&o, true);
            let back = Origin::from_headers(h.iter().map(|(k, v)| (*k, v.as_bytes()))).unwrap();
            assert_eq!(back, o, "{cut:?}");
            assert_eq!(h.last().unwrap(), &("json", "1".to_string()));
        }
    }

    fn tap(text: &[u8], agent: &str, from: Position, documents: bool) -> (String, Tapped) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, text).unwrap();
        let cfg = Config::from_ini_str(&format!("[agent]\ndata_dir = /nonexistent\nhost = h1\n{agent}\n")).unwrap();
        let opts = Options {
            entries: vec![CollectEntry::new(log.display().to_string(), "app")],
            from,
            documents,
            limit: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let tapped = run(&cfg, &opts, &mut out, &mut err).unwrap();
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        (String::from_utf8(out).unwrap(), tapped)
    }

    #[test]
    fn records_are_printed_with_their_headers_from_the_position_asked() {
        let (out, tapped) =
            tap(b"one\ntwo\r\nbad \xff\nunfinished", "partial_line_flush_ms = 0", Position::Offset(4), false);
        assert_eq!(tapped.records, 2, "{out}");
        let recs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(recs[0]["value"], "two", "CR stripped");
        assert_eq!(recs[0]["headers"]["offset"], "4");
        assert_eq!(recs[0]["headers"]["host"], "h1");
        assert_eq!(recs[0]["topic"], "app");
        assert_eq!(recs[1]["value_base64"], "YmFkIP8=");
        assert!(recs[1]["headers"].get("partial").is_none());
        let (out, tapped) = tap(b"one\nunfinished", "partial_line_flush_ms = 5000", Position::Beginning, false);
        assert_eq!(tapped.records, 2, "{out}");
        assert!(out.lines().nth(1).unwrap().contains(r#""partial":"1""#), "{out}");
        let (out, tapped) = tap(b"one\n", "", Position::End, false);
        assert_eq!((out.as_str(), tapped.records, tapped.files), ("", 0, 1));
    }

    #[test]
    fn a_multiline_entry_prints_one_record_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "start\nboom\n\tat a.B(B.java:1)\nCaused by: x\n\t... 3 more\nlast\n\tat c.D(D.java:2)\n")
            .unwrap();
        let cfg = Config::from_ini_str("[agent]\ndata_dir = /nonexistent\nhost = h1\n").unwrap();
        let list = format!(r#"[{{"path":"{}","topic":"app","multiline":"java"}}]"#, log.display());
        let opts = Options { entries: crate::control::collect::parse(list.as_bytes()).unwrap(), ..tap_options() };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let tapped = run(&cfg, &opts, &mut out, &mut err).unwrap();
        let out = String::from_utf8(out).unwrap();
        let recs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let got: Vec<(&str, &str)> =
            recs.iter().map(|r| (r["value"].as_str().unwrap(), r["headers"]["offset"].as_str().unwrap())).collect();
        // The file's end ends the last event.
        assert_eq!(
            got,
            vec![
                ("start", "0"),
                ("boom\n\tat a.B(B.java:1)\nCaused by: x\n\t... 3 more", "6"),
                ("last\n\tat c.D(D.java:2)", "54"),
            ]
        );
        assert_eq!(tapped.records, 3);
    }

    fn tap_options() -> Options {
        Options { entries: Vec::new(), from: Position::Beginning, documents: false, limit: None }
    }

    #[test]
    fn documents_are_the_bulk_lines_with_the_ids_the_transfer_gives() {
        let (out, _) = tap(b"hello world\n", "", Position::Beginning, true);
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["create"]["_index"], "app");
        assert_eq!(lines[1]["message"], "hello world");
        assert_eq!(lines[1]["host"]["name"], "h1");
    }
}
