//! The process's own files: private to the user it runs as.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700, or takes an existing
/// one's group and other permissions away: `data_dir` holds copies of the
/// logs (the index, dead letters), checkpoints and caches, and the logs a
/// root agent reads are often not world-readable.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "data_dir was readable by others (mode {:o}): now 0700", mode & 0o777);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates, syncs and removes a file in `dir`: whether checkpoints and
/// index segments can be written there.
pub fn probe_writable(dir: &Path) -> io::Result<()> {
    use std::io::Write;
    let probe = dir.join(".write-probe");
    let mut f = std::fs::File::create(&probe)?;
    let written = f.write_all(b"probe\n").and_then(|()| f.sync_all());
    drop(f);
    let _ = std::fs::remove_file(&probe);
    written
}

/// From now on, files and directories this process creates are its user's
/// only (0600 / 0700), whatever the umask it was started with: the index,
/// checkpoints, caches and dead letters are all written by libraries
/// (tantivy among them) that take the mode from the umask.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_are_made_private() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        private_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(std::fs::metadata(&open).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn probes_tell_writable_dirs_from_others() {
        let root = tempfile::tempdir().unwrap();
        probe_writable(root.path()).unwrap();
        assert!(!root.path().join(".write-probe").exists(), "the probe is removed");
        // Works as root too: a file where the directory should be.
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(probe_writable(&file).is_err());
    }
}
