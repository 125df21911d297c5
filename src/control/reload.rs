//! Hot reload: SIGHUP and `POST /api/reload` re-read the config file the
//! process started with (as `systemctl reload`, Fluent Bit's SIGHUP and
//! `/api/v2/reload` do), so a reload or a closed terminal never stops
//! shipping (SIGHUP's default action ends the process).
//!
//! What applies live is the collect list (`[collect]`): the new list goes
//! to discovery the way an etcd change does, with the same reconcile rules
//! (entries that stay keep their readers and positions; nothing is lost or
//! read twice). A file that fails to load is refused with the reason
//! logged, and the running config stays. Changes in other sections (brokers,
//! `[agent]`, `[http]`, …) are named in a warning as needing a restart and
//! are not applied: they reach threads and clients built at start. With
//! `[etcd]` set the collect list is the host's key there, so `[collect]`
//! (its stand-in when etcd and the cache have none at start) is not
//! applied either.

use crate::common::sync::lock;
use crate::config::{CollectEntry, Config};
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A reload in effect: the collect lists it applies, the list in force,
/// and the reloader itself (for `POST /api/reload`).
pub struct Reload {
    /// New collect lists, for discovery (nothing comes when the list is
    /// not live: `[etcd]` set, or a role that collects nothing).
    pub updates: Receiver<Vec<CollectEntry>>,
    reloader: Arc<Reloader>,
}

impl Reload {
    /// The collect list in force (the started one, or the last reloaded).
    pub fn current(&self) -> Vec<CollectEntry> {
        lock(&self.reloader.state).running.collect.clone()
    }

    /// What reloads: SIGHUP's thread and the HTTP server share it.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }
}

/// What a reload does with a newly loaded config.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The collect list to apply, when it changed and applies live.
    pub collect: Option<Vec<CollectEntry>>,
    /// Sections that changed but need a restart.
    pub restart: Vec<&'static str>,
}

/// Compares the running config with a new one. `collect_live`: whether
/// `[collect]` is what the process collects (no `[etcd]`, a collecting role).
pub fn decide(running: &Config, new: &Config, collect_live: bool) -> Outcome {
    let mut restart = Vec::new();
    let mut differs = |name: &'static str, same: bool| {
        if !same {
            restart.push(name);
        }
    };
    differs("[kafka]", running.kafka == new.kafka && running.chan_max_size == new.chan_max_size);
    differs("[etcd]", running.etcd == new.etcd);
    differs("[es]", running.es == new.es);
    differs("[agent]", running.agent == new.agent);
    differs("[log]", running.log == new.log);
    differs("[index]", running.index == new.index);
    differs("[http]", running.http == new.http);
    differs("[metrics]", running.metrics == new.metrics);
    if !collect_live && running.collect != new.collect {
        // Not what this process collects (etcd's key is), or a role that
        // collects nothing: the new list is the one a restart would see.
        restart.push("[collect]");
    }
    let collect = (collect_live && running.collect != new.collect).then(|| new.collect.clone());
    Outcome { collect, restart }
}

/// Reloads the config file a role started with: one reload at a time.
pub struct Reloader {
    path: PathBuf,
    role: &'static str,
    collect_live: bool,
    tx: Sender<Vec<CollectEntry>>,
    state: Mutex<State>,
}

struct State {
    /// The config in force: the started one with each applied change.
    running: Config,
}

/// What one reload did, as `POST /api/reload` answers it.
#[derive(Debug, serde::Serialize)]
pub struct Applied {
    /// The config file read.
    pub path: String,
    /// Entries of the collect list now in force, when it changed.
    pub collect_entries: Option<usize>,
    /// Sections that changed and wait for a restart.
    pub restart_needed: Vec<&'static str>,
}

impl Reloader {
    /// Reads the file again and applies what applies live; a file that
    /// fails to load is refused (the reason returned and logged) and the
    /// running config stays.
    pub fn reload(&self, via: &str) -> Result<Applied, String> {
        let mut state = lock(&self.state);
        let path = self.path.display().to_string();
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("{path} not reloaded: {e}; the running config stays");
                tracing::error!("{via}: {reason}");
                return Err(reason);
            }
        };
        let out = decide(&state.running, &new, self.collect_live);
        match &out.collect {
            Some(list) => {
                tracing::info!(entries = list.len(), "{via}: {path} reloaded: applying its [collect] list");
                state.running.collect = list.clone();
                let _ = self.tx.send(list.clone());
            }
            None if out.restart.is_empty() => {
                tracing::info!("{via}: {path} reloaded: nothing the {} applies live changed", self.role)
            }
            None => {}
        }
        if !out.restart.is_empty() {
            tracing::warn!(
                "{via}: {path}: changes in {} need a restart of the {}; not applied",
                out.restart.join(", "),
                self.role
            );
        }
        Ok(Applied { path, collect_entries: out.collect.map(|l| l.len()), restart_needed: out.restart })
    }
}

/// Handles SIGHUP from now on (on a thread of its own): each one reloads
/// `path`. `role` names the process in messages; `collect_live` as in
/// [`decide`].
pub fn on_sighup(path: &Path, started: &Config, role: &'static str, collect_live: bool) -> std::io::Result<Reload> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    let (tx, updates) = crossbeam_channel::unbounded();
    let reloader = Arc::new(Reloader {
        path: path.to_path_buf(),
        role,
        collect_live,
        tx,
        state: Mutex::new(State { running: started.clone() }),
    });
    let r = reloader.clone();
    std::thread::Builder::new().name("reload".into()).spawn(move || {
        for _ in signals.forever() {
            let _ = r.reload("SIGHUP");
        }
    })?;
    Ok(Reload { updates, reloader })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_ini_str(text).unwrap()
    }

    #[test]
    fn a_changed_collect_list_applies_live_and_other_sections_wait_for_a_restart() {
        let a = cfg("[agent]\ndata_dir = /d\n[collect]\nweb = /var/log/a.log\n");
        let b = cfg("[agent]\ndata_dir = /d\n[collect]\nweb = /var/log/a.log\ndb = /var/log/b.log\n");
        let out = decide(&a, &b, true);
        assert_eq!(out.collect.as_ref().map(Vec::len), Some(2));
        assert!(out.restart.is_empty());
        let with_etcd = decide(&a, &b, false);
        assert_eq!(with_etcd.collect, None, "not live with etcd");
        assert_eq!(with_etcd.restart, vec!["[collect]"], "but named");
        assert_eq!(decide(&a, &a, true), Outcome { collect: None, restart: vec![] });
        let c = cfg("[agent]\ndata_dir = /other\n[http]\nlisten = 127.0.0.1:9999\n[collect]\nweb = /var/log/a.log\n");
        assert_eq!(decide(&a, &c, true).restart, vec!["[agent]", "[http]"]);
    }
}
