//! `[es] retention_days`: dated indices (`{topic}-%Y.%m.%d`) whose whole
//! time range is older than the retention are deleted, the way Curator or
//! an ILM delete phase would. The transfer sweeps at start and then every
//! `retention_check_ms`; several transfers sweeping at once is harmless (a
//! second delete answers 404).
//!
//! Only names the index pattern gives the transfer's own topics are
//! candidates ([`IndexPattern::bucket_of`]): a hand-made index, a hidden or
//! system one, another topic's (another transfer may keep it longer) or
//! another pattern's names are never touched. Each deletion is logged
//! by name and counted in `logcollect_es_indices_deleted_total`.

use crate::config::index_pattern::IndexPattern;
use crate::config::EsConfig;
use crate::elastic::client::{EsClient, Purpose};
use crate::elastic::error::EsError;
use crate::elastic::stats::TransferStats;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Of `names`, those `pattern` gives one of `topics` whose time range
/// ended at least `days` days before `now` (UTC seconds), oldest first.
pub fn expired<'a>(
    names: impl IntoIterator<Item = &'a str>,
    pattern: &IndexPattern,
    topics: &[String],
    days: u64,
    now: i64,
) -> Vec<String> {
    let cutoff = now.saturating_sub(i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX));
    let bucket = |n: &str| topics.iter().find_map(|t| pattern.bucket_of(n, t));
    let mut old: Vec<(i64, String)> = names
        .into_iter()
        .filter_map(|n| bucket(n).filter(|&(_, end)| end <= cutoff).map(|(start, _)| (start, n.to_string())))
        .collect();
    old.sort();
    old.into_iter().map(|(_, n)| n).collect()
}

/// One sweep: lists the indices the pattern's wildcards for `topics`
/// cover and deletes the expired ones. Returns the names deleted, or what
/// went wrong.
pub async fn sweep(
    client: &EsClient,
    pattern: &IndexPattern,
    topics: &[String],
    days: u64,
    now: i64,
) -> Result<Vec<String>, String> {
    let wildcards: Vec<String> = topics.iter().map(|t| pattern.wildcard(t)).collect();
    let list = format!("_cat/indices/{}?format=json&h=index", wildcards.join(","));
    let names: Vec<String> = match client.get(&list).await.map_err(|e| e.to_string())? {
        (200, body) => serde_json::from_slice::<Vec<serde_json::Value>>(&body)
            .map_err(|e| format!("GET /{list}: not a JSON list ({e})"))?
            .iter()
            .filter_map(|row| row["index"].as_str().map(String::from))
            .collect(),
        (404, _) => Vec::new(), // nothing matches
        (status, body) => return Err(format!("GET /{list}: {status} {}", String::from_utf8_lossy(&body))),
    };
    let mut deleted = Vec::new();
    for name in expired(names.iter().map(String::as_str), pattern, topics, days, now) {
        match client.delete(&name).await.map_err(|e| e.to_string())? {
            (200..=299, _) => deleted.push(name),
            (404, _) => {} // another transfer was first
            (status, body) => {
                return Err(format!("DELETE /{name}: {status} {}", String::from_utf8_lossy(&body)));
            }
        }
    }
    Ok(deleted)
}

/// Sweeps the indices of `topics` now and every `retention_check_ms` on
/// `rt`, for as long as the runtime runs; nothing when `retention_days` is 0.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    es: &EsConfig,
    topics: &[String],
    stats: Arc<TransferStats>,
) -> Result<(), EsError> {
    let days = es.retention_days;
    if days == 0 {
        return Ok(());
    }
    let client = EsClient::new(es, Purpose::Write)?;
    let (pattern, every) = (es.index.clone(), Duration::from_millis(es.retention_check_ms));
    let topics = topics.to_vec();
    tracing::info!(
        "es.retention_days = {days}: indices named {} older than that are deleted (checked every {} s)",
        pattern.as_str(),
        every.as_secs()
    );
    rt.spawn(async move {
        loop {
            let now = crate::common::clock::now_ms() / 1000;
            match sweep(&client, &pattern, &topics, days, now).await {
                Ok(deleted) => {
                    for name in &deleted {
                        tracing::info!(index = %name, "deleted: older than es.retention_days = {days}");
                    }
                    stats.indices_deleted.fetch_add(deleted.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("es.retention_days: sweep failed ({e}); trying again in {} s", every.as_secs())
                }
            }
            tokio::time::sleep(every).await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_patterns_names_past_retention_expire_oldest_first() {
        let pattern = IndexPattern::parse("{topic}-%Y.%m.%d").unwrap();
        // 2026-03-10T12:00:00Z
        let now = 1_773_144_000;
        let topics = ["app".to_string(), "Web".to_string()];
        let names = [
            "app-2026.03.09", // ended 12 h ago: kept with 1 day
            "app-2026.03.08", // ended 36 h ago
            "web-2025.12.31",
            "app-2026.03.10",
            "app-2027.01.01",     // the future
            "app-2026.03.08-old", // not a name the pattern gives
            "db-2020.01.01",      // another transfer's topic
            ".kibana-2020.01.01", // hidden
            "notes",
        ];
        assert_eq!(expired(names, &pattern, &topics, 1, now), vec!["web-2025.12.31", "app-2026.03.08"]);
        assert_eq!(expired(names, &pattern, &topics, 30, now), vec!["web-2025.12.31"]);
        assert!(expired(names, &pattern, &topics, 1000, now).is_empty());
        let monthly = IndexPattern::parse("logs-{topic}-%Y.%m").unwrap();
        let a = ["a".to_string()];
        // March ends on April 1st: not yet a day past.
        assert!(expired(["logs-a-2026.03"], &monthly, &a, 1, now).is_empty());
        assert_eq!(expired(["logs-a-2026.02", "logs-a-2026.03"], &monthly, &a, 9, now), vec!["logs-a-2026.02"]);
        assert!(expired(["logs-a-2026.02"], &monthly, &a, 10, now).is_empty(), "ended 9.5 days ago");
    }
}
