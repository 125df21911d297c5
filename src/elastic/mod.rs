//! Everything that talks Elasticsearch, shared by the transfer (records from
//! Kafka) and `run` (lines from the readers):
//!
//! ```text
//!  records ─► batcher ─► worker ─► client ═► Elasticsearch _bulk
//!             body/        │  ▲
//!             index_name   │  └─ classify (the answer, per item)
//!                          └──► dead_letter (refused for good)
//! ```
//!
//! - [`batcher`]: the one `_bulk` request builder: documents, their slots, when a request is due.
//! - [`body`]: the request body from records (escaping, timestamps, JSON lines merged); pure.
//! - [`index_name`]: index name patterns (`{topic}-%Y.%m.%d`) and their per-record cache; pure.
//! - [`classify`]: the `_bulk` answer, one outcome per document; pure.
//! - [`worker`]: sees each request through (split, retry, dead letter) on a pool of tasks.
//! - [`client`]: the HTTP side: nodes in rotation, auth, TLS; `_bulk`, templates, searches.
//! - [`dead_letter`]: where refused documents go, a Kafka topic or a file.
//! - [`template`]: the index template of our fields, installed per topic.
//! - [`error`]: [`error::EsError`], and the config key a start-up failure names.
//! - [`retention`]: dated indices past `retention_days` deleted, periodically.
//! - [`stats`]: the counters of this side.
//! - `tape` (private): walking simd-json tapes, for `body` and `classify`.

pub mod batcher;
pub mod body;
pub mod classify;
pub mod client;
pub mod dead_letter;
pub mod error;
pub mod index_name;
pub mod retention;
pub mod stats;
mod tape;
pub mod template;
pub mod worker;
