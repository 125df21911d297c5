//! Elasticsearch `_bulk` bodies from Kafka records (built by the transfer issue).
