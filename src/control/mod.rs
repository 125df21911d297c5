//! What a host collects: its collect list in etcd (format, watch, cache,
//! operator commands), the host name the etcd key is built from, and the
//! config reload on SIGHUP.

pub mod collect;
pub mod etcd;
pub mod host;
pub mod reload;
