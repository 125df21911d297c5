//! [`EsError`]: what failed in setting up or talking to Elasticsearch (the
//! client, its TLS, the dead letter, a request), and the config key a
//! start-up failure points at.

use crate::config::ConfigError;
use std::path::PathBuf;

/// Why the Elasticsearch side could not start, or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// `[es] ca_file`, `cert_file` or `key_file` (the key named) cannot be
    /// read, or is not PEM of the right kind.
    #[error("{}: {message}", path.display())]
    TlsFile { key: &'static str, path: PathBuf, message: String },
    /// The HTTP client cannot be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// No answer from `node`: connection refused, reset, timed out, or the
    /// answer cut off.
    #[error("{node}: {message}")]
    Unreachable { node: String, message: String },
    /// An answer other than 2xx from `node` to the request for `path`.
    #[error("{node}{path}: {status} {body_excerpt}")]
    Refused { node: String, path: String, status: u16, body_excerpt: String },
    /// `node` answered with more than `limit` bytes (the answer was not
    /// read further).
    #[error("{node}: an answer over {limit} bytes")]
    AnswerTooLarge { node: String, limit: usize },
    /// Dead letters to Kafka, and no `[kafka]` to send them with.
    #[error("dead letters to Kafka need [kafka] address (or es.dead_letter_path)")]
    DeadLetterNeedsKafka,
    /// The dead-letter Kafka producer cannot be created.
    #[error("dead-letter producer: {0}")]
    DeadLetterProducer(String),
    /// The dead-letter file cannot be opened for appending.
    #[error("{}: {message}", path.display())]
    DeadLetterFile { path: PathBuf, message: String },
}

impl EsError {
    /// Worth trying again later: no answer, or refused for now (429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            EsError::Unreachable { .. } => true,
            EsError::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The config key behind the failure.
    pub fn config_key(&self) -> &'static str {
        match self {
            EsError::TlsFile { key, .. } => key,
            EsError::DeadLetterNeedsKafka | EsError::DeadLetterProducer(_) => "es.dead_letter",
            EsError::DeadLetterFile { .. } => "es.dead_letter_path",
            EsError::Client(_)
            | EsError::Unreachable { .. }
            | EsError::Refused { .. }
            | EsError::AnswerTooLarge { .. } => "es",
        }
    }
}

/// A start-up failure is reported as a config error of its key (exit
/// status 2), the key printed once.
impl From<EsError> for ConfigError {
    fn from(e: EsError) -> ConfigError {
        ConfigError { key: e.config_key().into(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key_once() {
        // (error, config error as printed)
        let table = [
            (
                EsError::TlsFile {
                    key: "es.ca_file",
                    path: "/etc/ca.pem".into(),
                    message: "No such file or directory".into(),
                },
                "config es.ca_file: /etc/ca.pem: No such file or directory",
            ),
            (EsError::Client("no TLS backend".into()), "config es: HTTP client: no TLS backend"),
            (
                EsError::DeadLetterNeedsKafka,
                "config es.dead_letter: dead letters to Kafka need [kafka] address (or es.dead_letter_path)",
            ),
            (
                EsError::DeadLetterProducer("bad config".into()),
                "config es.dead_letter: dead-letter producer: bad config",
            ),
            (
                EsError::DeadLetterFile { path: "/data/dl.ndjson".into(), message: "Permission denied".into() },
                "config es.dead_letter_path: /data/dl.ndjson: Permission denied",
            ),
        ];
        for (e, want) in table {
            assert_eq!(ConfigError::from(e).to_string(), want);
        }
    }

    #[test]
    fn transient_errors() {
        let refused =
            |status| EsError::Refused { node: "n".into(), path: "/p".into(), status, body_excerpt: String::new() };
        assert!(EsError::Unreachable { node: "n".into(), message: "m".into() }.is_transient());
        for (status, transient) in [(429, true), (500, true), (503, true), (400, false), (404, false), (413, false)] {
            assert_eq!(refused(status).is_transient(), transient, "{status}");
        }
        assert!(!EsError::Client(String::new()).is_transient());
    }
}
