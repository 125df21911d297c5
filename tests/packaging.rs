//! What an operator installs besides the binary: the systemd units in
//! `packaging/systemd/` (checked with `systemd-analyze verify`, their
//! `systemd-analyze security` exposure printed), the package's config.ini,
//! the shell completions (the bash one checked in for the package, and up
//! to date), `--help` of every subcommand, and `${VAR}` in config.ini
//! reaching the binary from its environment (the units' `EnvironmentFile=`).
//! The package itself is built, installed and purged by scripts/deb-test.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_logcollect");

/// Each unit and the role its `ExecStart=` runs.
const UNITS: [(&str, &str); 3] =
    [("logcollect-agent.service", "agent"), ("logcollect-transfer.service", "transfer"), ("logcollect.service", "run")];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs Debian's systemd)"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let tmp = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for (name, role) in UNITS {
        let unit = std::fs::read_to_string(units_dir().join(name)).unwrap();
        let exec = format!("ExecStart=/usr/bin/logcollect {role} --config /etc/logcollect/config.ini");
        let required = [
            exec.as_str(),
            "User=logcollect",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "StateDirectory=logcollect",
            "ReadWritePaths=/var/lib/logcollect",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
        ];
        for line in required {
            assert!(unit.lines().any(|l| l == line), "{name}: no line {line:?}");
        }
        // Group adm reads /var/log: the roles that tail files have it, the
        // transfer does not.
        let adm = unit.lines().any(|l| l == "SupplementaryGroups=adm");
        assert_eq!(adm, role != "transfer", "{name}: SupplementaryGroups=adm");

        // The command line is one the binary takes.
        let out = run(Command::new(BIN).args([role, "--config", "/etc/logcollect/config.ini", "--help"]));
        assert!(out.status.success(), "{name}: {exec} --help: {}", text(&out.stderr));

        // verify insists that ExecStart's binary exists: the one just
        // built stands in for /usr/bin/logcollect.
        let copy = tmp.path().join(name);
        std::fs::write(&copy, unit.replace("ExecStart=/usr/bin/logcollect ", &format!("ExecStart={BIN} "))).unwrap();
        copies.push(copy);
    }

    let out = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&copies));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("systemd-analyze verify: {}\n{stdout}{stderr}", out.status);
    // An unknown or misspelt key is only a warning (exit 0): the output
    // must be empty too.
    assert!(out.status.success() && stdout.is_empty() && stderr.is_empty(), "systemd-analyze verify: {stdout}{stderr}");

    // Informative: what `systemd-analyze security` makes of the hardening.
    for copy in &copies {
        let out = run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--no-pager"]).arg(copy));
        let report = text(&out.stdout);
        assert!(out.status.success(), "systemd-analyze security {}: {}", copy.display(), text(&out.stderr));
        let unsafe_left: Vec<&str> =
            report.lines().filter_map(|l| l.strip_prefix('✗')?.split_whitespace().next()).collect();
        let overall = report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("(no overall line)");
        println!("{overall}\n  not set: {}", unsafe_left.join(" "));
    }
}

/// The three units are one unit with a role: apart from the lines that
/// name it (and the transfer's lack of group adm), they are the same text,
/// so hardening added to one is added to all.
#[test]
fn the_units_differ_only_in_their_role() {
    let role_free = |name: &str, role: &str| -> Vec<String> {
        let unit = std::fs::read_to_string(units_dir().join(name)).unwrap();
        unit.lines()
            .filter(|l| !l.starts_with("Description=") && !l.starts_with("SupplementaryGroups=") && !l.starts_with('#'))
            .map(|l| l.replace(&format!("logcollect {role} "), "logcollect ROLE "))
            .collect()
    };
    let (first, first_role) = UNITS[0];
    let want = role_free(first, first_role);
    for (name, role) in &UNITS[1..] {
        assert_eq!(role_free(name, role), want, "{name} and {first} differ beyond their role");
    }
}

/// What the package installs as /etc/logcollect/config.ini is a valid
/// config of a system install, with every `${…}` defaulted.
#[test]
fn the_package_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.ini");
    let shipped = std::fs::read_to_string(&path).unwrap();
    assert!(shipped.lines().any(|l| l.starts_with("data_dir = /var/lib/logcollect ")), "data_dir");
    // /var/lib/logcollect is the package's: the same file with a data_dir
    // of the test's own, the rest as shipped.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let copy = tmp.path().join("config.ini");
    let text_here = shipped.replace("data_dir = /var/lib/logcollect ", &format!("data_dir = {} ", data.display()));
    std::fs::write(&copy, text_here).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["validate", "--no-connect", "--config"]).arg(&copy);
    for var in ["KAFKA_BROKERS", "ES_ADDRESS", "ES_PASSWORD", "LOGCOLLECT_LISTEN", "LOGCOLLECT_HOST"] {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("config ok: 1 entry in [collect], data_dir "), "{stdout}");
}

/// The package ships the bash completion as a file of the tree (so a plain
/// `cargo deb` needs no generation step); it must be what the binary makes.
#[test]
fn the_shipped_bash_completion_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completions/logcollect.bash");
    let out = run(Command::new(BIN).args(["completions", "bash"]));
    assert!(out.status.success());
    let shipped = std::fs::read(&path).unwrap_or_default();
    assert!(
        shipped == out.stdout,
        "{} is not what `logcollect completions bash` prints: after a change to the CLI, run\n  \
         cargo run -- completions bash > packaging/completions/logcollect.bash",
        path.display()
    );
}

/// The subcommands `--help` lists under `Commands:` (without `help`).
fn subcommands(args: &[&str]) -> Vec<String> {
    let out = run(Command::new(BIN).args(args).arg("--help"));
    assert!(out.status.success(), "{args:?} --help");
    let help = text(&out.stdout);
    let list = help.split("Commands:\n").nth(1).unwrap_or_else(|| panic!("{args:?} --help has no Commands:\n{help}"));
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completions_name_every_subcommand() {
    let top = subcommands(&[]);
    for c in ["run", "agent", "transfer", "config", "hash-password", "status", "completions"] {
        assert!(top.iter().any(|t| t == c), "`logcollect --help` lists no {c}: {top:?}");
    }
    let config = subcommands(&["config"]);
    assert_eq!(config, ["put", "get", "watch", "delete", "hosts"]);

    let out = run(Command::new(BIN).args(["completions", "bash"]));
    assert!(out.status.success());
    let bash = text(&out.stdout);
    for c in top.iter().chain(&config) {
        assert!(bash.contains(c.as_str()), "the bash completions do not mention {c}");
    }
    // Options too: a role's --config, status's --addr, config's --etcd.
    for opt in ["--config", "--addr", "--etcd", "--host"] {
        assert!(bash.contains(opt), "the bash completions do not mention {opt}");
    }
    for shell in ["zsh", "fish"] {
        let out = run(Command::new(BIN).args(["completions", shell]));
        assert!(out.status.success() && text(&out.stdout).contains("hash-password"), "{shell} completions");
    }
    let out = run(Command::new(BIN).args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn every_subcommand_has_a_help_with_every_option_described() {
    let mut commands: Vec<Vec<String>> = vec![vec![]];
    commands.extend(subcommands(&[]).into_iter().map(|c| vec![c]));
    commands.extend(subcommands(&["config"]).into_iter().map(|c| vec!["config".to_string(), c]));
    for args in commands {
        // `--help`: the long text, which must say more than the usage.
        let out = run(Command::new(BIN).args(&args).arg("--help"));
        let help = text(&out.stdout);
        assert!(out.status.success(), "{args:?} --help");
        let first = help.lines().next().unwrap_or("");
        assert!(
            !first.is_empty() && !first.starts_with("Usage:"),
            "{args:?} --help opens with no description:\n{help}"
        );
        // `-h`: one line per option; each one has a description after it.
        let out = run(Command::new(BIN).args(&args).arg("-h"));
        let short = text(&out.stdout);
        let options = short.split("Options:\n").nth(1).unwrap_or("");
        for line in options.lines().take_while(|l| !l.trim().is_empty()) {
            let (flag, description) = line.trim_start().split_once("  ").unwrap_or((line, ""));
            assert!(!description.trim().is_empty(), "{args:?}: option {flag:?} has no description:\n{short}");
        }
    }
}

#[test]
fn config_values_take_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.ini");
    std::fs::write(&config, "[agent]\nread_from = ${LC_TEST_READ_FROM}\n").unwrap();
    let agent = || {
        let mut c = Command::new(BIN);
        c.args(["agent", "--config"]).arg(&config).env_remove("LC_TEST_READ_FROM");
        c
    };
    // Unset, no default: a config error naming the key and the variable.
    let out = run(&mut agent());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "logcollect: config agent.read_from: environment variable LC_TEST_READ_FROM is not set \
         (`${LC_TEST_READ_FROM:-default}` gives a default)"
    );
    // Set: the value is the variable's (refused here, so the agent stops
    // before it starts, and the message shows what it read).
    let out = run(agent().env("LC_TEST_READ_FROM", "middle"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "logcollect: config agent.read_from: \"middle\" is not one of: end, beginning"
    );
}

/// `logcollect validate --no-connect` on a config whose values come from
/// the environment: what the variables hold is what is checked (here the
/// data_dir it probes and the [collect] list it counts), defaults included.
#[test]
fn validate_reads_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.ini");
    let ini = "[agent]\ndata_dir = ${LC_TEST_DATA_DIR}\nread_from = ${LC_TEST_UNSET_READ_FROM:-end}\n\
               [collect]\nweb_log = ${LC_TEST_GLOBS}\nprice = /srv/$$5/*.log\n";
    std::fs::write(&config, ini).unwrap();
    let data = tmp.path().join("from-env");
    let out = run(Command::new(BIN)
        .args(["validate", "--no-connect", "--config"])
        .arg(&config)
        .env("LC_TEST_DATA_DIR", &data)
        .env("LC_TEST_GLOBS", "/srv/a/*.log;/srv/b/*.log")
        .env_remove("LC_TEST_UNSET_READ_FROM"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let want = format!("config ok: 3 entries in [collect], data_dir {} writable", data.display());
    assert!(stdout.starts_with(&want), "{stdout}");

    // A `${` left open is an error naming the key, before anything runs.
    std::fs::write(&config, "[agent]\ndata_dir = ${LC_TEST_DATA_DIR\n").unwrap();
    let out = run(Command::new(BIN).args(["validate", "--no-connect", "--config"]).arg(&config));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim_end(),
        "logcollect: config agent.data_dir: `${` has no closing `}` (`$$` is a literal `$`)"
    );
}
