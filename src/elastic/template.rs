//! Index templates: one per topic, installed before anything is indexed.

use crate::common::backoff::Backoff;
use crate::common::shutdown;
use crate::config::EsConfig;
use crate::elastic::es::EsClient;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Installs one index template per topic (`logcollect-<topic>`, so
/// transfers consuming other topics do not overwrite each other's) before
/// anything is indexed. Waits while no node answers; a template refused for
/// good is logged and indexing goes on with dynamic mapping. Returns false
/// if `stop` was set while waiting.
pub async fn install_templates(client: &EsClient, es: &EsConfig, topics: &[String], stop: &AtomicBool) -> bool {
    for topic in topics {
        let name = format!("logcollect-{}", topic.to_ascii_lowercase());
        let body = crate::elastic::bulk::index_template(&[es.index.wildcard(topic)], 100);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(es.retry_max_backoff_ms));
        loop {
            match client.put_template(&name, body.clone()).await {
                Ok(()) => {
                    tracing::info!(template = %name, pattern = %es.index.wildcard(topic), "index template installed");
                    break;
                }
                Err(Some(msg)) => {
                    tracing::warn!(template = %name, "index template refused ({msg}); indexing with dynamic mapping (set es.manage_template = false to skip)");
                    break;
                }
                Err(None) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(template = %name, "Elasticsearch unreachable; retrying the index template in {wait:?}");
                    if shutdown::sleep_async(stop, wait).await {
                        return false;
                    }
                }
            }
        }
    }
    true
}
