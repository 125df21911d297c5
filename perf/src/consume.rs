//! `consume`: the transfer's Kafka-side ceiling. A plain consumer-group
//! member that only reads: it joins `--group` with the transfer's consumer
//! settings (manual commits, `auto.offset.reset=earliest`, range/roundrobin
//! assignment; `-X` as the transfer's `[kafka.consumer]`), polls one message
//! at a time like the transfer does, touches each record's value and headers
//! and counts, until `--expect` records are read. Nothing is committed.
//!
//! Prints `RESULT records=… bytes=… assigned_ns=… first_ns=… last_ns=…
//! cpu_s=… hwm_kb=…` (CLOCK_REALTIME ns): the group join on Tansu takes
//! about half of `session.timeout.ms`, so `run-transfer.sh` rates both
//! contenders from their assignment on, as well as from their start.

use crate::{now_ns, procfs, Args};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Notes when partitions were first assigned.
#[derive(Default)]
struct Ctx {
    assigned_ns: AtomicU64,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() > 0 {
                let _ = self.assigned_ns.compare_exchange(0, now_ns() as u64, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// `consume --brokers B --topic T --group G --expect N [--timeout-s S] [--commit-ms N] [-X key=value]...`
pub fn main(args: &Args) -> Result<(), String> {
    let brokers = args.req("--brokers")?;
    let topic = args.req("--topic")?;
    let group = args.req("--group")?;
    let expect: u64 = args.num("--expect", None)?;
    let timeout = Duration::from_secs(args.num("--timeout-s", Some(600))?);
    // `--commit-ms N`: commit the position every N ms (asynchronously), as
    // the transfer commits what Elasticsearch acknowledged: tells what the
    // commits cost the fetching.
    let commit_every =
        args.opt("--commit-ms").map(|_| args.num("--commit-ms", None)).transpose()?.map(Duration::from_millis);
    let mut last_commit = Instant::now();
    let mut cfg = ClientConfig::new();
    // The transfer's consumer defaults (src/transfer.rs, consumer_config).
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range,roundrobin")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384");
    for kv in args.all("-X") {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("-X {kv:?}: expected key=value"))?;
        cfg.set(k, v);
    }
    let c: BaseConsumer<Ctx> = cfg.create_with_context(Ctx::default()).map_err(|e| format!("consumer: {e}"))?;
    c.subscribe(&[topic]).map_err(|e| format!("subscribe: {e}"))?;
    let start = Instant::now();
    let (mut records, mut bytes, mut headers) = (0u64, 0u64, 0u64);
    let mut first_ns = 0u128;
    let mut last_ns = 0u128;
    while records < expect {
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} with {records} of {expect} records"));
        }
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                if records == 0 {
                    first_ns = now_ns();
                }
                records += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers += hd.value.map_or(0, <[u8]>::len) as u64;
                    }
                }
                if records == expect {
                    last_ns = now_ns();
                }
            }
            Some(Err(e)) => eprintln!("consume: {e}"),
            None => {}
        }
        if let Some(every) = commit_every {
            if records % 64 == 0 && last_commit.elapsed() >= every {
                last_commit = Instant::now();
                if let Ok(tpl) = c.position() {
                    let _ = c.commit(&tpl, rdkafka::consumer::CommitMode::Async);
                }
            }
        }
    }
    let me = procfs::read("self")?;
    let assigned_ns = c.context().assigned_ns.load(Ordering::Relaxed);
    eprintln!(
        "consume: {records} records, {bytes} value bytes, {headers} header bytes; {:.2}s from assignment",
        (last_ns.saturating_sub(assigned_ns as u128)) as f64 / 1e9
    );
    println!(
        "RESULT records={records} bytes={bytes} header_bytes={headers} assigned_ns={assigned_ns} first_ns={first_ns} last_ns={last_ns} cpu_s={:.3} hwm_kb={}",
        me.cpu_s, me.hwm_kb
    );
    Ok(())
}
