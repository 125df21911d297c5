//! The index against a model of its queries, paging, commits and retention.

use super::{analyzer, IndexConfig, IndexError, LineDoc, LineOrigin, Payload, Store, Writer};
use crate::record::{self, Cut, Origin, Record};
use crate::search::query::{self, Node};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

use crate::search::query::{parse, words, DocView};
use tantivy::tokenizer::TokenStream;

#[test]
fn the_analyzer_cuts_words_as_the_query_model_does() {
    let long = "x".repeat(query::MAX_WORD_BYTES + 1);
    let edge = "y".repeat(query::MAX_WORD_BYTES);
    let texts = [
        "",
        "GET /api/v1/items?id=42 HTTP/1.1",
        "Ünïcode ÉTÉ straße İstanbul ǅ",
        "tabs\tand\r\nnewlines",
        "日本語のテキスト 中文",
        &format!("a {long} b {edge} c"),
        "a_b-c.d:e/f\\g",
        "¹²³ ½ ① x²",
    ];
    let mut a = analyzer();
    for t in texts {
        let mut got = Vec::new();
        let mut ts = a.token_stream(t);
        while ts.advance() {
            let tok = ts.token();
            got.push((tok.position as u32, tok.offset_from..tok.offset_to, tok.text.clone()));
        }
        let want: Vec<_> = words(t).into_iter().map(|w| (w.position, w.range, w.text)).collect();
        assert_eq!(got, want, "{t:?}");
    }
}

fn doc(i: u64, ts: i64, msg: &str, host: &str, path: &str, topic: &str) -> LineDoc {
    let mut scratch = Vec::new();
    let origin = Origin {
        host: host.as_bytes(),
        path: path.as_bytes(),
        offset: i,
        fid: b"1-2-3",
        cut: Cut::Whole,
        journal: None,
    };
    let rec = Record {
        value: msg.as_bytes(),
        topic,
        partition: record::NOT_FROM_KAFKA,
        offset: -1,
        timestamp_ms: Some(ts),
        origin: Some(origin),
    };
    let o = LineOrigin { host: host.into(), path: path.into(), offset: i, cut: Cut::Whole };
    LineDoc::new(&rec, Bytes::copy_from_slice(msg.as_bytes()), topic.into(), Some(o), &mut scratch)
}

fn open(dir: &Path) -> (Arc<Store>, Writer) {
    let (s, p) = Store::open(dir).unwrap();
    let s = Arc::new(s);
    let w = s.writer(&IndexConfig::in_dir(dir), &p).unwrap();
    (s, w)
}

const LINES: &[(&str, &str, &str, &str)] = &[
    ("GET /api/v1/items 200 ok", "web-1", "/var/log/a.log", "web"),
    ("POST /api/v1/items 500 Error: disk full", "web-2", "/var/log/b.log", "web"),
    ("error: timeout talking to db", "db-1", "/var/log/db.log", "db"),
    ("user ÉTÉ logged in", "web-1", "/var/log/a b.log", "auth"),
    ("disk almost full, Errors ahead", "db-1", "/var/log/db.log", "db"),
    ("", "web-1", "/var/log/a.log", "web"),
];

#[test]
fn queries_find_what_the_model_finds() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    for (i, (m, h, p, t)) in LINES.iter().enumerate() {
        w.add(doc(i as u64, 1000 + i as i64, m, h, p, t)).unwrap();
    }
    w.commit(None).unwrap();
    let queries = [
        "",
        "error",
        "ERROR",
        "err*",
        "\"disk full\"",
        "full disk",
        "api/v1/items",
        "host:web-1",
        "host:web*",
        "-host:web-1",
        "path:\"/var/log/a b.log\"",
        "path:/var/log/d*",
        "topic:db error",
        "error OR ok",
        "NOT error",
        "(error OR ok) -topic:db",
        "été",
        "message:items host:web-2",
        "xy*",
        "disk -full",
    ];
    for q in queries {
        let node = parse(q).unwrap();
        let want: Vec<usize> = LINES
            .iter()
            .enumerate()
            .filter(|(_, (m, h, p, t))| node.matches(&DocView { message: m, host: h, path: p, topic: t }))
            .map(|(i, _)| i)
            .collect();
        let (total, hits) = store.search(&node, 0, i64::MAX, 100, None, usize::MAX).unwrap();
        let mut got: Vec<usize> = hits.iter().map(|h| h.offset.unwrap() as usize).collect();
        got.sort();
        assert_eq!(got, want, "{q:?}");
        assert_eq!(total as usize, want.len(), "{q:?}");
    }
}

#[test]
fn newest_first_with_paging_and_time_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    // 50 lines, 10 per millisecond: ties broken by _seq.
    for i in 0..50u64 {
        w.add(doc(i, 1000 + (i / 10) as i64, &format!("line {i}"), "h", "/p", "t")).unwrap();
    }
    w.commit(None).unwrap();
    let all = parse("line").unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let (total, hits) = store.search(&all, 0, i64::MAX, 7, before, usize::MAX).unwrap();
        assert_eq!(total, 50);
        if hits.is_empty() {
            break;
        }
        before = hits.last().map(|h| (h.ts_ms, h.seq));
        seen.extend(hits.iter().map(|h| h.offset.unwrap()));
    }
    assert_eq!(seen, (0..50).rev().collect::<Vec<_>>(), "newest first, every line once");
    let (total, hits) = store.search(&all, 1001, 1003, 100, None, usize::MAX).unwrap();
    assert_eq!((total, hits.len()), (20, 20));
    assert!(hits.iter().all(|h| (1001..1003).contains(&h.ts_ms)));
    assert_eq!(store.histogram(&all, 0, i64::MAX, 1000, 2, 3).unwrap(), vec![20, 20, 10]);
    assert_eq!(store.histogram(&all, 1001, i64::MAX, 1000, 2, 3).unwrap(), vec![10, 20, 10]);
    // Match-all reads the timestamp column instead: the same counts.
    for (from, to) in [(0, i64::MAX), (1001, i64::MAX), (1001, 1003), (1004, 1005), (2000, i64::MAX)] {
        assert_eq!(
            store.histogram(&Node::All, from, to, 1000, 2, 3).unwrap(),
            store.histogram(&all, from, to, 1000, 2, 3).unwrap(),
            "[{from}, {to})"
        );
    }
    let after: Vec<u64> = store.since(&all, 44, 3, usize::MAX).unwrap().iter().map(|h| h.seq).collect();
    assert_eq!(after, vec![45, 46, 47]);
    assert_eq!(store.last_seq(), 49);
}

#[test]
fn payloads_survive_reopening_and_replacing_keeps_one_document_per_id() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, mut w) = open(dir.path());
        w.add(doc(1, 5, "a", "h", "/p", "t")).unwrap();
        w.add(doc(2, 5, "b", "h", "/p", "t")).unwrap();
        w.commit(None).unwrap();
        w.add_replacing(doc(2, 9, "b", "h", "/p", "t")).unwrap();
        w.add_replacing(doc(3, 9, "c", "h", "/p", "t")).unwrap();
        w.commit(None).unwrap();
        assert_eq!(store.num_docs(), 3);
        // Uncommitted work is lost with the process.
        w.add(doc(4, 9, "d", "h", "/p", "t")).unwrap();
    }
    let (store, p) = Store::open(dir.path()).unwrap();
    assert_eq!(p.next_seq, 4);
    assert_eq!(store.num_docs(), 3);
    let (_, hits) = store.search(&Node::All, 0, i64::MAX, 10, None, usize::MAX).unwrap();
    let id2 = hits.iter().find(|h| h.offset == Some(2)).unwrap();
    assert_eq!((id2.ts_ms, id2.id.len()), (9, 22), "the replacement won");
}

#[test]
fn a_second_writer_is_refused_with_the_directory_named() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _w) = open(dir.path());
    let (_, p) = Store::open(dir.path()).unwrap();
    let wait = std::time::Duration::from_millis(300);
    let started = std::time::Instant::now();
    let e = store.writer_waiting(&IndexConfig::in_dir(dir.path()), &p, wait).err().unwrap().to_string();
    assert!(e.contains(&dir.path().display().to_string()) && e.contains("another logcollect"), "{e}");
    assert!(started.elapsed() >= wait, "refused only after waiting");
}

#[test]
fn a_writer_waits_for_the_lock_of_a_predecessor_that_is_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let (store, w) = open(dir.path());
    let (_, p) = Store::open(dir.path()).unwrap();
    let going = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(w);
    });
    let wait = std::time::Duration::from_secs(10);
    assert!(store.writer_waiting(&IndexConfig::in_dir(dir.path()), &p, wait).is_ok(), "the lock, once let go");
    going.join().unwrap();
}

#[test]
fn messages_are_cut_as_they_are_loaded_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    let long = format!("start {}", "\u{20ac}".repeat(100));
    w.add(doc(0, 4, "first", "h", "/p", "t")).unwrap();
    w.add(doc(1, 5, &long, "h", "/p", "t")).unwrap();
    w.add(doc(2, 6, "short", "h", "/p", "t")).unwrap();
    w.commit(None).unwrap();
    let (_, hits) = store.search(&Node::All, 0, i64::MAX, 10, None, 11).unwrap();
    assert_eq!((hits[0].message.as_str(), hits[0].truncated), ("short", false));
    assert_eq!((hits[1].message.as_str(), hits[1].truncated), ("start \u{20ac}", true), "cut at a character");
    assert_eq!(hits.len(), 3);
    let live = store.since(&Node::All, 0, 10, 11).unwrap();
    let long_live = live.iter().find(|h| h.message.starts_with("start")).unwrap();
    assert!(long_live.truncated && live.iter().filter(|h| h.truncated).count() == 1);
    let whole = store.by_id(&hits[1].id).unwrap().unwrap();
    assert_eq!((whole.message, whole.truncated), (long, false));
}

#[test]
fn retention_drops_old_documents_by_age_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = Store::open(dir.path()).unwrap();
    let store = Arc::new(store);
    let day = 86_400_000i64;
    let now = 100 * day;
    let mut cfg = IndexConfig::in_dir(dir.path());
    cfg.settings.retention_days = 7;
    let mut w = store.writer(&cfg, &p).unwrap();
    for i in 0..100u64 {
        // one document a day, days 1..=100
        w.add(doc(i, (i as i64 + 1) * day, &format!("day {i}"), "h", "/p", "t")).unwrap();
    }
    w.commit(None).unwrap();
    assert!(w.enforce_retention(now).unwrap().is_some());
    w.commit(None).unwrap();
    assert_eq!(store.num_docs(), 8, "days 93..=100 are within 7 days of day 100");
    let counts = store.histogram(&Node::All, 0, i64::MAX, 0, day, 101).unwrap();
    assert_eq!(counts.iter().sum::<u64>(), 8, "deleted documents are not counted");
    assert_eq!(counts[93..=100], [1; 8]);
    assert!(w.enforce_retention(now).unwrap().is_none(), "nothing more to drop");
    drop(w);

    let dir = tempfile::tempdir().unwrap();
    let (store, p) = Store::open(dir.path()).unwrap();
    let store = Arc::new(store);
    let mut cfg = IndexConfig::in_dir(dir.path());
    let mut w = store.writer(&cfg, &p).unwrap();
    for i in 0..20_000u64 {
        w.add(doc(i, i as i64, &format!("line {i} with some words {}", i * 7919), "h", "/p", "t")).unwrap();
    }
    w.commit(None).unwrap();
    let before = store.disk_bytes();
    drop(w);
    cfg.settings.retention_bytes = before / 2;
    let mut w = store.writer(&cfg, &Payload { next_seq: 20_000, ..Payload::default() }).unwrap();
    assert!(w.enforce_retention(0).unwrap().is_some());
    w.commit(None).unwrap();
    let left = store.num_docs();
    assert!((8_000..=10_000).contains(&left), "about 45 % left, the newest: {left}");
    let (_, hits) = store.search(&Node::All, 0, i64::MAX, 1, None, usize::MAX).unwrap();
    assert_eq!(hits[0].offset, Some(19_999), "the newest stays");
}

#[test]
fn a_prefix_matching_too_many_words_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    // 20,001 distinct words ab0 … ab20000.
    for i in 0..=super::tantivy_query::MAX_PREFIX_TERMS as u64 {
        w.add(doc(i, i as i64, &format!("ab{i}"), "h", "/p", "t")).unwrap();
    }
    w.commit(None).unwrap();
    let q = |text: &str| parse(text).unwrap();
    let e = store.search(&q("ab*"), 0, i64::MAX, 10, None, usize::MAX).unwrap_err();
    assert!(matches!(&e, IndexError::TooBroad { prefix } if prefix == "ab"), "{e}");
    assert!(e.to_string().contains("make it longer"), "{e}");
    assert!(matches!(store.histogram(&q("x OR ab*"), 0, i64::MAX, 0, 1000, 30), Err(IndexError::TooBroad { .. })));
    assert!(matches!(store.since(&q("NOT ab*"), 0, 10, usize::MAX), Err(IndexError::TooBroad { .. })));
    // ab1, ab10-ab19, ab100-ab199, …: 11,111 words, under the cap.
    let (total, _) = store.search(&q("ab1*"), 0, i64::MAX, 10, None, usize::MAX).unwrap();
    assert_eq!(total, 11_111);
}

#[test]
fn context_is_the_line_s_neighbours_in_its_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    // Two files interleaved over several commits (segments), with gaps of
    // seconds, hours and days between some lines (the widening windows).
    let gaps = [0i64, 1, 1, 1_000, 7_200_000, 1, 90_000_000, 1, 1, 5_000];
    let mut written: Vec<(&str, i64, String)> = Vec::new();
    let mut ts = 1_000_000i64;
    for round in 0..4 {
        for (k, gap) in gaps.iter().enumerate() {
            ts += gap;
            for path in ["/a.log", "/b.log"] {
                let msg = format!("{path} line {round}-{k}");
                // The id comes from the file identity and offset (the
                // helper's files share one identity): offsets unique overall.
                let i = written.len() as u64;
                w.add(doc(i, ts, &msg, "h", path, "t")).unwrap();
                written.push((path, ts, msg));
            }
        }
        w.commit(None).unwrap();
    }
    let ids = |path: &str| -> Vec<String> {
        let (_, hits) = store.search(&parse(&format!("path:{path}")).unwrap(), 0, i64::MAX, 1000, None, 1000).unwrap();
        let mut hits = hits;
        hits.reverse(); // oldest first
        hits.into_iter().map(|h| h.id).collect()
    };
    for path in ["/a.log", "/b.log"] {
        let file: Vec<&String> = written.iter().filter(|l| l.0 == path).map(|l| &l.2).collect();
        let ids = ids(path);
        assert_eq!(ids.len(), file.len());
        // (line, before, after)
        for (k, before, after) in [(0, 3, 3), (5, 3, 3), (6, 0, 2), (ids.len() - 1, 4, 4), (20, 100, 100), (13, 1, 0)] {
            let c = store.context(&ids[k], before, after, 1000).unwrap().unwrap();
            let text = |v: &[super::StoredHit]| v.iter().map(|h| h.message.clone()).collect::<Vec<_>>();
            let lo = k.saturating_sub(before);
            let hi = (k + 1 + after).min(file.len());
            assert_eq!(&c.hit.message, file[k]);
            assert_eq!(text(&c.before), file[lo..k].iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{path} {k}");
            assert_eq!(text(&c.after), file[k + 1..hi].iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{path} {k}");
            assert_eq!((c.more_before, c.more_after), (lo > 0, hi < file.len()), "{path} {k}");
        }
    }
    assert_eq!(store.context("no such id", 1, 1, 1000).unwrap(), None);
    // Messages are cut as asked.
    let c = store.context(&ids("/a.log")[3], 1, 1, 4).unwrap().unwrap();
    assert!(c.hit.truncated && c.before[0].truncated && c.hit.message.len() == 4);
}

#[test]
fn fields_count_what_the_model_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = open(dir.path());
    for (i, (m, h, p, t)) in LINES.iter().enumerate() {
        w.add(doc(i as u64, 1000 + i as i64, m, h, p, t)).unwrap();
        if i == 2 {
            w.commit(None).unwrap(); // two segments
        }
    }
    // Replaced: the old copy is deleted and must not count.
    let (m, h, p, t) = LINES[1];
    w.add_replacing(doc(1, 1001, m, h, p, t)).unwrap();
    w.commit(None).unwrap();
    for q in ["", "error", "disk", "-topic:web", "nothing-matches-this"] {
        let node = parse(q).unwrap();
        for (from, to) in [(0, i64::MAX), (1002, 1005)] {
            let f = store.fields(&node, from, to, 10).unwrap();
            let hits: Vec<_> = LINES
                .iter()
                .enumerate()
                .filter(|(i, l)| {
                    let ts = 1000 + *i as i64;
                    ts >= from && ts < to && node.matches(&DocView { message: l.0, host: l.1, path: l.2, topic: l.3 })
                })
                .collect();
            assert_eq!(f.total, hits.len() as u64, "{q:?}");
            for (k, field) in f.fields.iter().enumerate() {
                let mut want: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
                for (_, l) in &hits {
                    let v = [l.1, l.2, l.3][k];
                    *want.entry(v.to_string()).or_default() += 1;
                }
                let want = super::StoredField::top_of(&field.name, want, 10, false);
                assert_eq!(field, &want, "{q:?} {}", field.name);
            }
        }
    }
    // `top` keeps the most frequent; the others are counted as other.
    let f = store.fields(&Node::All, 0, i64::MAX, 1).unwrap();
    assert_eq!(f.fields[0].name, "host");
    assert_eq!(f.fields[0].values, vec![("web-1".to_string(), 3)]);
    assert_eq!(f.fields[0].other, 3);
    assert_eq!(f.fields[2].values, vec![("web".to_string(), 3)]);
}
