//! `logcollect config`: the operator's commands on a host's collect list.

use super::gateway::KeyValue;
use super::{connect, follow, EtcdError, Event};
use crate::common::text::printable;
use crate::config::{split_list, Config, ConfigError, EtcdConfig};
use crate::control::collect::{self, CollectError};
use std::io::{self, Write};
use std::path::Path;

/// A `logcollect config` command.
#[derive(Debug, Clone)]
pub enum Command {
    /// Validate `value` as a collect list and write it to each host's key.
    Put {
        /// Whose keys (at least one; see [`parse_hosts`]).
        hosts: Vec<String>,
        /// The JSON collect list.
        value: Vec<u8>,
    },
    /// Print the host's collect list.
    Get {
        /// Whose key.
        host: String,
    },
    /// Print the host's collect list, then every change, until Ctrl-C.
    Watch {
        /// Whose key.
        host: String,
    },
    /// Remove the host's collect list (its agent then collects nothing from etcd).
    Delete {
        /// Whose key.
        host: String,
    },
    /// List the hosts that have a collect list: a table of each with its
    /// entry count (or why its list is invalid) and last change revision,
    /// or with `names` only their names, one a line.
    Hosts {
        /// One name a line, for scripts.
        names: bool,
    },
}

/// The most puts in one transaction: etcd's default `--max-txn-ops`.
const PUTS_PER_TXN: usize = 128;

/// Why a command failed; [`CommandError::exit_code`] is the process status.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The value given to `put` is not a valid collect list (exit 2).
    #[error("{key}: not written: {error}")]
    Invalid {
        /// The etcd key it was meant for.
        key: String,
        /// Every problem of the value.
        error: CollectError,
    },
    /// etcd could not be reached, or refused.
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    /// A host name that cannot be part of a key (exit 2).
    #[error("{at}: {message}")]
    Host {
        /// Where the name came from (`--hosts`, or `file:line`).
        at: String,
        /// What is wrong with it.
        message: String,
    },
    /// `get` of a key that has no value.
    #[error("{key}: no collect list")]
    NotFound {
        /// The key that has no value.
        key: String,
    },
    /// Writing the output failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl CommandError {
    /// 2 for a value refused before anything was written, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Invalid { .. } | CommandError::Host { .. } => 2,
            CommandError::Etcd(EtcdError::File { .. }) => 2,
            _ => 1,
        }
    }
}

/// The `[etcd]` settings of an operator command: from `config` (without
/// it, `config.ini` when there is one), with `--etcd` endpoints over the
/// address.
pub fn command_config(config: Option<&Path>, etcd: Option<&str>) -> Result<EtcdConfig, ConfigError> {
    let path = config.unwrap_or(Path::new("config.ini"));
    let from_file = if config.is_some() || path.exists() { Config::load(path)?.etcd } else { None };
    let endpoints = etcd.map(split_list).filter(|e| !e.is_empty());
    match (from_file, endpoints) {
        (Some(e), Some(endpoints)) => Ok(EtcdConfig { endpoints, ..e }),
        (Some(e), None) => Ok(e),
        (None, Some(endpoints)) => Ok(EtcdConfig::new(endpoints)),
        (None, None) => Err(ConfigError {
            key: "etcd.address".into(),
            message: format!("no etcd address: set it in {} or pass --etcd", path.display()),
        }),
    }
}

/// Runs an operator command, writing its output to `out`.
pub fn run_command(cfg: &EtcdConfig, cmd: Command, out: &mut dyn Write) -> Result<(), CommandError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(command(cfg, cmd, out))
}

async fn command(cfg: &EtcdConfig, cmd: Command, out: &mut dyn Write) -> Result<(), CommandError> {
    match cmd {
        Command::Put { hosts, value } => {
            // Validate before anything is written: an agent would refuse it anyway.
            let entries = collect::parse(&value)
                .map_err(|error| CommandError::Invalid { key: cfg.key_for(&hosts[0]), error })?
                .len();
            let mut client = connect(cfg).await?;
            if let [host] = hosts.as_slice() {
                let key = cfg.key_for(host);
                let revision = client.put(key.as_bytes(), &value).await?;
                writeln!(out, "{key}: {entries} entries written (revision {revision})")?;
                return Ok(());
            }
            // Many hosts: a transaction per PUTS_PER_TXN keys, each all or
            // none; a failure names how many were written before it.
            let mut written = 0;
            for chunk in hosts.chunks(PUTS_PER_TXN) {
                let kvs: Vec<(String, &[u8])> = chunk.iter().map(|h| (cfg.key_for(h), value.as_slice())).collect();
                let revision = match client.put_all(&kvs).await {
                    Ok(r) => r,
                    Err(e) => {
                        writeln!(out, "{written} of {} hosts written before the failure", hosts.len())?;
                        return Err(e.into());
                    }
                };
                for (key, _) in &kvs {
                    writeln!(out, "{key}: {entries} entries written (revision {revision})")?;
                }
                written += chunk.len();
            }
            writeln!(out, "{written} hosts written")?;
        }
        Command::Get { host } => {
            let key = cfg.key_for(&host);
            let mut client = connect(cfg).await?;
            let resp = client.range(key.as_bytes(), false, false).await?;
            let Some(kv) = resp.kvs.first() else {
                return Err(CommandError::NotFound { key });
            };
            // Shown as text, control characters escaped: the value is
            // whatever someone wrote to the key, and it goes to a terminal.
            let text = String::from_utf8_lossy(&kv.value);
            writeln!(out, "{}", printable(text.trim_end_matches('\n'), true))?;
            if let Err(e) = collect::parse(&kv.value) {
                tracing::warn!("{key} (revision {}): invalid collect list: {e}", kv.mod_revision);
            }
        }
        Command::Delete { host } => {
            let key = cfg.key_for(&host);
            let mut client = connect(cfg).await?;
            let resp = client.delete(key.as_bytes()).await?;
            if resp.deleted == 0 {
                return Err(CommandError::NotFound { key });
            }
            writeln!(out, "{key}: deleted")?;
        }
        Command::Hosts { names } => {
            let mut client = connect(cfg).await?;
            let resp = client.range(cfg.key_prefix().as_bytes(), true, names).await?;
            // Sorted by key, so by host within one key layout.
            let mut rows: Vec<(&str, &KeyValue)> =
                resp.kvs.iter().filter_map(|kv| Some((cfg.host_of(std::str::from_utf8(&kv.key).ok()?)?, kv))).collect();
            rows.sort_by_key(|(h, _)| *h);
            if names {
                for (h, _) in rows {
                    writeln!(out, "{}", printable(h, false))?;
                }
                return Ok(());
            }
            let width = rows.iter().map(|(h, _)| h.len()).max().unwrap_or(0).max(4);
            // The entry count last: an invalid list's reason may be long.
            writeln!(out, "{:width$}  {:>8}  ENTRIES", "HOST", "REVISION")?;
            for (h, kv) in rows {
                let entries = match collect::parse(&kv.value) {
                    Ok(e) => e.len().to_string(),
                    Err(e) => format!("invalid: {}", printable(&e.to_string(), false)),
                };
                writeln!(out, "{:width$}  {:>8}  {entries}", printable(h, false), kv.mod_revision)?;
            }
        }
        Command::Watch { host } => {
            let key = cfg.key_for(&host);
            let mut failed = None;
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            follow(cfg, &key, stop, |ev| {
                if failed.is_some() {
                    return;
                }
                if let Err(e) = print_event(out, &key, &ev) {
                    failed = Some(e);
                }
            })
            .await;
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// The hosts named in `text` (`source` says where, for errors): separated
/// by commas, white space or lines; `#` starts a comment to the end of its
/// line (for a file of hosts). Each must be usable as the `%s` of a key:
/// no `/`, no control characters, at most 253 bytes (a DNS name's limit).
/// Repeats are dropped, the first kept; none at all is an error.
pub fn parse_hosts(text: &str, source: &str) -> Result<Vec<String>, CommandError> {
    let mut hosts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for host in line.split(|c: char| c == ',' || c.is_whitespace()).filter(|h| !h.is_empty()) {
            let at = || if text.contains('\n') { format!("{source}:{}", n + 1) } else { source.to_string() };
            let bad = |message: String| CommandError::Host { at: at(), message };
            if host.contains('/') {
                return Err(bad(format!("host {:?} has '/', which would change the key's shape", host)));
            }
            if host.chars().any(char::is_control) {
                return Err(bad(format!("host {} has a control character", printable(host, true))));
            }
            if host.len() > 253 {
                return Err(bad(format!("host of {} bytes; at most 253", host.len())));
            }
            if seen.insert(host) {
                hosts.push(host.to_string());
            }
        }
    }
    if hosts.is_empty() {
        return Err(CommandError::Host { at: source.to_string(), message: "no host named".into() });
    }
    Ok(hosts)
}

/// One line per value (`revision N: <value>`), for `config watch`.
fn print_event(out: &mut dyn Write, key: &str, ev: &Event) -> io::Result<()> {
    match ev {
        Event::Value { revision, value: None } => writeln!(out, "revision {revision}: (no collect list)")?,
        Event::Value { revision, value: Some(v) } => {
            let text = String::from_utf8_lossy(v);
            writeln!(out, "revision {revision}: {}", printable(text.trim_end(), true))?;
            if let Err(e) = collect::parse(v) {
                writeln!(out, "revision {revision}: invalid, agents keep their running list: {e}")?;
            }
        }
        Event::Unreachable { error, retry_in, .. } => {
            eprintln!("{key}: {}; retrying in {retry_in:?}", printable(error, false))
        }
        Event::Watching { revision } => eprintln!("{key}: watching from revision {revision}"),
        Event::Compacted { revision } => {
            eprintln!("{key}: changes compacted (to revision {revision}); reading it again")
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let invalid = CommandError::Invalid { key: "k".into(), error: collect::parse(b"x").unwrap_err() };
        assert_eq!(invalid.exit_code(), 2);
        assert!(invalid.to_string().starts_with("k: not written: invalid JSON"), "{invalid}");
        assert_eq!(CommandError::NotFound { key: "k".into() }.exit_code(), 1);
        let down = CommandError::Etcd(EtcdError::Timeout { endpoint: "http://e:1/v3/kv/range".into(), secs: 5 });
        assert_eq!(down.exit_code(), 1);
    }

    #[test]
    fn host_lists() {
        let ok = |t: &str| parse_hosts(t, "f").unwrap();
        assert_eq!(ok("10.0.0.1"), ["10.0.0.1"]);
        assert_eq!(ok("a,b, c\td"), ["a", "b", "c", "d"]);
        assert_eq!(ok("# the web tier\nweb-1\n\nweb-2  # spare\nweb-1\n"), ["web-1", "web-2"]);
        let err = |t: &str| parse_hosts(t, "hosts.txt").unwrap_err().to_string();
        assert_eq!(err("a\nb/c\n"), "hosts.txt:2: host \"b/c\" has '/', which would change the key's shape");
        assert_eq!(err("x/y"), "hosts.txt: host \"x/y\" has '/', which would change the key's shape");
        assert!(err("a\u{7}b").contains("control character"), "{}", err("a\u{7}b"));
        assert!(err(&"h".repeat(254)).contains("254 bytes"));
        assert_eq!(err("# nobody\n ,, \n"), "hosts.txt: no host named");
        assert_eq!(parse_hosts("a/b", "--hosts").unwrap_err().exit_code(), 2);
    }
}
