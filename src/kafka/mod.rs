//! Kafka clients: every librdkafka configuration of the process is built
//! here, from one [`KafkaConfig`], so the agent's producer, the transfer's
//! consumer, the embedded index's consumer and the dead-letter producer all
//! get the same brokers and the same user properties (`security.protocol`,
//! `sasl.*`, `ssl.*` among them).
//!
//! Order of precedence, lowest first: `bootstrap.servers` from `[kafka]
//! address`, this module's defaults for the role, the user's properties
//! (`[kafka.producer]` for producers, `[kafka.consumer]` for consumers).

pub mod stats;

use crate::config::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use stats::KAFKA_STATS_INTERVAL;

/// `bootstrap.servers`, then `defaults`, then `user` (which win).
fn build(brokers: &[String], defaults: &[(&str, String)], user: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers.join(","));
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in user {
        c.set(k, v);
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
    build(&k.brokers, &defaults, &k.producer)
}

/// The transfer's dead-letter producer: the same user properties as the
/// agent's producer (so TLS and SASL reach it), but a bounded delivery
/// time, so a missing dead-letter topic or a broker that refuses it is
/// reported (and retried) instead of waiting in silence.
pub fn dead_letter_producer(k: &KafkaConfig) -> ClientConfig {
    let defaults =
        [("acks", "all".to_string()), ("enable.idempotence", "true".into()), ("message.timeout.ms", "30000".into())];
    build(&k.brokers, &defaults, &k.producer)
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
    build(&k.brokers, &defaults, &k.consumer)
}

/// What every client context does with librdkafka's client-level errors
/// (a broker down, authentication refused): one warning naming it.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    tracing::warn!("kafka: {error}: {reason}");
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
        }
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
