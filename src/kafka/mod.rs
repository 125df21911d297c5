//! Kafka clients: every librdkafka configuration of the process is built
//! here, from one [`KafkaConfig`], so the agent's producer, the transfer's
//! consumer, the embedded index's consumer and the dead-letter producer all
//! get the same brokers and the same user properties (`security.protocol`,
//! `sasl.*`, `ssl.*` among them).
//!
//! Order of precedence, lowest first: `bootstrap.servers` from `[kafka]
//! address`, this module's defaults for the role, the `[kafka]` TLS and
//! SASL keys ([`crate::config::KafkaSecurity`], the same for every client),
//! the user's raw properties (`[kafka.producer]` for producers,
//! `[kafka.consumer]` for consumers), which override them.

pub mod stats;
mod tls_probe;

use crate::config::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use stats::KAFKA_STATS_INTERVAL;
use std::sync::atomic::{AtomicU64, Ordering};

/// `bootstrap.servers`, then `defaults`, then the security keys, then
/// `user` (which win).
fn build(k: &KafkaConfig, defaults: &[(&str, String)], user: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", k.brokers.join(","));
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in k.security.properties() {
        c.set(k, v);
    }
    for (k, v) in user {
        c.set(k, v);
    }
    if let Some(ca) = c.get("ssl.ca.location") {
        tls_probe::remember_ca(ca);
    }
    c
}

/// The agent's producer: at-least-once, high throughput; records wait
/// while Kafka is down (`message.timeout.ms = 0`). `max_line_bytes` is the
/// longest record value the readers produce.
pub fn producer(k: &KafkaConfig, max_line_bytes: usize) -> ClientConfig {
    let defaults = [
        ("acks", "all".to_string()),
        ("enable.idempotence", "true".into()),
        ("compression.type", "lz4".into()),
        ("linger.ms", "5".into()),
        ("message.timeout.ms", "0".into()),
        ("queue.buffering.max.kbytes", "16384".into()),
        // Counted in records, and each of ours costs librdkafka ~0.5 KB with
        // its headers: 100k held ~45 MB more at peak than 20k, no faster
        // (perf/README.md). 20k still covers 5 requests of ~3k records in flight.
        ("queue.buffering.max.messages", "20000".into()),
        ("batch.size", "1048576".into()),
        ("message.max.bytes", (max_line_bytes + (64 << 10)).max(1_000_000).to_string()),
        ("statistics.interval.ms", KAFKA_STATS_INTERVAL.as_millis().to_string()),
    ];
    build(k, &defaults, &k.producer)
}

/// The transfer's dead-letter producer: the same user properties as the
/// agent's producer (so TLS and SASL reach it), but a bounded delivery
/// time, so a missing dead-letter topic or a broker that refuses it is
/// reported (and retried) instead of waiting in silence.
pub fn dead_letter_producer(k: &KafkaConfig) -> ClientConfig {
    let defaults =
        [("acks", "all".to_string()), ("enable.idempotence", "true".into()), ("message.timeout.ms", "30000".into())];
    build(k, &defaults, &k.producer)
}

/// A consumer of group `[kafka] group_id` that commits only by hand, from
/// the earliest offset when the group has none.
pub fn consumer(k: &KafkaConfig) -> ClientConfig {
    let defaults = [
        ("group.id", k.group_id.clone()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("partition.assignment.strategy", "range,roundrobin".into()),
        ("enable.partition.eof", "false".into()),
        // librdkafka postpones a partition's next fetch by this much when
        // its local queue is over the thresholds below; its default (1 s)
        // let the queue run dry between fetches: 178k -> 323k docs/s into
        // the perf sink (perf/README.md).
        ("fetch.queue.backoff.ms", "10".into()),
        // Pre-fetched records held by librdkafka (one queue for all
        // partitions): 16 MiB instead of 64, no slower with the short backoff.
        ("queued.max.messages.kbytes", "16384".into()),
    ];
    build(k, &defaults, &k.consumer)
}

/// librdkafka's client-level errors (a broker down, TLS or SASL refused)
/// seen by every client of the process, by kind, for `/metrics`.
pub static CLIENT_ERRORS: ClientErrors = ClientErrors {
    authentication: AtomicU64::new(0),
    tls: AtomicU64::new(0),
    other: AtomicU64::new(0),
    last_log_ms: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

/// Counts of librdkafka client-level errors (see [`CLIENT_ERRORS`]).
pub struct ClientErrors {
    /// SASL authentication refused (wrong password, unknown user, mechanism).
    pub authentication: AtomicU64,
    /// TLS failed (certificate verify, handshake).
    pub tls: AtomicU64,
    /// Anything else (broker down, name resolution...).
    pub other: AtomicU64,
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// What failed, from librdkafka's error and its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// SASL authentication refused.
    Authentication,
    /// TLS handshake or certificate verification failed.
    Tls,
    /// Anything else.
    Other,
}

/// Sorts a client error: librdkafka reports SASL refusals as
/// `Authentication` and TLS failures as `SSL` (with "certificate verify
/// failed" or "handshake" in the reason) under its transport errors.
pub fn classify_client_error(error: &KafkaError, reason: &str) -> ClientErrorKind {
    use rdkafka::types::RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    let r = reason.to_ascii_lowercase();
    if matches!(code, Some(C::Authentication | C::SaslAuthenticationFailed))
        || r.contains("sasl authentication")
        || r.contains("authentication failed")
    {
        ClientErrorKind::Authentication
    } else if matches!(code, Some(C::SSL)) || r.contains("ssl handshake") || r.contains("certificate verify") {
        ClientErrorKind::Tls
    } else {
        ClientErrorKind::Other
    }
}

/// At most one client-error warning per this long (the others counted and
/// told in the next one): a refused password repeats every reconnect.
const CLIENT_ERROR_LOG_EVERY_MS: u64 = 10_000;

/// What every client context does with librdkafka's client-level errors:
/// counted by kind; a warning naming the client, the broker and what
/// failed (librdkafka's reason text starts with the broker's name), at
/// most once per 10 s. librdkafka retries the connection by itself,
/// forever; readiness shows it (no broker up).
pub fn log_client_error(client: &str, error: &KafkaError, reason: &str) {
    let kind = classify_client_error(error, reason);
    let e = &CLIENT_ERRORS;
    let (counter, what) = match kind {
        ClientErrorKind::Authentication => (&e.authentication, "SASL authentication failed"),
        ClientErrorKind::Tls => (&e.tls, "TLS failed"),
        ClientErrorKind::Other => (&e.other, "error"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let now = crate::common::clock::now_ms().max(0) as u64;
    let last = e.last_log_ms.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < CLIENT_ERROR_LOG_EVERY_MS {
        e.suppressed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if e.last_log_ms.compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed).is_err() {
        e.suppressed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let more = e.suppressed.swap(0, Ordering::Relaxed);
    tracing::warn!("kafka {client}: {what}: {error}: {reason} (retrying; {more} similar errors not logged)");
    if kind == ClientErrorKind::Tls {
        tls_probe::explain_later(client, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka() -> KafkaConfig {
        KafkaConfig {
            brokers: vec!["b1:9092".into(), "b2:9092".into()],
            topics: vec!["web".into()],
            group_id: "g".into(),
            producer: vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
                ("linger.ms".into(), "20".into()),
            ],
            consumer: vec![("security.protocol".into(), "SSL".into()), ("group.id".into(), "mine".into())],
            security: Default::default(),
        }
    }

    #[test]
    fn librdkafka_has_tls_and_sasl_built_in() {
        let features = ClientConfig::new().create_native_config().unwrap().get("builtin.features").unwrap();
        for f in ["ssl", "sasl_plain", "sasl_scram", "zstd"] {
            assert!(features.split(',').any(|x| x == f), "{f} not in builtin.features = {features}");
        }
    }

    #[test]
    fn security_keys_reach_every_client_and_raw_properties_win() {
        use crate::config::{KafkaSecurity, Secret, SecurityProtocol};
        let mut k = kafka();
        k.producer.clear();
        k.consumer = vec![("sasl.username".into(), "override".into())];
        k.security = KafkaSecurity {
            protocol: Some(SecurityProtocol::SaslSsl),
            sasl_mechanism: Some("SCRAM-SHA-256".into()),
            sasl_username: Some("alice".into()),
            sasl_password: Some(Secret::new("pw")),
            ssl_ca_file: Some("/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        let (p, d, c) = (producer(&k, 1 << 20), dead_letter_producer(&k), consumer(&k));
        for cfg in [&p, &d, &c] {
            assert_eq!(cfg.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
            assert_eq!(cfg.get("sasl.password"), Some("pw"));
            assert_eq!(cfg.get("ssl.ca.location"), Some("/ca.pem"));
        }
        assert_eq!(p.get("sasl.username"), Some("alice"));
        assert_eq!(c.get("sasl.username"), Some("override"));
    }

    #[test]
    fn client_errors_are_sorted_by_what_failed() {
        use rdkafka::types::RDKafkaErrorCode as C;
        let t = KafkaError::Global(C::SSL);
        let reason = "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: certificate verify failed";
        assert_eq!(classify_client_error(&t, reason), ClientErrorKind::Tls);
        let a = KafkaError::Global(C::Authentication);
        assert_eq!(classify_client_error(&a, "sasl: SASL authentication error"), ClientErrorKind::Authentication);
        let o = KafkaError::Global(C::AllBrokersDown);
        assert_eq!(classify_client_error(&o, "1/1 brokers are down"), ClientErrorKind::Other);
    }

    #[test]
    fn every_client_gets_the_brokers_and_the_users_properties_last() {
        let k = kafka();
        // (config, key, value)
        let p = producer(&k, 1 << 20);
        let d = dead_letter_producer(&k);
        let c = consumer(&k);
        let table = [
            (&p, "bootstrap.servers", "b1:9092,b2:9092"),
            (&p, "security.protocol", "SASL_SSL"),
            (&p, "linger.ms", "20"),
            (&p, "message.timeout.ms", "0"),
            (&p, "message.max.bytes", "1114112"),
            (&d, "bootstrap.servers", "b1:9092,b2:9092"),
            (&d, "security.protocol", "SASL_SSL"),
            (&d, "sasl.mechanism", "SCRAM-SHA-512"),
            (&d, "message.timeout.ms", "30000"),
            (&c, "security.protocol", "SSL"),
            (&c, "group.id", "mine"),
            (&c, "enable.auto.commit", "false"),
            (&c, "auto.offset.reset", "earliest"),
        ];
        for (cfg, key, want) in table {
            assert_eq!(cfg.get(key), Some(want), "{key}");
        }
        assert_eq!(c.get("sasl.mechanism"), None, "producer properties stay off consumers");
        assert_eq!(producer(&k, 10).get("message.max.bytes"), Some("1000000"));
    }
}
