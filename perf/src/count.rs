//! `count`: reads a topic back from the earliest offset of every partition
//! and counts records and value bytes (Tansu's "latest" offset is wrong, so
//! consuming is the only count to trust). Also counts records whose value
//! ends in a newline or is empty, which neither sender should produce.

use crate::Args;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// `count --brokers B --topic T [--expect N] [--idle-ms MS]`: stops at
/// `--idle-ms` without a record (after `--expect` records, one more idle
/// second to see extra ones).
pub fn main(args: &Args) -> Result<(), String> {
    let brokers = args.req("--brokers")?;
    let topic = args.req("--topic")?;
    let expect: Option<u64> = args.opt("--expect").map(|_| args.num("--expect", None)).transpose()?;
    let idle = Duration::from_millis(args.num("--idle-ms", Some(10_000))?);
    let (c, parts) = assigned_from_start(brokers, topic, "perf-count")?;
    let t = Instant::now();
    let (mut records, mut bytes, mut odd) = (0u64, 0u64, 0u64);
    let mut per_part = vec![0u64; parts];
    let mut last = Instant::now();
    loop {
        let limit = if expect.is_some_and(|n| records >= n) { Duration::from_secs(1) } else { idle };
        if last.elapsed() > limit {
            break;
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let v = m.payload().unwrap_or_default();
                records += 1;
                bytes += v.len() as u64;
                if v.is_empty() || v.ends_with(b"\n") {
                    odd += 1;
                }
                if let Some(n) = per_part.get_mut(m.partition() as usize) {
                    *n += 1;
                }
                last = Instant::now();
            }
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => {}
        }
    }
    let parts_txt: Vec<String> = per_part.iter().map(u64::to_string).collect();
    println!(
        "RESULT records={records} bytes={bytes} odd={odd} partitions={} secs={:.3}",
        parts_txt.join(","),
        t.elapsed().as_secs_f64()
    );
    match expect {
        Some(n) if n != records => Err(format!("expected {n} records, read {records}")),
        _ => Ok(()),
    }
}

/// A plain consumer (group `group`, no commits) assigned every partition of
/// `topic` from its earliest offset, and how many partitions that is.
pub fn assigned_from_start(brokers: &str, topic: &str, group: &str) -> Result<(BaseConsumer, usize), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| format!("metadata: {e}"))?;
    let parts = md.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len()).unwrap_or(0);
    if parts == 0 {
        return Err(format!("topic {topic:?} has no partitions"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    Ok((c, parts))
}
