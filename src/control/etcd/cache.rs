//! The agent's cache of its collect list under `data_dir`: the list it
//! collects when etcd does not answer at start.

use crate::common::atomic_file::{tmp_path, write_atomic};
use crate::config::CollectEntry;
use crate::control::collect;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;

/// The last applied collect list, under `data_dir`.
pub const CACHE_FILE: &str = "etcd_collect.json";

/// The cache file: the last collect list the agent applied from etcd.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct CacheV1 {
    version: u32,
    /// The key it was read from: a cache of another host's key is not used.
    key: String,
    revision: i64,
    /// The value as etcd held it; `None`: the key did not exist.
    value: Option<String>,
}

/// A collect list read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub revision: i64,
    pub entries: Vec<CollectEntry>,
}

/// Writes the cache atomically (temp file, fsync, rename).
pub(crate) fn write_cache(path: &Path, key: &str, revision: i64, value: Option<&[u8]>) -> io::Result<()> {
    let c = CacheV1 {
        version: 1,
        key: key.to_string(),
        revision,
        value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
    };
    write_atomic(path, &serde_json::to_vec_pretty(&c).map_err(io::Error::other)?)
}

/// The cached list for `key`, if there is a usable one. The temp file is
/// tried first (a write whose rename was interrupted is the newer one).
pub fn read_cache(path: &Path, key: &str) -> Option<Cached> {
    for p in [tmp_path(path), path.to_path_buf()] {
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let c: CacheV1 = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(path = %p.display(), "ignoring the etcd cache: {e}");
                continue;
            }
        };
        if c.version != 1 {
            tracing::warn!(path = %p.display(), version = c.version, "ignoring the etcd cache: unknown version");
            continue;
        }
        if c.key != key {
            tracing::warn!(path = %p.display(), cached = %c.key, key, "ignoring the etcd cache: it is another key's");
            return None;
        }
        let entries = match c.value.as_deref().map(|v| collect::parse(v.as_bytes())) {
            None => Vec::new(),
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(path = %p.display(), "ignoring the etcd cache: {e}");
                continue;
            }
        };
        return Some(Cached { revision: c.revision, entries });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> CollectEntry {
        CollectEntry::new(path, "t")
    }

    #[test]
    fn the_cache_is_per_key_and_a_torn_write_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CACHE_FILE);
        write_cache(&path, "/k/a", 9, Some(br#"[{"path":"/x","topic":"t"}]"#)).unwrap();
        assert_eq!(read_cache(&path, "/k/a"), Some(Cached { revision: 9, entries: vec![entry("/x")] }));
        assert_eq!(read_cache(&path, "/k/b"), None, "another host's key");
        std::fs::write(tmp_path(&path), b"{\"version\":1,\"ke").unwrap();
        assert_eq!(read_cache(&path, "/k/a").unwrap().revision, 9);
        write_cache(&path, "/k/a", 10, None).unwrap();
        assert_eq!(read_cache(&path, "/k/a"), Some(Cached { revision: 10, entries: vec![] }));
        assert!(!tmp_path(&path).exists());
        assert_eq!(read_cache(&dir.path().join("none"), "/k/a"), None);
    }
}
