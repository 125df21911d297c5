//! The embedded index (tantivy) and its writers: from the readers or from Kafka.

pub mod index;
pub mod ingest;
