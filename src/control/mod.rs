//! What a host collects: its collect list in etcd (format, watch, cache,
//! operator commands) and the host name the etcd key is built from.

pub mod collect;
pub mod etcd;
pub mod host;
