//! `[agent] allowed_paths`: where this host's readers may read, whatever
//! the collect list (etcd's or `[collect]`) asks for.
//!
//! Local only: nothing from etcd can widen it. Each item is an absolute
//! path: without glob characters it is a prefix (that file, or everything
//! under that directory, compared component by component: `/var/log`
//! allows `/var/log/a.log`, not `/var/logs/a.log`); with them it is a glob
//! the file's whole path must match (`*` stays within one directory, `**`
//! crosses them). Unset (empty) allows everything.
//!
//! Two checks, both pure: [`AllowedPaths::check_entry`] refuses a collect
//! entry whose glob could reach outside (so the refusal names the entry
//! once, at the moment the list arrives), and [`AllowedPaths::allows`]
//! checks every file found, and a symlink's resolved target, at open time.

use std::path::{Component, Path, PathBuf};

/// The items of `[agent] allowed_paths`, validated; empty: everything allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedPaths {
    /// Absolute, without `.` or `..` components; none empty.
    items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Prefix(PathBuf),
    Glob(glob::Pattern),
}

const OPTS: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// Whether `s` has glob characters.
fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Whether `p` has a `.` or `..` component (after the root).
fn has_dots(p: &Path) -> bool {
    p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

impl AllowedPaths {
    /// Validates the items; the error says which one and why.
    pub fn new(items: &[String]) -> Result<AllowedPaths, String> {
        let mut out = Vec::with_capacity(items.len());
        for s in items {
            let p = Path::new(s);
            if !p.is_absolute() {
                return Err(format!("{s:?} is not an absolute path"));
            }
            if has_dots(p) || s.split('/').any(|c| c == "." || c == "..") {
                return Err(format!("{s:?} has a . or .. component"));
            }
            if has_glob(s) {
                let g = glob::Pattern::new(s).map_err(|e| format!("bad glob {s:?}: {e}"))?;
                out.push(Item::Glob(g));
            } else {
                out.push(Item::Prefix(p.to_path_buf()));
            }
        }
        Ok(AllowedPaths { items: out })
    }

    /// Whether any restriction is set.
    pub fn is_set(&self) -> bool {
        !self.items.is_empty()
    }

    /// The items as written, for messages.
    pub fn describe(&self) -> String {
        let v: Vec<String> = self
            .items
            .iter()
            .map(|i| match i {
                Item::Prefix(p) => p.display().to_string(),
                Item::Glob(g) => g.as_str().to_string(),
            })
            .collect();
        v.join("; ")
    }

    /// Whether a file at `path` (absolute, as found or as resolved) may be
    /// read. A path with `.` or `..` components is refused while a
    /// restriction is set: it could climb out of a prefix.
    pub fn allows(&self, path: &Path) -> bool {
        if self.items.is_empty() {
            return true;
        }
        if !path.is_absolute() || has_dots(path) {
            return false;
        }
        self.items.iter().any(|i| match i {
            Item::Prefix(p) => path.starts_with(p),
            Item::Glob(g) => g.matches_path_with(path, OPTS),
        })
    }

    /// Whether every file a collect entry's glob `path` can match lies
    /// within the items: its fixed leading part (the components before the
    /// first glob character) is under a prefix item, or a glob item matches
    /// the entry's pattern as text (`/var/log/*/*.log` covers
    /// `/var/log/app/*.log`). Conservative: an entry refused here may still
    /// only match allowed files, and is then better written narrower.
    pub fn check_entry(&self, path: &str) -> Result<(), String> {
        if self.items.is_empty() {
            return Ok(());
        }
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(format!("{path:?} is not absolute, and [agent] allowed_paths is set"));
        }
        if path.split('/').any(|c| c == "." || c == "..") {
            return Err(format!("{path:?} has a . or .. component, and [agent] allowed_paths is set"));
        }
        let fixed = fixed_prefix(path);
        let covered = self.items.iter().any(|i| match i {
            Item::Prefix(pre) => fixed.starts_with(pre) && (has_glob(path) || p.starts_with(pre)),
            Item::Glob(g) => g.matches_with(path, OPTS),
        });
        if covered {
            Ok(())
        } else {
            Err(format!("{path:?} is outside [agent] allowed_paths ({})", self.describe()))
        }
    }
}

/// The leading components of a glob before the first one with a glob
/// character: the directory every match lies under (the whole path when
/// it has none).
pub fn fixed_prefix(glob: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(glob).components() {
        if has_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(items: &[&str]) -> AllowedPaths {
        AllowedPaths::new(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn items_must_be_absolute_plain_paths_or_globs() {
        for (item, words) in [
            ("var/log", "not an absolute"),
            ("/var/../etc", ". or .."),
            ("/var/./log", ". or .."),
            ("/a/[", "bad glob"),
        ] {
            let e = AllowedPaths::new(&[item.to_string()]).unwrap_err();
            assert!(e.contains(words) && e.contains(item), "{item}: {e}");
        }
    }

    #[test]
    fn files_inside_prefixes_and_globs() {
        let a = allowed(&["/var/log", "/srv/*/logs/*.log", "/data/**/*.txt"]);
        // (path, allowed)
        let table = [
            ("/var/log/a.log", true),
            ("/var/log/sub/b.log", true),
            ("/var/log", true),
            ("/var/logs/a.log", false),
            ("/var/log/../../etc/shadow", false),
            ("/etc/shadow", false),
            ("/srv/app/logs/x.log", true),
            ("/srv/app/logs/x.txt", false),
            ("/srv/app/sub/logs/x.log", false),
            ("/data/a/b/c.txt", true),
            ("relative/a.log", false),
        ];
        for (path, want) in table {
            assert_eq!(a.allows(Path::new(path)), want, "{path}");
        }
        assert!(AllowedPaths::default().allows(Path::new("/etc/shadow")), "unset: everything");
    }

    #[test]
    fn entries_inside_or_outside() {
        let a = allowed(&["/var/log", "/srv/*/logs/*.log"]);
        // (entry glob, accepted)
        let table = [
            ("/var/log/*.log", true),
            ("/var/log/nginx/access.log", true),
            ("/var/log/**/*.log", true),
            ("/var/*/x.log", false),
            ("/var/logs/*.log", false),
            ("/root/.ssh/*", false),
            ("/etc/shadow", false),
            ("/var/log/../../etc/shadow", false),
            ("/var/log/./x", false),
            ("var/log/x", false),
            ("/srv/app/logs/*.log", true),
            ("/srv/app/logs/*", false),
        ];
        for (entry, want) in table {
            let r = a.check_entry(entry);
            assert_eq!(r.is_ok(), want, "{entry}: {r:?}");
            if let Err(e) = r {
                assert!(e.contains(entry), "names the entry: {e}");
            }
        }
        assert_eq!(AllowedPaths::default().check_entry("/etc/shadow"), Ok(()));
    }

    #[test]
    fn fixed_prefixes() {
        for (glob, want) in [("/var/log/*.log", "/var/log"), ("/a/b", "/a/b"), ("/*", "/"), ("/a/x?/c", "/a")] {
            assert_eq!(fixed_prefix(glob), PathBuf::from(want), "{glob}");
        }
    }
}
