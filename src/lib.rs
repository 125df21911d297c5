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
//!  discovery ─► tail (1 thread/file) ─► channel ─► ship ═► Kafka ═► consume ─► batcher ─► worker ═► Elasticsearch
//!    globs        LineBuffer (split)    bounded    rdkafka            group     _bulk body  retries, dead letter
//!                 Bytes slices, no copy  batches    batching            │
//!                      ▲                              │ delivery reports └─ commit ◄─ per-document acks
//!                      └──── checkpoint ◄─ progress ◄─┘ (acked prefix only)  (offsets behind acked prefix)
//! ```
//!
//! `logcollect run` builds one of four pipelines, by what `config.ini` sets
//! (see `run/`), and serves the search page over the index it writes:
//!
//! ```text
//!  no Kafka, no ES   tail ─► channel ─► ingest ─► embedded index (checkpoints in each commit)
//!  Kafka, no ES      agent ═► Kafka ═► ingest (consumer group) ─► embedded index
//!  ES, no Kafka      tail ─► channel ─► batcher ─► worker ═► Elasticsearch (checkpoints behind its acks)
//!  Kafka and ES      agent ═► Kafka ═► transfer ═► Elasticsearch
//!                    page, /api/ ─► search backend (embedded index or Elasticsearch)
//! ```
//!
//! A line is read once into a pooled chunk, travels as a slice of it, and is
//! acknowledged back: a file's checkpoint moves only over lines the next
//! stage confirmed, so a crash anywhere loses nothing (at-least-once).
//!
//! # Layout
//!
//! One folder per role, one module per stage; data flows down this list
//! (a module imports those above it, and `common`, `record` and `config`).
//!
//! - `common/`: the clock, the acknowledgement protocol (`BatchAck`,
//!   `Progress`), atomic file writes, backoff, shutdown, histograms, locks.
//! - [`config`]: `config.ini` into validated types (a leaf: it imports no
//!   stage); `${NAME}` in values from the environment; errors name the
//!   key; secrets are `Secret`s (redacted in `Debug`, read from `*_file`
//!   keys); `multiline`, an entry's multiline settings.
//! - [`record`]: the record model every stage shares (`Record`, `Origin`,
//!   `Cut`) and the document id the same line always gets.
//! - `control/`: what a host collects: `collect` (the collect list format,
//!   pure), `etcd/` (follow the host's key, the agent's config-watch stage,
//!   its cache, the `logcollect config` commands), `host` (its name).
//! - `kafka/`: every librdkafka client configuration, and their statistics.
//! - `agent/`: `discovery` (globs, one reader per file, `max_open_files`,
//!   files renamed out of the glob finished, unreadable bytes counted;
//!   `guard`: what may be opened: symlinks, FIFOs, `allowed_paths`) ─► `tail` (one
//!   file's reader: growth, truncation, rotation; `identity`, `wake`,
//!   `split`, the line splitter; `multiline`, lines into events, for the
//!   readers of entries with `multiline`) ─► `batch` (what travels) ─► `ship` (the
//!   Kafka producer); `checkpoint` (the source registry, on disk), `stats`;
//!   `tap` (`logcollect tap`: guard and split as the readers do, printed
//!   instead of shipped); `mod.rs` wires them and shuts them down in order.
//! - `elastic/`: everything that talks `_bulk`, shared by the transfer and
//!   `run`: `batcher` ─► `body` ─► `worker` ─► `client`, with `classify`,
//!   `index_name`, `dead_letter`, `template`, `retention`, `stats`.
//! - `transfer/`: `consume` (Kafka records into requests) and `commit`
//!   (offsets behind acknowledged prefixes); `mod.rs` wires them.
//! - `embedded/`: `index/` (the tantivy index: documents, store, collectors,
//!   writer with checkpoints in each commit, retention) and `ingest` (its
//!   writers: from the readers or from Kafka).
//! - `search/`: `query` (the search language, pure), `backend` (searches
//!   over the embedded index or Elasticsearch), `http` (the page, `/api/`).
//! - `observe/`: the registry behind `/metrics` (`prometheus`), `/health/*`
//!   and `/api/status`; `server` (the one HTTP server), `host_metrics`,
//!   `status` (`logcollect status`).
//! - `run/`: `logcollect run`: the four pipelines above; `es_direct` is
//!   readers straight to `_bulk`.
//! - `validate`: `logcollect validate`: the start's own checks of
//!   `config.ini`, then each destination asked (Kafka metadata, this host's
//!   etcd key, Elasticsearch's version and templates), as a table.
//! - [`error`]: [`RunError`], what ends a role, and its exit status.
//!
//! Modules are private. Public are the entry points of the binary
//! ([`cli`]), the configuration and the error, and the pure cores the
//! benches, fuzz targets and tests drive: [`split`], [`multiline`], [`record`], [`body`],
//! [`classify`], [`index_name`], [`query`], [`collect`], [`clock`].

#![deny(missing_docs)]

mod agent;
mod common;
mod control;
mod elastic;
mod embedded;
mod kafka;
mod observe;
mod run;
mod search;
mod transfer;
mod validate;

pub mod config;
pub mod error;
pub mod record;

pub use agent::journal::export as journal_export;
pub use agent::{multiline, split};
pub use common::clock;
pub use control::collect;
pub use elastic::{body, classify, index_name};
pub use embedded::index::to_tantivy;
pub use error::RunError;
pub use search::query;

/// What the `logcollect` binary runs: each role runs until SIGTERM or SIGINT.
pub mod cli {
    pub use crate::agent::run as agent;
    pub use crate::agent::tap::{run as tap, Options as TapOptions, Position as TapPosition, Tapped};
    pub use crate::control::etcd::cli::{
        command_config, parse_hosts, run_command, Command as ConfigCommand, CommandError,
    };
    pub use crate::observe::auth::hash_password;
    pub use crate::observe::status::{run as status, StatusAccess};
    pub use crate::run::run;
    pub use crate::transfer::run as transfer;
    pub use crate::validate::{run as validate, Options as ValidateOptions, Report as ValidateReport};
}
