//! logcollect: gathers every log line of every host into one searchable place.
//!
//! # Pipeline
//!
//! ```text
//!  agent (every host)                                   transfer
//!  ───────────────────────────────────────────────      ─────────────────────
//!  etcd watch ─► collect list (per host, validated, cached)
//!      │
//!      ▼
//!  discovery ─► tail (1 thread/file) ─► channel ─► ship ═► Kafka ═► consume ─► bulk ─► Elasticsearch
//!    globs        LineBuffer (split)    bounded    rdkafka            group     _bulk NDJSON
//!                 Bytes slices, no copy  batches    batching
//!                      ▲                              │ delivery reports
//!                      └──── checkpoint ◄─ progress ◄─┘ (acked prefix only)
//! ```
//!
//! On one host (`logcollect run`) the channel can feed the embedded index
//! directly, and the same process serves the search page:
//!
//! ```text
//!  tail ─► channel ─► ingest ─► index (tantivy, checkpoints in each commit) ◄─ search ◄─ http (page, /api/)
//! ```
//!
//! A line is read once into a pooled chunk, travels as a slice of it, and is
//! acknowledged back: a file's checkpoint moves only over lines the next
//! stage confirmed, so a crash anywhere loses nothing (at-least-once).
//!
//! # Layout
//!
//! - [`config`]: `config.ini` into validated types; errors name the key.
//! - [`record`]: the record model every stage shares: `Record`, `Origin`, `Cut`,
//!   and the document id the same line always gets.
//! - [`split`]: the line splitter (`LineBuffer`): chunks to zero-copy lines.
//! - [`identity`]: `FileId`, device + inode + head fingerprint.
//! - [`batch`]: the unit that travels, and per-file acknowledgement tracking.
//! - [`tail`]: one reader thread per file: growth, truncation, rotation.
//! - [`wake`]: inotify wakes parked readers when their file changes.
//! - [`discovery`]: glob expansion, one reader per matching file; reconciles
//!   a new collect list by (path, topic).
//! - [`collect`]: the etcd collect list format: JSON to validated entries.
//! - [`etcd`]: this host's collect list, read and watched live (cached under
//!   `data_dir`); the `logcollect config` operator commands.
//! - [`checkpoint`]: the source registry and the atomic on-disk checkpoints.
//! - [`ship`]: the Kafka producer stage.
//! - [`agent`]: wiring and orderly shutdown.
//! - [`transfer`]: Kafka consumer group to Elasticsearch, offsets committed behind acks.
//! - [`elastic`]: Elasticsearch `_bulk`, for the transfer and `run`: bodies from
//!   records, index names, the response classifier (pure); workers with
//!   per-item retries, dead letters, the HTTP client, index templates.
//! - [`host`]: the host name records carry and the etcd key names: `[agent]
//!   host`, else the outbound IP.
//! - [`run`]: `logcollect run`, everything on one host (modes by config).
//! - [`index`]: the embedded tantivy index: documents, commits with checkpoints, retention, searches.
//! - [`ingest`]: the embedded index's writers: from the readers, or from Kafka.
//! - [`query`]: the search language: parser, AST, the model, Elasticsearch DSL.
//! - [`search`]: the API's searches over the embedded index or Elasticsearch.
//! - [`http`]: the search page and `/api/` (axum); other routes merge into it.
//! - [`metrics`]: counters every stage bumps (atomics, per batch).
//! - [`observe`]: `/metrics` (Prometheus), `/health/*`, `/api/status` read from them.
//! - [`status`]: `logcollect status`, a live table of a running process.
//! - [`hostmetrics`]: `[metrics]`: host CPU, memory, disk, network, exposed and shipped.

pub mod agent;
pub mod common;
pub mod config;
pub mod control;
pub mod elastic;
pub mod embedded;
pub mod error;
pub mod kafka;
pub mod observe;
pub mod record;
pub mod run;
pub mod search;
pub mod transfer;
