//! Search: the query language, the backends (embedded index or
//! Elasticsearch), the HTTP API and the page.

pub mod backend;
pub mod http;
pub mod query;
