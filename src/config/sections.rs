//! One function per config.ini section: its keys, each named once
//! ([`keys!`]), into its validated settings. Each returns the first
//! problem, naming `section.key`; [`super::Config::from_ini_str`] calls them
//! all and checks for unknown keys before it returns any of their errors.

use super::raw::{keys, Key, Sections};
use super::{
    check_topic, err, split_list, AgentConfig, AllowedPaths, CollectEntry, ConfigError, DeadLetter, EsConfig,
    EtcdConfig, HostMetricsConfig, HttpSection, IndexPattern, IndexSection, KafkaConfig, LogConfig, Secret,
    DEFAULT_CHAN_MAX_SIZE, DEFAULT_COLLECT_LOG_KEY, DEFAULT_ETCD_TIMEOUT_SECS, DEFAULT_HTTP_LISTEN,
    MAX_LINE_BYTES_LIMIT,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[kafka]` with its pass-through `[kafka.producer]` and `[kafka.consumer]`
/// (`None` without an address), and `chan_max_size`, which `[kafka]` holds
/// for the seed's sake although every mode uses it.
pub(super) fn kafka(s: &Sections<'_>) -> Result<(Option<KafkaConfig>, usize), ConfigError> {
    keys!(s, "kafka", address, chan_max_size, topic, group_id);
    let (producer, consumer) = (s.open("kafka.producer"), s.open("kafka.consumer"));
    let chan_max_size = chan_max_size.num(DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?;
    let topics = topic.list();
    for t in &topics {
        check_topic(t).map_err(|m| topic.err(m))?;
    }
    let brokers = address.list();
    let kafka = (!brokers.is_empty()).then(|| KafkaConfig {
        brokers,
        topics,
        group_id: group_id.str().unwrap_or("logtransfer").to_string(),
        producer,
        consumer,
    });
    Ok((kafka, chan_max_size))
}

/// `[etcd]`; `None` without an address.
pub(super) fn etcd(s: &Sections<'_>) -> Result<Option<EtcdConfig>, ConfigError> {
    keys!(s, "etcd" as all, address, timeout, collect_log_key, username, password, ca_file, cert_file, key_file);
    let endpoints = address.list();
    if endpoints.is_empty() {
        // Settings for an etcd that is not there are a mistake (a
        // commented-out address), not something to ignore. The first in
        // key order is named, as the file's section is read sorted.
        if let Some(k) = all.iter().filter(|k| k.str().is_some()).min_by_key(|k| k.name) {
            return Err(k.err("set, but [etcd] address is not: set the address too, or neither"));
        }
        return Ok(None);
    }
    let key = collect_log_key.str().unwrap_or(DEFAULT_COLLECT_LOG_KEY).to_string();
    if key.matches("%s").count() != 1 {
        return Err(collect_log_key.err(format!("{key:?} must contain %s exactly once (the host IP)")));
    }
    let (username, password) = both_or_neither(username, password, "")?;
    let (cert_file, key_file) = both_or_neither(cert_file, key_file, " (the client certificate)")?;
    Ok(Some(EtcdConfig {
        endpoints,
        timeout_secs: timeout.num(DEFAULT_ETCD_TIMEOUT_SECS, 1, 3600)?,
        collect_log_key: key,
        username,
        password: password.map(Secret::new),
        ca_file: ca_file.opt().map(PathBuf::from),
        cert_file: cert_file.map(PathBuf::from),
        key_file: key_file.map(PathBuf::from),
    }))
}

/// Two keys that are set both or neither; the error names the first.
fn both_or_neither(a: Key<'_>, b: Key<'_>, why: &str) -> Result<(Option<String>, Option<String>), ConfigError> {
    let (x, y) = (a.opt(), b.opt());
    if x.is_some() != y.is_some() {
        return Err(a.err(format!("{} and {} go together{why}", a.name, b.name)));
    }
    Ok((x, y))
}

/// `[agent]`: the readers' settings, used by every mode that reads files.
pub(super) fn agent(s: &Sections<'_>) -> Result<AgentConfig, ConfigError> {
    keys!(
        s,
        "agent",
        data_dir,
        host,
        read_from,
        max_line_bytes,
        long_lines,
        partial_line_flush_ms,
        scan_interval_ms,
        rotate_wait_ms,
        poll_max_ms,
        checkpoint_interval_ms,
        shutdown_timeout_ms,
        read_chunk_bytes,
        follow_symlinks,
        allowed_paths,
        max_open_files,
        close_inactive_ms,
    );
    let d = AgentConfig::default();
    Ok(AgentConfig {
        data_dir: data_dir.str().map_or(d.data_dir, PathBuf::from),
        host: host.opt(),
        read_from: read_from.parse(d.read_from)?,
        long_lines: long_lines.parse(d.long_lines)?,
        max_line_bytes: max_line_bytes.num(d.max_line_bytes, 1, MAX_LINE_BYTES_LIMIT)?,
        partial_line_flush_ms: partial_line_flush_ms.num(d.partial_line_flush_ms, 0, u64::MAX >> 2)?,
        scan_interval_ms: scan_interval_ms.num(d.scan_interval_ms, 10, 3_600_000)?,
        rotate_wait_ms: rotate_wait_ms.num(d.rotate_wait_ms, 0, 3_600_000)?,
        poll_max_ms: poll_max_ms.num(d.poll_max_ms, 1, 60_000)?,
        checkpoint_interval_ms: checkpoint_interval_ms.num(d.checkpoint_interval_ms, 10, 3_600_000)?,
        shutdown_timeout_ms: shutdown_timeout_ms.num(d.shutdown_timeout_ms, 0, 3_600_000)?,
        read_chunk_bytes: read_chunk_bytes.num(d.read_chunk_bytes, 16 << 10, 64 << 20)?,
        follow_symlinks: follow_symlinks.flag(d.follow_symlinks)?,
        allowed_paths: AllowedPaths::new(&allowed_paths.list()).map_err(|m| allowed_paths.err(m))?,
        max_open_files: max_open_files.num(d.max_open_files, 0, 1 << 20)?,
        close_inactive_ms: close_inactive_ms.num(d.close_inactive_ms, 0, 30 * 86_400_000)?,
    })
}

/// `[collect]`: `topic = path; path`, the static collect list.
pub(super) fn collect(s: &Sections<'_>) -> Result<Vec<CollectEntry>, ConfigError> {
    let mut collect = Vec::new();
    for (topic, paths) in s.open("collect") {
        let key = || format!("collect.{topic}");
        check_topic(&topic).map_err(|m| err(key(), m))?;
        for path in split_list(&paths) {
            if let Err(e) = glob::Pattern::new(&path) {
                return Err(err(key(), format!("bad glob {path:?}: {e}")));
            }
            collect.push(CollectEntry::new(path, topic.clone()));
        }
    }
    Ok(collect)
}

/// `[es]`; `None` without an address. Whether `[kafka]` has an address and
/// `[agent] data_dir` decide where dead letters go by default.
pub(super) fn es(s: &Sections<'_>, has_kafka: bool, data_dir: &Path) -> Result<Option<EsConfig>, ConfigError> {
    keys!(
        s,
        "es",
        address,
        workers,
        chan_max_size,
        index,
        bulk_max_bytes,
        bulk_max_docs,
        bulk_max_wait_ms,
        username,
        password,
        api_key,
        ca_file,
        dead_letter,
        dead_letter_path,
        parse_json,
        retry_max_backoff_ms,
        manage_template,
    );
    let nodes = address.list();
    if nodes.is_empty() {
        return Ok(None);
    }
    let nodes = nodes
        .into_iter()
        .map(|n| if n.contains("://") { n } else { format!("http://{n}") })
        .map(|n| n.trim_end_matches('/').to_string())
        .collect();
    let index = IndexPattern::parse(index.str().unwrap_or("{topic}")).map_err(|e| index.err(e.to_string()))?;
    let dead_letter = dead_letters(dead_letter, dead_letter_path, has_kafka, data_dir)?;
    let (username, password) = both_or_neither(username, password, "")?;
    Ok(Some(EsConfig {
        nodes,
        workers: workers.num(4, 1, 256)?,
        chan_max_size: chan_max_size.num(DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?,
        index,
        bulk_max_bytes: bulk_max_bytes.num(5 << 20, 1 << 10, 100 << 20)?,
        bulk_max_docs: bulk_max_docs.num(5000, 1, 1_000_000)?,
        bulk_max_wait_ms: bulk_max_wait_ms.num(200, 0, 3_600_000)?,
        username,
        password: password.map(Secret::new),
        api_key: api_key.opt().map(Secret::new),
        ca_file: ca_file.opt().map(PathBuf::from),
        dead_letter,
        parse_json: parse_json.list(),
        retry_max_backoff_ms: retry_max_backoff_ms.num(30_000, 10, 3_600_000)?,
        manage_template: manage_template.flag(true)?,
    }))
}

/// `[es] dead_letter` and `dead_letter_path`. Without Kafka (one host
/// writing straight to Elasticsearch) the default is a file.
fn dead_letters(kind: Key<'_>, path: Key<'_>, has_kafka: bool, data_dir: &Path) -> Result<DeadLetter, ConfigError> {
    match kind.str().unwrap_or(if has_kafka { "kafka" } else { "file" }) {
        "kafka" if !has_kafka => Err(kind.err("kafka needs a [kafka] address; use dead_letter = file")),
        "kafka" => Ok(DeadLetter::Kafka),
        "file" => Ok(DeadLetter::File(path.str().map_or_else(|| data_dir.join("dead_letter.ndjson"), PathBuf::from))),
        other => Err(kind.err(format!("{other:?} is not one of: kafka, file"))),
    }
}

/// `[log]`.
pub(super) fn log(s: &Sections<'_>) -> LogConfig {
    keys!(s, "log", level);
    LogConfig { level: level.str().unwrap_or("info").to_string() }
}

/// `[index]`: the embedded index.
pub(super) fn index(s: &Sections<'_>) -> Result<IndexSection, ConfigError> {
    keys!(
        s,
        "index",
        retention_days,
        retention_bytes,
        retention_check_ms,
        commit_interval_ms,
        writer_threads,
        writer_memory_bytes,
    );
    let d = IndexSection::default();
    let index = IndexSection {
        retention_days: retention_days.num(d.retention_days, 0, 365_000)?,
        retention_bytes: retention_bytes.bytes(d.retention_bytes)?,
        retention_check_ms: retention_check_ms.num(d.retention_check_ms, 100, 86_400_000)?,
        commit_interval_ms: commit_interval_ms.num(d.commit_interval_ms, 10, 3_600_000)?,
        writer_threads: writer_threads.num(d.writer_threads, 1, 64)?,
        writer_memory_bytes: writer_memory_bytes.bytes(d.writer_memory_bytes as u64)?.try_into().unwrap_or(usize::MAX),
    };
    if index.writer_memory_bytes < 16 << 20 {
        return Err(writer_memory_bytes.err(format!("{} is below the 16MiB tantivy needs", index.writer_memory_bytes)));
    }
    Ok(index)
}

/// `[http]`.
pub(super) fn http(s: &Sections<'_>) -> Result<HttpSection, ConfigError> {
    keys!(
        s,
        "http",
        listen,
        users,
        users_file,
        tokens,
        tokens_file,
        auth_health,
        insecure,
        header_timeout_ms,
        idle_timeout_ms,
        request_timeout_ms,
        max_connections,
        tls_cert,
        tls_key,
        allowed_hosts,
        max_searches,
        max_live,
        message_max_bytes
    );
    let d = HttpSection::default();
    let addr: Option<std::net::SocketAddr> = match listen.str().unwrap_or(DEFAULT_HTTP_LISTEN) {
        "off" => None,
        v => Some(v.parse().map_err(|_| listen.err(format!("{v:?} is not an address like 127.0.0.1:8080 (or off)")))?),
    };
    let mut user_list = Vec::new();
    let mut add_user = |key: &Key<'_>, entry: &str| -> Result<(), ConfigError> {
        let (name, phc) = entry.split_once(':').ok_or_else(|| key.err("an entry is not name:<argon2id PHC string>"))?;
        let (name, phc) = (name.trim(), phc.trim());
        if name.is_empty() {
            return Err(key.err("an entry has an empty user name"));
        }
        match argon2::PasswordHash::new(phc) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => {}
            _ => {
                return Err(key.err(format!(
                "user {name:?}: not an argon2id PHC string ($argon2id$...; make one with `logcollect hash-password`)"
            )))
            }
        }
        user_list.push((name.to_string(), phc.to_string()));
        Ok(())
    };
    for entry in users.list() {
        add_user(&users, &entry)?;
    }
    for line in private_lines(&users_file)? {
        add_user(&users_file, &line)?;
    }
    let mut token_list = Vec::new();
    let mut add_token = |key: &Key<'_>, hex: &str| -> Result<(), ConfigError> {
        token_list
            .push(sha256_hex(hex).ok_or_else(|| key.err("an entry is not 64 hex digits (the SHA-256 of a token)"))?);
        Ok(())
    };
    for t in tokens.list() {
        add_token(&tokens, &t)?;
    }
    for line in private_lines(&tokens_file)? {
        add_token(&tokens_file, &line)?;
    }
    let (cert, key) = both_or_neither(tls_cert, tls_key, " (the server's certificate)")?;
    let ms = |k: &Key<'_>, default: std::time::Duration| -> Result<std::time::Duration, ConfigError> {
        Ok(Duration::from_millis(k.num(default.as_millis() as u64, 100, 86_400_000)?))
    };
    let section = HttpSection {
        listen: addr,
        users: user_list,
        tokens: token_list,
        auth_health: auth_health.flag(false)?,
        insecure: insecure.flag(false)?,
        header_timeout: ms(&header_timeout_ms, d.header_timeout)?,
        idle_timeout: ms(&idle_timeout_ms, d.idle_timeout)?,
        request_timeout: ms(&request_timeout_ms, d.request_timeout)?,
        max_connections: max_connections.num(d.max_connections, 1, 1 << 20)?,
        tls: cert.zip(key).map(|(c, k)| (PathBuf::from(c), PathBuf::from(k))),
        allowed_hosts: allowed_hosts.list(),
        max_searches: max_searches.num(d.max_searches, 1, 1024)?,
        max_live: max_live.num(d.max_live, 1, 1 << 16)?,
        message_max_bytes: message_max_bytes.bytes(d.message_max_bytes as u64)?.clamp(1024, 1 << 30) as usize,
    };
    if let Some(a) = addr {
        if !a.ip().is_loopback() && !section.has_auth() && !section.insecure {
            return Err(listen.err(format!(
                "{a} is not a loopback address and no authentication is configured: set [http] users or tokens \
                 (or insecure = true to serve everyone who can reach it)"
            )));
        }
    }
    Ok(section)
}

/// The non-empty, non-comment lines of the file a `*_file` key names;
/// refused when its group or others may read it.
fn private_lines(key: &Key<'_>) -> Result<Vec<String>, ConfigError> {
    let Some(path) = key.opt() else { return Ok(Vec::new()) };
    let path = Path::new(&path);
    let text = std::fs::read_to_string(path).map_err(|e| key.err(format!("{}: {e}", path.display())))?;
    if let Some(mode) = Secret::loose_mode(path) {
        return Err(key.err(format!("{}: mode {mode:o} lets others read it; chmod 600 it", path.display())));
    }
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

/// 64 hex digits to 32 bytes.
fn sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// `[metrics]`: host metrics; `None` unless enabled.
pub(super) fn metrics(s: &Sections<'_>) -> Result<Option<HostMetricsConfig>, ConfigError> {
    keys!(s, "metrics" as all, interval_ms, topic, enabled);
    // A [metrics] section with settings means host metrics are wanted.
    let has_settings = all.iter().any(|k| k.str().is_some());
    if !enabled.flag(has_settings)? {
        return Ok(None);
    }
    let name = topic.opt();
    if let Some(t) = &name {
        check_topic(t).map_err(|m| topic.err(m))?;
    }
    Ok(Some(HostMetricsConfig {
        interval: Duration::from_millis(interval_ms.num(10_000, 100, 86_400_000)?),
        topic: name,
    }))
}
