//! The read side: opening the index and searching its last commit.

use super::collectors::{Buckets, Matches, Order, Top};
use super::{
    analyzer, dir_bytes, schema, to_tantivy, IndexConfig, IndexError, LineDoc, Payload, Writer, F_HOST, F_ID,
    F_MESSAGE, F_OFFSET, F_PATH, F_SEQ, F_TOPIC, F_TS, PAYLOAD_VERSION, SEQ, WORDS,
};
use crate::search::query::Node;
use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::collector::Count;
use tantivy::indexer::LogMergePolicy;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{Field, Value};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{
    DocAddress, DocSet, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument, Term,
};

/// How long [`Store::writer`] waits for an index lock another process holds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The read side: searches over the last commit.
pub struct Store {
    pub(super) index: Index,
    pub(super) reader: IndexReader,
    pub(super) dir: PathBuf,
}

impl Store {
    /// Opens the index in `dir`, creating it if needed; returns it and the
    /// payload of its last commit.
    pub fn open(dir: &Path) -> Result<(Store, Payload), IndexError> {
        let open_err = |m: String| IndexError::Open { dir: dir.display().to_string(), message: m };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let settings = IndexSettings {
            docstore_compression: Compressor::Zstd(ZstdCompressor { compression_level: Some(3) }),
            docstore_blocksize: 64 << 10,
            ..IndexSettings::default()
        };
        let mmap = tantivy::directory::MmapDirectory::open(dir).map_err(|e| open_err(e.to_string()))?;
        let index = Index::builder()
            .schema(schema())
            .settings(settings)
            .open_or_create(mmap)
            .map_err(|e| open_err(format!("{e} (an index of another logcollect version? move it away)")))?;
        index.tokenizers().register(WORDS, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            // Segments written with the FST term dictionary (before the
            // `quickwit` feature) fail here.
            .map_err(|e| open_err(format!("{e} (an index of another logcollect version? move it away)")))?;
        let store = Store { index, reader, dir: dir.to_path_buf() };
        let payload = store.last_payload()?;
        Ok((store, payload))
    }

    /// The payload of the last commit (what a new writer continues from).
    pub fn last_payload(&self) -> Result<Payload, IndexError> {
        let open_err = |m: String| IndexError::Open { dir: self.dir.display().to_string(), message: m };
        let payload = match self.index.load_metas().map_err(|e| open_err(e.to_string()))?.payload {
            None => Payload { version: PAYLOAD_VERSION, ..Payload::default() },
            Some(text) => {
                let p: Payload = serde_json::from_str(&text).map_err(|e| open_err(format!("commit payload: {e}")))?;
                if p.version != PAYLOAD_VERSION {
                    return Err(open_err(format!(
                        "commit payload version {} (this build reads {PAYLOAD_VERSION})",
                        p.version
                    )));
                }
                p
            }
        };
        Ok(payload)
    }

    /// The writer; one per index. A lock held by another process is waited
    /// for up to [`LOCK_WAIT`] (a predecessor killed a moment ago may still
    /// hold it while it dies: supervisors restart within 100 ms), then
    /// refused with an error naming the directory.
    pub fn writer(self: &Arc<Self>, cfg: &IndexConfig, payload: &Payload) -> Result<Writer, IndexError> {
        self.writer_waiting(cfg, payload, LOCK_WAIT)
    }

    /// [`Store::writer`], waiting up to `wait` for the lock.
    pub(super) fn writer_waiting(
        self: &Arc<Self>,
        cfg: &IndexConfig,
        payload: &Payload,
        wait: std::time::Duration,
    ) -> Result<Writer, IndexError> {
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .memory_budget_per_thread(cfg.settings.writer_memory_bytes)
            .num_worker_threads(cfg.settings.writer_threads)
            .num_merge_threads(1)
            .build();
        let deadline = std::time::Instant::now() + wait;
        let mut logged = false;
        let w: IndexWriter<LineDoc> = loop {
            match self.index.writer_with_options(options.clone()) {
                Ok(w) => break w,
                Err(tantivy::TantivyError::LockFailure(tantivy::directory::error::LockError::LockBusy, _))
                    if std::time::Instant::now() < deadline =>
                {
                    if !std::mem::replace(&mut logged, true) {
                        tracing::warn!(dir = %self.dir.display(), "the index is locked by another process; waiting up to {wait:?} for it to let go");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(IndexError::Open {
                        dir: self.dir.display().to_string(),
                        message: format!("{e} (is another logcollect using this data_dir?)"),
                    })
                }
            }
        };
        let mut policy = LogMergePolicy::default();
        policy.set_del_docs_ratio_before_merge(0.25);
        w.set_merge_policy(Box::new(policy));
        Ok(Writer { store: self.clone(), w, next_seq: payload.next_seq, pending: 0, cfg: cfg.clone() })
    }

    /// Documents in the last commit.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Bytes of the index on disk.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }

    /// Refuses a query with a prefix that matches too many terms.
    fn check(node: &Node, searcher: &tantivy::Searcher) -> Result<(), IndexError> {
        match super::tantivy_query::too_broad_prefix(node, searcher)? {
            Some(prefix) => Err(IndexError::TooBroad { prefix }),
            None => Ok(()),
        }
    }

    fn query(&self, node: &Node, from_ms: i64, to_ms: i64) -> tantivy::Result<Box<dyn Query>> {
        let range = Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(F_TS, from_ms)),
            Bound::Excluded(Term::from_field_i64(F_TS, to_ms)),
        ));
        Ok(match node {
            Node::All => range,
            n => Box::new(BooleanQuery::new(vec![(Occur::Must, to_tantivy(n)?), (Occur::Must, range)])),
        })
    }

    /// Matches in `[from_ms, to_ms)`, newest first (by `@timestamp`, then
    /// `_seq`), after `before` when paging; and how many match in all.
    /// Messages are cut to `message_max_bytes` as each is loaded.
    pub fn search(
        &self,
        node: &Node,
        from_ms: i64,
        to_ms: i64,
        size: usize,
        before: Option<(i64, u64)>,
        message_max_bytes: usize,
    ) -> Result<(u64, Vec<StoredHit>), IndexError> {
        let searcher = self.reader.searcher();
        Self::check(node, &searcher)?;
        let q = self.query(node, from_ms, to_ms)?;
        let (total, top) = searcher.search(&*q, &(Count, Top { limit: size, order: Order::NewestFirst { before } }))?;
        let hits = top
            .into_iter()
            .map(|(k, addr)| stored_hit(&searcher, k, addr, message_max_bytes))
            .collect::<Result<_, _>>()?;
        Ok((total as u64, hits))
    }

    /// Matches indexed after `_seq` `after`, oldest first (at most `limit`),
    /// messages cut to `message_max_bytes`.
    pub fn since(
        &self,
        node: &Node,
        after: u64,
        limit: usize,
        message_max_bytes: usize,
    ) -> Result<Vec<StoredHit>, IndexError> {
        let searcher = self.reader.searcher();
        Self::check(node, &searcher)?;
        let seq = Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(F_SEQ, after)),
            Bound::Included(Term::from_field_u64(F_SEQ, u64::MAX)),
        ));
        let q: Box<dyn Query> = match node {
            Node::All => seq,
            n => Box::new(BooleanQuery::new(vec![(Occur::Must, to_tantivy(n)?), (Occur::Must, seq)])),
        };
        let top = searcher.search(&*q, &Top { limit, order: Order::IndexedAfter })?;
        top.into_iter().map(|(k, addr)| stored_hit(&searcher, k, addr, message_max_bytes)).collect()
    }

    /// The line whose `_id` is `id`, if it is indexed (`GET /api/line`).
    pub fn by_id(&self, id: &str) -> Result<Option<StoredHit>, IndexError> {
        self.by_id_cut(&self.reader.searcher(), id, usize::MAX)
    }

    /// [`Store::by_id`] in `searcher`, the message cut to `message_max_bytes`.
    fn by_id_cut(
        &self,
        searcher: &tantivy::Searcher,
        id: &str,
        message_max_bytes: usize,
    ) -> Result<Option<StoredHit>, IndexError> {
        let q =
            tantivy::query::TermQuery::new(Term::from_field_text(F_ID, id), tantivy::schema::IndexRecordOption::Basic);
        let found = searcher.search(&q, &tantivy::collector::DocSetCollector)?;
        let Some(&addr) = found.iter().next() else { return Ok(None) };
        let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
        let ts = ff.i64(super::TS)?.first(addr.doc_id).unwrap_or(0);
        let seq = ff.u64(SEQ)?.first(addr.doc_id).unwrap_or(0);
        Ok(Some(stored_hit(searcher, (ts, seq), addr, message_max_bytes)?))
    }

    /// The lines around `id` in its file (`GET /api/context`): up to
    /// `before` lines before it and `after` after it, in file order, which
    /// in the index is (`@timestamp`, `_seq`): lines of one file are read,
    /// stamped and indexed in offset order, and a rotated file's successor
    /// at the same path comes after it rather than between its lines.
    /// `None` when no line has this id.
    ///
    /// The file's lines are searched in widening time windows around the
    /// line (a minute, an hour, a day, all), so the usual case reads only a
    /// minute of the file's lines however long the file is.
    pub fn context(
        &self,
        id: &str,
        before: usize,
        after: usize,
        message_max_bytes: usize,
    ) -> Result<Option<StoredContext>, IndexError> {
        let searcher = self.reader.searcher();
        let Some(hit) = self.by_id_cut(&searcher, id, message_max_bytes)? else { return Ok(None) };
        let (Some(host), Some(path)) = (hit.host.clone(), hit.path.clone()) else {
            // Not from a file (a Kafka record of another producer): no neighbours.
            return Ok(Some(StoredContext {
                hit,
                before: Vec::new(),
                after: Vec::new(),
                more_before: false,
                more_after: false,
            }));
        };
        let key = (hit.ts_ms, hit.seq);
        let exact = |f: Field, v: &str| -> Box<dyn Query> {
            Box::new(tantivy::query::TermQuery::new(
                Term::from_field_text(f, v),
                tantivy::schema::IndexRecordOption::Basic,
            ))
        };
        let side = |older: bool, want: usize| -> Result<(Vec<StoredHit>, bool), IndexError> {
            const WINDOWS_MS: [i64; 4] = [60_000, 3_600_000, 86_400_000, i64::MAX];
            let mut found = Vec::new();
            for w in WINDOWS_MS {
                let (lo, hi) = if older {
                    (Bound::Included(key.0.saturating_sub(w)), Bound::Included(key.0))
                } else {
                    (Bound::Included(key.0), Bound::Included(key.0.saturating_add(w)))
                };
                let range: Box<dyn Query> = Box::new(RangeQuery::new(
                    lo.map(|t| Term::from_field_i64(F_TS, t)),
                    hi.map(|t| Term::from_field_i64(F_TS, t)),
                ));
                let q = BooleanQuery::new(vec![
                    (Occur::Must, exact(F_HOST, &host)),
                    (Occur::Must, exact(F_PATH, &path)),
                    (Occur::Must, range),
                ]);
                let order =
                    if older { Order::NewestFirst { before: Some(key) } } else { Order::OldestFirst { after: key } };
                found = searcher.search(&q, &Top { limit: want + 1, order })?;
                if found.len() > want {
                    break;
                }
            }
            let more = found.len() > want;
            found.truncate(want);
            let mut lines: Vec<StoredHit> = found
                .into_iter()
                .map(|(k, addr)| stored_hit(&searcher, k, addr, message_max_bytes))
                .collect::<Result<_, _>>()?;
            if older {
                lines.reverse();
            }
            Ok((lines, more))
        };
        let (before, more_before) = side(true, before)?;
        let (after, more_after) = side(false, after)?;
        Ok(Some(StoredContext { hit, before, after, more_before, more_after }))
    }

    /// The most frequent values of `host.name`, `log.file.path` and `topic`
    /// among the matches in `[from_ms, to_ms)`, `top` of each
    /// (`GET /api/fields`).
    ///
    /// The keyword fields are not columns, so the counts come from the
    /// postings: the matches become a bit set per segment, then each term's
    /// postings are counted against it. That is linear in the documents,
    /// whatever the query; a field with more than [`FIELD_MAX_TERMS`]
    /// distinct values in a segment is counted over the first ones only
    /// (`partial`).
    pub fn fields(&self, node: &Node, from_ms: i64, to_ms: i64, top: usize) -> Result<StoredFields, IndexError> {
        let searcher = self.reader.searcher();
        Self::check(node, &searcher)?;
        let q = self.query(node, from_ms, to_ms)?;
        let matched = searcher.search(&*q, &Matches)?;
        let total = matched.iter().map(|m| m.2).sum();
        let mut out = Vec::new();
        for (name, field) in [("host", F_HOST), ("path", F_PATH), ("topic", F_TOPIC)] {
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut partial = false;
            for (seg, docs, n) in &matched {
                if *n > 0 {
                    partial |= count_terms(searcher.segment_reader(*seg), field, docs, &mut counts)?;
                }
            }
            out.push(StoredField::top_of(name, counts, top, partial));
        }
        Ok(StoredFields { total, fields: out })
    }

    /// The highest `_seq` in the last commit (0 when empty).
    pub fn last_seq(&self) -> u64 {
        let searcher = self.reader.searcher();
        searcher
            .segment_readers()
            .iter()
            .filter(|s| s.num_docs() > 0)
            .filter_map(|s| s.fast_fields().u64(SEQ).ok())
            .map(|c| c.max_value())
            .max()
            .unwrap_or(0)
    }

    /// Counts of matches per bucket: bucket `i` covers
    /// `[start + i*interval, start + (i+1)*interval)`, clipped to `[from_ms, to_ms)`.
    pub fn histogram(
        &self,
        node: &Node,
        from_ms: i64,
        to_ms: i64,
        start_ms: i64,
        interval_ms: i64,
        buckets: usize,
    ) -> Result<Vec<u64>, IndexError> {
        let searcher = self.reader.searcher();
        let b = Buckets { start_ms, interval_ms, n: buckets };
        if let Node::All = node {
            // Every document counts: read the `@timestamp` column straight
            // through rather than visiting documents one by one.
            let mut counts = vec![0; buckets];
            for seg in searcher.segment_readers() {
                b.scan_segment(seg, from_ms, to_ms, &mut counts)?;
            }
            return Ok(counts);
        }
        Self::check(node, &searcher)?;
        let q = self.query(node, from_ms, to_ms)?;
        Ok(searcher.search(&*q, &b)?)
    }

    /// Makes the last commit visible to searches.
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
    }
}

/// Adds to `counts` how many of `docs` each term of `field` in `seg` has;
/// true when the segment has more than [`FIELD_MAX_TERMS`] terms (the rest
/// are not counted).
fn count_terms(
    seg: &tantivy::SegmentReader,
    field: Field,
    docs: &tantivy::BitSet,
    counts: &mut HashMap<String, u64>,
) -> tantivy::Result<bool> {
    let inv = seg.inverted_index(field)?;
    let mut terms = inv.terms().stream()?;
    let mut seen = 0usize;
    while terms.advance() {
        seen += 1;
        if seen > FIELD_MAX_TERMS {
            return Ok(true);
        }
        let mut postings = inv.read_postings_from_terminfo(terms.value(), tantivy::schema::IndexRecordOption::Basic)?;
        let mut c = 0u64;
        let mut doc = postings.doc();
        while doc != tantivy::TERMINATED {
            c += u64::from(docs.contains(doc));
            doc = postings.advance();
        }
        if c > 0 {
            *counts.entry(String::from_utf8_lossy(terms.key()).into_owned()).or_default() += c;
        }
    }
    Ok(false)
}

/// Most distinct values of one field counted per segment by [`Store::fields`].
pub const FIELD_MAX_TERMS: usize = 10_000;

/// A line and its neighbours in its file ([`Store::context`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredContext {
    pub hit: StoredHit,
    /// The lines before `hit`, oldest first.
    pub before: Vec<StoredHit>,
    /// The lines after `hit`, oldest first.
    pub after: Vec<StoredHit>,
    /// There are lines before `before`'s first.
    pub more_before: bool,
    /// There are lines after `after`'s last.
    pub more_after: bool,
}

/// The top values of fields over a query's matches ([`Store::fields`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFields {
    /// Matches counted.
    pub total: u64,
    pub fields: Vec<StoredField>,
}

/// One field's most frequent values.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredField {
    /// The name a query writes (`host`, `path`, `topic`).
    pub name: String,
    /// (value, matches), most first, then by value.
    pub values: Vec<(String, u64)>,
    /// Matches with a value not in `values`.
    pub other: u64,
    /// Not every value was counted ([`FIELD_MAX_TERMS`]).
    pub partial: bool,
}

impl StoredField {
    /// The `top` most frequent of `counts`.
    pub fn top_of(name: &str, counts: HashMap<String, u64>, top: usize, partial: bool) -> StoredField {
        let mut all: Vec<(String, u64)> = counts.into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other = all.iter().skip(top).map(|v| v.1).sum();
        all.truncate(top);
        StoredField { name: name.to_string(), values: all, other, partial }
    }
}

/// A document as a search returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredHit {
    pub id: String,
    pub ts_ms: i64,
    pub seq: u64,
    pub message: String,
    pub host: Option<String>,
    pub path: Option<String>,
    pub offset: Option<u64>,
    pub topic: String,
    /// `message` was cut at the length asked for.
    pub truncated: bool,
}

fn stored_hit(
    searcher: &tantivy::Searcher,
    (ts_ms, seq): (i64, u64),
    addr: DocAddress,
    message_max_bytes: usize,
) -> Result<StoredHit, IndexError> {
    let doc: TantivyDocument = searcher.doc(addr)?;
    let s = |f: Field| doc.get_first(f).and_then(|v| v.as_str().map(str::to_string));
    let whole = doc.get_first(F_MESSAGE).and_then(|v| v.as_str()).unwrap_or_default();
    let message = crate::common::text::prefix(whole, message_max_bytes);
    Ok(StoredHit {
        id: s(F_ID).unwrap_or_default(),
        ts_ms,
        seq,
        truncated: message.len() < whole.len(),
        message: message.to_string(),
        host: s(F_HOST),
        path: s(F_PATH),
        offset: doc.get_first(F_OFFSET).and_then(|v| v.as_u64()),
        topic: s(F_TOPIC).unwrap_or_default(),
    })
}
