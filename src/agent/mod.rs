//! The agent: wires the etcd config watch, discovery, readers, the channel,
//! the Kafka shipper and the checkpoint saver together, and shuts them down
//! in order.
//!
//! Shutdown (SIGTERM/SIGINT): readers stop and hand on what they read;
//! the shipper drains the channel and waits for Kafka's acknowledgements up
//! to `shutdown_timeout_ms`; checkpoints are written; exit 0. A second signal
//! exits at once (checkpoints on disk are always consistent).

pub mod batch;
pub mod checkpoint;
pub mod discovery;
pub mod guard;
pub mod identity;
pub mod journal;
pub mod multiline;
pub mod ship;
pub mod split;
pub mod stats;
pub mod tail;
pub mod tap;
pub mod wake;

#[cfg(test)]
mod model_tests;

use crate::agent::batch::Batch;
use crate::agent::checkpoint::Checkpoints;
use crate::agent::stats::Stats;
use crate::agent::tail::TailCtx;
use crate::common::shutdown::{self, Every};
use crate::common::totals::Totals;
use crate::config::{Config, ConfigError};
use crate::control::etcd;
use crate::control::reload::Reload;
use crate::error::RunError;
use crate::kafka::stats::KafkaStats;
use crate::observe::Observed;
use discovery::Discovery;
use ship::ShipConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines one batch holds on average (one read of ~200-byte lines).
const LINES_PER_BATCH: usize = 512;

/// Read chunks the channel may hold, in bytes, whatever `chan_max_size`
/// says: a batch keeps its whole chunk alive until the sink is done with it,
/// and past a few dozen batches a deeper queue only holds memory (the sink
/// keeps up or it does not). 4 MiB is 32 chunks of the default 128 KiB:
/// as fast as 64 chunks, with a peak RSS of 54 MB instead of 62 (medians of
/// 3 runs, perf/README.md).
const CHANNEL_MAX_BYTES: usize = 4 << 20;

/// Channel capacity in batches: at most `lines` lines (`chan_max_size`) and
/// at most [`CHANNEL_MAX_BYTES`] of `chunk_bytes` chunks; never under 4.
fn channel_batches(lines: usize, chunk_bytes: usize) -> usize {
    (lines / LINES_PER_BATCH).min(CHANNEL_MAX_BYTES / chunk_bytes.max(1)).max(4)
}

/// The bounded channel from the readers to the next stage (the Kafka
/// shipper, the embedded index or the Elasticsearch sink), sized from
/// `chan_max_size` and the read chunk size.
pub fn batch_channel(cfg: &Config) -> (crossbeam_channel::Sender<Batch>, crossbeam_channel::Receiver<Batch>) {
    crossbeam_channel::bounded(channel_batches(cfg.chan_max_size, cfg.agent.read_chunk_bytes))
}

/// Writes the checkpoints; a failure is logged (the next save retries,
/// and the ones on disk stay consistent).
pub fn save_checkpoints(checkpoints: &Checkpoints, data_dir: &std::path::Path) {
    let was_failing = checkpoints.health().failing().is_some();
    if let Err(e) = checkpoints.save() {
        // Said when it starts; `/health/ready` and the error counter say
        // how long it lasts.
        if was_failing {
            tracing::debug!("writing checkpoints in {}: {e}", data_dir.display());
        } else {
            tracing::error!(
                "writing checkpoints in {}: {e}; retrying every checkpoint_interval_ms, not ready meanwhile",
                data_dir.display()
            );
        }
    }
}

/// Files from now on the user's only, and `data_dir` private (0700): what
/// the agent and `run` do first.
pub(crate) fn private_data_dir(cfg: &Config) -> Result<(), RunError> {
    crate::common::fs::private_umask();
    let dir = &cfg.agent.data_dir;
    let bad =
        |e: std::io::Error| ConfigError { key: "agent.data_dir".into(), message: format!("{}: {e}", dir.display()) };
    crate::common::fs::private_dir(dir).map_err(bad)?;
    // Checkpoints are written every second from now on: a data_dir that
    // cannot take them (read-only, full, not a directory) stops the start
    // here, not the first save later.
    crate::common::fs::probe_writable(dir).map_err(|e| ConfigError {
        key: "agent.data_dir".into(),
        message: format!("{} is not writable: {e}", dir.display()),
    })?;
    Ok(())
}

/// Runs the agent with the config loaded from `path` until SIGTERM or
/// SIGINT; SIGHUP reloads `path` ([`crate::control::reload`]).
pub fn run(cfg: Config, path: &std::path::Path) -> Result<(), RunError> {
    private_data_dir(&cfg)?;
    let term = shutdown::term_flag()?;
    let reload = crate::control::reload::on_sighup(path, &cfg, "agent", cfg.etcd.is_none())?;
    run_until(cfg, &term, Some(&reload))
}

/// Runs the agent until `stop` is set, serving its metrics on `[http] listen`.
pub fn run_until(cfg: Config, stop: &AtomicBool, reload: Option<&Reload>) -> Result<(), RunError> {
    let observed = Arc::new(Observed::new("agent"));
    if let Some(r) = reload {
        observed.set_reloader(r.reloader());
    }
    let _server = crate::observe::serve(&cfg.http, observed.clone());
    run_observed(cfg, stop, &observed, reload)
}

/// Runs the agent until `stop` is set, showing itself in `observed`; new
/// collect lists of `reload` apply live when there is no `[etcd]`.
pub fn run_observed(
    cfg: Config,
    stop: &AtomicBool,
    observed: &Observed,
    reload: Option<&Reload>,
) -> Result<(), RunError> {
    let kafka = cfg.kafka.clone().ok_or_else(|| ConfigError {
        key: "kafka.address".into(),
        message: "the agent ships to Kafka: set [kafka] address".into(),
    })?;
    if cfg.collect.is_empty() && cfg.etcd.is_none() {
        tracing::warn!("nothing to collect: [collect] is empty and no [etcd] address is set");
    }
    let host = crate::control::host::detect(cfg.agent.host.as_deref());
    let stats = Arc::new(Stats::default());
    let checkpoints = Arc::new(Checkpoints::open(&cfg.agent.data_dir)?);
    let (tx, rx) = batch_channel(&cfg);
    observed.add_agent(crate::observe::agent_view(stats.clone(), checkpoints.clone(), &rx));
    let kafka_stats = Arc::new(KafkaStats::default());
    observed.add_kafka("producer", kafka_stats.clone());
    let pinned: Vec<_> = crate::observe::host_metrics::start(&cfg, &host, observed).into_iter().collect();
    let shipper = ship::spawn(
        &ShipConfig { kafka: kafka.clone(), host: host.clone(), max_line_bytes: cfg.agent.max_line_bytes },
        rx,
        stats.clone(),
        kafka_stats,
    )?;

    // With etcd, the collect list is this host's key there (the static list
    // only stands in when etcd and the cache have none at start).
    let (updates_tx, mut updates) = crossbeam_channel::unbounded();
    let (collect, etcd_stage) = match &cfg.etcd {
        Some(e) => {
            etcd::check_files(e)?;
            let key = e.key_for(&host);
            tracing::info!(key = %key, endpoints = %e.endpoints.join(";"), "reading the collect list from etcd");
            let (first, stage) = etcd::stage::spawn(e, key, &cfg.agent.data_dir, cfg.collect.clone(), updates_tx)?;
            (first, Some(stage))
        }
        None => match reload {
            Some(r) => {
                updates = r.updates.clone();
                (r.current(), None)
            }
            None => (cfg.collect.clone(), None),
        },
    };
    tracing::info!(host = %host, brokers = %kafka.brokers.join(","), entries = collect.len(), "agent started");
    let mut journal = journal::start(&cfg, tx.clone(), &stats, observed)?;
    let ctx = Arc::new(TailCtx::new(&cfg.agent, checkpoints.clone(), tx, stats.clone()));
    let (stop_discovery, discovery_stopped) = crossbeam_channel::bounded::<()>(0);
    let disc = discovery::spawn(
        Discovery::new(ctx, collect).with_pinned(pinned),
        Duration::from_millis(cfg.agent.scan_interval_ms),
        updates,
        discovery_stopped,
    )?;

    let mut save = Every::new(Duration::from_millis(cfg.agent.checkpoint_interval_ms));
    let mut on_ack = SaveOnAck::new();
    let mut report_due = Every::new(Duration::from_secs(30));
    shutdown::wait(
        stop,
        || false,
        || {
            let acked = stats.lines_acked.load(Ordering::Relaxed) + stats.lines_failed.load(Ordering::Relaxed);
            if on_ack.due(acked, Instant::now()) || save.due() {
                let t = Instant::now();
                save_checkpoints(&checkpoints, &cfg.agent.data_dir);
                journal::save_logged(journal.as_ref());
                on_ack.saved(acked, t, t.elapsed());
            }
            if report_due.due() {
                report(&stats);
            }
        },
    );

    tracing::info!("stopping: finishing reads, flushing Kafka, writing checkpoints");
    if let Some(stage) = etcd_stage {
        stage.stop();
    }
    drop(stop_discovery);
    let _ = disc.join();
    if let Some(j) = &mut journal {
        j.stop();
    }
    shipper.finish(Duration::from_millis(cfg.agent.shutdown_timeout_ms));
    checkpoints.save()?;
    if let Some(j) = &journal {
        j.save()?;
    }
    report(&stats);
    Ok(())
}

/// When the checkpoints are written besides every `checkpoint_interval_ms`:
/// as soon as Kafka acknowledged lines since the last save, so a kill -9
/// re-sends only what was acknowledged in the last moment (issue 14: at a
/// 1 s interval every crash re-sent up to a second of lines). Coalesced:
/// at most once per [`shutdown::CHECK_EVERY`] look, and never sooner than
/// [`SAVE_COST_FACTOR`] times the last save's duration after it, so a slow
/// disk or a registry of many files costs at most a tenth of this thread.
/// The signal is the `lines_acked` counter the delivery reports already
/// keep: nothing is added to the hot path.
struct SaveOnAck {
    /// Acknowledged (or rejected) lines at the last save.
    acked: u64,
    /// No save before this.
    not_before: Instant,
}

/// A save on acknowledgement waits this many times the last save's duration.
const SAVE_COST_FACTOR: u32 = 10;

impl SaveOnAck {
    fn new() -> Self {
        SaveOnAck { acked: 0, not_before: Instant::now() }
    }

    /// Whether acknowledgements moved since the last save and it is time.
    fn due(&self, acked: u64, now: Instant) -> bool {
        acked != self.acked && now >= self.not_before
    }

    /// A save started at `at` with `acked` lines acknowledged took `took`.
    fn saved(&mut self, acked: u64, at: Instant, took: Duration) {
        self.acked = acked;
        self.not_before = at + took * SAVE_COST_FACTOR;
    }
}

fn report(s: &Stats) {
    tracing::info!("agent totals: {}", Totals(&s.totals()));
}

#[cfg(test)]
mod tests {
    use super::{channel_batches, SaveOnAck};
    use std::time::{Duration, Instant};

    #[test]
    fn checkpoints_are_saved_when_acks_move_no_more_often_than_saves_cost() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = SaveOnAck { acked: 0, not_before: t0 };
        assert!(!s.due(0, ms(0)), "nothing acknowledged: no save");
        assert!(s.due(5, ms(0)), "acknowledged: save at once");
        s.saved(5, ms(0), Duration::from_millis(3));
        assert!(!s.due(5, ms(50)), "nothing new since");
        assert!(!s.due(9, ms(29)), "within 10x the last save's 3 ms");
        assert!(s.due(9, ms(30)));
        s.saved(9, ms(30), Duration::ZERO);
        assert!(s.due(10, ms(30)), "a free save: the next look may save again");
    }

    #[test]
    fn channel_is_bounded_by_lines_and_bytes() {
        // (chan_max_size lines, chunk bytes, batches)
        let table = [
            (100_000, 128 << 10, 32),   // the default: the 4 MiB of chunks decide
            (4096, 128 << 10, 8),       // few lines: the lines decide
            (1, 128 << 10, 4),          // never under 4
            (100_000, 64 << 20, 4),     // huge chunks: still 4
            (1_000_000, 16 << 10, 256), // small chunks: 4 MiB of them
        ];
        for (lines, chunk, want) in table {
            assert_eq!(channel_batches(lines, chunk), want, "lines {lines}, chunk {chunk}");
        }
    }
}
