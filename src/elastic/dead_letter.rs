//! The dead letter: where documents Elasticsearch refuses for good are kept,
//! with the error, before their records are acknowledged: a Kafka topic per
//! source topic (`<topic>.dlq`), or one NDJSON file.

use crate::common::backoff::Backoff;
use crate::config::{DeadLetter, KafkaConfig};
use crate::elastic::classify::ItemError;
use crate::elastic::error::EsError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// Where refused documents go.
pub enum DeadLetterSink {
    Kafka(FutureProducer),
    File(Mutex<tokio::fs::File>),
}

impl DeadLetterSink {
    /// Opens `cfg`'s destination; `kafka` (brokers and `[kafka.producer]`)
    /// is needed for [`DeadLetter::Kafka`].
    pub async fn open(cfg: &DeadLetter, kafka: Option<&KafkaConfig>) -> Result<DeadLetterSink, EsError> {
        match cfg {
            DeadLetter::Kafka => {
                let Some(k) = kafka else {
                    return Err(EsError::DeadLetterNeedsKafka);
                };
                crate::kafka::dead_letter_producer(k)
                    .create()
                    .map(DeadLetterSink::Kafka)
                    .map_err(|e| EsError::DeadLetterProducer(e.to_string()))
            }
            DeadLetter::File(path) => {
                if let Some(dir) = path.parent() {
                    let _ = tokio::fs::create_dir_all(dir).await;
                }
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map(|f| DeadLetterSink::File(Mutex::new(f)))
                    .map_err(|e| EsError::DeadLetterFile { path: path.clone(), message: e.to_string() })
            }
        }
    }

    /// Stores one refused document durably; retries at the pace of
    /// `backoff` until it is stored, so its acknowledgement (which lets the
    /// Kafka offset move) is earned.
    pub(crate) async fn put(&self, topic: &str, doc: &[u8], err: &ItemError, mut backoff: Backoff) {
        loop {
            let res = match self {
                DeadLetterSink::Kafka(p) => {
                    let status = err.status.to_string();
                    let error = err.to_string();
                    let dlq = format!("{topic}.dlq");
                    let headers = OwnedHeaders::new()
                        .insert(Header { key: "error", value: Some(error.as_str()) })
                        .insert(Header { key: "status", value: Some(status.as_str()) })
                        .insert(Header { key: "topic", value: Some(topic) });
                    let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq).payload(doc).headers(headers);
                    p.send(rec, Duration::from_secs(30)).await.map(|_| ()).map_err(|(e, _)| e.to_string())
                }
                DeadLetterSink::File(f) => {
                    let mut line = Vec::with_capacity(doc.len() + 128);
                    line.extend_from_slice(b"{\"topic\":");
                    line.extend_from_slice(serde_json::to_string(topic).unwrap_or_default().as_bytes());
                    line.extend_from_slice(b",\"error\":");
                    line.extend_from_slice(serde_json::to_string(&err.to_string()).unwrap_or_default().as_bytes());
                    line.extend_from_slice(b",\"doc\":");
                    line.extend_from_slice(doc);
                    line.extend_from_slice(b"}\n");
                    let mut f = f.lock().await;
                    match f.write_all(&line).await {
                        Ok(()) => f.sync_data().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            match res {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(topic, "dead-letter write failed: {e}; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }
}
