//! `produce`: the ceiling. The plainest fast rdkafka producer: each line of
//! the file is one record (value = the line without its newline; no key, no
//! headers, no timestamp), with the agent's delivery guarantees (acks=all,
//! idempotence, lz4) and generous batching. Whatever the agent does on top
//! (headers, keys, checkpoints, tailing) is measured against this.
//!
//! The file is read in large blocks (not mapped, so page cache does not show
//! up as this process's RSS); librdkafka copies each payload on `send`.
//! Delivery reports are served by rdkafka's polling thread
//! (`ThreadedProducer`), so the sending thread only sends; with
//! `--poll-inline` the sending thread polls them itself (`BaseProducer`,
//! like the agent's ship thread). Neither was clearly faster here (within the
//! noise of a shared 2-core machine); threaded used a little less CPU.
//!
//! The librdkafka queue is bounded like the agent's (16 MiB / 100k records):
//! a 64 MiB queue was no faster and tripled the peak RSS.
//!
//! It also loads the transfer's test topic: `--agent-like --lines N --files
//! K --partitions P` sends the first N lines as records shaped like the
//! agent's (key = fid; headers host/path/offset/fid), dealt round-robin to K
//! pretend files, file k in partition k % P.

use crate::{procfs, Args};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts delivery reports.
#[derive(Default)]
struct Counter {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Counter {
    /// With `-X statistics.interval.ms=N`, librdkafka's statistics JSON goes
    /// to stderr, one document a line (batch sizes, round-trip times, queue
    /// latencies: where a run waits).
    fn stats_raw(&self, statistics: &[u8]) {
        eprintln!("STATS {}", String::from_utf8_lossy(statistics));
    }
}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

/// The defaults: the agent's guarantees, batching tuned for throughput.
/// `-X key=value` overrides any of them.
pub fn client_config(brokers: &str, extra: &[&str]) -> Result<ClientConfig, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.size", "1048576")
        .set("message.max.bytes", "1114112")
        .set("queue.buffering.max.kbytes", "16384")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "0");
    for kv in extra {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("-X {kv:?}: expected key=value"))?;
        c.set(k, v);
    }
    Ok(c)
}

/// What sending does with a producer: `send`, and waiting for room.
trait Send_ {
    fn send_rec<'a>(&self, rec: Rec<'a>) -> Result<(), (KafkaError, Rec<'a>)>;
    /// Called now and then, and when the queue is full.
    fn service(&self, wait: Duration);
    fn flush_all(&self) -> Result<(), KafkaError>;
    fn counter(&self) -> &Counter;
}

type Rec<'a> = BaseRecord<'a, [u8], [u8], ()>;

impl Send_ for BaseProducer<Counter> {
    fn send_rec<'a>(&self, rec: Rec<'a>) -> Result<(), (KafkaError, Rec<'a>)> {
        self.send(rec)
    }
    fn service(&self, wait: Duration) {
        self.poll(wait);
    }
    fn flush_all(&self) -> Result<(), KafkaError> {
        self.flush(rdkafka::util::Timeout::Never)
    }
    fn counter(&self) -> &Counter {
        self.context()
    }
}

impl Send_ for ThreadedProducer<Counter> {
    fn send_rec<'a>(&self, rec: Rec<'a>) -> Result<(), (KafkaError, Rec<'a>)> {
        self.send(rec)
    }
    fn service(&self, wait: Duration) {
        // The polling thread serves delivery reports; only wait for room.
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    fn flush_all(&self) -> Result<(), KafkaError> {
        self.flush(rdkafka::util::Timeout::Never)
    }
    fn counter(&self) -> &Counter {
        self.context()
    }
}

/// What each record carries besides its value. The default is nothing;
/// `--agent-like` adds what the agent's records carry, to tell the cost of
/// the record format apart from the cost of the agent's code.
#[derive(Default)]
struct Extras {
    /// Same key on every record (the agent keys by file id, so one file's
    /// lines land in one partition).
    key: Option<String>,
    /// `host`, `path`, `offset`, `fid` headers, like the agent's.
    headers: bool,
    /// The same four values in one header `src` (tab separated), to tell
    /// the cost of header count from the cost of header bytes
    /// (`--one-header`).
    one_header: bool,
    /// Lines are dealt round-robin to this many pretend files (≥ 1), each
    /// with its own path, fid, key and offsets (`--files`).
    files: usize,
    /// File `k` goes to partition `k % partitions` (`--partitions`);
    /// `None`: librdkafka's partitioner.
    partitions: Option<i32>,
    /// Stop after this many lines (`--lines`).
    max_lines: Option<u64>,
}

/// One pretend file's path, fid (also the key) and next line offset.
struct PretendFile {
    path: String,
    fid: String,
    offset: u64,
}

fn headers(host: &str, path: &str, offset: &str, fid: &str) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(5)
        .insert(Header { key: "host", value: Some(host) })
        .insert(Header { key: "path", value: Some(path) })
        .insert(Header { key: "offset", value: Some(offset) })
        .insert(Header { key: "fid", value: Some(fid) })
}

/// Sends every line of `file`; returns (lines, line bytes without newlines,
/// send errors).
fn ship(p: &impl Send_, topic: &str, file: &str, x: &Extras) -> Result<(u64, u64, u64), String> {
    let fid = x.key.as_deref().unwrap_or("");
    let mut num = itoa::Buffer::new();
    let mut src = String::new();
    let mut pretend: Vec<PretendFile> = (0..x.files.max(1))
        .map(|k| match x.files {
            0 | 1 => PretendFile { path: file.to_string(), fid: fid.to_string(), offset: 0 },
            _ => PretendFile { path: format!("{file}.{k}"), fid: format!("{fid}-{k}"), offset: 0 },
        })
        .collect();
    let max_lines = x.max_lines.unwrap_or(u64::MAX);
    const BLOCK: usize = 4 << 20;
    let mut f = File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut buf = vec![0u8; BLOCK];
    // buf[..filled] holds unsent bytes; they start at a line boundary.
    let mut filled = 0usize;
    let (mut lines, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    loop {
        if filled == buf.len() {
            // A line longer than the buffer: grow (never happens with gen).
            buf.resize(buf.len() * 2, 0);
        }
        let n = f.read(&mut buf[filled..]).map_err(|e| format!("{file}: {e}"))?;
        let eof = n == 0;
        filled += n;
        let mut start = 0usize;
        let end_of_lines = if eof {
            filled
        } else {
            match memchr::memrchr(b'\n', &buf[..filled]) {
                Some(i) => i + 1,
                None => 0,
            }
        };
        while start < end_of_lines && lines < max_lines {
            let nl = memchr::memchr(b'\n', &buf[start..end_of_lines]).map_or(end_of_lines, |i| start + i);
            let line = &buf[start..nl];
            start = nl + 1;
            let k = (lines % pretend.len() as u64) as usize;
            let f = &mut pretend[k];
            let mut rec = Rec::to(topic).payload(line);
            if x.key.is_some() {
                rec = rec.key(f.fid.as_bytes());
            }
            if let Some(n) = x.partitions {
                rec = rec.partition(k as i32 % n);
            }
            if x.headers {
                rec = rec.headers(headers("10.0.0.1", &f.path, num.format(f.offset), &f.fid));
            } else if x.one_header {
                src.clear();
                for (i, v) in ["10.0.0.1", &f.path, num.format(f.offset), &f.fid].into_iter().enumerate() {
                    if i > 0 {
                        src.push('\t');
                    }
                    src.push_str(v);
                }
                rec = rec.headers(
                    OwnedHeaders::new_with_capacity(1).insert(Header { key: "src", value: Some(src.as_str()) }),
                );
            }
            f.offset += line.len() as u64 + 1;
            loop {
                match p.send_rec(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        rec = r;
                        p.service(Duration::from_millis(1));
                    }
                    Err((e, _)) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("produce: send failed: {e}");
                        }
                        break;
                    }
                }
            }
            lines += 1;
            bytes += line.len() as u64;
            if lines % 1024 == 0 {
                p.service(Duration::ZERO);
            }
        }
        if eof || lines >= max_lines {
            break;
        }
        buf.copy_within(end_of_lines..filled, 0);
        filled -= end_of_lines;
    }
    p.flush_all().map_err(|e| format!("flush: {e}"))?;
    Ok((lines, bytes, errors))
}

/// `produce --brokers B --topic T --file F [--poll-inline] [--key K] [--headers]
/// [--one-header] [--agent-like] [--lines N] [--files K] [--partitions P] [-X key=value]...`;
/// `--agent-like` = `--headers` and a fid-shaped `--key`.
pub fn main(args: &Args) -> Result<(), String> {
    let brokers = args.req("--brokers")?;
    let topic = args.req("--topic")?;
    let file = args.req("--file")?;
    let threaded = !args.flag("--poll-inline");
    // A key shaped like the agent's `fid` (dev-ino-head hash).
    const FID: &str = "fd01-2a5f3c-9f3e1a2b3c4d5e6f";
    let agent_like = args.flag("--agent-like");
    let x = Extras {
        key: args.opt("--key").map(str::to_string).or_else(|| agent_like.then(|| FID.to_string())),
        headers: agent_like || args.flag("--headers"),
        one_header: args.flag("--one-header"),
        files: args.num("--files", Some(1))?,
        partitions: args.opt("--partitions").map(|_| args.num("--partitions", None)).transpose()?,
        max_lines: args.opt("--lines").map(|_| args.num("--lines", None)).transpose()?,
    };
    if x.files == 0 || x.partitions.is_some_and(|n| n < 1) {
        return Err("--files and --partitions must be at least 1".into());
    }
    let cfg = client_config(brokers, &args.all("-X"))?;
    let t = Instant::now();
    let (lines, bytes, send_errors, counter) = if threaded {
        let p: ThreadedProducer<Counter> =
            cfg.create_with_context(Counter::default()).map_err(|e| format!("producer: {e}"))?;
        let (l, b, e) = ship(&p, topic, file, &x)?;
        (l, b, e, snapshot(p.counter()))
    } else {
        let p: BaseProducer<Counter> =
            cfg.create_with_context(Counter::default()).map_err(|e| format!("producer: {e}"))?;
        let (l, b, e) = ship(&p, topic, file, &x)?;
        (l, b, e, snapshot(p.counter()))
    };
    let secs = t.elapsed().as_secs_f64();
    // Read before exit: the producer has been dropped (its threads joined),
    // so this is everything the process spent.
    let me = procfs::read("self")?;
    let (ok, failed, first) = counter;
    if let Some(e) = first {
        eprintln!("produce: first delivery error: {e}");
    }
    eprintln!(
        "produce: {lines} lines, {bytes} bytes in {secs:.2}s ({:.0} lines/s); delivered {ok}, failed {failed}, send errors {send_errors}",
        lines as f64 / secs
    );
    println!(
        "RESULT lines={lines} bytes={bytes} delivered={ok} failed={failed} send_errors={send_errors} secs={secs:.3} cpu_s={:.3} hwm_kb={}",
        me.cpu_s, me.hwm_kb
    );
    if failed + send_errors > 0 || ok != lines {
        return Err(format!("{lines} lines sent but {ok} delivered ({failed} failed, {send_errors} not sent)"));
    }
    Ok(())
}

fn snapshot(c: &Counter) -> (u64, u64, Option<String>) {
    (
        c.ok.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    )
}
