use super::*;
use crate::record::Cut;
use crossbeam_channel::Receiver;
use std::io::Write;
use std::path::Path;

const FLUSH: Duration = Duration::from_millis(50);

/// A context for readers of files under `data`, and its channel.
pub(crate) fn context(data: &Path) -> (Arc<TailCtx>, Receiver<Batch>) {
    let (tx, rx) = crossbeam_channel::bounded(4);
    let cfg = TailConfig {
        split: SplitConfig::default(),
        read_from: ReadFrom::Beginning,
        partial_flush: Some(FLUSH),
        rotate_wait: Duration::from_millis(50),
        poll_max: Duration::from_millis(10),
        parse_json: false,
        follow_symlinks: false,
        allowed_paths: Default::default(),
        close_inactive: None,
        multiline: None,
    };
    let checkpoints = Arc::new(Checkpoints::open(data).unwrap());
    (Arc::new(TailCtx { cfg, checkpoints, tx, stats: Arc::default(), wake: None, max_open_files: 0 }), rx)
}

/// The lines that arrive, acknowledged: at least `at_least` (waiting up
/// to 10 s for them), then any more until none came for `quiet`.
/// A record as the tests see it: text, offset, cut.
pub(crate) type Got = (String, u64, Cut);

pub(crate) fn lines(rx: &Receiver<Batch>, at_least: usize, quiet: Duration) -> Vec<Got> {
    let mut out = Vec::new();
    while let Ok(b) = rx.recv_timeout(if out.len() < at_least { Duration::from_secs(10) } else { quiet }) {
        out.extend(b.lines().map(|l| (String::from_utf8_lossy(l.bytes).into_owned(), l.offset, l.cut)));
        b.ack.ack_many(b.spans.len() as u32);
    }
    out
}

pub(crate) fn append(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(bytes).unwrap();
}

#[test]
fn an_unfinished_first_line_waits_for_its_newline() {
    // Was: flushed after the idle timeout under an identity hashed from
    // "unfinished"; once the line was complete the first line had
    // changed, the file was taken for truncated and read again from 0:
    // "unfinished and done" and "next" came after "unfinished".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"unfinished");
    let (ctx, rx) = context(&dir.path().join("data"));
    let reader = spawn(ctx, File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    // Well past the flush timeout: held, it is the file's first line.
    let mut got = lines(&rx, 0, FLUSH * 6);
    append(&path, b" and done\nnext\n");
    got.extend(lines(&rx, 2, FLUSH * 6));
    let want = vec![("unfinished and done".to_string(), 0, Cut::Whole), ("next".to_string(), 20, Cut::Whole)];
    assert_eq!(got, want);
    // An unfinished line after the first one is flushed as before.
    append(&path, b"tail");
    assert_eq!(lines(&rx, 1, FLUSH * 6), vec![("tail".to_string(), 25, Cut::Partial)]);
    reader.join();
}

#[test]
fn a_file_found_empty_keeps_its_first_batch_until_it_is_acknowledged() {
    // Was: the file got its source (and so its checkpoint) at its first
    // send, with the offset just past that batch; saved before the batch
    // was acknowledged, the checkpoint passed lines the sink never took,
    // and a restart skipped them.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("a.log");
    append(&path, b"");
    let (ctx, rx) = context(&data);
    let first =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    append(&path, b"one\ntwo\n");
    // Received, never acknowledged: lost on the way.
    let lost = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(lost.spans.len(), 2);
    first.join();
    ctx.checkpoints.save().unwrap();
    drop((ctx, lost));
    let (ctx, rx) = context(&data);
    let second =
        spawn(ctx, File::open(&path).unwrap(), path.clone(), "t".into(), Start::Present, &[]).unwrap().unwrap();
    let want = vec![("one".to_string(), 0, Cut::Whole), ("two".to_string(), 4, Cut::Whole)];
    assert_eq!(lines(&rx, 2, FLUSH * 6), want);
    second.join();
}

#[test]
fn a_lone_unfinished_line_is_shipped_once_across_a_restart() {
    // Was: shipped by the first reader, and again by the reader after a
    // restart (a file without a complete first line had no identity to
    // find its checkpoint by, so it was read from 0).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("a.log");
    append(&path, b"alone");
    let (ctx, rx) = context(&data);
    let first =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    let mut got = lines(&rx, 0, FLUSH * 6);
    first.join();
    got.extend(lines(&rx, 0, Duration::from_millis(10)));
    ctx.checkpoints.save().unwrap();
    drop(ctx);
    let (ctx, rx) = context(&data);
    let second =
        spawn(ctx, File::open(&path).unwrap(), path.clone(), "t".into(), Start::Present, &[]).unwrap().unwrap();
    got.extend(lines(&rx, 0, FLUSH * 6));
    // Deleted: it will never be completed, so it is flushed as it is.
    fs::remove_file(&path).unwrap();
    got.extend(lines(&rx, 1, FLUSH * 6));
    assert_eq!(got, vec![("alone".to_string(), 0, Cut::Partial)]);
    second.join();
}

/// A context whose readers group lines with Java's preset, with
/// `timeout_ms`, and (with `wake`) inotify: a parked reader then sleeps
/// up to [`WATCHED_IDLE`] unless the event's timeout wakes it.
fn java_context(data: &Path, timeout_ms: u64, wake: bool) -> (Arc<TailCtx>, Receiver<Batch>) {
    let (ctx, rx) = context(data);
    let mut cfg = ctx.cfg.clone();
    let mut m = Multiline::preset(crate::config::multiline::Preset::Java);
    m.timeout_ms = timeout_ms;
    cfg.multiline = Some(m);
    let wake = if wake { Wake::start() } else { None };
    (Arc::new(TailCtx { cfg, wake, ..(*ctx).clone() }), rx)
}

/// Records as [`lines`], with the source of the last batch.
fn records(rx: &Receiver<Batch>, at_least: usize, quiet: Duration) -> (Vec<Got>, Option<Arc<Source>>) {
    let mut out = Vec::new();
    let mut src = None;
    while let Ok(b) = rx.recv_timeout(if out.len() < at_least { Duration::from_secs(10) } else { quiet }) {
        out.extend(b.lines().map(|l| (String::from_utf8_lossy(l.bytes).into_owned(), l.offset, l.cut)));
        b.ack.ack_many(b.spans.len() as u32);
        src = Some(b.source.clone());
    }
    (out, src)
}

fn rec(text: &str, offset: usize) -> (String, u64, Cut) {
    (text.to_string(), offset as u64, Cut::Whole)
}

const TRACE: &str = "2026-12-02 03:41:48,001 ERROR request failed\n\
                     java.lang.IllegalStateException: outer\n\
                     \tat com.x.A.run(A.java:10)\n\
                     Caused by: java.lang.NullPointerException\n\
                     \tat com.x.D.get(D.java:1)\n\
                     \t... 12 more\n";

#[test]
fn multiline_events_ship_whole_and_the_checkpoint_stops_at_the_open_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    let text = format!("2026-12-02 03:41:47,123 INFO start\n{TRACE}2026-12-02 03:41:49,000 INFO next\n");
    append(&path, text.as_bytes());
    let (ctx, rx) = java_context(&dir.path().join("data"), 60_000, false);
    let reader =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    let (got, src) = records(&rx, 3, FLUSH * 4);
    let second = text.find("java.lang").unwrap();
    let last = text.find("2026-12-02 03:41:49").unwrap();
    // The `ERROR` line is an event of its own: the trace starts at `java.lang`.
    let error = text.find("2026-12-02 03:41:48").unwrap();
    assert_eq!(
        got,
        vec![
            rec("2026-12-02 03:41:47,123 INFO start", 0),
            rec("2026-12-02 03:41:48,001 ERROR request failed", error),
            rec(&TRACE[TRACE.find("java").unwrap()..TRACE.len() - 1], second),
        ]
    );
    // Everything acknowledged, yet the checkpoint waits at the open event.
    assert_eq!(src.unwrap().progress.advance(), last as u64);
    assert_eq!(ctx.stats.multiline_events.load(Ordering::Relaxed), 1);
    // Stopping ends it: nothing is left behind.
    reader.join();
    let (got, src) = records(&rx, 1, Duration::from_millis(10));
    assert_eq!(got, vec![rec("2026-12-02 03:41:49,000 INFO next", last)]);
    assert_eq!(src.unwrap().progress.advance(), text.len() as u64);
}

#[test]
fn a_restart_from_a_checkpoint_saved_mid_event_reads_the_whole_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("a.log");
    let (head, rest) = TRACE.split_at(TRACE.find("Caused").unwrap());
    append(&path, format!("first\n{head}").as_bytes());
    let (ctx, rx) = java_context(&data, 60_000, false);
    let _crashed =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    // `first` and the `ERROR` line; the trace is open.
    let (got, _) = records(&rx, 2, FLUSH * 4);
    assert_eq!(got.len(), 2, "{got:?}");
    ctx.checkpoints.save().unwrap();
    // A kill -9 now: the first reader never ships the trace (it stays
    // running, its channel unread); the next process starts from disk.
    append(&path, format!("{rest}after\n").as_bytes());
    let (ctx2, rx2) = java_context(&data, 60_000, false);
    let second =
        spawn(ctx2, File::open(&path).unwrap(), path.clone(), "t".into(), Start::Present, &[]).unwrap().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let java = text.find("java.lang").unwrap();
    let (got, _) = records(&rx2, 1, FLUSH * 4);
    assert_eq!(got, vec![rec(&text[java..text.find("\nafter").unwrap()], java)]);
    second.join();
    drop(rx);
}

#[test]
fn a_parked_watched_reader_wakes_to_end_an_event_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, TRACE.as_bytes());
    let (ctx, rx) = java_context(&dir.path().join("data"), 300, true);
    assert!(ctx.wake.is_some(), "inotify is available");
    let t = Instant::now();
    let reader =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    let (got, _) = records(&rx, 2, FLUSH);
    // Long before the watched idle sleep would end.
    assert!(t.elapsed() < WATCHED_IDLE / 2, "{:?}", t.elapsed());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1].0.ends_with("\t... 12 more"), "{got:?}");
    // A continuation after the timeout is an event of its own.
    append(&path, b"\tat late.Line(L.java:1)\n");
    let (got, _) = records(&rx, 1, FLUSH);
    assert_eq!(got, vec![rec("\tat late.Line(L.java:1)", TRACE.len())]);
    reader.join();
}

#[test]
fn truncation_and_deletion_end_the_open_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"old event\n\tat a.B(B.java:1)\n\tat a.C(C.java:2)\n");
    let (ctx, rx) = java_context(&dir.path().join("data"), 60_000, false);
    let reader =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    assert!(records(&rx, 0, FLUSH * 4).0.is_empty(), "the event is open");
    // `> file`, then something shorter: the old event ends with its content.
    std::fs::write(&path, b"new\n").unwrap();
    let (got, _) = records(&rx, 1, FLUSH * 4);
    assert_eq!(got, vec![rec("old event\n\tat a.B(B.java:1)\n\tat a.C(C.java:2)", 0)]);
    append(&path, b"\tat n.D(D.java:3)\n");
    fs::remove_file(&path).unwrap();
    let (got, _) = records(&rx, 1, FLUSH * 4);
    assert_eq!(got, vec![rec("new\n\tat n.D(D.java:3)", 0)]);
    reader.join();
}

#[test]
fn events_past_max_lines_ship_in_numbered_parts_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.log");
    append(&path, b"boom\n\tat 1\n\tat 2\n\tat 3\n\tat 4\nnext\n");
    let (ctx, rx) = java_context(&dir.path().join("data"), 60_000, false);
    let mut cfg = ctx.cfg.clone();
    cfg.multiline.as_mut().unwrap().max_lines = 2;
    let ctx = Arc::new(ctx.with_cfg(cfg));
    let reader =
        spawn(ctx.clone(), File::open(&path).unwrap(), path.clone(), "t".into(), Start::New, &[]).unwrap().unwrap();
    let (got, _) = records(&rx, 3, FLUSH * 4);
    assert_eq!(
        got,
        vec![
            ("boom\n\tat 1".to_string(), 0, Cut::Part(1)),
            ("\tat 2\n\tat 3".to_string(), 11, Cut::Part(2)),
            ("\tat 4".to_string(), 23, Cut::Part(3)),
        ]
    );
    assert_eq!(ctx.stats.multiline_parts.load(Ordering::Relaxed), 3);
    assert_eq!(ctx.stats.multiline_events.load(Ordering::Relaxed), 1);
    reader.join();
    assert_eq!(records(&rx, 1, Duration::from_millis(10)).0, vec![rec("next", 29)]);
}

#[test]
fn line_start_before_edges() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    // (content, expected start)
    let table: &[(&[u8], u64)] = &[(b"", 0), (b"a\n", 2), (b"a\nbc", 2), (b"abc", 0), (b"\n", 1)];
    for &(content, want) in table {
        fs::write(&p, content).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(line_start_before(&f, content.len() as u64).unwrap(), want, "{content:?}");
    }
}
