//! The embedded index: every line as a tantivy document under
//! `data_dir/index`, with the fields of the Elasticsearch documents the
//! transfer writes, and the searches the API runs over it.
//!
//! # Documents
//!
//! | field             | kind                          | from                                  |
//! |-------------------|-------------------------------|---------------------------------------|
//! | `_id`             | exact, stored                 | [`crate::record::doc_id()`] (the ES `_id`)        |
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

mod collectors;
mod doc;
mod store;
mod tantivy_query;
#[cfg(test)]
mod tests;
mod writer;

pub use doc::{LineDoc, LineOrigin};
pub use store::{Store, StoredField, StoredHit};
pub use tantivy_query::to_tantivy;
pub use writer::{dir_bytes, Writer};

use crate::agent::checkpoint::Snapshot;
use crate::config::IndexSection;
use crate::search::query::{self};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};

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
    /// A prefix of the query matches too many terms to search.
    #[error("{prefix}* matches more than {} words: make it longer", tantivy_query::MAX_PREFIX_TERMS)]
    TooBroad { prefix: String },
}

/// Writer and retention settings (`[index]`).
#[derive(Clone, Debug, PartialEq)]
pub struct IndexConfig {
    /// Where the index lives (`data_dir/index`).
    pub dir: PathBuf,
    /// `[index]`: retention, commits, the writer's threads and memory.
    pub settings: IndexSection,
}

impl IndexConfig {
    /// The index in `dir` with the `[index]` settings `s`.
    pub fn new(dir: PathBuf, s: &IndexSection) -> IndexConfig {
        IndexConfig { dir, settings: s.clone() }
    }

    /// The index in `dir` with an empty `[index]`'s settings.
    #[cfg(test)]
    pub fn in_dir(dir: &std::path::Path) -> IndexConfig {
        IndexConfig::new(dir.to_path_buf(), &IndexSection::default())
    }
}
