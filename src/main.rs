//! The `logcollect` binary: parse arguments, load config, run a role.

use clap::{Parser, Subcommand};
use logcollect::agent::AgentError;
use logcollect::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "logcollect",
    version,
    about = "Collect log lines from files into Kafka and Elasticsearch, or index and search them on one host",
    after_help = "With no command: `run --config config.ini`."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: collect, index (embedded, or Kafka and
    /// Elasticsearch when config.ini names them) and serve the search page.
    Run {
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
    /// Tail the configured files and ship every line to Kafka.
    Agent {
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
    /// Consume Kafka and bulk-index every record into Elasticsearch.
    Transfer {
        #[arg(long, default_value = "config.ini")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run { config: PathBuf::from("config.ini") });
    let (config, role): (PathBuf, fn(Config) -> Result<(), AgentError>) = match command {
        Command::Run { config } => (config, logcollect::run::run),
        Command::Agent { config } => (config, logcollect::agent::run),
        Command::Transfer { config } => (config, logcollect::transfer::run),
    };
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    init_tracing(&cfg.log.level);
    match role(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(AgentError::Config(e)) => config_error(e),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("logcollect: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Config errors exit with status 2 and a one-line reason.
fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("logcollect: {e}");
    ExitCode::from(2)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colors only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
