//! `logcollect config`: the operator's commands on a host's collect list.

use super::{connect, follow, EtcdError, Event};
use crate::common::text::printable;
use crate::config::{split_list, Config, ConfigError, EtcdConfig};
use crate::control::collect::{self, CollectError};
use std::io::{self, Write};
use std::path::Path;

/// A `logcollect config` command.
#[derive(Debug, Clone)]
pub enum Command {
    /// Validate `value` as a collect list and write it to the host's key.
    Put {
        /// Whose key.
        host: String,
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
    /// List the hosts that have a collect list.
    Hosts,
}

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
            CommandError::Invalid { .. } => 2,
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
        Command::Put { host, value } => {
            let key = cfg.key_for(&host);
            // Validate before anything is written: an agent would refuse it anyway.
            let entries = collect::parse(&value).map_err(|error| CommandError::Invalid { key: key.clone(), error })?;
            let mut client = connect(cfg).await?;
            let revision = client.put(key.as_bytes(), &value).await?;
            writeln!(out, "{key}: {} entries written (revision {revision})", entries.len())?;
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
        Command::Hosts => {
            let mut client = connect(cfg).await?;
            let resp = client.range(cfg.key_prefix().as_bytes(), true, true).await?;
            let mut hosts: Vec<String> = resp
                .kvs
                .iter()
                .filter_map(|kv| std::str::from_utf8(&kv.key).ok())
                .filter_map(|k| cfg.host_of(k))
                .map(str::to_string)
                .collect();
            hosts.sort();
            hosts.dedup();
            for h in hosts {
                writeln!(out, "{h}")?;
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
}
