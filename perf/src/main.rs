//! `perf-tools`: the pieces of the logcollect load test that are better in
//! Rust than in bash.
//!
//! ```text
//! gen ──> FILE ──> produce  (plain rdkafka producer: the ceiling)
//!              └─> logcollect agent ──> checkpoints.json <── watch-agent
//!                                   (both ship to a fresh Tansu; count reads it back)
//!
//! Tansu topic (loaded once by produce --agent-like) ──> consume  (plain consumer: the ceiling)
//!                    └─> logcollect transfer ──> bulk-sink ──> done file <── watch-transfer
//!                                                    └ --forward ──> noida-db <── bulk-send (saved bodies)
//! ```
//!
//! - [`gen`]: deterministic realistic log lines, fast.
//! - [`produce`]: the fastest plain producer: one record per line, no key,
//!   no headers; reports delivery counts, CPU and peak RSS of itself.
//! - [`watch`]: waits until the agent's checkpoint covers the whole file,
//!   then reads the agent's CPU time and peak RSS from /proc.
//! - [`count`]: consumes a topic from the earliest offsets and counts
//!   records (Tansu's "latest" offset cannot be trusted).
//! - [`consume`]: the plain consumer-group member that only reads: the
//!   transfer's Kafka-side ceiling.
//! - [`sink`]: an Elasticsearch stand-in that checks `_bulk` bodies and
//!   answers all-201, or a counting proxy in front of a real server.
//! - [`send`]: replays saved `_bulk` bodies at the transfer's concurrency:
//!   the server's own intake ceiling.
//! - [`procfs`]: CPU seconds and memory high-water marks from /proc.
//! - [`http`]: the single-host search API: time to index a file, request
//!   latency percentiles (`perf/single.sh`).
//!
//! Every measuring subcommand ends with one `RESULT key=value …` line on
//! stdout, which `run.sh` parses.

mod consume;
mod count;
mod gen;
mod http;
mod procfs;
mod produce;
mod send;
mod sink;
mod torture;
mod watch;

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage:
  perf-tools gen --bytes N --out FILE [--seed S]
  perf-tools produce --brokers B --topic T --file F [--poll-inline] [--key K] [--headers] [--one-header] [--agent-like]
                   [--lines N] [--files K] [--partitions P] [-X key=value]...
  perf-tools watch-agent --pid P --checkpoints FILE --offset N --t0-ns NS [--broker-pid B] [--timeout-s S]
  perf-tools count --brokers B --topic T [--expect N] [--idle-ms MS]
  perf-tools proc-stat --pid P
  perf-tools wait-total --url URL --expect N --t0-ns NS [--timeout-s S]
  perf-tools http-latency --url URL [--n N] [--warmup W]
  perf-tools consume --brokers B --topic T --group G --expect N [--timeout-s S] [--commit-ms N] [-X key=value]...
  perf-tools bulk-sink --port P [--expect N --done-file F] [--save-dir D] [--forward URL]
  perf-tools watch-transfer --pid P --done-file F --t0-ns NS [--broker-pid B] [--sink-pid S] [--timeout-s S]
  perf-tools bulk-send --url U --dir D [--workers W]
  perf-tools torture-write --dir D --files N --lines L --secs S [--rotate-ms MS]
  perf-tools torture-count --brokers B --topic T --written N [--es URL --index I] [--idle-ms MS]
  perf-tools drop-proxy --port P --upstream HOST:PORT --flag FILE
";

/// CLOCK_REALTIME in ns: comparable with `date +%s%N` in the scripts.
pub fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// `--name value` options and flags, in the order given.
pub struct Args {
    items: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut items = Vec::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if !a.starts_with('-') {
                return Err(format!("unexpected argument {a:?}"));
            }
            if flags.contains(&a.as_str()) {
                items.push((a.clone(), None));
            } else {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                items.push((a.clone(), Some(v.clone())));
            }
        }
        Ok(Args { items })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.items.iter().any(|(k, _)| k == name)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.items.iter().filter(|(k, _)| k == name).filter_map(|(_, v)| v.as_deref()).collect()
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.all(name).last().copied()
    }

    pub fn req(&self, name: &str) -> Result<&str, String> {
        self.opt(name).ok_or_else(|| format!("{name} is required"))
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match self.opt(name) {
            Some(v) => v.replace('_', "").parse().map_err(|_| format!("{name}: {v:?} is not a number")),
            None => default.ok_or_else(|| format!("{name} is required")),
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let flags: &[&str] = match cmd.as_str() {
        "produce" => &["--poll-inline", "--headers", "--agent-like", "--one-header"],
        _ => &[],
    };
    let args = match Args::parse(rest, flags) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perf-tools {cmd}: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "gen" => gen::main(&args),
        "produce" => produce::main(&args),
        "watch-agent" => watch::main(&args),
        "count" => count::main(&args),
        "proc-stat" => procfs::main(&args),
        "wait-total" => http::wait_total(&args),
        "http-latency" => http::latency(&args),
        "consume" => consume::main(&args),
        "bulk-sink" => sink::main(&args),
        "watch-transfer" => watch::transfer(&args),
        "bulk-send" => send::main(&args),
        "torture-write" => torture::write(&args),
        "torture-count" => torture::count(&args),
        "drop-proxy" => torture::drop_proxy(&args),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown subcommand {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf-tools {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}
