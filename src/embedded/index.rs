//! The embedded index: every line as a tantivy document under
//! `data_dir/index`, with the fields of the Elasticsearch documents the
//! transfer writes, and the searches the API runs over it.
//!
//! # Documents
//!
//! | field             | kind                          | from                                  |
//! |-------------------|-------------------------------|---------------------------------------|
//! | `_id`             | exact, stored                 | [`bulk::doc_id`] (the ES `_id`)        |
//! | `@timestamp`      | i64 ms, fast                  | read time (agent) / record timestamp   |
//! | `_seq`            | u64, fast                     | order of indexing, unique              |
//! | `message`         | words with positions, stored  | the line                              |
//! | `host.name`       | exact, stored                 |                                       |
//! | `log.file.path`   | exact, stored                 |                                       |
//! | `topic`           | exact, stored                 |                                       |
//! | `log.offset`      | u64, stored                   | file offset of the line               |
//! | `log.flags`, `log.part` | stored                  | cut lines, as in the ES documents     |
//! | `kafka.partition`, `kafka.offset` | stored        | only for lines that came through Kafka |
//!
//! Words are cut as [`query::words`] defines (alphanumeric runs,
//! lower-cased); a unit test holds the analyzer to that model. A [`LineDoc`]
//! owns only reference-counted slices of the reader's chunk (`Bytes`,
//! `Arc<str>`), so building one allocates nothing for a valid UTF-8 line.
//!
//! # Commits
//!
//! [`Writer::commit`] stores a [`Payload`] in tantivy's commit: the file
//! checkpoints the commit's documents reach, and the next `_seq`. A commit is
//! atomic, so after a crash the index and the checkpoints it restores agree:
//! no line is lost or indexed twice.
//!
//! # Retention
//!
//! [`Writer::enforce_retention`] deletes documents older than
//! `retention_days`, and the oldest documents while the live part of the
//! index is larger than `retention_bytes` (down to 90 % of it); the deletes
//! take effect with the next commit, and merges give the space back.

use crate::agent::checkpoint::Snapshot;
// `bulk::` names the record model in this file for now (the file is being
// split; its body is left alone until then).
use crate::record::{self as bulk, Cut, Origin, Record};
use crate::search::query::{self, Field as QField, Node};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::columnar::{Cardinality, ColumnValues};
use tantivy::indexer::LogMergePolicy;
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery, TermQuery};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{
    Document, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

/// The analyzer's name in the index.
const WORDS: &str = "logwords";
/// Version of the [`Payload`] format.
const PAYLOAD_VERSION: u32 = 1;

// Field ids, in the order `schema` adds them.
const F_ID: Field = Field::from_field_id(0);
const F_TS: Field = Field::from_field_id(1);
const F_SEQ: Field = Field::from_field_id(2);
const F_MESSAGE: Field = Field::from_field_id(3);
const F_HOST: Field = Field::from_field_id(4);
const F_PATH: Field = Field::from_field_id(5);
const F_TOPIC: Field = Field::from_field_id(6);
const F_OFFSET: Field = Field::from_field_id(7);
const F_FLAGS: Field = Field::from_field_id(8);
const F_PART: Field = Field::from_field_id(9);
const F_KPARTITION: Field = Field::from_field_id(10);
const F_KOFFSET: Field = Field::from_field_id(11);

const TS: &str = "@timestamp";
const SEQ: &str = "_seq";

/// The index schema (fixed: documents carry the field ids above).
pub fn schema() -> Schema {
    let mut b = Schema::builder();
    let exact = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        )
        .set_stored();
    let words = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(WORDS)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                .set_fieldnorms(false),
        )
        .set_stored();
    let fields = [
        b.add_text_field("_id", exact.clone()),
        b.add_i64_field(TS, NumericOptions::default().set_fast()),
        b.add_u64_field(SEQ, NumericOptions::default().set_fast()),
        b.add_text_field("message", words),
        b.add_text_field("host.name", exact.clone()),
        b.add_text_field("log.file.path", exact.clone()),
        b.add_text_field("topic", exact.clone()),
        b.add_u64_field("log.offset", NumericOptions::default().set_stored()),
        b.add_text_field("log.flags", TextOptions::default().set_stored()),
        b.add_u64_field("log.part", NumericOptions::default().set_stored()),
        b.add_i64_field("kafka.partition", NumericOptions::default().set_stored()),
        b.add_i64_field("kafka.offset", NumericOptions::default().set_stored()),
    ];
    let want =
        [F_ID, F_TS, F_SEQ, F_MESSAGE, F_HOST, F_PATH, F_TOPIC, F_OFFSET, F_FLAGS, F_PART, F_KPARTITION, F_KOFFSET];
    assert_eq!(fields, want, "field ids follow the order they are added in");
    b.build()
}

/// The message analyzer: [`query::words`] in tantivy's terms.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(query::MAX_WORD_BYTES + 1))
        .filter(LowerCaser)
        .build()
}

// ---------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------

/// Bytes known to be UTF-8.
#[derive(Clone, Debug)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// `None` when `b` is not UTF-8.
    pub fn new(b: Bytes) -> Option<Utf8Bytes> {
        std::str::from_utf8(&b).ok()?;
        Some(Utf8Bytes(b))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: checked in `new`, and `Bytes` never changes.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

/// The line's text: a slice of the reader's chunk when it is UTF-8, else a
/// copy with U+FFFD for the bad bytes (as the ES documents have it).
#[derive(Clone, Debug)]
pub enum Message {
    Shared(Utf8Bytes),
    Lossy(String),
}

impl Message {
    pub fn from_bytes(b: Bytes) -> Message {
        match Utf8Bytes::new(b.clone()) {
            Some(u) => Message::Shared(u),
            None => Message::Lossy(String::from_utf8_lossy(&b).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Message::Shared(u) => u.as_str(),
            Message::Lossy(s) => s,
        }
    }
}

/// Where a line came from.
#[derive(Clone, Debug)]
pub struct LineOrigin {
    pub host: Arc<str>,
    pub path: Arc<str>,
    pub offset: u64,
    pub cut: Cut,
}

/// One line as a document. Cheap to build: it owns reference-counted
/// slices only (a copy only for lines that are not UTF-8).
#[derive(Clone, Debug)]
pub struct LineDoc {
    pub id: bulk::DocId,
    pub ts_ms: i64,
    /// Set by the writer.
    pub seq: u64,
    pub message: Message,
    pub topic: Arc<str>,
    /// `None` for Kafka records of other producers.
    pub origin: Option<LineOrigin>,
    /// (partition, offset) for lines that came through Kafka.
    pub kafka: Option<(i32, i64)>,
}

impl LineDoc {
    /// A document for `rec`, with `rec`'s deterministic id; `message` is
    /// `rec.value` as shared bytes, `host`/`path` its origin's as shared text.
    pub fn new(
        rec: &Record<'_>,
        message: Bytes,
        topic: Arc<str>,
        origin: Option<LineOrigin>,
        id_scratch: &mut Vec<u8>,
    ) -> LineDoc {
        LineDoc {
            id: bulk::doc_id_with(rec, id_scratch),
            ts_ms: rec.timestamp_ms.unwrap_or(0),
            seq: 0,
            message: Message::from_bytes(message),
            topic,
            origin,
            kafka: (rec.partition != bulk::NOT_FROM_KAFKA).then_some((rec.partition, rec.offset)),
        }
    }

    /// A document for a line the agent read, as the ES document of the same
    /// line would be (same id).
    pub fn from_line(
        line: &crate::agent::batch::Line<'_>,
        bytes: Bytes,
        src: &crate::agent::batch::Source,
        host: &Arc<str>,
        read_ms: i64,
        id_scratch: &mut Vec<u8>,
    ) -> LineDoc {
        let origin = Origin {
            host: host.as_bytes(),
            path: src.path.as_bytes(),
            offset: line.offset,
            fid: src.fid_text.as_bytes(),
            cut: line.cut,
        };
        let rec = Record {
            value: line.bytes,
            topic: &src.topic,
            partition: bulk::NOT_FROM_KAFKA,
            offset: -1,
            timestamp_ms: Some(read_ms),
            origin: Some(origin),
        };
        let o = LineOrigin { host: host.clone(), path: src.path.clone(), offset: line.offset, cut: line.cut };
        LineDoc::new(&rec, bytes, src.topic.clone(), Some(o), id_scratch)
    }
}

/// A field value of a [`LineDoc`].
#[derive(Clone, Debug)]
pub enum LineValue<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
}

impl<'a> Value<'a> for LineValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        ReferenceValue::Leaf(match *self {
            LineValue::Str(s) => ReferenceValueLeaf::Str(s),
            LineValue::I64(n) => ReferenceValueLeaf::I64(n),
            LineValue::U64(n) => ReferenceValueLeaf::U64(n),
        })
    }
}

/// The fields of a [`LineDoc`], in field order.
pub struct LineFields<'a> {
    doc: &'a LineDoc,
    next: u32,
}

impl<'a> Iterator for LineFields<'a> {
    type Item = (Field, LineValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let d = self.doc;
        loop {
            let i = self.next;
            self.next += 1;
            let field = Field::from_field_id(i);
            let v = match field {
                F_ID => Some(LineValue::Str(d.id.as_str())),
                F_TS => Some(LineValue::I64(d.ts_ms)),
                F_SEQ => Some(LineValue::U64(d.seq)),
                F_MESSAGE => Some(LineValue::Str(d.message.as_str())),
                F_HOST => d.origin.as_ref().map(|o| LineValue::Str(&o.host)),
                F_PATH => d.origin.as_ref().map(|o| LineValue::Str(&o.path)),
                F_TOPIC => Some(LineValue::Str(&d.topic)),
                F_OFFSET => d.origin.as_ref().map(|o| LineValue::U64(o.offset)),
                F_FLAGS => d.origin.as_ref().and_then(|o| match o.cut {
                    Cut::Whole => None,
                    Cut::Truncated => Some(LineValue::Str("truncated")),
                    Cut::Partial => Some(LineValue::Str("partial")),
                    Cut::Part(_) => Some(LineValue::Str("split")),
                }),
                F_PART => d.origin.as_ref().and_then(|o| match o.cut {
                    Cut::Part(n) => Some(LineValue::U64(u64::from(n))),
                    _ => None,
                }),
                F_KPARTITION => d.kafka.map(|(p, _)| LineValue::I64(i64::from(p))),
                F_KOFFSET => d.kafka.map(|(_, o)| LineValue::I64(o)),
                _ => return None,
            };
            if let Some(v) = v {
                return Some((field, v));
            }
        }
    }
}

impl Document for LineDoc {
    type Value<'a> = LineValue<'a>;
    type FieldsValuesIter<'a> = LineFields<'a>;

    fn iter_fields_and_values(&self) -> LineFields<'_> {
        LineFields { doc: self, next: 0 }
    }
}

// ---------------------------------------------------------------------------
// Opening, committing
// ---------------------------------------------------------------------------

/// What a commit carries besides the documents.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub version: u32,
    /// `_seq` of the next document.
    pub next_seq: u64,
    /// File checkpoints reached by the committed documents (lines read here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Snapshot>,
}

/// Errors of the embedded index, naming the index directory.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {dir}: {message}")]
    Open { dir: String, message: String },
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// What feeds the index could not start (a config key and why).
    #[error("config {key}: {message}")]
    Feed { key: String, message: String },
}

/// Writer and retention settings (`[index]`).
#[derive(Clone, Debug, PartialEq)]
pub struct IndexConfig {
    pub dir: PathBuf,
    /// 0: keep forever.
    pub retention_days: u64,
    /// 0: no size limit.
    pub retention_bytes: u64,
    /// How often retention is checked.
    pub retention_check_ms: u64,
    pub commit_interval_ms: u64,
    /// Indexing threads of the writer.
    pub writer_threads: usize,
    /// Memory each indexing thread buffers before writing a segment.
    pub writer_memory_bytes: usize,
}

impl IndexConfig {
    pub fn in_dir(dir: &Path) -> IndexConfig {
        IndexConfig {
            dir: dir.to_path_buf(),
            retention_days: 0,
            retention_bytes: 0,
            retention_check_ms: 60_000,
            commit_interval_ms: 1_000,
            writer_threads: 1,
            writer_memory_bytes: 64 << 20,
        }
    }
}

/// The read side: searches over the last commit.
pub struct Store {
    index: Index,
    reader: IndexReader,
    dir: PathBuf,
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
        let payload = match index.load_metas().map_err(|e| open_err(e.to_string()))?.payload {
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
        Ok((Store { index, reader, dir: dir.to_path_buf() }, payload))
    }

    /// The writer; one per index (a second process gets an error naming the
    /// directory).
    pub fn writer(self: &Arc<Self>, cfg: &IndexConfig, payload: &Payload) -> Result<Writer, IndexError> {
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .memory_budget_per_thread(cfg.writer_memory_bytes)
            .num_worker_threads(cfg.writer_threads)
            .num_merge_threads(1)
            .build();
        let w: IndexWriter<LineDoc> = self.index.writer_with_options(options).map_err(|e| IndexError::Open {
            dir: self.dir.display().to_string(),
            message: format!("{e} (is another logcollect using this data_dir?)"),
        })?;
        let mut policy = LogMergePolicy::default();
        policy.set_del_docs_ratio_before_merge(0.25);
        w.set_merge_policy(Box::new(policy));
        Ok(Writer { store: self.clone(), w, next_seq: payload.next_seq, pending: 0, cfg: cfg.clone() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Documents in the last commit.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Bytes of the index on disk.
    pub fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
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
    pub fn search(
        &self,
        node: &Node,
        from_ms: i64,
        to_ms: i64,
        size: usize,
        before: Option<(i64, u64)>,
    ) -> Result<(u64, Vec<StoredHit>), IndexError> {
        let searcher = self.reader.searcher();
        let q = self.query(node, from_ms, to_ms)?;
        let (total, top) = searcher.search(&*q, &(Count, Top { limit: size, order: Order::NewestFirst { before } }))?;
        let hits = top.into_iter().map(|(k, addr)| stored_hit(&searcher, k, addr)).collect::<Result<_, _>>()?;
        Ok((total as u64, hits))
    }

    /// Matches indexed after `_seq` `after`, oldest first (at most `limit`).
    pub fn since(&self, node: &Node, after: u64, limit: usize) -> Result<Vec<StoredHit>, IndexError> {
        let searcher = self.reader.searcher();
        let seq = Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(F_SEQ, after)),
            Bound::Included(Term::from_field_u64(F_SEQ, u64::MAX)),
        ));
        let q: Box<dyn Query> = match node {
            Node::All => seq,
            n => Box::new(BooleanQuery::new(vec![(Occur::Must, to_tantivy(n)?), (Occur::Must, seq)])),
        };
        let top = searcher.search(&*q, &Top { limit, order: Order::IndexedAfter })?;
        top.into_iter().map(|(k, addr)| stored_hit(&searcher, k, addr)).collect()
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
        let q = self.query(node, from_ms, to_ms)?;
        Ok(searcher.search(&*q, &b)?)
    }

    /// Counts matches of a query over all time (tests, status).
    pub fn count(&self, node: &Node) -> Result<u64, IndexError> {
        let searcher = self.reader.searcher();
        Ok(searcher.search(&*to_tantivy(node)?, &Count)? as u64)
    }

    /// Makes the last commit visible to searches.
    pub fn reload(&self) -> Result<(), IndexError> {
        Ok(self.reader.reload()?)
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
}

fn stored_hit(
    searcher: &tantivy::Searcher,
    (ts_ms, seq): (i64, u64),
    addr: DocAddress,
) -> Result<StoredHit, IndexError> {
    let doc: TantivyDocument = searcher.doc(addr)?;
    let s = |f: Field| doc.get_first(f).and_then(|v| v.as_str().map(str::to_string));
    Ok(StoredHit {
        id: s(F_ID).unwrap_or_default(),
        ts_ms,
        seq,
        message: s(F_MESSAGE).unwrap_or_default(),
        host: s(F_HOST),
        path: s(F_PATH),
        offset: doc.get_first(F_OFFSET).and_then(|v| v.as_u64()),
        topic: s(F_TOPIC).unwrap_or_default(),
    })
}

/// The tantivy query for a node (time range aside). A prefix tantivy
/// cannot build (its automaton has a size limit; the parser keeps
/// prefixes well under it) is an error, not a panic.
pub fn to_tantivy(node: &Node) -> tantivy::Result<Box<dyn Query>> {
    let text_field = |f: QField| match f {
        QField::Message => F_MESSAGE,
        QField::Host => F_HOST,
        QField::Path => F_PATH,
        QField::Topic => F_TOPIC,
    };
    Ok(match node {
        Node::All => Box::new(AllQuery),
        // Words are letters and digits only: nothing to escape.
        Node::Text { words, prefix: true, .. } => {
            Box::new(RegexQuery::from_pattern(&format!("{}.*", words[0].text), F_MESSAGE)?)
        }
        Node::Text { words, .. } if words.len() == 1 => {
            Box::new(TermQuery::new(Term::from_field_text(F_MESSAGE, &words[0].text), IndexRecordOption::Basic))
        }
        Node::Text { words, .. } => {
            let first = words[0].position;
            Box::new(PhraseQuery::new_with_offset(
                words
                    .iter()
                    .map(|w| ((w.position - first) as usize, Term::from_field_text(F_MESSAGE, &w.text)))
                    .collect(),
            ))
        }
        Node::Exact { field, value, prefix: false } => {
            Box::new(TermQuery::new(Term::from_field_text(text_field(*field), value), IndexRecordOption::Basic))
        }
        Node::Exact { field, value, prefix: true } => {
            Box::new(RegexQuery::from_pattern(&format!("(?s){}.*", regex_syntax::escape(value)), text_field(*field))?)
        }
        Node::And(kids) => {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = kids
                .iter()
                .map(|k| match k {
                    Node::Not(inner) => Ok((Occur::MustNot, to_tantivy(inner)?)),
                    other => Ok((Occur::Must, to_tantivy(other)?)),
                })
                .collect::<tantivy::Result<_>>()?;
            if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
                clauses.push((Occur::Must, Box::new(AllQuery)));
            }
            Box::new(BooleanQuery::new(clauses))
        }
        Node::Or(kids) => Box::new(BooleanQuery::new(
            kids.iter().map(|k| Ok((Occur::Should, to_tantivy(k)?))).collect::<tantivy::Result<_>>()?,
        )),
        Node::Not(inner) => {
            Box::new(BooleanQuery::new(vec![(Occur::Must, Box::new(AllQuery)), (Occur::MustNot, to_tantivy(inner)?)]))
        }
    })
}

// ---------------------------------------------------------------------------
// Collectors
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Order {
    /// Largest (`@timestamp`, `_seq`) first, below `before` if set.
    NewestFirst { before: Option<(i64, u64)> },
    /// Smallest `_seq` first.
    IndexedAfter,
}

/// The top `limit` documents in `order`, read from the fast fields.
struct Top {
    limit: usize,
    order: Order,
}

type Key = (i64, u64);

struct TopSegment {
    ts: Arc<dyn ColumnValues<i64>>,
    seq: Arc<dyn ColumnValues<u64>>,
    segment: SegmentOrdinal,
    limit: usize,
    order: Order,
    /// Min-heap of the best so far (by the order's rank).
    heap: BinaryHeap<Reverse<(i128, Key, DocId)>>,
    /// Column values of a block of documents (`collect_block`).
    ts_buf: Vec<i64>,
    seq_buf: Vec<u64>,
}

impl TopSegment {
    /// Higher is better.
    fn rank(&self, k: Key) -> i128 {
        match self.order {
            Order::NewestFirst { .. } => (i128::from(k.0) << 64) | i128::from(k.1),
            Order::IndexedAfter => -i128::from(k.1),
        }
    }
}

impl Collector for Top {
    type Fruit = Vec<(Key, DocAddress)>;
    type Child = TopSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<TopSegment> {
        Ok(TopSegment {
            ts: reader.fast_fields().i64(TS)?.first_or_default_col(0),
            seq: reader.fast_fields().u64(SEQ)?.first_or_default_col(0),
            segment,
            limit: self.limit,
            order: self.order,
            heap: BinaryHeap::with_capacity(self.limit.min(10_000) + 1),
            ts_buf: Vec::new(),
            seq_buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<((i128, Key), DocAddress)>>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<_> = fruits.into_iter().flatten().collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.0 .0));
        all.truncate(self.limit);
        Ok(all.into_iter().map(|((_, k), a)| (k, a)).collect())
    }
}

impl TopSegment {
    fn offer(&mut self, doc: DocId, k: Key) {
        if let Order::NewestFirst { before: Some(b) } = self.order {
            if k >= b {
                return;
            }
        }
        if self.limit == 0 {
            return;
        }
        let r = self.rank(k);
        if self.heap.len() < self.limit {
            self.heap.push(Reverse((r, k, doc)));
        } else if self.heap.peek().is_some_and(|Reverse((worst, _, _))| r > *worst) {
            self.heap.pop();
            self.heap.push(Reverse((r, k, doc)));
        }
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = Vec<((i128, Key), DocAddress)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.offer(doc, (self.ts.get_val(doc), self.seq.get_val(doc)));
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        // The columns read a block at a time: fewer indirect calls.
        let (mut ts, mut seq) = (std::mem::take(&mut self.ts_buf), std::mem::take(&mut self.seq_buf));
        ts.resize(docs.len(), 0);
        seq.resize(docs.len(), 0);
        self.ts.get_vals(docs, &mut ts);
        self.seq.get_vals(docs, &mut seq);
        for ((&doc, &t), &s) in docs.iter().zip(&ts).zip(&seq) {
            self.offer(doc, (t, s));
        }
        (self.ts_buf, self.seq_buf) = (ts, seq);
    }

    fn harvest(self) -> Self::Fruit {
        let seg = self.segment;
        self.heap.into_iter().map(|Reverse((r, k, doc))| ((r, k), DocAddress::new(seg, doc))).collect()
    }
}

/// Counts per fixed time bucket.
struct Buckets {
    start_ms: i64,
    interval_ms: i64,
    n: usize,
}

struct BucketsSegment {
    ts: Arc<dyn ColumnValues<i64>>,
    start_ms: i64,
    interval_ms: i64,
    counts: Vec<u64>,
    /// Timestamps of a block of documents (`collect_block`).
    buf: Vec<i64>,
}

/// Adds one to the bucket of `ts_ms`, if it has one.
#[inline]
fn count_in(counts: &mut [u64], start_ms: i64, interval_ms: i64, ts_ms: i64) {
    let i = (ts_ms - start_ms).div_euclid(interval_ms);
    if let Some(c) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
        *c += 1;
    }
}

impl Buckets {
    /// Counts every live document of `seg` in `[from_ms, to_ms)` into
    /// `counts` (the histogram of match-all) from the `@timestamp` column, a
    /// block of values at a time.
    fn scan_segment(&self, seg: &SegmentReader, from_ms: i64, to_ms: i64, counts: &mut [u64]) -> tantivy::Result<()> {
        let col = seg.fast_fields().i64(TS)?;
        let interval_ms = self.interval_ms.max(1);
        let alive = seg.alive_bitset();
        let keep = |doc: DocId, t: i64| t >= from_ms && t < to_ms && !alive.is_some_and(|a| a.is_deleted(doc));
        if col.get_cardinality() != Cardinality::Full {
            // Not written by this version (every document has a timestamp).
            for doc in 0..seg.max_doc() {
                if let Some(t) = col.first(doc).filter(|&t| keep(doc, t)) {
                    count_in(counts, self.start_ms, interval_ms, t);
                }
            }
            return Ok(());
        }
        const BLOCK: u32 = 4096;
        let mut buf = vec![0i64; BLOCK as usize];
        let mut first = 0u32;
        while first < seg.max_doc() {
            let n = BLOCK.min(seg.max_doc() - first);
            let vals = &mut buf[..n as usize];
            col.values.get_range(u64::from(first), vals);
            for (doc, &t) in (first..).zip(vals.iter()) {
                if keep(doc, t) {
                    count_in(counts, self.start_ms, interval_ms, t);
                }
            }
            first += n;
        }
        Ok(())
    }
}

impl Collector for Buckets {
    type Fruit = Vec<u64>;
    type Child = BucketsSegment;

    fn for_segment(&self, _: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<BucketsSegment> {
        Ok(BucketsSegment {
            ts: reader.fast_fields().i64(TS)?.first_or_default_col(0),
            start_ms: self.start_ms,
            interval_ms: self.interval_ms.max(1),
            counts: vec![0; self.n],
            buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut out = vec![0; self.n];
        for f in fruits {
            for (o, c) in out.iter_mut().zip(f) {
                *o += c;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for BucketsSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        count_in(&mut self.counts, self.start_ms, self.interval_ms, self.ts.get_val(doc));
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.buf.resize(docs.len(), 0);
        self.ts.get_vals(docs, &mut self.buf);
        for &t in &self.buf {
            count_in(&mut self.counts, self.start_ms, self.interval_ms, t);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// The write side: adds documents, commits with a payload, applies retention.
pub struct Writer {
    store: Arc<Store>,
    w: IndexWriter<LineDoc>,
    next_seq: u64,
    /// Documents added since the last commit.
    pending: u64,
    cfg: IndexConfig,
}

impl Writer {
    /// Adds a document (seen at the next commit).
    pub fn add(&mut self, mut doc: LineDoc) -> Result<(), IndexError> {
        doc.seq = self.next_seq;
        self.next_seq += 1;
        self.pending += 1;
        self.w.add_document(doc)?;
        Ok(())
    }

    /// Adds a document, replacing any committed or pending one with its id
    /// (a line that reached the index before, e.g. redelivered by Kafka).
    pub fn add_replacing(&mut self, doc: LineDoc) -> Result<(), IndexError> {
        self.w.delete_term(Term::from_field_text(F_ID, doc.id.as_str()));
        self.add(doc)
    }

    /// Documents added since the last commit.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// `_seq` the next document gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Commits everything added, with `checkpoints` in the commit, and makes
    /// it searchable.
    pub fn commit(&mut self, checkpoints: Option<Snapshot>) -> Result<(), IndexError> {
        let payload = Payload { version: PAYLOAD_VERSION, next_seq: self.next_seq, checkpoints };
        let text = serde_json::to_string(&payload).expect("payload serializes");
        let mut prepared = self.w.prepare_commit()?;
        prepared.set_payload(&text);
        prepared.commit()?;
        self.pending = 0;
        self.store.reload()
    }

    /// Queues the deletes retention asks for (applied by the next commit).
    /// Returns a description of what goes, if anything does.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<Option<String>, IndexError> {
        let searcher = self.store.reader.searcher();
        let mut cutoff: Option<i64> = None;
        if self.cfg.retention_days > 0 {
            cutoff = Some(now_ms - self.cfg.retention_days as i64 * 86_400_000);
        }
        if self.cfg.retention_bytes > 0 {
            let (alive, all) = searcher
                .segment_readers()
                .iter()
                .fold((0u64, 0u64), |(a, m), s| (a + u64::from(s.num_docs()), m + u64::from(s.max_doc())));
            let disk = self.store.disk_bytes();
            // Deleted documents still take space until merged: count the live share.
            let live_bytes = if all == 0 { 0 } else { (disk as u128 * alive as u128 / all as u128) as u64 };
            if live_bytes > self.cfg.retention_bytes && alive > 0 {
                let target = self.cfg.retention_bytes / 10 * 9;
                let drop_docs = ((live_bytes - target) as u128 * alive as u128 / live_bytes as u128) as u64;
                if let Some(t) = oldest_cutoff(&searcher, drop_docs.max(1))? {
                    cutoff = Some(cutoff.map_or(t, |c| c.max(t)));
                }
            }
        }
        let Some(cutoff) = cutoff else { return Ok(None) };
        let older = RangeQuery::new(
            Bound::Included(Term::from_field_i64(F_TS, i64::MIN)),
            Bound::Excluded(Term::from_field_i64(F_TS, cutoff)),
        );
        let n = searcher.search(&older, &Count)?;
        if n == 0 {
            return Ok(None);
        }
        self.w.delete_query(Box::new(older))?;
        self.pending += 1;
        Ok(Some(format!("{n} documents older than {} ms since the epoch", cutoff)))
    }
}

/// A time before which about `k` documents lie (a little more rather than
/// less), from a 1024-bucket histogram of all timestamps.
fn oldest_cutoff(searcher: &tantivy::Searcher, k: u64) -> Result<Option<i64>, IndexError> {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in searcher.segment_readers() {
        if s.num_docs() == 0 {
            continue;
        }
        let c = s.fast_fields().i64(TS)?;
        lo = lo.min(c.min_value());
        hi = hi.max(c.max_value());
    }
    if lo > hi {
        return Ok(None);
    }
    const N: usize = 1024;
    let interval = ((hi - lo) / N as i64 + 1).max(1);
    let counts = searcher.search(&AllQuery, &Buckets { start_ms: lo, interval_ms: interval, n: N + 1 })?;
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= k {
            return Ok(Some(lo + (i as i64 + 1) * interval));
        }
    }
    Ok(Some(hi + 1))
}

/// Bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let origin = Origin { host: host.as_bytes(), path: path.as_bytes(), offset: i, fid: b"1-2-3", cut: Cut::Whole };
        let rec = Record {
            value: msg.as_bytes(),
            topic,
            partition: bulk::NOT_FROM_KAFKA,
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
            "x*",
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
            let (total, hits) = store.search(&node, 0, i64::MAX, 100, None).unwrap();
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
            let (total, hits) = store.search(&all, 0, i64::MAX, 7, before).unwrap();
            assert_eq!(total, 50);
            if hits.is_empty() {
                break;
            }
            before = hits.last().map(|h| (h.ts_ms, h.seq));
            seen.extend(hits.iter().map(|h| h.offset.unwrap()));
        }
        assert_eq!(seen, (0..50).rev().collect::<Vec<_>>(), "newest first, every line once");
        let (total, hits) = store.search(&all, 1001, 1003, 100, None).unwrap();
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
        let after: Vec<u64> = store.since(&all, 44, 3).unwrap().iter().map(|h| h.seq).collect();
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
        let (_, hits) = store.search(&Node::All, 0, i64::MAX, 10, None).unwrap();
        let id2 = hits.iter().find(|h| h.offset == Some(2)).unwrap();
        assert_eq!((id2.ts_ms, id2.id.len()), (9, 22), "the replacement won");
    }

    #[test]
    fn a_second_writer_is_refused_with_the_directory_named() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _w) = open(dir.path());
        let (_, p) = Store::open(dir.path()).unwrap();
        let e = store.writer(&IndexConfig::in_dir(dir.path()), &p).err().unwrap().to_string();
        assert!(e.contains(&dir.path().display().to_string()) && e.contains("another logcollect"), "{e}");
    }

    #[test]
    fn retention_drops_old_documents_by_age_and_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let (store, p) = Store::open(dir.path()).unwrap();
        let store = Arc::new(store);
        let day = 86_400_000i64;
        let now = 100 * day;
        let mut cfg = IndexConfig::in_dir(dir.path());
        cfg.retention_days = 7;
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
        cfg.retention_bytes = before / 2;
        let mut w = store.writer(&cfg, &Payload { next_seq: 20_000, ..Payload::default() }).unwrap();
        assert!(w.enforce_retention(0).unwrap().is_some());
        w.commit(None).unwrap();
        let left = store.num_docs();
        assert!((8_000..=10_000).contains(&left), "about 45 % left, the newest: {left}");
        let (_, hits) = store.search(&Node::All, 0, i64::MAX, 1, None).unwrap();
        assert_eq!(hits[0].offset, Some(19_999), "the newest stays");
    }
}
