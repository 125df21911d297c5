//! Secrets in settings: passwords, API keys, tokens.
//!
//! A [`Secret`] prints as `<redacted>` in `Debug` and has no `Display`, so a
//! settings struct can derive `Debug` without a password reaching a log
//! line; the value is read only through [`Secret::expose`], at the one place
//! that hands it to a client library.
//!
//! A secret comes from the INI file (`password = …`) or from a file named by
//! a `*_file` key ([`Secret::from_file`]: the first line, its newline
//! stripped, the way Docker and Kubernetes mount secrets).

use super::{err, ConfigError};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A password, key or token. Compared in full by `PartialEq` (settings
/// equality, not authentication: authentication compares hashes).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the settings.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the client library that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret from `path` (setting `key`): the file's first line
    /// without its line ending. Refuses an empty secret and a file that is
    /// not a regular file; [`Secret::loose_mode`] tells whether others may
    /// read it.
    pub fn from_file(key: &str, path: &Path) -> Result<Secret, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| err(key, format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(err(key, format!("{}: not a regular file", path.display())));
        }
        if meta.len() > 64 << 10 {
            return Err(err(key, format!("{}: {} bytes is too long for a secret", path.display(), meta.len())));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(key, format!("{}: {e}", path.display())))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if line.is_empty() {
            return Err(err(key, format!("{}: the file is empty", path.display())));
        }
        Ok(Secret(line.to_string()))
    }

    /// `Some(mode)` when the file at `path` may be read by its group or by
    /// others (a warning at start names it), `None` when only its owner may.
    pub fn loose_mode(path: &Path) -> Option<u32> {
        let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn from_file_takes_the_first_line_and_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\r\nignored\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::from_file("es.password_file", &p).unwrap().expose(), "s3cret");
        assert_eq!(Secret::loose_mode(&p), None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(Secret::loose_mode(&p), Some(0o644));

        std::fs::write(&p, "\n").unwrap();
        let e = Secret::from_file("es.password_file", &p).unwrap_err();
        assert_eq!(e.key, "es.password_file");
        assert!(e.message.contains("empty"), "{e}");
        let e = Secret::from_file("es.api_key_file", &dir.path().join("missing")).unwrap_err();
        assert_eq!(e.key, "es.api_key_file");
        let e = Secret::from_file("x.y", dir.path()).unwrap_err();
        assert!(e.message.contains("not a regular file"), "{e}");
    }
}
