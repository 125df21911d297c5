//! Everything that talks Elasticsearch's `_bulk`: the body builder and the
//! response classifier, the HTTP client, the workers, the dead letter. Shared
//! by the transfer (Kafka in) and `run` (readers in).

pub mod batcher;
pub mod bulk;
pub mod es;
pub mod stats;
pub mod template;
