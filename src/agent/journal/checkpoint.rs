//! The journal's checkpoint: the cursor of the last entry of the
//! acknowledged prefix, in `data_dir/journal.json`, versioned and written
//! atomically (`common::atomic_file`): `{"version":1,"cursor":"s=…;i=…;…"}`.

use crate::common::atomic_file::{tmp_path, write_atomic};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The checkpoint's file name in `data_dir`.
pub const FILE_NAME: &str = "journal.json";

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    cursor: String,
}

/// The checkpoint file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// The cursor saved at `path`; `None` without a checkpoint. The temp file
/// is read first: complete, it is the newer content (its rename was
/// interrupted); torn, it is ignored.
pub fn load(path: &Path) -> io::Result<Option<String>> {
    if let Ok(bytes) = std::fs::read(tmp_path(path)) {
        if let Ok(d) = serde_json::from_slice::<OnDisk>(&bytes) {
            if d.version == 1 {
                return Ok(Some(d.cursor));
            }
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => {
            let d: OnDisk = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
            if d.version != 1 {
                let msg = format!("{}: version {} is not 1", path.display(), d.version);
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
            }
            Ok(Some(d.cursor))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `cursor` as the checkpoint at `path`.
pub fn save(path: &Path, cursor: &str) -> io::Result<()> {
    let bytes = serde_json::to_vec(&OnDisk { version: 1, cursor: cursor.to_string() }).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(load(&p).unwrap(), None);
        save(&p, "s=1;i=2").unwrap();
        assert_eq!(load(&p).unwrap().as_deref(), Some("s=1;i=2"));
        // A complete temp file is the newer checkpoint; a torn one is ignored.
        std::fs::write(tmp_path(&p), br#"{"version":1,"cursor":"s=1;i=3"}"#).unwrap();
        assert_eq!(load(&p).unwrap().as_deref(), Some("s=1;i=3"));
        std::fs::write(tmp_path(&p), br#"{"version":1,"cur"#).unwrap();
        assert_eq!(load(&p).unwrap().as_deref(), Some("s=1;i=2"));
        std::fs::write(&p, br#"{"version":2,"cursor":"x"}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("version 2"));
    }
}
