//! A fleet on one etcd: agents in network namespaces of their own, each
//! finding its own outbound IP (no `[agent] host`) and so its own key among
//! 1,000, through 100 random changes to their keys and an etcd restart,
//! every line counted back from Kafka.
//!
//! The test builds the network: a bridge in the test's namespace holding
//! the first address of a private /24 it picks unused (`10.200.0.0/13`),
//! and one namespace per agent, joined to the bridge by a veth pair, whose
//! only route is the bridge's address. Tansu and etcd listen on that
//! address, so everything the agents send stays among the test's
//! namespaces. Needs root (`ip netns`), as `scripts/test.sh` runs.

mod common;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const AGENTS: usize = 20;
const FILES: usize = 4;
/// Each agent has three topics of its own, `a<agent>-fleet-a` ..., so that
/// each partition has one producer. With three topics shared by all 20
/// agents, Tansu 0.6 once acknowledged a record (non-idempotent producers)
/// that no reader ever got; and with 20 idempotent producers it stalls
/// deliveries for 20-30 s a minute or so into the run on a loaded machine,
/// shared partitions or not (see the delivery times the test prints).
const TOPICS: [&str; 3] = ["fleet-a", "fleet-b", "fleet-c"];
const OTHER_HOSTS: usize = 980;
const CHANGES: usize = 100;
/// Each file gets a line this often.
const WRITE_EVERY: Duration = Duration::from_millis(40);

/// Runs a command to success; its stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The test's network: a bridge and one namespace per agent.
struct Fleet {
    /// `10.a.b`: the /24's first three octets.
    prefix: String,
    bridge: String,
    namespaces: Vec<String>,
}

impl Fleet {
    fn create(n: usize) -> Fleet {
        remove_stale();
        let pid = std::process::id();
        let used = run(&["ip", "-4", "addr"]) + &run(&["ip", "-4", "route"]);
        let prefix = (0..2048u32)
            .map(|k| {
                let x = pid.wrapping_add(k * 7919) % 2048;
                format!("10.{}.{}", 200 + x / 256, x % 256)
            })
            .find(|p| !used.contains(&format!("{p}.")))
            .expect("a free /24 in 10.200.0.0/13");
        let mut f = Fleet { prefix, bridge: format!("lcbr{pid}"), namespaces: Vec::new() };
        run(&["ip", "link", "add", "name", &f.bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", &format!("{}/24", f.gateway()), "dev", &f.bridge]);
        run(&["ip", "link", "set", &f.bridge, "up"]);
        for i in 0..n {
            let ns = format!("lcf{pid}-{i}");
            run(&["ip", "netns", "add", &ns]);
            f.namespaces.push(ns.clone());
            let (outer, inner) = (format!("lc{pid}h{i}"), format!("lc{pid}n{i}"));
            run(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            run(&["ip", "link", "set", &inner, "netns", &ns]);
            run(&["ip", "link", "set", &outer, "master", &f.bridge]);
            run(&["ip", "link", "set", &outer, "up"]);
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", &ns, "link", "set", &inner, "name", "eth0"]);
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", f.ip_of(i)), "dev", "eth0"]);
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &ns, "route", "add", "default", "via", &f.gateway()]);
        }
        f
    }

    /// The bridge's address: where Tansu and etcd listen.
    fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    fn ip_of(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

/// Namespaces and bridges left by a test process that no longer runs
/// (killed before its `Drop`).
fn remove_stale() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    for l in run(&["ip", "netns", "list"]).lines() {
        let name = l.split_whitespace().next().unwrap_or("");
        if let Some(pid) = name.strip_prefix("lcf").and_then(|r| r.split('-').next()) {
            if !alive(pid) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    for l in run(&["ip", "-o", "link", "show", "type", "bridge"]).lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim();
        if let Some(pid) = name.strip_prefix("lcbr") {
            if !alive(pid) {
                let _ = Command::new("ip").args(["link", "del", name]).status();
            }
        }
    }
}

/// `logcollect config <args>` against `etcd`: (exit code, stdout, stderr).
fn config_cli(etcd: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logcollect"))
        .args(["config", "--config", "/dev/null", "--etcd", etcd])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// What one agent's key says about one of its files.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    topic: usize,
    /// An option that changes nothing about these files' lines.
    exclude_gz: bool,
}

fn topic_name(agent: usize, t: usize) -> String {
    format!("a{agent}-{}", TOPICS[t])
}

fn list_json(agent: usize, paths: &[PathBuf], entries: &[Option<Entry>]) -> String {
    let items: Vec<String> = entries
        .iter()
        .zip(paths)
        .filter_map(|(e, p)| {
            let e = e.as_ref()?;
            let opt = if e.exclude_gz { r#","exclude":["*.gz"]"# } else { "" };
            Some(format!(r#"{{"path":"{}","topic":"{}"{opt}}}"#, p.display(), topic_name(agent, e.topic)))
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A small deterministic generator (xorshift64*), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// One record as the reader saw it arrive.
struct Seen {
    topic: usize,
    agent: usize,
    file: usize,
    line: u64,
    at: Instant,
    /// The record's timestamp: when the agent read the line (Unix ms).
    read_ms: i64,
    /// Arrival minus `read_ms`.
    delay_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Reads the three topics from the earliest offsets into `seen` until `stop`.
fn reader(brokers: String, seen: Arc<Mutex<Vec<Seen>>>, stop: Arc<AtomicBool>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "fleet-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for i in 0..AGENTS {
        for t in 0..TOPICS.len() {
            tpl.add_partition_offset(&topic_name(i, t), 0, Offset::Beginning).unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let at = Instant::now();
                let (owner, name) = m.topic().split_once('-').unwrap();
                let topic = TOPICS.iter().position(|t| *t == name).unwrap();
                // "a<agent> f<file> <line>" then padding.
                let v = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap();
                let mut w = v.split(' ');
                let agent = w.next().unwrap()[1..].parse().unwrap();
                let file = w.next().unwrap()[1..].parse().unwrap();
                let line = w.next().unwrap().parse().unwrap();
                assert_eq!(owner, format!("a{agent}"), "{v} in {}", m.topic());
                let path = m.headers().and_then(|h| h.iter().find(|h| h.key == "path")).and_then(|h| h.value);
                assert!(
                    path.is_some_and(|p| p.ends_with(format!("a{agent}/logs/f{file}.log").as_bytes())),
                    "{v}: path header {:?}",
                    path.map(String::from_utf8_lossy)
                );
                let read_ms = m.timestamp().to_millis().expect("records carry the time they were read");
                seen.lock().unwrap().push(Seen { topic, agent, file, line, at, read_ms, delay_ms: now_ms() - read_ms });
            }
            Some(Err(e)) => panic!("reading the fleet's topics: {e}"),
            None => {}
        }
    }
}

/// utime + stime of a process, in seconds, and its resident set in bytes.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks as f64 / hz, proc_status_kb(pid, "VmRSS:") * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A watch on `key` held open over HTTP/1.1 on etcd's JSON gateway, as
/// each agent holds one: returns once etcd confirmed it.
fn open_watch(endpoint: &str, key: &str) -> TcpStream {
    use base64::Engine as _;
    let body = format!(r#"{{"create_request":{{"key":"{}"}}}}"#, base64::engine::general_purpose::STANDARD.encode(key));
    let mut s = TcpStream::connect(endpoint).unwrap();
    write!(
        s,
        "POST /v3/watch HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"created\":true") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "etcd closed the watch: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Add,
    Remove,
    Topic,
    Options,
    /// Refused by `config put`.
    Invalid,
    /// Written to etcd behind the command's back; agents keep their list.
    InvalidRaw,
}

struct Change {
    kind: Kind,
    agent: usize,
    file: usize,
    /// The topic the file's lines go to from now on (Add, Topic).
    topic: Option<usize>,
    at: Instant,
    /// `at` as Unix ms.
    at_ms: i64,
    /// Made within 10 s after etcd came back.
    after_restart: bool,
}

#[test]
fn twenty_agents_in_namespaces_follow_their_keys_among_1000_through_100_changes_and_an_etcd_restart() {
    // 980 held watches and the fleet's sockets need more than 1,024 files;
    // etcd, started below, inherits the limit.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
    let fleet = Fleet::create(AGENTS);
    let gw = fleet.gateway();
    let tansu = Tansu::start_on(&gw);
    for i in 0..AGENTS {
        for t in 0..TOPICS.len() {
            tansu.create_topic(&topic_name(i, t), 1);
        }
    }
    let mut etcd = Etcd::start_on(&gw);
    let ep = etcd.endpoint();
    let mut root = tempfile::tempdir().unwrap();
    // LOGCOLLECT_TEST_KEEP=1 keeps the agents' logs and data for a look.
    root.disable_cleanup(std::env::var_os("LOGCOLLECT_TEST_KEEP").is_some());
    println!("fleet files: {}", root.path().display());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("fleet: {AGENTS} agents in {}.0/24, seed {seed}", fleet.prefix);
    let mut rng = Rng(seed);

    // 1,000 hosts' keys: 980 others with one command, then each agent's own.
    let hosts_file = root.path().join("hosts.txt");
    let others: Vec<String> = (0..OTHER_HOSTS).map(|k| format!("198.18.{}.{}", k / 200, k % 200 + 1)).collect();
    std::fs::write(&hosts_file, format!("# the rest of the fleet\n{}\n", others.join("\n"))).unwrap();
    let t = Instant::now();
    let (code, out, err) = config_cli(
        &ep,
        &["put", "--hosts-file", hosts_file.to_str().unwrap(), r#"[{"path":"/var/log/app/*.log","topic":"app"}]"#],
    );
    let put_many = t.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(&format!("{OTHER_HOSTS} hosts written\n")), "{}", &out[out.len().saturating_sub(300)..]);
    assert!(out.contains("/logagent/198.18.4.180/collect_config: 1 entries written (revision"), "the last host");

    let paths: Vec<Vec<PathBuf>> = (0..AGENTS)
        .map(|i| {
            let logs = root.path().join(format!("a{i}/logs"));
            std::fs::create_dir_all(&logs).unwrap();
            (0..FILES).map(|j| logs.join(format!("f{j}.log"))).collect()
        })
        .collect();
    for p in paths.iter().flatten() {
        std::fs::write(p, "").unwrap();
    }
    // Files 0-2 collected at first (to topics by agent), file 3 not.
    let mut model: Vec<Vec<Option<Entry>>> = (0..AGENTS)
        .map(|i| {
            (0..FILES).map(|j| (j < 3).then_some(Entry { topic: (i + j) % TOPICS.len(), exclude_gz: false })).collect()
        })
        .collect();
    for i in 0..AGENTS {
        let (code, _, err) = config_cli(&ep, &["put", "--host", &fleet.ip_of(i), &list_json(i, &paths[i], &model[i])]);
        assert_eq!(code, 0, "{err}");
    }
    let t = Instant::now();
    let (code, table, err) = config_cli(&ep, &["hosts"]);
    let hosts_took = t.elapsed();
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 1 + OTHER_HOSTS + AGENTS, "{}", &table[..table.len().min(500)]);
    assert_eq!(rows[0].split_whitespace().collect::<Vec<_>>(), ["HOST", "REVISION", "ENTRIES"]);
    for i in 0..AGENTS {
        let row = rows.iter().find(|r| r.split_whitespace().next() == Some(&fleet.ip_of(i))).unwrap();
        assert_eq!(row.split_whitespace().nth(2), Some("3"), "{row}");
    }
    println!(
        "config put --hosts-file ({OTHER_HOSTS} hosts): {} ms; config hosts ({} hosts): {} ms",
        put_many.as_millis(),
        OTHER_HOSTS + AGENTS,
        hosts_took.as_millis()
    );

    // The agents, no [agent] host: each must find its namespace's address.
    let mut agents: Vec<Agent> = (0..AGENTS)
        .map(|i| {
            let dir = root.path().join(format!("a{i}"));
            let cfg = format!(
                // Each namespace has a loopback of its own.
                "[kafka]\naddress = {}\n[etcd]\naddress = {ep}\n[agent]\ndata_dir = {}\nread_from = beginning\n[http]\nlisten = 127.0.0.1:9100\n",
                tansu.brokers(),
                dir.join("data").display(),
            );
            Agent::start_in_netns(&dir, &fleet.namespaces[i], &cfg)
        })
        .collect();

    // Every file gets a line every WRITE_EVERY; written[i*FILES+j] counts them.
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..AGENTS * FILES).map(|_| AtomicU64::new(0)).collect());
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, paths) = (written.clone(), stop_writing.clone(), paths.clone());
        thread::spawn(move || {
            let mut files: Vec<std::fs::File> =
                paths.iter().flatten().map(|p| std::fs::OpenOptions::new().append(true).open(p).unwrap()).collect();
            let pad = "x".repeat(60);
            while !stop.load(Ordering::Relaxed) {
                for (k, f) in files.iter_mut().enumerate() {
                    let n = written[k].load(Ordering::Relaxed);
                    writeln!(f, "a{} f{} {n:08} {pad}", k / FILES, k % FILES).unwrap();
                    written[k].store(n + 1, Ordering::Relaxed);
                }
                thread::sleep(WRITE_EVERY);
            }
        })
    };
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let stop_reading = Arc::new(AtomicBool::new(false));
    let reading = {
        let (b, s, st) = (tansu.brokers(), seen.clone(), stop_reading.clone());
        thread::spawn(move || reader(b, s, st))
    };

    // Each agent picked its own key, and ships.
    for (i, a) in agents.iter_mut().enumerate() {
        let key = format!("/logagent/{}/collect_config", fleet.ip_of(i));
        assert!(
            wait_until(Duration::from_secs(30), || a.log_text().contains(&key)),
            "agent {i} did not follow {key}: {}",
            a.log_text()
        );
    }
    let all_flowing = || {
        let s = seen.lock().unwrap();
        let flowing: HashSet<(usize, usize)> = s.iter().map(|r| (r.agent, r.file)).collect();
        (0..AGENTS).all(|i| (0..3).all(|j| flowing.contains(&(i, j))))
    };
    assert!(wait_until(Duration::from_secs(60), all_flowing), "not every agent's files arrived");

    // 100 random changes, one every 300 ms; etcd restarted halfway.
    let mut changes: Vec<Change> = Vec::new();
    let mut refused = 0;
    let mut restarted_at: Option<Instant> = None;
    for k in 0..CHANGES {
        if k == CHANGES / 2 {
            etcd.kill();
            thread::sleep(Duration::from_secs(2));
            etcd.restart();
            restarted_at = Some(Instant::now());
        }
        let i = rng.below(AGENTS);
        let on: Vec<usize> = (0..FILES).filter(|&j| model[i][j].is_some()).collect();
        let off: Vec<usize> = (0..FILES).filter(|&j| model[i][j].is_none()).collect();
        let mut kind = match rng.below(10) {
            0 | 1 => Kind::Add,
            2 | 3 => Kind::Remove,
            4..=6 => Kind::Topic,
            7 => Kind::Options,
            8 => Kind::Invalid,
            _ => Kind::InvalidRaw,
        };
        if kind == Kind::Add && off.is_empty() {
            kind = Kind::Topic;
        }
        if matches!(kind, Kind::Remove | Kind::Topic | Kind::Options) && on.is_empty() {
            kind = Kind::Add;
        }
        let key = format!("/logagent/{}/collect_config", fleet.ip_of(i));
        let mut next = model[i].clone();
        let (file, topic) = match kind {
            Kind::Add => {
                let j = off[rng.below(off.len())];
                let t = rng.below(TOPICS.len());
                next[j] = Some(Entry { topic: t, exclude_gz: false });
                (j, Some(t))
            }
            Kind::Remove => {
                let j = on[rng.below(on.len())];
                next[j] = None;
                (j, None)
            }
            Kind::Topic => {
                let j = on[rng.below(on.len())];
                let e = next[j].as_mut().unwrap();
                e.topic = (e.topic + 1 + rng.below(TOPICS.len() - 1)) % TOPICS.len();
                (j, Some(e.topic))
            }
            Kind::Options => {
                let j = on[rng.below(on.len())];
                let e = next[j].as_mut().unwrap();
                e.exclude_gz = !e.exclude_gz;
                (j, None)
            }
            Kind::Invalid | Kind::InvalidRaw => (0, None),
        };
        let before = etcd.get(&key);
        let (at, at_ms) = (Instant::now(), now_ms());
        match kind {
            Kind::Invalid => {
                let bad = list_json(i, &paths[i], &model[i]).replacen("fleet-", "fleet ", 1);
                let bad = if bad == "[]" { r#"[{"path":"","topic":"x"}]"#.to_string() } else { bad };
                let (code, _, err) = config_cli(&ep, &["put", "--host", &fleet.ip_of(i), &bad]);
                assert_eq!(code, 2, "{bad}: {err}");
                assert!(err.contains(&key) && err.contains("not written"), "{err}");
                assert_eq!(etcd.get(&key), before, "a refused put changed the key");
                refused += 1;
            }
            Kind::InvalidRaw => {
                etcd.put(&key, r#"[{"path":"/tmp/x","topic":"bad topic"}]"#);
            }
            _ => {
                let (code, _, err) =
                    config_cli(&ep, &["put", "--host", &fleet.ip_of(i), &list_json(i, &paths[i], &next)]);
                assert_eq!(code, 0, "{err}");
                model[i] = next;
            }
        }
        let after_restart = restarted_at.is_some_and(|r| at.duration_since(r) < Duration::from_secs(10));
        changes.push(Change { kind, agent: i, file, topic, at, at_ms, after_restart });
        thread::sleep(Duration::from_millis(300));
    }

    // Every file collected again (removed ones resume), a few seconds more
    // of lines, then every line counted.
    let final_put_ms = now_ms();
    for i in 0..AGENTS {
        for e in model[i].iter_mut() {
            e.get_or_insert(Entry { topic: 0, exclude_gz: false });
        }
        let (code, _, err) = config_cli(&ep, &["put", "--host", &fleet.ip_of(i), &list_json(i, &paths[i], &model[i])]);
        assert_eq!(code, 0, "{err}");
    }
    thread::sleep(Duration::from_secs(3));
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total: u64 = written.iter().map(|w| w.load(Ordering::Relaxed)).sum();
    let complete = || {
        let s = seen.lock().unwrap();
        let mut got: HashSet<(usize, usize, u64)> = HashSet::new();
        for r in s.iter() {
            got.insert((r.agent, r.file, r.line));
        }
        got.len() as u64 == total
    };
    let caught_up = wait_until(Duration::from_secs(120), complete);
    thread::sleep(Duration::from_secs(2)); // duplicates would show by now
    let s = seen.lock().unwrap();
    let mut count: HashMap<(usize, usize, u64), u32> = HashMap::new();
    for r in s.iter() {
        *count.entry((r.agent, r.file, r.line)).or_default() += 1;
    }
    let repeated: u64 = count.values().map(|&c| u64::from(c - 1)).sum();
    let mut lost = 0u64;
    let mut lost_at = Vec::new();
    for i in 0..AGENTS {
        for j in 0..FILES {
            for n in 0..written[i * FILES + j].load(Ordering::Relaxed) {
                if !count.contains_key(&(i, j, n)) {
                    lost += 1;
                    if lost_at.len() < 5 {
                        lost_at.push(format!("a{i} f{j} {n}"));
                    }
                }
            }
        }
    }

    // Apply times: from the put to the first line the agent read for the
    // file's new topic (the record's timestamp), before the next change to
    // that file; and to that line's arrival in Kafka (which adds the
    // broker's delivery). A change superseded by the next within the 10 s
    // bound below, before a line was read for it, is not timed.
    let mut apply = Vec::new();
    let mut apply_after_restart = Vec::new();
    let mut arrive = Vec::new();
    let mut never = Vec::new();
    let mut superseded = 0;
    for (n, c) in changes.iter().enumerate().filter(|(_, c)| c.topic.is_some()) {
        let until = changes[n + 1..]
            .iter()
            .find(|d| d.agent == c.agent && d.file == c.file && d.kind != Kind::Invalid && d.kind != Kind::InvalidRaw)
            .map_or(final_put_ms, |d| d.at_ms);
        let first = s
            .iter()
            .filter(|r| r.agent == c.agent && r.file == c.file && Some(r.topic) == c.topic)
            .filter(|r| r.read_ms >= c.at_ms && r.read_ms < until)
            .min_by_key(|r| r.read_ms);
        match first {
            Some(r) => {
                let took = Duration::from_millis((r.read_ms - c.at_ms) as u64);
                if c.after_restart { &mut apply_after_restart } else { &mut apply }.push(took);
                arrive.push(r.at - c.at);
                if took > Duration::from_secs(1) {
                    println!("slow: change {n} {:?} a{} f{}: {took:?}", c.kind, c.agent, c.file);
                }
            }
            None if until - c.at_ms < 10_000 => superseded += 1,
            None => never.push(format!("{:?} a{} f{} at change {n}", c.kind, c.agent, c.file)),
        }
    }
    arrive.sort();
    // Arrivals per 5 s, and the longest wait from read to arrival in each.
    let t0 = s.first().map(|r| r.at).unwrap();
    let mut buckets: std::collections::BTreeMap<u64, (u64, i64)> = Default::default();
    for r in s.iter() {
        let b = buckets.entry((r.at - t0).as_secs() / 5).or_default();
        b.0 += 1;
        b.1 = b.1.max(r.delay_ms);
    }
    println!(
        "arrivals per 5 s (count, longest read-to-arrival ms): {buckets:?}; etcd back at {:?}",
        restarted_at.map(|r| r.saturating_duration_since(t0))
    );
    drop(s);
    apply.sort();
    apply_after_restart.sort();
    let kinds = |k: Kind| changes.iter().filter(|c| c.kind == k).count();
    println!(
        "changes: {} ({} add, {} remove, {} topic, {} options, {} refused by config put, {} invalid written to etcd directly); {superseded} superseded before a line was read for them",
        changes.len(),
        kinds(Kind::Add),
        kinds(Kind::Remove),
        kinds(Kind::Topic),
        kinds(Kind::Options),
        refused,
        kinds(Kind::InvalidRaw)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if !apply.is_empty() {
        println!(
            "apply time (put to the first line read for the new topic), {} changes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            apply.len(),
            ms(percentile(&apply, 0.5)),
            ms(percentile(&apply, 0.99)),
            ms(*apply.last().unwrap())
        );
    }
    if !apply_after_restart.is_empty() {
        println!(
            "apply time within 10 s of etcd's restart, {} changes: p50 {:.0} ms, max {:.0} ms",
            apply_after_restart.len(),
            ms(percentile(&apply_after_restart, 0.5)),
            ms(*apply_after_restart.last().unwrap())
        );
    }
    if !arrive.is_empty() {
        println!(
            "put to that line's arrival in Kafka: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            ms(percentile(&arrive, 0.5)),
            ms(percentile(&arrive, 0.99)),
            ms(*arrive.last().unwrap())
        );
    }
    println!("lines: {total} written, {} distinct in Kafka, {lost} lost, {repeated} repeated", count.len());
    assert!(caught_up && lost == 0, "{lost} lines lost, e.g. {lost_at:?}");
    assert_eq!(repeated, 0, "lines repeated");
    assert!(never.is_empty(), "changes that never applied: {never:?}");
    // The target is 1 s for every change (the closing note of issue 17 has
    // the figures measured); the bounds here leave room for a loaded
    // machine. A file moving to another topic waits for its old reader's
    // lines in flight to be acknowledged, so it takes as long as Kafka's
    // delivery then; a change made while the agents reconnect to a
    // restarted etcd waits for their next attempt (0.2 s doubling to 5 s).
    assert!(percentile(&apply, 0.5) <= Duration::from_millis(500), "median apply time over 500 ms");
    assert!(
        apply.iter().chain(&apply_after_restart).all(|d| *d <= Duration::from_secs(10)),
        "a change took more than 10 s to apply"
    );
    for a in agents.iter_mut() {
        assert!(a.is_running(), "an agent exited: {}", a.log_text());
    }

    // Idle: what watching costs an agent and etcd, with no lines and no changes.
    let window = Duration::from_secs(20);
    let sample = |agents: &[Agent], etcd: &Etcd| {
        let a: Vec<(f64, u64)> = agents.iter().map(|a| cpu_and_rss(a.pid())).collect();
        (a, cpu_and_rss(etcd.pid().unwrap()))
    };
    thread::sleep(Duration::from_secs(2));
    let (a0, e0) = sample(&agents, &etcd);
    thread::sleep(window);
    let (a1, e1) = sample(&agents, &etcd);
    let per_hour = |c0: f64, c1: f64| (c1 - c0) * 3600.0 / window.as_secs_f64();
    let mut agent_cpu: Vec<f64> = a0.iter().zip(&a1).map(|(x, y)| per_hour(x.0, y.0)).collect();
    agent_cpu.sort_by(f64::total_cmp);
    let mut agent_rss: Vec<u64> = a1.iter().map(|x| x.1).collect();
    agent_rss.sort();
    println!(
        "idle agent (watching its key, {} files quiet), over {} s: CPU {:.1} s/hour median (max {:.1}), RSS {:.1} MB median (max {:.1})",
        FILES,
        window.as_secs(),
        agent_cpu[AGENTS / 2],
        agent_cpu[AGENTS - 1],
        agent_rss[AGENTS / 2] as f64 / 1e6,
        agent_rss[AGENTS - 1] as f64 / 1e6
    );
    println!(
        "etcd with {} keys and {AGENTS} watches: CPU {:.1} s/hour, RSS {:.1} MB",
        OTHER_HOSTS + AGENTS,
        per_hour(e0.0, e1.0),
        e1.1 as f64 / 1e6
    );
    let held: Vec<TcpStream> =
        others.iter().map(|h| open_watch(&ep, &format!("/logagent/{h}/collect_config"))).collect();
    let (_, e2) = sample(&agents, &etcd);
    thread::sleep(window);
    let (_, e3) = sample(&agents, &etcd);
    println!(
        "etcd with {} keys and {} watches: CPU {:.1} s/hour, RSS {:.1} MB",
        OTHER_HOSTS + AGENTS,
        AGENTS + held.len(),
        per_hour(e2.0, e3.0),
        e3.1 as f64 / 1e6
    );
    drop(held);

    stop_reading.store(true, Ordering::Relaxed);
    reading.join().unwrap();
    for a in agents.iter_mut() {
        let (code, _) = a.terminate();
        assert_eq!(code, Some(0), "{}", a.log_text());
    }
}
