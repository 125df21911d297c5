//! `[journald]`: the systemd journal source (see `agent::journal`).
//!
//! ```ini
//! [journald]
//! enabled = auto            ; auto: where journalctl and a journal exist; true; false
//! topic = journal
//! units = ssh.service; cron.service
//! matches = _TRANSPORT=kernel; PRIORITY=3
//! current_boot_only = false
//! read_from = beginning     ; where a first start begins: beginning, end
//! directory = /var/log/journal/remote   ; journalctl --directory
//! files = /srv/j/*.journal  ; journalctl --file, ';' separated
//! journalctl = journalctl   ; the binary
//! ```

use super::raw::{keys, Sections};
use super::{check_topic, ConfigError, ReadFrom};
use std::path::PathBuf;

/// `[journald] topic` when not set.
pub const DEFAULT_JOURNAL_TOPIC: &str = "journal";

/// Whether the journal is collected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalEnabled {
    /// Where `journalctl` runs and a journal exists (`/var/log/journal`,
    /// `/run/log/journal`, or the `directory`/`files` set); elsewhere the
    /// start says so and goes on without it.
    Auto,
    /// Always; a missing journalctl or journal is logged and retried.
    On,
    /// Never.
    Off,
}

/// `[journald]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournaldConfig {
    /// Never `Off` here: `enabled = false` is no config at all.
    pub enabled: JournalEnabled,
    /// A valid Kafka topic name.
    pub topic: String,
    /// `journalctl --unit` each; empty: every unit.
    pub units: Vec<String>,
    /// `FIELD=value` journal matches, each a valid field name and `=`.
    pub matches: Vec<String>,
    /// `journalctl --boot`: only the current boot's entries.
    pub current_boot_only: bool,
    /// Where a start without a checkpoint begins.
    pub read_from: ReadFrom,
    /// `journalctl --directory`.
    pub directory: Option<PathBuf>,
    /// `journalctl --file` each (journalctl expands globs).
    pub files: Vec<String>,
    /// The journalctl binary (a name is looked up in `PATH`).
    pub journalctl: PathBuf,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            enabled: JournalEnabled::Auto,
            topic: DEFAULT_JOURNAL_TOPIC.into(),
            units: Vec::new(),
            matches: Vec::new(),
            current_boot_only: false,
            read_from: ReadFrom::Beginning,
            directory: None,
            files: Vec::new(),
            journalctl: PathBuf::from("journalctl"),
        }
    }
}

/// `[journald]`; `None` without the section (or with `enabled = false`).
pub(super) fn journald(s: &Sections<'_>) -> Result<Option<JournaldConfig>, ConfigError> {
    keys!(
        s,
        "journald" as all,
        enabled,
        topic,
        units,
        matches,
        current_boot_only,
        read_from,
        directory,
        files,
        journalctl,
    );
    let present = s.has("journald") || all.iter().any(|k| k.str().is_some());
    let d = JournaldConfig::default();
    let on = match enabled.str().map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => JournalEnabled::Auto,
        Some("true" | "yes" | "on" | "1") => JournalEnabled::On,
        Some("false" | "no" | "off" | "0") => JournalEnabled::Off,
        Some(other) => return Err(enabled.err(format!("{other:?} is not one of: auto, true, false"))),
    };
    if !present || on == JournalEnabled::Off {
        return Ok(None);
    }
    let name = topic.opt().unwrap_or(d.topic);
    check_topic(&name).map_err(|m| topic.err(m))?;
    let m = matches.list();
    for one in &m {
        match one.split_once('=') {
            Some((field, _)) if valid_field(field) => {}
            _ => {
                return Err(matches
                    .err(format!("{one:?} is not FIELD=value (a field is A-Z, 0-9 and _, not starting with a digit)")))
            }
        }
    }
    let u = units.list();
    if let Some(bad) = u.iter().find(|u| u.starts_with('-') || u.contains(char::is_whitespace)) {
        return Err(units.err(format!("{bad:?} is not a unit name")));
    }
    Ok(Some(JournaldConfig {
        enabled: on,
        topic: name,
        units: u,
        matches: m,
        current_boot_only: current_boot_only.flag(d.current_boot_only)?,
        read_from: read_from.parse(d.read_from)?,
        directory: directory.str().map(PathBuf::from),
        files: files.list(),
        journalctl: journalctl.str().map_or(d.journalctl, PathBuf::from),
    }))
}

/// journald's rule for field names a match may use: `A-Z`, `0-9`, `_`,
/// not starting with a digit, at most 64 bytes.
fn valid_field(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 64
        && !f.starts_with(|c: char| c.is_ascii_digit())
        && f.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, JournalEnabled, ReadFrom};

    fn parse(section: &str) -> Result<Option<super::JournaldConfig>, String> {
        Config::from_ini_str(&format!("[journald]\n{section}")).map(|c| c.journald).map_err(|e| e.to_string())
    }

    #[test]
    fn journald_section() {
        assert_eq!(Config::from_ini_str("").unwrap().journald, None, "no section: no journal");
        let j = parse("").unwrap().unwrap();
        assert_eq!((j.enabled, j.topic.as_str(), j.read_from), (JournalEnabled::Auto, "journal", ReadFrom::Beginning));
        assert_eq!(parse("enabled = false").unwrap(), None);
        let j = parse(
            "enabled = true\ntopic = sys\nunits = a.service; b.service\nmatches = _TRANSPORT=kernel; PRIORITY=3\n\
             current_boot_only = yes\nread_from = end\ndirectory = /j\nfiles = /a/*.journal\njournalctl = /bin/jc\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(j.enabled, JournalEnabled::On);
        assert_eq!(j.units, ["a.service", "b.service"]);
        assert_eq!(j.matches, ["_TRANSPORT=kernel", "PRIORITY=3"]);
        assert!(j.current_boot_only);
        assert_eq!(j.read_from, ReadFrom::End);
        assert_eq!(j.directory.as_deref(), Some(std::path::Path::new("/j")));
        assert_eq!(j.files, ["/a/*.journal"]);
        // (section, the error names)
        let bad = [
            ("enabled = maybe", "journald.enabled"),
            ("topic = a b", "journald.topic"),
            ("matches = PRIORITY", "journald.matches"),
            ("matches = priority=3", "journald.matches"),
            ("matches = 1X=3", "journald.matches"),
            ("units = --all", "journald.units"),
            ("current_boot_only = sometimes", "journald.current_boot_only"),
            ("read_from = middle", "journald.read_from"),
            ("unit = x", "journald.unit"),
        ];
        for (text, key) in bad {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
