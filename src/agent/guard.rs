//! Guard: which files found by a glob a reader may open, and the opening.
//!
//! The agent often runs as root over directories other users write to
//! (`/var/log/app` owned by the app), so anything found there is treated
//! as hostile until checked, once per new file, at discovery time (the
//! reader's loop never sees these checks):
//!
//! - **Symlinks are not followed** unless `follow_symlinks` is on (per
//!   `[agent]` or per entry): `ln -s /etc/shadow x.log` is refused and
//!   reported, and so is a file reached through a symlinked directory below
//!   the entry's fixed leading directories (what the operator wrote may
//!   hold symlinks; what the glob's wildcards reach may not). With following
//!   on, the resolved target must pass `exclude` and `allowed_paths` too
//!   (or, with `allowed_paths` unset, match the entry's own glob, so a link
//!   to outside the watched tree is still refused).
//! - **Only regular files are opened**, with `O_NOFOLLOW` (when not
//!   following) and `O_NONBLOCK`, and checked again on the descriptor
//!   (`fstat`): a FIFO or device swapped in between the `lstat` and the
//!   `open` is refused without the open ever blocking discovery.
//! - **`allowed_paths`** (local only) bounds every file found and every
//!   resolved target.
//!
//! Identity: a file is keyed by the device and inode of what is read (for
//! a followed link, its target's), so two links to one file, or a link and
//! the file itself, make one reader; records carry the path as found.

use crate::config::AllowedPaths;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What decides about one entry's files.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub follow_symlinks: bool,
    pub allowed: &'a AllowedPaths,
    /// The entry's glob, for targets when `allowed` is unset.
    pub glob: &'a str,
    /// Where the entry's glob has its first wildcard: symlinked directories
    /// above it are the operator's, below it are refused unless following.
    pub fixed: &'a Path,
    pub exclude: &'a [glob::Pattern],
}

/// A file found by a glob that may be read, before it is opened.
#[derive(Debug)]
pub struct Candidate {
    /// Device and inode of what will be read (a link's target's).
    pub dev: u64,
    pub ino: u64,
    /// Its size now.
    pub size: u64,
}

/// Why a file found by a glob is not read. Each names the path.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a file at all (a directory a `*` matched): skipped silently.
    Directory,
    /// Excluded by the entry: skipped silently, as asked.
    Excluded,
    /// Everything else: reported.
    Report(String),
}

fn kind(m: &Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// The device and inode `path` (absolute, as the glob found it) would be
/// read as, from `lstat` (or `stat` of a link being followed): the cheap
/// part, done every scan to find files that already have a reader.
pub fn identify(path: &Path, follow: bool) -> Result<Candidate, Refused> {
    let lmeta =
        fs::symlink_metadata(path).map_err(|e| Refused::Report(format!("cannot stat {}: {e}", path.display())))?;
    let meta = if lmeta.file_type().is_symlink() {
        if !follow {
            let to = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            return Err(Refused::Report(format!(
                "refusing {}: a symlink (to {to}), and follow_symlinks is off",
                path.display()
            )));
        }
        fs::metadata(path).map_err(|e| {
            Refused::Report(format!("refusing {}: a symlink whose target cannot be read: {e}", path.display()))
        })?
    } else {
        lmeta
    };
    if meta.is_dir() {
        return Err(Refused::Directory);
    }
    if !meta.is_file() {
        return Err(Refused::Report(format!("refusing {}: {}, not a regular file", path.display(), kind(&meta))));
    }
    Ok(Candidate { dev: meta.dev(), ino: meta.ino(), size: meta.len() })
}

/// The rest of the checks for a file without a reader (symlinked
/// directories, exclude, allowed_paths, a followed link's target), then
/// the open. Returns the open file.
pub fn admit(path: &Path, found: &Candidate, rules: Rules<'_>) -> Result<File, Refused> {
    if excluded(rules.exclude, path) {
        return Err(Refused::Excluded);
    }
    if !rules.allowed.allows(path) {
        return Err(Refused::Report(format!(
            "refusing {}: outside [agent] allowed_paths ({})",
            path.display(),
            rules.allowed.describe()
        )));
    }
    if rules.follow_symlinks {
        let target = fs::canonicalize(path)
            .map_err(|e| Refused::Report(format!("refusing {}: cannot resolve it: {e}", path.display())))?;
        if target != path {
            check_target(path, &target, rules)?;
        }
    } else if let Some(link) = symlinked_dir(path, rules.fixed) {
        return Err(Refused::Report(format!(
            "refusing {}: reached through the symlinked directory {} (to {}), and follow_symlinks is off",
            path.display(),
            link.display(),
            fs::read_link(&link).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into())
        )));
    }
    let file = open_regular(path, rules.follow_symlinks)
        .map_err(|e| Refused::Report(format!("cannot open {}: {e}", path.display())))?;
    // Swapped between the lstat and the open: look again next scan.
    let m = file.metadata().map_err(|e| Refused::Report(format!("cannot stat {}: {e}", path.display())))?;
    if (m.dev(), m.ino()) != (found.dev, found.ino) {
        return Err(Refused::Report(format!("{} changed while it was opened: trying again next scan", path.display())));
    }
    Ok(file)
}

/// A followed link's target: not excluded, inside `allowed_paths`, or with
/// none set, matched by the entry's own glob.
fn check_target(path: &Path, target: &Path, rules: Rules<'_>) -> Result<(), Refused> {
    if excluded(rules.exclude, target) {
        return Err(Refused::Excluded);
    }
    let inside = if rules.allowed.is_set() {
        rules.allowed.allows(target)
    } else {
        let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        let matches = |glob: &str| glob::Pattern::new(glob).is_ok_and(|g| g.matches_path_with(target, opts));
        // The fixed part may itself be a symlink the operator wrote
        // (`/var/log` -> `/data/log`): the glob is also tried from where it
        // resolves.
        let rebased = || {
            let rest = rules.glob.strip_prefix(rules.fixed.to_str()?)?;
            let fixed = fs::canonicalize(rules.fixed).ok()?;
            Some(format!("{}{rest}", glob::Pattern::escape(&fixed.to_string_lossy())))
        };
        matches(rules.glob) || rebased().is_some_and(|g| matches(&g))
    };
    if inside {
        return Ok(());
    }
    let bound = if rules.allowed.is_set() {
        format!("[agent] allowed_paths ({})", rules.allowed.describe())
    } else {
        format!("the entry's glob {:?} (set [agent] allowed_paths to allow targets elsewhere)", rules.glob)
    };
    Err(Refused::Report(format!("refusing {}: a symlink to {}, outside {bound}", path.display(), target.display())))
}

/// The first ancestor of `path` below `fixed` that is a symlink.
fn symlinked_dir(path: &Path, fixed: &Path) -> Option<PathBuf> {
    let mut below: Vec<&Path> = path.ancestors().skip(1).take_while(|a| a.starts_with(fixed) && *a != fixed).collect();
    below.reverse();
    below.into_iter().find(|a| fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink())).map(Path::to_path_buf)
}

/// Opens `path` for reading without blocking (a FIFO would block `open`
/// until a writer came) and, unless `follow`, without following a symlink
/// in its last component; refuses what `fstat` says is not a regular file.
pub fn open_regular(path: &Path, follow: bool) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::other("a symlink, and follow_symlinks is off")
        } else {
            e
        }
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!("{}, not a regular file", kind(&meta))));
    }
    // Regular files ignore O_NONBLOCK; cleared so the descriptor is plain.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let fd = file.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// Whether an exclude pattern matches `path`: patterns with a `/` against the
/// whole path, the others against the file name. `*` never crosses a `/`.
pub fn excluded(patterns: &[glob::Pattern], path: &Path) -> bool {
    let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let name = path.file_name().map(Path::new);
    patterns.iter().any(|p| {
        if p.as_str().contains('/') {
            p.matches_path_with(path, opts)
        } else {
            name.is_some_and(|n| p.matches_path_with(n, opts))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    fn rules<'a>(follow: bool, allowed: &'a AllowedPaths, glob: &'a str, fixed: &'a Path) -> Rules<'a> {
        Rules { follow_symlinks: follow, allowed, glob, fixed, exclude: &[] }
    }

    fn report(r: Result<impl std::fmt::Debug, Refused>) -> String {
        match r {
            Err(Refused::Report(m)) => m,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    #[test]
    fn symlinks_are_refused_unless_followed_and_then_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, secret) = (dir.path().join("logs"), dir.path().join("secret"));
        fs::create_dir_all(&logs).unwrap();
        fs::write(&secret, "root:x\n").unwrap();
        fs::write(logs.join("real.log"), "a\n").unwrap();
        let link = logs.join("x.log");
        symlink(&secret, &link).unwrap();
        let m = report(identify(&link, false));
        assert!(m.contains("x.log") && m.contains("symlink") && m.contains("secret"), "{m}");
        // Opening it directly is refused by O_NOFOLLOW too.
        assert!(open_regular(&link, false).unwrap_err().to_string().contains("symlink"));

        let glob = format!("{}/*.log", logs.display());
        let none = AllowedPaths::default();
        let c = identify(&link, true).unwrap();
        let m = report(admit(&link, &c, rules(true, &none, &glob, &logs)));
        assert!(m.contains("outside the entry's glob"), "a target outside the glob: {m}");
        let wide = AllowedPaths::new(&[dir.path().display().to_string()]).unwrap();
        assert!(admit(&link, &c, rules(true, &wide, &glob, &logs)).is_ok(), "allowed_paths covers the target");
        // A link inside the tree to a file the glob matches: fine, keyed as its target.
        let inner = logs.join("inner.log");
        symlink(logs.join("real.log"), &inner).unwrap();
        let c = identify(&inner, true).unwrap();
        let real = fs::metadata(logs.join("real.log")).unwrap();
        assert_eq!((c.dev, c.ino), (real.dev(), real.ino()), "identity is the target's");
        assert!(admit(&inner, &c, rules(true, &none, &glob, &logs)).is_ok());
        // exclude applies to the target too.
        let ex = [glob::Pattern::new("real.*").unwrap()];
        let r = admit(&inner, &c, Rules { exclude: &ex, ..rules(true, &none, &glob, &logs) });
        assert_eq!(r.unwrap_err(), Refused::Excluded);
    }

    #[test]
    fn a_symlinked_directory_below_the_fixed_part_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let elsewhere = dir.path().join("etc");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("shadow.log"), "x\n").unwrap();
        symlink(&elsewhere, logs.join("sub")).unwrap();
        let path = logs.join("sub/shadow.log");
        let glob = format!("{}/*/*.log", logs.display());
        let none = AllowedPaths::default();
        let c = identify(&path, false).unwrap();
        let m = report(admit(&path, &c, rules(false, &none, &glob, &logs)));
        assert!(m.contains("symlinked directory") && m.contains("sub"), "{m}");
        // Written by the operator (in the fixed part): theirs to choose.
        let fixed = logs.join("sub");
        assert!(admit(&path, &c, rules(false, &none, &glob, &fixed)).is_ok());
    }

    #[test]
    fn fifos_and_other_kinds_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("p.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Instant::now();
        let m = report(identify(&fifo, false));
        assert!(m.contains("a FIFO") && m.contains("p.log"), "{m}");
        // Even opened directly (as if swapped in after the lstat): no block.
        let e = open_regular(&fifo, false).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(identify(dir.path(), false).unwrap_err(), Refused::Directory);
        let m = report(identify(&dir.path().join("missing.log"), false));
        assert!(m.contains("cannot stat") && m.contains("missing.log"), "{m}");
    }

    #[test]
    fn allowed_paths_bound_the_files_found() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.log");
        fs::write(&f, "x\n").unwrap();
        let only = AllowedPaths::new(&["/nowhere".to_string()]).unwrap();
        let c = identify(&f, false).unwrap();
        let m = report(admit(&f, &c, rules(false, &only, "/x", dir.path())));
        assert!(m.contains("allowed_paths") && m.contains("a.log"), "{m}");
    }

    #[test]
    fn exclude_patterns_match_names_or_whole_paths() {
        // (patterns, path, excluded)
        let table: &[(&[&str], &str, bool)] = &[
            (&[], "/var/log/a.log", false),
            (&["*.gz"], "/var/log/a.log.gz", true),
            (&["*.gz"], "/var/log/a.log", false),
            (&["a.log"], "/var/log/a.log", true),
            (&["a.log"], "/var/log/ba.log", false),
            // With a '/': the whole path, and '*' stays within one directory.
            (&["/var/log/debug-*"], "/var/log/debug-1.log", true),
            (&["/var/log/*"], "/var/log/sub/x.log", false),
            (&["/var/log/**/x.log"], "/var/log/sub/x.log", true),
            (&["debug-*", "*.gz"], "/srv/debug-2.log", true),
            (&["[ab].log"], "/srv/b.log", true),
        ];
        for &(patterns, path, want) in table {
            let compiled: Vec<glob::Pattern> = patterns.iter().map(|p| glob::Pattern::new(p).unwrap()).collect();
            assert_eq!(excluded(&compiled, Path::new(path)), want, "{patterns:?} {path}");
        }
    }
}
