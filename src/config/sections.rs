//! One function per config.ini section: its keys, each named once
//! ([`keys!`]), into its validated settings. Each returns the first
//! problem, naming `section.key`; [`super::Config::from_ini_str`] calls them
//! all and checks for unknown keys before it returns any of their errors.

use super::index_pattern::INDEX_FORBIDDEN;
use super::raw::{keys, Key, Sections};
use super::{
    check_topic, err, split_list, AgentConfig, AllowedPaths, CollectEntry, ConfigError, DeadLetter, EsAuth, EsConfig,
    EtcdConfig, HostMetricsConfig, HttpSection, IndexPattern, IndexSection, KafkaConfig, KafkaSecurity, LogConfig,
    Secret, SecurityProtocol, DEFAULT_CHAN_MAX_SIZE, DEFAULT_COLLECT_LOG_KEY, DEFAULT_ETCD_TIMEOUT_SECS,
    DEFAULT_HTTP_LISTEN, MAX_LINE_BYTES_LIMIT,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[kafka]` with its pass-through `[kafka.producer]` and `[kafka.consumer]`
/// (`None` without an address), and `chan_max_size`, which `[kafka]` holds
/// for the seed's sake although every mode uses it.
pub(super) fn kafka(s: &Sections<'_>) -> Result<(Option<KafkaConfig>, usize), ConfigError> {
    keys!(
        s,
        "kafka",
        address,
        chan_max_size,
        topic,
        group_id,
        security_protocol,
        sasl_mechanism,
        sasl_username,
        sasl_password,
        sasl_password_file,
        ssl_ca_file,
        ssl_cert_file,
        ssl_key_file,
        ssl_key_password,
        ssl_key_password_file,
    );
    let (producer, consumer) = (s.open("kafka.producer"), s.open("kafka.consumer"));
    let chan_max_size = chan_max_size.num(DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?;
    let topics = topic.list();
    for t in &topics {
        check_topic(t).map_err(|m| topic.err(m))?;
    }
    let brokers = address.list();
    let security = KafkaSecurityKeys {
        protocol: security_protocol,
        mechanism: sasl_mechanism,
        username: sasl_username,
        password: sasl_password,
        password_file: sasl_password_file,
        ca_file: ssl_ca_file,
        cert_file: ssl_cert_file,
        key_file: ssl_key_file,
        key_password: ssl_key_password,
        key_password_file: ssl_key_password_file,
    }
    .validate()?;
    let kafka = (!brokers.is_empty()).then(|| KafkaConfig {
        brokers,
        topics,
        group_id: group_id.str().unwrap_or("logtransfer").to_string(),
        producer,
        consumer,
        security,
    });
    Ok((kafka, chan_max_size))
}

/// The `[kafka]` TLS and SASL keys, before validation.
struct KafkaSecurityKeys<'a> {
    protocol: Key<'a>,
    mechanism: Key<'a>,
    username: Key<'a>,
    password: Key<'a>,
    password_file: Key<'a>,
    ca_file: Key<'a>,
    cert_file: Key<'a>,
    key_file: Key<'a>,
    key_password: Key<'a>,
    key_password_file: Key<'a>,
}

impl KafkaSecurityKeys<'_> {
    fn validate(self) -> Result<KafkaSecurity, ConfigError> {
        let protocol = match self.protocol.str().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("plaintext") => Some(SecurityProtocol::Plaintext),
            Some("ssl") => Some(SecurityProtocol::Ssl),
            Some("sasl_plaintext") => Some(SecurityProtocol::SaslPlaintext),
            Some("sasl_ssl") => Some(SecurityProtocol::SaslSsl),
            Some(other) => {
                return Err(self
                    .protocol
                    .err(format!("{other:?} is not one of: plaintext, ssl, sasl_plaintext, sasl_ssl")))
            }
        };
        let sasl = protocol.is_some_and(SecurityProtocol::sasl);
        let mechanism = match self.mechanism.str().map(str::to_ascii_uppercase) {
            None => None,
            Some(m) if ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) => Some(m),
            Some(m) => {
                return Err(self.mechanism.err(format!("{m:?} is not one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")))
            }
        };
        let password = secret_or_file(&self.password, &self.password_file)?;
        let key_password = secret_or_file(&self.key_password, &self.key_password_file)?;
        let username = self.username.opt();
        if sasl {
            if mechanism.is_none() {
                return Err(self.mechanism.err("security_protocol is SASL: set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"));
            }
            if username.is_none() {
                return Err(self.username.err("security_protocol is SASL: set the user name"));
            }
            if password.is_none() {
                return Err(self.password.err("security_protocol is SASL: set sasl_password or sasl_password_file"));
            }
        } else if let Some(k) = [&self.mechanism, &self.username, &self.password, &self.password_file]
            .into_iter()
            .find(|k| k.str().is_some())
        {
            return Err(k.err("set, but security_protocol is not sasl_plaintext or sasl_ssl"));
        }
        let tls = protocol.is_some_and(SecurityProtocol::tls);
        if !tls {
            if let Some(k) =
                [&self.ca_file, &self.cert_file, &self.key_file, &self.key_password, &self.key_password_file]
                    .into_iter()
                    .find(|k| k.str().is_some())
            {
                return Err(k.err("set, but security_protocol is not ssl or sasl_ssl"));
            }
        }
        let (cert_file, key_file) = both_or_neither(self.cert_file, self.key_file, " (the client certificate)")?;
        if key_password.is_some() && key_file.is_none() {
            return Err(self.key_password.err("set, but ssl_key_file is not"));
        }
        Ok(KafkaSecurity {
            protocol,
            sasl_mechanism: mechanism,
            sasl_username: username,
            sasl_password: password,
            ssl_ca_file: readable(&self.ca_file)?,
            ssl_cert_file: cert_file.map(|_| readable(&self.cert_file)).transpose()?.flatten(),
            ssl_key_file: key_file.map(|_| readable(&self.key_file)).transpose()?.flatten(),
            ssl_key_password: key_password,
        })
    }
}

/// `value` or the first line of `file` (not both); `None` when neither.
fn secret_or_file(value: &Key<'_>, file: &Key<'_>) -> Result<Option<Secret>, ConfigError> {
    match (value.opt(), file.opt()) {
        (Some(_), Some(_)) => Err(value.err(format!("set {} or {}, not both", value.name, file.name))),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(p)) => {
            let path = PathBuf::from(p);
            let key = format!("kafka.{}", file.name);
            if let Some(mode) = Secret::loose_mode(&path) {
                tracing::warn!("{key}: {} has mode {mode:o}: others may read the password", path.display());
            }
            Secret::from_file(&key, &path).map(Some)
        }
        (None, None) => Ok(None),
    }
}

/// The path in `key`, once it opens for reading as a regular file.
fn readable(key: &Key<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(p) = key.opt() else { return Ok(None) };
    let path = PathBuf::from(p);
    let file = std::fs::File::open(&path).map_err(|e| key.err(format!("{}: {e}", path.display())))?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(Some(path)),
        Ok(_) => Err(key.err(format!("{}: not a regular file", path.display()))),
        Err(e) => Err(key.err(format!("{}: {e}", path.display()))),
    }
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
        password_file,
        api_key,
        api_key_file,
        search_username,
        search_password,
        search_password_file,
        search_api_key,
        search_api_key_file,
        search_index,
        ca_file,
        cert_file,
        key_file,
        dead_letter,
        dead_letter_path,
        dead_letter_max_bytes,
        parse_json,
        retry_max_backoff_ms,
        manage_template,
        retention_days,
        retention_check_ms,
    );
    let nodes = address.list();
    if nodes.is_empty() {
        return Ok(None);
    }
    let nodes = nodes
        .into_iter()
        .map(|n| if n.contains("://") { n } else { format!("http://{n}") })
        .map(|n| n.trim_end_matches('/').to_string())
        .collect::<Vec<_>>();
    for n in &nodes {
        check_node(n).map_err(|m| address.err(m))?;
    }
    let index = IndexPattern::parse(index.str().unwrap_or("{topic}")).map_err(|e| index.err(e.to_string()))?;
    let retention = retention_days.num(0, 0, 1_000_000)?;
    if retention > 0 && !index.parts().contains(&crate::config::index_pattern::Part::Year) {
        return Err(retention_days.err(format!(
            "deletes dated indices, but es.index = {} has no %Y (try {{topic}}-%Y.%m.%d)",
            index.as_str()
        )));
    }
    let dead_letter = dead_letters(dead_letter, dead_letter_path, has_kafka, data_dir)?;
    let mut secret_files = Vec::new();
    let auth = es_auth([username, password, password_file, api_key, api_key_file], &mut secret_files)?;
    let search_auth = es_auth(
        [search_username, search_password, search_password_file, search_api_key, search_api_key_file],
        &mut secret_files,
    )?;
    let search_auth = search_auth.is_set().then_some(search_auth);
    let (cert_file, key_file) = both_or_neither(cert_file, key_file, " (the client certificate)")?;
    let search_indices = search_index.list();
    for i in &search_indices {
        check_search_index(i).map_err(|m| search_index.err(m))?;
    }
    Ok(Some(EsConfig {
        nodes,
        workers: workers.num(4, 1, 256)?,
        chan_max_size: chan_max_size.num(DEFAULT_CHAN_MAX_SIZE, 1, usize::MAX >> 8)?,
        index,
        bulk_max_bytes: bulk_max_bytes.num(5 << 20, 1 << 10, 100 << 20)?,
        bulk_max_docs: bulk_max_docs.num(5000, 1, 1_000_000)?,
        bulk_max_wait_ms: bulk_max_wait_ms.num(200, 0, 3_600_000)?,
        auth,
        search_auth,
        ca_file: ca_file.opt().map(PathBuf::from),
        cert_file: cert_file.map(PathBuf::from),
        key_file: key_file.map(PathBuf::from),
        search_index: search_indices,
        secret_files,
        dead_letter,
        dead_letter_max_bytes: dead_letter_max_bytes.bytes(256 << 20)?.max(1 << 10),
        parse_json: parse_json.list(),
        retry_max_backoff_ms: retry_max_backoff_ms.num(30_000, 10, 3_600_000)?,
        manage_template: manage_template.flag(true)?,
        retention_days: retention,
        retention_check_ms: retention_check_ms.num(3_600_000, 1_000, 7 * 86_400_000)?,
    }))
}

/// A node URL (`scheme://host:port[/path]`): http or https, and no userinfo.
/// The message never repeats what stands before an `@`, as it may be a
/// password.
fn check_node(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((_, host)) = authority.rsplit_once('@') {
        return Err(format!(
            "the node {scheme}://{host} has credentials in its URL (user:password@); \
             they would be logged and shown in errors: use es.username with es.password_file, or es.api_key_file"
        ));
    }
    if scheme != "http" && scheme != "https" {
        return Err(format!("{scheme:?} is not http or https (node {scheme}://{authority})"));
    }
    if authority.is_empty() {
        return Err("a node has no host".into());
    }
    Ok(())
}

/// One set of Elasticsearch credentials from its five keys, in this order:
/// `username`, `password`, `password_file`, `api_key`, `api_key_file`
/// (or their `search_` twins). Basic auth or an API key, not both; a
/// secret inline or in a file, not both. Files read are added to `files`.
fn es_auth(k: [Key<'_>; 5], files: &mut Vec<(String, PathBuf)>) -> Result<EsAuth, ConfigError> {
    let [username, password, password_file, api_key, api_key_file] = k;
    let (password_key, api_key_key) = (password, api_key);
    let password = secret(password, password_file, files)?;
    let api_key = secret(api_key, api_key_file, files)?;
    match (username.opt(), password, api_key) {
        (Some(_), _, Some(_)) => {
            Err(username
                .err(format!("set {} (basic auth) or {} (an API key), not both", username.name, api_key_key.name)))
        }
        (None, Some(_), _) => Err(username.err(format!("{} goes with a password; set it too", username.name))),
        (Some(_), None, None) => {
            Err(username.err(format!("{} needs {} or {}", username.name, password_key.name, password_file.name)))
        }
        (Some(username), Some(password), None) => Ok(EsAuth::Basic { username, password }),
        (None, None, Some(key)) => Ok(EsAuth::ApiKey(key)),
        (None, None, None) => Ok(EsAuth::None),
    }
}

/// A secret given inline (`value`) or in a file (`file`), not both.
fn secret(value: Key<'_>, file: Key<'_>, files: &mut Vec<(String, PathBuf)>) -> Result<Option<Secret>, ConfigError> {
    match (value.str(), file.str()) {
        (Some(_), Some(_)) => Err(value.err(format!("set {} or {}, not both", value.name, file.name))),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => {
            let key = file.full_name();
            let s = Secret::from_file(&key, Path::new(path))?;
            files.push((key, PathBuf::from(path)));
            Ok(Some(s))
        }
        (None, None) => Ok(None),
    }
}

/// One `[es] search_index` entry: an index name or pattern that searches
/// only logcollect's indices, so not `*` alone, nor hidden or system ones.
fn check_search_index(i: &str) -> Result<(), String> {
    if i.chars().all(|c| c == '*') {
        return Err(format!("{i:?} would search every index; name logcollect's (e.g. app-*)"));
    }
    if i.starts_with(['-', '_', '+', '.']) {
        return Err(format!("{i:?}: cannot start with '-', '_', '+' or '.' (exclusions, hidden and system indices)"));
    }
    if let Some(c) =
        i.chars().find(|&c| c != '*' && (c.is_uppercase() || c.is_control() || INDEX_FORBIDDEN.contains(&c)))
    {
        return Err(format!("{i:?}: {c:?} is not allowed in an index name"));
    }
    Ok(())
}

/// `[es] dead_letter` and `dead_letter_path`. Without Kafka (one host
/// writing straight to Elasticsearch) the default is a file.
fn dead_letters(kind: Key<'_>, path: Key<'_>, has_kafka: bool, data_dir: &Path) -> Result<DeadLetter, ConfigError> {
    let file = path.str().map_or_else(|| data_dir.join("dead_letter.ndjson"), PathBuf::from);
    match kind.str().unwrap_or(if has_kafka { "kafka" } else { "file" }) {
        "kafka" if !has_kafka => Err(kind.err("kafka needs a [kafka] address; use dead_letter = file")),
        "kafka" => Ok(DeadLetter::Kafka(file)),
        "file" => Ok(DeadLetter::File(file)),
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
    // `;` only: PHC strings hold commas (`m=19456,t=2,p=1`).
    for entry in users.str().unwrap_or("").split(';').map(str::trim).filter(|e| !e.is_empty()) {
        add_user(&users, entry)?;
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
