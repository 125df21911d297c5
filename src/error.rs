//! The error that ends a role (`run`, `agent`, `transfer`): at start, or
//! when a part it cannot go on without fails.

use crate::config::ConfigError;
use crate::embedded::index::IndexError;
use std::io;

/// Why a role stopped; [`RunError::exit_code`] is the process status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is wrong (exit status 2): the error names the key.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The embedded index cannot be opened or written.
    #[error("{0}")]
    Index(#[from] IndexError),
    /// A thread the role needs could not be started.
    #[error("starting the {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// Why the system refused it.
        source: io::Error,
    },
    /// A part of the process panicked (its message is in the log).
    #[error("the {0} part panicked")]
    Panicked(&'static str),
    /// Anything else the system refused (files, sockets, signals).
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl RunError {
    /// 2 for configuration errors (fix the file, do not restart in a loop),
    /// 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configuration_errors_exit_2() {
        let config = RunError::from(ConfigError { key: "kafka.address".into(), message: "missing".into() });
        assert_eq!((config.exit_code(), config.to_string().as_str()), (2, "config kafka.address: missing"));
        let spawn = RunError::Spawn { what: "ship", source: io::Error::other("no more threads") };
        assert_eq!(spawn.exit_code(), 1);
        assert_eq!(spawn.to_string(), "starting the ship thread: no more threads");
        assert_eq!(RunError::Panicked("index").exit_code(), 1);
    }
}
