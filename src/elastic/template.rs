//! Index templates: the mapping of the fields logcollect writes, one template
//! per topic, installed before anything is indexed.

use crate::common::backoff::Backoff;
use crate::common::shutdown;
use crate::config::EsConfig;
use crate::elastic::client::EsClient;
use crate::elastic::error::EsError;
use crate::elastic::stats::TransferStats;
use crate::elastic::worker::{denied_words, Throttle, DENIED_LOG_EVERY_MS};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Installs one index template per topic (`logcollect-<topic>`, so
/// transfers consuming other topics do not overwrite each other's) before
/// anything is indexed. Waits while no node answers or our credentials are
/// refused (401/403: logged at most every 10 s, `/health/ready` 503 through
/// `stats`); a template refused for good otherwise is logged and indexing
/// goes on with dynamic mapping. Returns false if `stop` was set while
/// waiting.
pub async fn install_templates(
    client: &EsClient,
    es: &EsConfig,
    topics: &[String],
    stats: &TransferStats,
    stop: &AtomicBool,
) -> bool {
    let denied_log = Throttle::default();
    for topic in topics {
        let (name, body) = topic_template(es, topic);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(es.retry_max_backoff_ms));
        loop {
            let wait = match client.put_template(&name, body.clone()).await {
                Ok(()) => {
                    stats.es_answered(true);
                    tracing::info!(template = %name, pattern = %es.index.wildcard(topic), "index template installed");
                    break;
                }
                Err(EsError::Refused { status: status @ (401 | 403), node, body_excerpt, .. }) => {
                    stats.es_denied(status);
                    let wait = backoff.next_wait();
                    if let Some(held) = denied_log.allow(crate::common::clock::now_ms(), DENIED_LOG_EVERY_MS) {
                        tracing::error!(
                            node,
                            status,
                            template = %name,
                            "Elasticsearch: {} installing the index template ({body_excerpt}); retrying in {wait:?}, nothing is indexed until it is installed ({held} more refusals since the last message)",
                            denied_words(status)
                        );
                    }
                    wait
                }
                Err(e) if !e.is_transient() => {
                    stats.es_answered(true);
                    tracing::warn!(template = %name, "index template refused ({e}); indexing with dynamic mapping (set es.manage_template = false to skip)");
                    break;
                }
                Err(e) => {
                    stats.es_answered(false);
                    let wait = backoff.next_wait();
                    tracing::warn!(template = %name, "Elasticsearch unreachable or busy ({e}); retrying the index template in {wait:?}");
                    wait
                }
            };
            if shutdown::sleep_async(stop, wait).await {
                return false;
            }
        }
    }
    true
}

/// The name and body of `topic`'s index template: `logcollect-<topic>`,
/// over the indices `[es] index` makes of the topic.
pub fn topic_template(es: &EsConfig, topic: &str) -> (String, Vec<u8>) {
    (format!("logcollect-{}", topic.to_ascii_lowercase()), index_template(&[es.index.wildcard(topic)], 100))
}

/// The composable index template (`PUT _index_template/<name>`) that maps
/// the fields the body builder ([`crate::elastic::body`]) writes, so the first document of an index cannot
/// give them a wrong type (Elasticsearch's dynamic mapping would map a
/// `message` that reads as a date as `date`, then refuse every other line).
/// Fields merged from JSON lines stay dynamically mapped.
///
/// `message` is cut into words as the embedded index and the search
/// language cut it (`query::words`: runs of letters and digits,
/// lower-cased, at most 255 long), so a search means the same on both.
pub fn index_template(index_patterns: &[String], priority: u32) -> Vec<u8> {
    let doc = serde_json::json!({
        "index_patterns": index_patterns,
        "priority": priority,
        "_meta": {"managed_by": "logcollect"},
        "template": {
            "settings": {"analysis": {
                "analyzer": {"logcollect_words": {
                    "type": "custom",
                    "tokenizer": "logcollect_words",
                    "filter": ["lowercase", "logcollect_max_word"]
                }},
                "tokenizer": {"logcollect_words": {"type": "pattern", "pattern": "[^\\p{IsAlphabetic}\\p{N}]+"}},
                "filter": {"logcollect_max_word": {"type": "length", "max": 255}}
            }},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text", "analyzer": "logcollect_words"},
                    "host": {"properties": {"name": {"type": "keyword"}}},
                    "log": {"properties": {
                        "file": {"properties": {"path": {"type": "keyword"}}},
                        "offset": {"type": "long"},
                        "flags": {"type": "keyword"},
                        "part": {"type": "long"}
                    }},
                    "topic": {"type": "keyword"},
                    "kafka": {"properties": {
                        "partition": {"type": "integer"},
                        "offset": {"type": "long"}
                    }}
                }
            }
        }
    });
    serde_json::to_vec(&doc).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_template_maps_our_fields() {
        let t: serde_json::Value = serde_json::from_slice(&index_template(&["app-*".into()], 7)).unwrap();
        assert_eq!(t["index_patterns"][0], "app-*");
        assert_eq!(t["priority"], 7);
        assert_eq!(t["template"]["mappings"]["properties"]["message"]["type"], "text");
        assert_eq!(t["template"]["mappings"]["properties"]["message"]["analyzer"], "logcollect_words");
        assert_eq!(
            t["template"]["settings"]["analysis"]["tokenizer"]["logcollect_words"]["pattern"],
            r"[^\p{IsAlphabetic}\p{N}]+"
        );
        assert_eq!(t["template"]["mappings"]["properties"]["log"]["properties"]["offset"]["type"], "long");
    }
}
