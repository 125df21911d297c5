//! The whole file's validation: every section's keys, values and errors.

use super::*;

const SEED: &str = r#"
[kafka]
address = 127.0.0.1:9092        ; brokers, ';' separated (the seed's key)
chan_max_size = 100000          ; channel capacity in lines (the seed's key)
[kafka.producer]                ; any librdkafka producer property, passed as-is
compression.type = lz4
[kafka.consumer]                ; any librdkafka consumer property (used by the transfer)
[etcd]
address = 127.0.0.1:2379        ; used once the etcd issue lands
timeout = 5
collect_log_key = /logagent/%s/collect_config
[agent]
data_dir = ./data
host =                          ; empty: detect the outbound IP as the seed does
read_from = end                 ; or beginning
max_line_bytes = 983040
[collect]                       ; static collect list, used when no etcd is configured
web_log = ./logs/*.log          ; topic = path or glob, several separated by ';'
"#;

#[test]
fn the_seed_layout_parses() {
    let c = Config::from_ini_str(SEED).unwrap();
    let k = c.kafka.unwrap();
    assert_eq!(k.brokers, vec!["127.0.0.1:9092"]);
    assert_eq!(k.producer, vec![("compression.type".to_string(), "lz4".to_string())]);
    assert!(k.consumer.is_empty());
    assert_eq!(c.chan_max_size, 100_000);
    assert_eq!(c.agent.host, None);
    assert_eq!(c.agent.read_from, ReadFrom::End);
    assert_eq!(c.agent.max_line_bytes, 960 << 10);
    assert_eq!(c.collect, vec![CollectEntry::new("./logs/*.log", "web_log")]);
    let e = c.etcd.unwrap();
    assert_eq!(e.endpoints, vec!["127.0.0.1:2379"]);
    assert_eq!(e.timeout_secs, 5);
}

#[test]
fn empty_config_means_single_host_defaults() {
    let c = Config::from_ini_str("").unwrap();
    assert!(c.kafka.is_none() && c.etcd.is_none() && c.collect.is_empty());
    assert_eq!(c.agent.data_dir, PathBuf::from("./data"));
    // What other modules take as the defaults is what an empty file gives.
    assert_eq!((c.agent, c.index), (AgentConfig::default(), IndexSection::default()));
}

#[test]
fn es_section() {
    let c = Config::from_ini_str(
        "[kafka]\naddress = k:1\n[es]\naddress = 127.0.0.1:9200; https://b:9200/\nindex = {topic}-%Y.%m.%d\n",
    )
    .unwrap();
    let es = c.es.unwrap();
    assert_eq!(es.nodes, vec!["http://127.0.0.1:9200", "https://b:9200"]);
    assert_eq!((es.workers, es.bulk_max_docs, es.bulk_max_bytes), (4, 5000, 5 << 20));
    assert!(matches!(es.dead_letter, DeadLetter::Kafka(_)));
    // Without Kafka the dead letter is a file under data_dir.
    let es = Config::from_ini_str("[es]\naddress = e:9200\n").unwrap().es.unwrap();
    assert_eq!(es.dead_letter, DeadLetter::File(PathBuf::from("./data/dead_letter.ndjson")));
    let e = Config::from_ini_str("[es]\naddress = e:9200\ndead_letter = kafka\n").unwrap_err();
    assert_eq!(e.key, "es.dead_letter");
    assert!(es.manage_template);
    assert_eq!((es.retention_days, es.retention_check_ms), (0, 3_600_000));
    let e = Config::from_ini_str("[es]\naddress = x\nretention_days = 7\n").unwrap_err();
    assert_eq!(e.key, "es.retention_days");
    assert!(e.message.contains("es.index = {topic} has no %Y"), "{e}");
    let dated = Config::from_ini_str("[es]\naddress = x\nindex = {topic}-%Y.%m.%d\nretention_days = 7\n").unwrap();
    assert_eq!(dated.es.unwrap().retention_days, 7);
    let e = Config::from_ini_str("[es]\naddress = x\nmanage_template = maybe\n").unwrap_err();
    assert_eq!((e.key.as_str(), e.message.as_str()), ("es.manage_template", "\"maybe\" is not one of: true, false"));
    let e = Config::from_ini_str("[es]\naddress = x\nindex = Bad*Name\n").unwrap_err();
    assert_eq!(e.key, "es.index");
    let e = Config::from_ini_str("[es]\naddress = x\nusername = u\n").unwrap_err();
    assert_eq!(e.key, "es.username");
}

#[test]
fn es_credentials_and_tls() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ini = format!(
        "[es]\naddress = https://a:9200; http://b:9200\nusername = w\npassword_file = {}\n\
         search_api_key = c2VhcmNo\nca_file = /ca.pem\ncert_file = /c.pem\nkey_file = /k.pem\n\
         search_index = app-*, web-*\n",
        pw.display()
    );
    let es = Config::from_ini_str(&ini).unwrap().es.unwrap();
    assert_eq!(es.auth, EsAuth::Basic { username: "w".into(), password: Secret::new("s3cret") });
    assert_eq!(es.search_auth, Some(EsAuth::ApiKey(Secret::new("c2VhcmNo"))));
    assert_eq!(es.search_index, vec!["app-*", "web-*"]);
    assert_eq!(es.cert_file.as_deref(), Some(Path::new("/c.pem")));
    let w = es.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with("es.address:") && w[0].contains("http://b:9200"), "{w:?}");
    assert!(w[1].starts_with("es.password_file:") && w[1].contains("644"), "{w:?}");
    assert!(!format!("{es:?}").contains("s3cret"), "Debug hides the password");
    // Search credentials default to the write ones; no credentials, no http warning.
    let es = Config::from_ini_str("[es]\naddress = e:9200\napi_key = k\n").unwrap().es.unwrap();
    assert_eq!((es.auth, es.search_auth), (EsAuth::ApiKey(Secret::new("k")), None));
    assert!(Config::from_ini_str("[es]\naddress = e:9200\n").unwrap().es.unwrap().warnings().is_empty());

    // (config, key named in the error, words the message must contain, words it must not)
    let table: &[(&str, &str, &str, &str)] = &[
        ("address = https://u:hunter2@h:9200", "es.address", "credentials in its URL", "hunter2"),
        ("address = https://u:hunter2@h:9200/p@x", "es.address", "https://h:9200", "hunter2"),
        ("address = ftp://h", "es.address", "not http or https", ""),
        ("address = h\nusername = u\npassword = p\napi_key = k", "es.username", "not both", ""),
        ("address = h\npassword = p", "es.username", "goes with a password", ""),
        ("address = h\npassword = p\npassword_file = /x\nusername = u", "es.password", "not both", ""),
        ("address = h\napi_key_file = /nonexistent/k", "es.api_key_file", "/nonexistent/k", ""),
        ("address = h\nsearch_username = r", "es.search_username", "search_password", ""),
        ("address = h\ncert_file = /c.pem", "es.cert_file", "together", ""),
        ("address = h\nsearch_index = *", "es.search_index", "every index", ""),
        ("address = h\nsearch_index = app-*, .security*", "es.search_index", "hidden", ""),
        ("address = h\nsearch_index = App", "es.search_index", "'A'", ""),
        ("address = h\nsearch_index = a b", "es.search_index", "' '", ""),
    ];
    for &(body, key, words, never) in table {
        let text = format!("[es]\n{body}\n");
        let e = Config::from_ini_str(&text).unwrap_err();
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
        assert!(never.is_empty() || !e.to_string().contains(never), "{text:?}: {e}");
    }
}

#[test]
fn allowed_paths_bound_the_static_list_and_symlinks_are_off() {
    let c = Config::from_ini_str(
        "[agent]\nallowed_paths = /var/log; /srv/*/logs/*.log\nfollow_symlinks = yes\n[collect]\nt = /var/log/*.log\n",
    )
    .unwrap();
    assert!(c.agent.follow_symlinks && c.agent.allowed_paths.is_set());
    assert!(!AgentConfig::default().follow_symlinks, "off by default");
    let e = Config::from_ini_str("[agent]\nallowed_paths = /var/log\n[collect]\nsecrets = /root/.ssh/*\n").unwrap_err();
    assert_eq!(e.key, "collect.secrets");
    assert!(e.message.contains("/root/.ssh/*") && e.message.contains("outside [agent] allowed_paths"), "{e}");
    let e = Config::from_ini_str("[agent]\nallowed_paths = var/log\n").unwrap_err();
    assert_eq!(e.key, "agent.allowed_paths");
    assert!(e.message.contains("absolute"), "{e}");
}

#[test]
fn lists_split_on_semicolons() {
    let c = Config::from_ini_str("[kafka]\naddress = a:1;b:2\n[collect]\nt = /x/*.log; /y.log\n").unwrap();
    assert_eq!(c.kafka.unwrap().brokers, vec!["a:1", "b:2"]);
    assert_eq!(c.collect.len(), 2);
}

#[test]
fn errors_name_the_key_and_the_value() {
    // (config, key named in the error, words the message must contain)
    let table: &[(&str, &str, &str)] = &[
        ("[kafka]\nadress = x\n", "kafka.adress", "unknown key"),
        ("[kafak]\n", "[kafak]", "unknown section"),
        ("[agent]\nmax_line_bytes = lots\n", "agent.max_line_bytes", "\"lots\""),
        ("[agent]\nmax_line_bytes = 0\n", "agent.max_line_bytes", "out of range"),
        ("[agent]\nread_from = middle\n", "agent.read_from", "middle"),
        ("[agent]\nlong_lines = fold\n", "agent.long_lines", "fold"),
        ("[collect]\nbad/topic = /x.log\n", "collect.bad/topic", "a-z"),
        ("[collect]\nt = /x/[.log\n", "collect.t", "bad glob"),
        ("[etcd]\naddress = e:1\ncollect_log_key = /k\n", "etcd.collect_log_key", "%s"),
        ("[etcd]\naddress = e:1\ncollect_log_key = /%s/%s\n", "etcd.collect_log_key", "exactly once"),
        ("[etcd]\naddress = e:1\nusername = u\n", "etcd.username", "together"),
        ("[etcd]\naddress = e:1\nkey_file = k.pem\n", "etcd.cert_file", "together"),
        ("[etcd]\naddress = e:1\ntimeout = 0\n", "etcd.timeout", "out of range"),
        ("[etcd]\ntimeout = 3\n", "etcd.timeout", "address is not"),
        ("[kafka]\naddress = a\naddress = b\n", "kafka.address", "twice"),
        ("stray = 1\n", "stray", "outside"),
    ];
    for &(text, key, words) in table {
        let e = Config::from_ini_str(text).unwrap_err();
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
    }
}

#[test]
fn unknown_sections_and_keys_are_reported_first_with_what_is_known() {
    // (config, key named, message): the known lists are the keys the
    // section functions read, in the order they read them.
    let table: &[(&str, &str, &str)] = &[
        (
            "[kafak]\n",
            "[kafak]",
            "unknown section (known: kafka, etcd, agent, log, es, http, metrics, index, journald, \
             kafka.producer, kafka.consumer, collect)",
        ),
        (
            "[kafka]\nadress = x\n",
            "kafka.adress",
            "unknown key (known in [kafka]: address, chan_max_size, topic, group_id, security_protocol, \
             sasl_mechanism, sasl_username, sasl_password, sasl_password_file, ssl_ca_file, ssl_cert_file, \
             ssl_key_file, ssl_key_password, ssl_key_password_file)",
        ),
        ("[metrics]\nx = \n", "metrics.x", "unknown key (known in [metrics]: interval_ms, topic, enabled)"),
        // Keys of a section that is not used ([es] without an address)
        // are known all the same.
        (
            "[es]\nworker = 1\n",
            "es.worker",
            "unknown key (known in [es]: address, workers, chan_max_size, index, bulk_max_bytes, \
             bulk_max_docs, bulk_max_wait_ms, username, password, password_file, api_key, api_key_file, \
             search_username, search_password, search_password_file, search_api_key, search_api_key_file, \
             search_index, ca_file, cert_file, key_file, dead_letter, dead_letter_path, dead_letter_max_bytes, \
             parse_json, retry_max_backoff_ms, manage_template, retention_days, retention_check_ms)",
        ),
        // An unknown key wins over a bad value anywhere in the file.
        ("[agent]\nmax_line_bytes = 0\n[index]\nretenton = 1\n", "index.retenton", "unknown key"),
        ("[agent]\nmax_line_bytes = 0\n[zzz]\n", "[zzz]", "unknown section"),
    ];
    for &(text, key, message) in table {
        let e = Config::from_ini_str(text).unwrap_err();
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.message.starts_with(message), "{text:?}: {e}");
    }
    // ... and their values are not checked.
    assert!(Config::from_ini_str("[es]\nworkers = lots\n").unwrap().es.is_none());
}

#[test]
fn etcd_keys_per_host() {
    let c = Config::from_ini_str("[etcd]\naddress = a:1; http://b:2\n").unwrap();
    let e = c.etcd.unwrap();
    assert_eq!(e.endpoints, vec!["a:1", "http://b:2"]);
    assert_eq!(e.key_for("10.0.0.5"), "/logagent/10.0.0.5/collect_config");
    assert_eq!(e.key_prefix(), "/logagent/");
    // (key, host it belongs to)
    let table: &[(&str, Option<&str>)] = &[
        ("/logagent/10.0.0.5/collect_config", Some("10.0.0.5")),
        ("/logagent/web-1/collect_config", Some("web-1")),
        ("/logagent//collect_config", None),
        ("/logagent/a/b/collect_config", None),
        ("/logagent/10.0.0.5/other", None),
        ("/other/10.0.0.5/collect_config", None),
    ];
    for &(key, host) in table {
        assert_eq!(e.host_of(key), host, "{key}");
    }
    let tail = EtcdConfig { collect_log_key: "/hosts/%s".into(), ..EtcdConfig::new(vec![]) };
    assert_eq!(tail.host_of("/hosts/h1"), Some("h1"));
    assert_eq!(tail.key_prefix(), "/hosts/");
}

#[test]
fn metrics_section_enables_host_metrics() {
    // (ini, enabled, interval ms, topic)
    let cases: &[(&str, bool, u64, Option<&str>)] = &[
        ("", false, 0, None),
        ("[metrics]\n", false, 0, None),
        ("[metrics]\nenabled = true\n", true, 10_000, None),
        ("[metrics]\ninterval_ms = 500\ntopic = hostm\n", true, 500, Some("hostm")),
        ("[metrics]\nenabled = false\ntopic = hostm\n", false, 0, None),
    ];
    for &(ini, enabled, ms, topic) in cases {
        let m = Config::from_ini_str(ini).unwrap().metrics;
        assert_eq!(m.is_some(), enabled, "{ini}");
        if let Some(m) = m {
            assert_eq!((m.interval.as_millis() as u64, m.topic.as_deref()), (ms, topic), "{ini}");
        }
    }
    for (ini, key) in [
        ("[metrics]\ninterval_ms = 5\n", "metrics.interval_ms"),
        ("[metrics]\ntopic = a b\n", "metrics.topic"),
        ("[metrics]\nenabled = maybe\n", "metrics.enabled"),
    ] {
        let e = Config::from_ini_str(ini).unwrap_err();
        assert_eq!(e.key, key, "{ini}: {e}");
    }
}

#[test]
fn index_and_http_sections() {
    let c = Config::from_ini_str("").unwrap();
    assert_eq!(c.index.retention_days, 0);
    assert_eq!(c.index.commit_interval_ms, 1_000);
    assert_eq!(c.http.listen, Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
    let c =
        Config::from_ini_str("[index]\nretention_days = 7\nretention_bytes = 10GiB\n[http]\nlisten = off\n").unwrap();
    assert_eq!((c.index.retention_days, c.index.retention_bytes), (7, 10 << 30));
    assert_eq!(c.http.listen, None);
    // (config, key named in the error, words the message must contain)
    let table: &[(&str, &str, &str)] = &[
        ("[index]\nretention_bytes = 5 parsecs\n", "index.retention_bytes", "unknown unit"),
        ("[index]\nretention_days = -1\n", "index.retention_days", "whole number"),
        ("[index]\nwriter_memory_bytes = 1MiB\n", "index.writer_memory_bytes", "16MiB"),
        ("[index]\nretention = 1\n", "index.retention", "unknown key"),
        ("[http]\nlisten = localhost\n", "http.listen", "127.0.0.1:8080"),
    ];
    for &(text, key, words) in table {
        let e = Config::from_ini_str(text).unwrap_err();
        assert_eq!(e.key, key, "{text:?}: {e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
    }
}

#[test]
fn the_shipped_config_is_a_single_host_setup() {
    let c = Config::from_ini_str(include_str!("../../config.ini")).unwrap();
    assert!(c.kafka.is_none() && c.es.is_none() && c.etcd.is_none(), "no servers needed out of the box");
    assert_eq!(c.http.listen, Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
    assert!(c.collect.iter().any(|e| e.path == "./logs/*.log"));
    assert!(c.index.retention_days > 0 && c.index.retention_bytes > 0);
}

#[test]
fn kafka_security_keys_are_validated_and_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "pem").unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let text = format!(
        "[kafka]\naddress = k:9093\nsecurity_protocol = SASL_SSL\nsasl_mechanism = scram-sha-512\n\
         sasl_username = alice\nsasl_password_file = {}\nssl_ca_file = {}\n\
         [kafka.producer]\nsasl.password = raw-secret\n",
        pw.display(),
        ca.display()
    );
    let k = Config::from_ini_str(&text).unwrap().kafka.unwrap();
    let s = &k.security;
    assert_eq!(s.protocol, Some(SecurityProtocol::SaslSsl));
    assert_eq!(s.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
    assert_eq!(s.sasl_password.as_ref().unwrap().expose(), "from-file");
    let props = s.properties();
    assert!(props.contains(&("security.protocol", "sasl_ssl".into())));
    assert!(props.contains(&("sasl.password", "from-file".into())));
    assert!(props.contains(&("ssl.ca.location", ca.display().to_string())));
    let debug = format!("{k:?}");
    assert!(!debug.contains("from-file") && !debug.contains("raw-secret"), "{debug}");
    assert_eq!(redact_property("ssl.key.password", "x"), "<redacted>");
    assert_eq!(redact_property("linger.ms", "5"), "5");

    let missing = dir.path().join("missing.pem");
    // (keys after `address`, key named in the error, words the message must contain)
    let table: Vec<(String, &str, &str)> = vec![
        ("security_protocol = tls".into(), "kafka.security_protocol", "not one of"),
        ("security_protocol = sasl_plaintext".into(), "kafka.sasl_mechanism", "set PLAIN"),
        ("security_protocol = sasl_plaintext\nsasl_mechanism = GSSAPI".into(), "kafka.sasl_mechanism", "not one of"),
        (
            "security_protocol = sasl_plaintext\nsasl_mechanism = PLAIN".into(),
            "kafka.sasl_username",
            "user name",
        ),
        (
            "security_protocol = sasl_plaintext\nsasl_mechanism = PLAIN\nsasl_username = u".into(),
            "kafka.sasl_password",
            "sasl_password_file",
        ),
        ("sasl_username = u".into(), "kafka.sasl_username", "security_protocol is not"),
        ("ssl_ca_file = /x".into(), "kafka.ssl_ca_file", "security_protocol is not"),
        (format!("security_protocol = ssl\nssl_ca_file = {}", missing.display()), "kafka.ssl_ca_file", "missing.pem"),
        (format!("security_protocol = ssl\nssl_cert_file = {}", ca.display()), "kafka.ssl_cert_file", "go together"),
        (
            format!("security_protocol = ssl\nssl_ca_file = {}", dir.path().display()),
            "kafka.ssl_ca_file",
            "not a regular file",
        ),
        (
            format!(
                "security_protocol = sasl_ssl\nsasl_mechanism = PLAIN\nsasl_username = u\nsasl_password = p\nsasl_password_file = {}",
                pw.display()
            ),
            "kafka.sasl_password",
            "not both",
        ),
    ];
    for (keys, key, words) in table {
        let text = format!("[kafka]\naddress = k:1\n{keys}\n");
        let e = Config::from_ini_str(&text).unwrap_err();
        assert_eq!(e.key, key, "{keys:?}: {e}");
        assert!(e.to_string().contains(words), "{keys:?}: {e}");
    }
}

/// The environment of the `${…}` tests below: nothing but these.
fn test_env(name: &str) -> Result<String, std::env::VarError> {
    match name {
        "KAFKA_BROKERS" => Ok("k1:9092;k2:9092".into()),
        "LINE_BYTES" => Ok("4096".into()),
        // A value from the environment is not read as INI: `;` is no comment.
        "TOPIC_GLOB" => Ok("/srv/a/*.log;/srv/b/*.log".into()),
        _ => Err(std::env::VarError::NotPresent),
    }
}

#[test]
fn values_take_the_environment_before_they_are_validated() {
    let text = "[kafka]\naddress = ${KAFKA_BROKERS}\n[agent]\nmax_line_bytes = ${LINE_BYTES}\n\
                data_dir = ${DATA_DIR:-/var/lib/logcollect}\nhost = ${NO_HOST:-}\n\
                [collect]\nweb_log = ${TOPIC_GLOB}\n";
    let c = Config::from_ini_str_with(text, &test_env).unwrap();
    assert_eq!(c.kafka.unwrap().brokers, vec!["k1:9092", "k2:9092"]);
    assert_eq!(c.agent.max_line_bytes, 4096);
    assert_eq!(c.agent.data_dir, PathBuf::from("/var/lib/logcollect"));
    // An empty default is an empty value: the key's own default.
    assert_eq!(c.agent.host, None);
    assert_eq!(
        c.collect,
        vec![CollectEntry::new("/srv/a/*.log", "web_log"), CollectEntry::new("/srv/b/*.log", "web_log")]
    );
}

#[test]
fn expansion_errors_name_the_key_after_unknown_keys() {
    let e = Config::from_ini_str_with("[agent]\nread_from = ${READ_FROM}\n", &test_env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config agent.read_from: environment variable READ_FROM is not set (`${READ_FROM:-default}` gives a default)"
    );
    // The expanded value is what is validated, and what the error shows.
    let e = Config::from_ini_str_with("[agent]\nread_from = ${LINE_BYTES}\n", &test_env).unwrap_err();
    assert_eq!(e.to_string(), "config agent.read_from: \"4096\" is not one of: end, beginning");
    // A misspelt key is reported first, even when its variable is unset too.
    let e = Config::from_ini_str_with("[agent]\nread_form = ${READ_FROM}\n", &test_env).unwrap_err();
    assert_eq!(e.key, "agent.read_form");
    let e = Config::from_ini_str_with("[es]\naddress = ${ES\n", &test_env).unwrap_err();
    assert_eq!(e.to_string(), "config es.address: `${` has no closing `}` (`$$` is a literal `$`)");
}
