//! File identity: which file a checkpoint belongs to.
//!
//! Device and inode say where a file lives, but inodes are reused: after a
//! rotation a new file can get the inode of one deleted a moment ago. So the
//! identity also carries a fingerprint of the file's head: the hash of its
//! first line (at most [`HEAD_BYTES`]). Log files are append-only, so the first
//! line never changes while the file lives; a reused inode, or a file
//! truncated and written anew, gets a different fingerprint. Hashing only the
//! first line (not a fixed number of bytes) lets files shorter than
//! [`HEAD_BYTES`] be identified as soon as they hold one line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Most bytes of the head that are hashed.
pub const HEAD_BYTES: usize = 256;

/// The identity of one collected file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// xxh3 of the file's first line, newline included, capped at `HEAD_BYTES`.
    pub head: u64,
}

impl FileId {
    /// The identity of an open file, or `None` while it holds no complete
    /// first line and fewer than `HEAD_BYTES` bytes (nothing to ship yet).
    pub fn of(file: &File) -> io::Result<Option<FileId>> {
        let meta = file.metadata()?;
        Ok(head_hash(file, false)?.map(|head| FileId { dev: meta.dev(), ino: meta.ino(), head }))
    }

    /// Like [`FileId::of`], but a head without newline is hashed as it is:
    /// used when the unfinished line of a short file is flushed.
    pub fn of_partial(file: &File) -> io::Result<FileId> {
        let meta = file.metadata()?;
        let head = head_hash(file, true)?.unwrap_or(0);
        Ok(FileId { dev: meta.dev(), ino: meta.ino(), head })
    }
}

/// `dev-ino-head` in hex: the `fid` record header.
impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x}-{:016x}", self.dev, self.ino, self.head)
    }
}

/// Hash of the first line (or of the first `HEAD_BYTES` bytes).
fn head_hash(file: &File, partial_ok: bool) -> io::Result<Option<u64>> {
    let mut buf = [0u8; HEAD_BYTES];
    let mut n = 0;
    while n < HEAD_BYTES {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head_of(&buf[..n], partial_ok))
}

/// The fingerprint of a file that starts with `head` (pure, for tests).
pub fn head_of(head: &[u8], partial_ok: bool) -> Option<u64> {
    let head = &head[..head.len().min(HEAD_BYTES)];
    let end = match memchr::memchr(b'\n', head) {
        Some(nl) => nl + 1,
        None if head.len() == HEAD_BYTES || (partial_ok && !head.is_empty()) => head.len(),
        None => return None,
    };
    Some(xxhash_rust::xxh3::xxh3_64(&head[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_edge_cases() {
        let long = vec![b'x'; 300];
        // (head bytes, partial allowed, has a fingerprint)
        let table: &[(&[u8], bool, bool)] = &[
            (b"", false, false),
            (b"", true, false),
            (b"abc", false, false),
            (b"abc", true, true),
            (b"\n", false, true),
            (b"a\nb", false, true),
            (&long[..255], false, false),
            (&long[..256], false, true),
            (&long[..], false, true),
        ];
        for &(head, partial, some) in table {
            assert_eq!(head_of(head, partial).is_some(), some, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn growth_after_the_first_line_keeps_the_identity() {
        assert_eq!(head_of(b"first\n", false), head_of(b"first\nsecond\nthird", false));
        assert_ne!(head_of(b"first\n", false), head_of(b"other\n", false));
        let long = vec![b'y'; 1000];
        assert_eq!(head_of(&long[..256], false), head_of(&long, false));
    }

    #[test]
    fn a_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, b"no newline").unwrap();
        let f = File::open(&p).unwrap();
        assert!(FileId::of(&f).unwrap().is_none());
        assert_ne!(FileId::of_partial(&f).unwrap().head, 0);
        std::fs::write(&p, b"line\nmore").unwrap();
        let id = FileId::of(&f).unwrap().unwrap();
        assert_eq!(id.head, head_of(b"line\n", false).unwrap());
        assert_eq!(id.to_string().split('-').count(), 3);
    }
}
