//! Collectors: newest (or oldest) first by (`@timestamp`, `_seq`),
//! histogram buckets, read from fast fields, and the set of matching
//! documents per segment (for field counts).

use super::{SEQ, TS};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, ColumnValues};
use tantivy::{BitSet, DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

#[derive(Clone, Copy, Debug)]
pub(super) enum Order {
    /// Largest (`@timestamp`, `_seq`) first, below `before` if set.
    NewestFirst { before: Option<(i64, u64)> },
    /// Smallest `_seq` first.
    IndexedAfter,
    /// Smallest (`@timestamp`, `_seq`) first, above `after` (the lines after
    /// a line in its file: `/api/context`).
    OldestFirst { after: (i64, u64) },
}

/// The top `limit` documents in `order`, read from the fast fields.
pub(super) struct Top {
    pub(super) limit: usize,
    pub(super) order: Order,
}

type Key = (i64, u64);

pub(super) struct TopSegment {
    ts: Arc<dyn ColumnValues<i64>>,
    seq: Arc<dyn ColumnValues<u64>>,
    segment: SegmentOrdinal,
    limit: usize,
    order: Order,
    /// Min-heap of the best so far (by the order's rank).
    heap: BinaryHeap<Reverse<(i128, Key, DocId)>>,
    /// Column values of a block of documents (`collect_block`).
    ts_buf: Vec<i64>,
    seq_buf: Vec<u64>,
}

impl TopSegment {
    /// Higher is better.
    fn rank(&self, k: Key) -> i128 {
        match self.order {
            Order::NewestFirst { .. } => (i128::from(k.0) << 64) | i128::from(k.1),
            Order::IndexedAfter => -i128::from(k.1),
            Order::OldestFirst { .. } => -((i128::from(k.0) << 64) | i128::from(k.1)),
        }
    }
}

impl Collector for Top {
    type Fruit = Vec<(Key, DocAddress)>;
    type Child = TopSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<TopSegment> {
        Ok(TopSegment {
            ts: reader.fast_fields().i64(TS)?.first_or_default_col(0),
            seq: reader.fast_fields().u64(SEQ)?.first_or_default_col(0),
            segment,
            limit: self.limit,
            order: self.order,
            heap: BinaryHeap::with_capacity(self.limit.min(10_000) + 1),
            ts_buf: Vec::new(),
            seq_buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<((i128, Key), DocAddress)>>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<_> = fruits.into_iter().flatten().collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.0 .0));
        all.truncate(self.limit);
        Ok(all.into_iter().map(|((_, k), a)| (k, a)).collect())
    }
}

impl TopSegment {
    fn offer(&mut self, doc: DocId, k: Key) {
        match self.order {
            Order::NewestFirst { before: Some(b) } if k >= b => return,
            Order::OldestFirst { after } if k <= after => return,
            _ => {}
        }
        if self.limit == 0 {
            return;
        }
        let r = self.rank(k);
        if self.heap.len() < self.limit {
            self.heap.push(Reverse((r, k, doc)));
        } else if self.heap.peek().is_some_and(|Reverse((worst, _, _))| r > *worst) {
            self.heap.pop();
            self.heap.push(Reverse((r, k, doc)));
        }
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = Vec<((i128, Key), DocAddress)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.offer(doc, (self.ts.get_val(doc), self.seq.get_val(doc)));
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        // The columns read a block at a time: fewer indirect calls.
        let (mut ts, mut seq) = (std::mem::take(&mut self.ts_buf), std::mem::take(&mut self.seq_buf));
        ts.resize(docs.len(), 0);
        seq.resize(docs.len(), 0);
        self.ts.get_vals(docs, &mut ts);
        self.seq.get_vals(docs, &mut seq);
        for ((&doc, &t), &s) in docs.iter().zip(&ts).zip(&seq) {
            self.offer(doc, (t, s));
        }
        (self.ts_buf, self.seq_buf) = (ts, seq);
    }

    fn harvest(self) -> Self::Fruit {
        let seg = self.segment;
        self.heap.into_iter().map(|Reverse((r, k, doc))| ((r, k), DocAddress::new(seg, doc))).collect()
    }
}

/// Counts per fixed time bucket.
pub(super) struct Buckets {
    pub(super) start_ms: i64,
    pub(super) interval_ms: i64,
    pub(super) n: usize,
}

pub(super) struct BucketsSegment {
    ts: Arc<dyn ColumnValues<i64>>,
    start_ms: i64,
    interval_ms: i64,
    counts: Vec<u64>,
    /// Timestamps of a block of documents (`collect_block`).
    buf: Vec<i64>,
}

/// Adds one to the bucket of `ts_ms`, if it has one.
#[inline]
fn count_in(counts: &mut [u64], start_ms: i64, interval_ms: i64, ts_ms: i64) {
    // Saturating: a timestamp far from the range (either end of i64) must
    // land outside it, not wrap into it.
    let i = ts_ms.saturating_sub(start_ms).div_euclid(interval_ms);
    if let Some(c) = usize::try_from(i).ok().and_then(|i| counts.get_mut(i)) {
        *c += 1;
    }
}

impl Buckets {
    /// Counts every live document of `seg` in `[from_ms, to_ms)` into
    /// `counts` (the histogram of match-all) from the `@timestamp` column, a
    /// block of values at a time.
    pub(super) fn scan_segment(
        &self,
        seg: &SegmentReader,
        from_ms: i64,
        to_ms: i64,
        counts: &mut [u64],
    ) -> tantivy::Result<()> {
        let col = seg.fast_fields().i64(TS)?;
        let interval_ms = self.interval_ms.max(1);
        let alive = seg.alive_bitset();
        let keep = |doc: DocId, t: i64| t >= from_ms && t < to_ms && !alive.is_some_and(|a| a.is_deleted(doc));
        if col.get_cardinality() != Cardinality::Full {
            // Not written by this version (every document has a timestamp).
            for doc in 0..seg.max_doc() {
                if let Some(t) = col.first(doc).filter(|&t| keep(doc, t)) {
                    count_in(counts, self.start_ms, interval_ms, t);
                }
            }
            return Ok(());
        }
        const BLOCK: u32 = 4096;
        let mut buf = vec![0i64; BLOCK as usize];
        let mut first = 0u32;
        while first < seg.max_doc() {
            let n = BLOCK.min(seg.max_doc() - first);
            let vals = &mut buf[..n as usize];
            col.values.get_range(u64::from(first), vals);
            for (doc, &t) in (first..).zip(vals.iter()) {
                if keep(doc, t) {
                    count_in(counts, self.start_ms, interval_ms, t);
                }
            }
            first += n;
        }
        Ok(())
    }
}

impl Collector for Buckets {
    type Fruit = Vec<u64>;
    type Child = BucketsSegment;

    fn for_segment(&self, _: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<BucketsSegment> {
        Ok(BucketsSegment {
            ts: reader.fast_fields().i64(TS)?.first_or_default_col(0),
            start_ms: self.start_ms,
            interval_ms: self.interval_ms.max(1),
            counts: vec![0; self.n],
            buf: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut out = vec![0; self.n];
        for f in fruits {
            for (o, c) in out.iter_mut().zip(f) {
                *o += c;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for BucketsSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        count_in(&mut self.counts, self.start_ms, self.interval_ms, self.ts.get_val(doc));
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        self.buf.resize(docs.len(), 0);
        self.ts.get_vals(docs, &mut self.buf);
        for &t in &self.buf {
            count_in(&mut self.counts, self.start_ms, self.interval_ms, t);
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}

/// The documents that match, per segment: a bit set each, with its count.
pub(super) struct Matches;

pub(super) struct MatchesSegment {
    segment: SegmentOrdinal,
    docs: BitSet,
    count: u64,
}

impl Collector for Matches {
    type Fruit = Vec<(SegmentOrdinal, BitSet, u64)>;
    type Child = MatchesSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<MatchesSegment> {
        Ok(MatchesSegment { segment, docs: BitSet::with_max_value(reader.max_doc()), count: 0 })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<(SegmentOrdinal, BitSet, u64)>) -> tantivy::Result<Self::Fruit> {
        Ok(fruits)
    }
}

impl SegmentCollector for MatchesSegment {
    type Fruit = (SegmentOrdinal, BitSet, u64);

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.docs.insert(doc);
        self.count += 1;
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for &d in docs {
            self.docs.insert(d);
        }
        self.count += docs.len() as u64;
    }

    fn harvest(self) -> Self::Fruit {
        (self.segment, self.docs, self.count)
    }
}
