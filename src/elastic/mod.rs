//! Everything that talks Elasticsearch's `_bulk`: the body builder and the
//! response classifier, the HTTP client, the workers, the dead letter. Shared
//! by the transfer (Kafka in) and `run` (readers in).

pub mod batcher;
pub mod body;
pub mod classify;
pub mod client;
pub mod dead_letter;
pub mod error;
pub mod index_name;
pub mod stats;
mod tape;
pub mod template;
pub mod worker;
