//! The `logcollect` binary: parse arguments, load config, run a role.

use clap::{CommandFactory, Parser, Subcommand};
use logcollect::cli::ConfigCommand as EtcdCommand;
use logcollect::config::Config;
use logcollect::error::RunError;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "logcollect",
    version,
    about = "Collect log lines from files into Kafka and Elasticsearch, or index and search them on one host",
    after_help = "With no command: `run --config config.ini`. `${NAME}` and `${NAME:-default}` in \
                  config.ini values come from the environment; `$$` is a literal `$`."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: collect, index (embedded, or Kafka and
    /// Elasticsearch when config.ini names them) and serve the search page.
    ///
    /// Without [kafka] address and [es] address: the files of [collect] are
    /// tailed into an embedded index under [agent] data_dir, searchable on
    /// [http] listen. With either, lines go through Kafka and/or into
    /// Elasticsearch instead. Runs until SIGTERM or SIGINT; a file's
    /// position moves only over lines indexed, so a restart loses none.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
    /// Tail the configured files and ship every line to Kafka.
    ///
    /// Which files: [collect] in config.ini, or this host's collect list in
    /// etcd when [etcd] address is set (followed live). A file's position
    /// is saved under [agent] data_dir only for lines Kafka acknowledged.
    /// Runs until SIGTERM or SIGINT.
    Agent {
        /// The configuration file.
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
    /// Consume Kafka and bulk-index every record into Elasticsearch.
    ///
    /// Reads [kafka] topic as consumer group [kafka] group_id and writes
    /// to [es] address, each line under an id derived from where it was
    /// read, so a replay never duplicates; offsets are committed behind
    /// what Elasticsearch acknowledged.
    /// Runs until SIGTERM or SIGINT.
    Transfer {
        /// The configuration file.
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
    /// Check config.ini, then ask each configured destination whether it
    /// answers.
    ///
    /// The file is checked as the roles' start does (keys, `${NAME}`
    /// variables, globs, TLS and secret files, data_dir); then each
    /// configured Kafka, etcd and Elasticsearch is asked and a table of
    /// what answered is printed. Exit 0 when all is well, 2 for a config
    /// error, 1 when a destination fails.
    Validate {
        /// The configuration file.
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
        /// Check the file only; contact no destination.
        #[arg(long)]
        no_connect: bool,
        /// Seconds each Kafka and Elasticsearch check may take (etcd's is [etcd] timeout).
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// Print what the agent would ship, without shipping it or moving a
    /// checkpoint.
    ///
    /// Reads the files of [collect] (or --path, or --entries) as the agent
    /// would (the same checks, splitting, long lines, per-entry options and
    /// multiline events) up to their end as it is now, and prints one JSON object per Kafka record
    /// (topic, key, value, headers), or with --documents the `_bulk` lines
    /// the transfer would send for it (index, id, source). Nothing is sent;
    /// checkpoints are neither read nor written.
    Tap {
        /// The configuration file ([agent], [collect], [es] index and parse_json).
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
        /// Read this file or glob instead of [collect].
        #[arg(long)]
        path: Option<String>,
        /// The topic of --path.
        #[arg(long, requires = "path", default_value = "tap")]
        topic: String,
        /// Read these entries instead: a collect list as `config put` takes
        /// it (JSON), so an entry's options (`multiline` and its fields
        /// among them) can be tried on real files before deploying it.
        #[arg(long, conflicts_with = "path", value_name = "JSON")]
        entries: Option<String>,
        /// Where each file is read from: beginning, end, or a byte offset.
        #[arg(long, default_value = "beginning", value_parser = parse_position)]
        from: logcollect::cli::TapPosition,
        /// Print the `_bulk` action and document lines instead of records.
        #[arg(long)]
        documents: bool,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Read and write the per-host collect lists in etcd.
    Config(ConfigArgs),
    /// Read a password from stdin (its first line) and print its argon2id
    /// PHC string, for `[http] users` (`name:<that string>`).
    HashPassword,
    /// A live table of a running process (agent, transfer or run): one row
    /// per file or partition with throughput and lag, refreshed in place.
    Status {
        /// The process's `[http] listen` address.
        #[arg(long, default_value = logcollect::config::DEFAULT_HTTP_LISTEN)]
        addr: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
        /// Print the table once and exit (for scripts).
        #[arg(long)]
        once: bool,
        /// PEM CA that verifies an https:// server (replaces the built-in roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// A file whose first line is a bearer token of `[http] tokens`
        /// (or the environment variable LOGCOLLECT_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// A user of `[http] users`; the password comes from the
        /// environment variable LOGCOLLECT_PASSWORD.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print a shell completion script for logcollect.
    ///
    /// Where each shell looks for it: bash,
    /// /usr/share/bash-completion/completions/logcollect (the Debian package
    /// installs it there); zsh, a file `_logcollect` in a directory of
    /// $fpath; fish, ~/.config/fish/completions/logcollect.fish.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Where [etcd] is read from (address, timeout, collect_log_key, TLS, user);
    /// optional with --etcd.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// etcd endpoints (';' separated); overrides [etcd] address.
    #[arg(long, global = true)]
    etcd: Option<String>,
    #[command(subcommand)]
    op: ConfigOp,
}

#[derive(Subcommand)]
enum ConfigOp {
    /// Validate a collect list and write it to the key of each host named.
    #[command(group(clap::ArgGroup::new("whom").required(true).args(["host", "hosts", "hosts_file"])))]
    Put {
        /// The host whose list is written (its [agent] host, or outbound IP).
        #[arg(long)]
        host: Option<String>,
        /// Several hosts, comma separated: each gets the same list.
        #[arg(long)]
        hosts: Option<String>,
        /// A file of hosts, one a line ('#' comments); each gets the same list.
        #[arg(long)]
        hosts_file: Option<PathBuf>,
        /// A file holding the JSON list ('-': standard input).
        #[arg(long, conflicts_with = "json", required_unless_present = "json")]
        file: Option<PathBuf>,
        /// The JSON list, e.g. '[{"path":"/var/log/nginx/*.log","topic":"web_log"}]'.
        json: Option<String>,
    },
    /// Print the host's collect list.
    Get {
        /// The host (its [agent] host, or outbound IP).
        #[arg(long)]
        host: String,
    },
    /// Print the host's collect list and every change to it, until Ctrl-C.
    Watch {
        /// The host (its [agent] host, or outbound IP).
        #[arg(long)]
        host: String,
    },
    /// Remove the host's collect list.
    Delete {
        /// The host (its [agent] host, or outbound IP).
        #[arg(long)]
        host: String,
    },
    /// The hosts that have a collect list: entries and last change revision of each.
    Hosts {
        /// Only the names, one a line.
        #[arg(long)]
        names: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run { config: PathBuf::from("config.ini") });
    type Role = fn(Config, &std::path::Path) -> Result<(), RunError>;
    let (config, role): (PathBuf, Role) = match command {
        Command::Run { config } => (config, logcollect::cli::run),
        Command::Agent { config } => (config, logcollect::cli::agent),
        Command::Transfer { config } => (config, logcollect::cli::transfer),
        Command::Validate { config, no_connect, timeout } => return validate(&config, no_connect, timeout),
        Command::Tap { config, path, topic, entries, from, documents, limit } => {
            let files = match entries {
                Some(json) => Files::Entries(json),
                None => path.map_or(Files::Collect, |p| Files::Path(p, topic)),
            };
            return tap(&config, files, from, documents, limit);
        }
        Command::Config(args) => return config_command(args),
        Command::HashPassword => return hash_password(),
        Command::Completions { shell } => return completions(shell),
        Command::Status { addr, interval, once, ca_file, token_file, user } => {
            let interval = std::time::Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
            let access = match status_access(ca_file, token_file, user) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("logcollect status: {e}");
                    return ExitCode::from(2);
                }
            };
            return match logcollect::cli::status(&addr, interval, once, &access) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("logcollect status: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    init_tracing(&cfg.log.level);
    match role(cfg, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(e)) => config_error(e),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("logcollect: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `logcollect config …`: [etcd] from the config file and `--etcd`, then
/// the command (see `logcollect::cli::run_command`).
fn config_command(args: ConfigArgs) -> ExitCode {
    let etcd = match logcollect::cli::command_config(args.config.as_deref(), args.etcd.as_deref()) {
        Ok(e) => e,
        Err(e) => return config_error(e),
    };
    init_tracing("warn");
    let cmd = match args.op {
        ConfigOp::Put { host, hosts, hosts_file, file, json } => {
            let hosts = match (host, hosts, hosts_file) {
                (Some(h), _, _) => logcollect::cli::parse_hosts(&h, "--host"),
                (_, Some(h), _) => logcollect::cli::parse_hosts(&h, "--hosts"),
                (_, _, Some(f)) => match std::fs::read_to_string(&f) {
                    Ok(text) => logcollect::cli::parse_hosts(&text, &f.display().to_string()),
                    Err(e) => return config_error(std::io::Error::new(e.kind(), format!("{}: {e}", f.display()))),
                },
                _ => unreachable!("clap requires one of --host, --hosts, --hosts-file"),
            };
            let hosts = match hosts {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("logcollect: {e}");
                    return ExitCode::from(e.exit_code());
                }
            };
            let value = match (file, json) {
                (Some(f), _) if f.as_os_str() == "-" => {
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
                }
                (Some(f), _) => {
                    std::fs::read(&f).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))
                }
                (None, json) => Ok(json.unwrap_or_default().into_bytes()),
            };
            match value {
                Ok(value) => EtcdCommand::Put { hosts, value },
                Err(e) => return config_error(e),
            }
        }
        ConfigOp::Get { host } => EtcdCommand::Get { host },
        ConfigOp::Watch { host } => EtcdCommand::Watch { host },
        ConfigOp::Delete { host } => EtcdCommand::Delete { host },
        ConfigOp::Hosts { names } => EtcdCommand::Hosts { names },
    };
    match logcollect::cli::run_command(&etcd, cmd, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logcollect: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `logcollect validate`: the report on stdout, each failing destination
/// on stderr; the exit status says which kind of trouble.
fn validate(config: &std::path::Path, no_connect: bool, timeout: f64) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    // Only errors, and not librdkafka's: the table says what failed.
    init_tracing("error,librdkafka=off");
    let timeout = std::time::Duration::from_secs_f64(timeout.clamp(0.1, 3600.0));
    let opts = logcollect::cli::ValidateOptions { connect: !no_connect, timeout };
    match logcollect::cli::validate(&cfg, &opts) {
        Ok(report) => {
            print!("{}", report.render());
            for p in report.problems() {
                eprintln!("logcollect: {p}");
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => config_error(e),
    }
}

/// The credentials of `logcollect status`: a token from `--token-file`
/// (its first line) or `LOGCOLLECT_TOKEN`, or `--user` with
/// `LOGCOLLECT_PASSWORD`; never a secret on the command line, where `ps`
/// shows it.
fn status_access(
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    user: Option<String>,
) -> Result<logcollect::cli::StatusAccess, String> {
    let token = match token_file {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("--token-file {}: {e}", p.display()))?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            if first.is_empty() {
                return Err(format!("--token-file {}: the first line is empty", p.display()));
            }
            Some(first)
        }
        None => std::env::var("LOGCOLLECT_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let user = match user {
        Some(u) => {
            let password = std::env::var("LOGCOLLECT_PASSWORD")
                .map_err(|_| format!("--user {u}: set its password in the environment variable LOGCOLLECT_PASSWORD"))?;
            Some((u, password))
        }
        None => None,
    };
    Ok(logcollect::cli::StatusAccess { ca_file, token, user })
}

/// `logcollect completions <shell>`: the script, generated from the
/// argument definitions above, on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut Cli::command(), "logcollect", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `logcollect hash-password`: a password on stdin to its argon2id PHC string.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("logcollect hash-password: stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("logcollect hash-password: the password (first line of stdin) is empty");
        return ExitCode::from(2);
    }
    match logcollect::cli::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logcollect hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Config errors exit with status 2 and a one-line reason.
/// `--from`: `beginning`, `end` or a byte offset.
fn parse_position(s: &str) -> Result<logcollect::cli::TapPosition, String> {
    use logcollect::cli::TapPosition;
    match s {
        "beginning" => Ok(TapPosition::Beginning),
        "end" => Ok(TapPosition::End),
        n => n.parse().map(TapPosition::Offset).map_err(|_| format!("{n:?} is not beginning, end or a byte offset")),
    }
}

/// What `logcollect tap` reads.
enum Files {
    /// `[collect]`.
    Collect,
    /// `--path` and `--topic`.
    Path(String, String),
    /// `--entries`: a collect list in etcd's JSON.
    Entries(String),
}

/// `logcollect tap`: records (or documents) on stdout, files that could
/// not be read on stderr; exit 1 when nothing could be read.
fn tap(
    config: &std::path::Path,
    files: Files,
    from: logcollect::cli::TapPosition,
    documents: bool,
    limit: Option<u64>,
) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    init_tracing("warn");
    let entries = match files {
        Files::Path(path, topic) => vec![logcollect::config::CollectEntry::new(path, topic)],
        Files::Entries(json) => match logcollect::collect::parse(json.as_bytes()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("logcollect tap: --entries: {e}");
                return ExitCode::from(2);
            }
        },
        Files::Collect if cfg.collect.is_empty() => {
            eprintln!("logcollect tap: [collect] is empty: name a file with --path");
            return ExitCode::from(2);
        }
        Files::Collect => cfg.collect.clone(),
    };
    let opts = logcollect::cli::TapOptions { entries, from, documents, limit };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match logcollect::cli::tap(&cfg, &opts, &mut out, &mut std::io::stderr()) {
        Ok(t) => {
            let _ = std::io::Write::flush(&mut out);
            eprintln!("logcollect tap: {} records from {} files", t.records, t.files);
            if t.files == 0 && t.refused > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        // A closed pipe (`| head`) is the reader having seen enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logcollect tap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("logcollect: {e}");
    ExitCode::from(2)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
