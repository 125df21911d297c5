//! The dead letter: where documents Elasticsearch refuses for good are kept,
//! with the error, before their records are acknowledged: a Kafka topic per
//! source topic (`<topic>.dlq`), or one NDJSON file.

use crate::common::backoff::Backoff;
use crate::config::{DeadLetter, KafkaConfig};
use crate::elastic::classify::ItemError;
use crate::elastic::error::EsError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// How long one dead letter may wait for the Kafka dead-letter topic (in
/// librdkafka's queue, then in delivery: `message.timeout.ms` of
/// [`crate::kafka::dead_letter_producer`]) before it goes to the file.
const KAFKA_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Where refused documents go.
pub enum DeadLetterSink {
    /// `<topic>.dlq`, and the file for what Kafka does not take in time.
    Kafka(FutureProducer, DeadLetterFile),
    /// The file only.
    File(DeadLetterFile),
}

/// The NDJSON dead-letter file: 0600, rotated to `<path>.1` past
/// `[es] dead_letter_max_bytes` (the previous `.1` is dropped, with a
/// warning), so refused documents cannot fill the disk.
pub struct DeadLetterFile {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<(tokio::fs::File, u64)>,
}

async fn open_0600(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).await
}

impl DeadLetterFile {
    async fn open(path: &Path, max_bytes: u64) -> Result<DeadLetterFile, EsError> {
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let to_err = |e: std::io::Error| EsError::DeadLetterFile { path: path.to_path_buf(), message: e.to_string() };
        let f = open_0600(path).await.map_err(to_err)?;
        let len = f.metadata().await.map_err(to_err)?.len();
        Ok(DeadLetterFile { path: path.to_path_buf(), max_bytes, file: Mutex::new((f, len)) })
    }

    /// Appends one line (durably), rotating first when it would go past the cap.
    async fn write(&self, line: &[u8]) -> std::io::Result<()> {
        let mut g = self.file.lock().await;
        if g.1 > 0 && g.1 + line.len() as u64 > self.max_bytes {
            let old = rotated(&self.path);
            if tokio::fs::metadata(&old).await.is_ok() {
                tracing::warn!(path = %old.display(), "dead-letter file full: the older rotated file is dropped");
            }
            tokio::fs::rename(&self.path, &old).await?;
            *g = (open_0600(&self.path).await?, 0);
        }
        g.0.write_all(line).await?;
        g.0.sync_data().await?;
        g.1 += line.len() as u64;
        Ok(())
    }
}

/// `<path>.1`.
fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// One dead-letter line: `{"topic":…,"error":…,"doc":…}`.
fn file_line(topic: &str, doc: &[u8], err: &ItemError) -> Vec<u8> {
    let mut line = Vec::with_capacity(doc.len() + 128);
    line.extend_from_slice(b"{\"topic\":");
    line.extend_from_slice(serde_json::to_string(topic).unwrap_or_default().as_bytes());
    line.extend_from_slice(b",\"error\":");
    line.extend_from_slice(serde_json::to_string(&err.to_string()).unwrap_or_default().as_bytes());
    line.extend_from_slice(b",\"doc\":");
    line.extend_from_slice(doc);
    line.extend_from_slice(b"}\n");
    line
}

impl DeadLetterSink {
    /// Opens `cfg`'s destination; `kafka` (brokers, the `[kafka]` security
    /// keys and `[kafka.producer]`) is needed for [`DeadLetter::Kafka`].
    /// The file is capped at `max_bytes` (then rotated).
    pub async fn open(
        cfg: &DeadLetter,
        max_bytes: u64,
        kafka: Option<&KafkaConfig>,
    ) -> Result<DeadLetterSink, EsError> {
        match cfg {
            DeadLetter::Kafka(fallback) => {
                let Some(k) = kafka else {
                    return Err(EsError::DeadLetterNeedsKafka);
                };
                let producer = crate::kafka::dead_letter_producer(k)
                    .create()
                    .map_err(|e| EsError::DeadLetterProducer(e.to_string()))?;
                Ok(DeadLetterSink::Kafka(producer, DeadLetterFile::open(fallback, max_bytes).await?))
            }
            DeadLetter::File(path) => Ok(DeadLetterSink::File(DeadLetterFile::open(path, max_bytes).await?)),
        }
    }

    /// Stores one refused document durably, so its acknowledgement (which
    /// lets the Kafka offset move) is earned. The Kafka topic gets one
    /// bounded try; then the file, retried at the pace of `backoff` until
    /// it is written. Returns whether the document went to the file
    /// instead of the Kafka topic.
    pub(crate) async fn put(&self, topic: &str, doc: &[u8], err: &ItemError, mut backoff: Backoff) -> bool {
        let (file, fell_back) = match self {
            DeadLetterSink::Kafka(p, file) => {
                let status = err.status.to_string();
                let error = err.to_string();
                let dlq = format!("{topic}.dlq");
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "error", value: Some(error.as_str()) })
                    .insert(Header { key: "status", value: Some(status.as_str()) })
                    .insert(Header { key: "topic", value: Some(topic) });
                let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq).payload(doc).headers(headers);
                match p.send(rec, KAFKA_QUEUE_WAIT).await {
                    Ok(_) => return false,
                    Err((e, _)) => {
                        tracing::error!(
                            topic,
                            "dead-letter topic {dlq} did not take the document: {e}; writing it to {} instead",
                            file.path.display()
                        );
                        (file, true)
                    }
                }
            }
            DeadLetterSink::File(file) => (file, false),
        };
        let line = file_line(topic, doc, err);
        loop {
            match file.write(&line).await {
                Ok(()) => return fell_back,
                Err(e) => {
                    tracing::error!(topic, path = %file.path.display(), "dead-letter write failed: {e}; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn the_file_is_private_and_rotated_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        let f = DeadLetterFile::open(&path, 1000).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let big = vec![b'x'; 500];
        for _ in 0..3 {
            f.write(&big).await.unwrap();
        }
        // Two halves fit; the third rotates them to .1.
        assert_eq!(std::fs::metadata(rotated(&path)).unwrap().len(), 1000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 500);
        f.write(&big).await.unwrap();
        f.write(&big).await.unwrap();
        assert_eq!(std::fs::metadata(rotated(&path)).unwrap().len(), 1000, "the older .1 dropped");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 500);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
