//! The write side: adding documents, commits that carry the checkpoints,
//! retention.

use super::collectors::Buckets;
use super::{IndexConfig, IndexError, LineDoc, Payload, Store, F_ID, F_TS, PAYLOAD_VERSION, TS};
use crate::agent::checkpoint::Snapshot;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use tantivy::collector::Count;
use tantivy::query::{AllQuery, RangeQuery};
use tantivy::{IndexWriter, Term};

/// The write side: adds documents, commits with a payload, applies retention.
pub struct Writer {
    pub(super) store: Arc<Store>,
    pub(super) w: IndexWriter<LineDoc>,
    pub(super) next_seq: u64,
    /// Documents added since the last commit.
    pub(super) pending: u64,
    pub(super) cfg: IndexConfig,
}

impl Writer {
    /// Adds a document (seen at the next commit).
    pub fn add(&mut self, mut doc: LineDoc) -> Result<(), IndexError> {
        doc.seq = self.next_seq;
        self.next_seq += 1;
        self.pending += 1;
        self.w.add_document(doc)?;
        Ok(())
    }

    /// Adds a document, replacing any committed or pending one with its id
    /// (a line that reached the index before, e.g. redelivered by Kafka).
    pub fn add_replacing(&mut self, doc: LineDoc) -> Result<(), IndexError> {
        self.w.delete_term(Term::from_field_text(F_ID, doc.id.as_str()));
        self.add(doc)
    }

    /// Documents added since the last commit.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Commits everything added, with `checkpoints` in the commit, and makes
    /// it searchable.
    pub fn commit(&mut self, checkpoints: Option<Snapshot>) -> Result<(), IndexError> {
        let payload = Payload { version: PAYLOAD_VERSION, next_seq: self.next_seq, checkpoints };
        let text = serde_json::to_string(&payload).expect("payload serializes");
        let mut prepared = self.w.prepare_commit()?;
        prepared.set_payload(&text);
        prepared.commit()?;
        self.pending = 0;
        self.store.reload()
    }

    /// Queues the deletes retention asks for (applied by the next commit).
    /// Returns a description of what goes, if anything does.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<Option<String>, IndexError> {
        let searcher = self.store.reader.searcher();
        let mut cutoff: Option<i64> = None;
        if self.cfg.settings.retention_days > 0 {
            cutoff = Some(now_ms - self.cfg.settings.retention_days as i64 * 86_400_000);
        }
        if self.cfg.settings.retention_bytes > 0 {
            let (alive, all) = searcher
                .segment_readers()
                .iter()
                .fold((0u64, 0u64), |(a, m), s| (a + u64::from(s.num_docs()), m + u64::from(s.max_doc())));
            let disk = self.store.disk_bytes();
            // Deleted documents still take space until merged: count the live share.
            let live_bytes = if all == 0 { 0 } else { (disk as u128 * alive as u128 / all as u128) as u64 };
            if live_bytes > self.cfg.settings.retention_bytes && alive > 0 {
                let target = self.cfg.settings.retention_bytes / 10 * 9;
                let drop_docs = ((live_bytes - target) as u128 * alive as u128 / live_bytes as u128) as u64;
                if let Some(t) = oldest_cutoff(&searcher, drop_docs.max(1))? {
                    cutoff = Some(cutoff.map_or(t, |c| c.max(t)));
                }
            }
        }
        let Some(cutoff) = cutoff else { return Ok(None) };
        let older = RangeQuery::new(
            Bound::Included(Term::from_field_i64(F_TS, i64::MIN)),
            Bound::Excluded(Term::from_field_i64(F_TS, cutoff)),
        );
        let n = searcher.search(&older, &Count)?;
        if n == 0 {
            return Ok(None);
        }
        self.w.delete_query(Box::new(older))?;
        self.pending += 1;
        Ok(Some(format!("{n} documents older than {} ms since the epoch", cutoff)))
    }
}

/// A time before which about `k` documents lie (a little more rather than
/// less), from a 1024-bucket histogram of all timestamps.
fn oldest_cutoff(searcher: &tantivy::Searcher, k: u64) -> Result<Option<i64>, IndexError> {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in searcher.segment_readers() {
        if s.num_docs() == 0 {
            continue;
        }
        let c = s.fast_fields().i64(TS)?;
        lo = lo.min(c.min_value());
        hi = hi.max(c.max_value());
    }
    if lo > hi {
        return Ok(None);
    }
    const N: usize = 1024;
    // Timestamps may span all of i64 (forged ones before clamping existed).
    let interval = i64::try_from((i128::from(hi) - i128::from(lo)) / N as i128 + 1).unwrap_or(i64::MAX);
    let counts = searcher.search(&AllQuery, &Buckets { start_ms: lo, interval_ms: interval, n: N + 1 })?;
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= k {
            return Ok(Some(lo.saturating_add((i as i64 + 1).saturating_mul(interval))));
        }
    }
    Ok(Some(hi.saturating_add(1)))
}

/// Bytes of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
