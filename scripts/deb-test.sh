#!/usr/bin/env bash
# The Debian package, end to end: packs the binary `cargo build` already
# made (the dev profile: no second, release build), installs the package on
# this machine with dpkg, checks what it installed and that it runs, then
# purges it and checks that nothing is left. Called by scripts/test.sh after
# `cargo test`; needs root, cargo-deb (scripts/test.sh installs it), dpkg-dev
# (dpkg-shlibdeps, for the package's dependencies), adduser and systemd's
# systemd-analyze. Any failed check fails the script; the package is purged
# on the way out whatever happened.
#
# `cargo deb` alone (README "Quick start") builds the release package; the
# warning cargo-deb prints here about the dev profile is expected.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> deb: %s\n' "$*" >&2; }
fail() { printf 'deb: FAIL: %s\n' "$*" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logcollect-target}"
units=(logcollect.service logcollect-agent.service logcollect-transfer.service)

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
installed() { dpkg-query -W -f='${Status}' logcollect 2>/dev/null | grep -q ' installed$'; }
# Whatever is at these paths is not ours to overwrite, or to purge.
if installed; then fail "a logcollect package is already installed here; purge it first"; fi
for f in /usr/bin/logcollect /etc/logcollect /var/lib/logcollect; do
  [ ! -e "$f" ] || fail "$f exists before the package is installed"
done
! getent passwd logcollect >/dev/null || fail "user logcollect exists before the package is installed"
[ -x "$CARGO_TARGET_DIR/debug/logcollect" ] || fail "no $CARGO_TARGET_DIR/debug/logcollect: run cargo build first"

out="$(mktemp -d)"
cleanup() {
  if installed || dpkg-query -W logcollect >/dev/null 2>&1; then
    dpkg --purge logcollect >/dev/null 2>&1 || true
  fi
  rm -rf "$out"
}
trap cleanup EXIT

log "cargo deb --no-build --profile dev"
start=$SECONDS
cargo deb --no-build --profile dev --fast --output "$out/logcollect.deb" 2>"$out/cargo-deb.err" \
  || { cat "$out/cargo-deb.err" >&2; fail "cargo deb"; }
deb="$out/logcollect.deb"
log "built $(du -h "$deb" | cut -f1) in $((SECONDS - start)) s"

contents="$(dpkg-deb --contents "$deb")"
for f in ./usr/bin/logcollect ./etc/logcollect/config.ini ./etc/default/logcollect \
  ./lib/systemd/system/logcollect.service ./lib/systemd/system/logcollect-agent.service \
  ./lib/systemd/system/logcollect-transfer.service ./usr/share/bash-completion/completions/logcollect \
  ./usr/share/doc/logcollect/config.ini.example; do
  grep -qF " $f" <<<"$contents" || fail "the package has no $f"
done
grep -E ' \./etc/default/logcollect$' <<<"$contents" | grep -q '^-rw-------' \
  || fail "/etc/default/logcollect (secrets) is not mode 0600"
depends="$(dpkg-deb --field "$deb" Depends)"
grep -q adduser <<<"$depends" && grep -q libc6 <<<"$depends" || fail "Depends: $depends"

log "dpkg -i"
dpkg -i "$deb" >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log" >&2; fail "dpkg -i"; }
conffiles="$(dpkg-query -W -f='${Conffiles}' logcollect)"
grep -q '/etc/logcollect/config.ini' <<<"$conffiles" || fail "config.ini is not a conffile: $conffiles"
grep -q '/etc/default/logcollect' <<<"$conffiles" || fail "/etc/default/logcollect is not a conffile: $conffiles"

# The postinst's user and state directory.
getent passwd logcollect | grep -q ':/var/lib/logcollect:/usr/sbin/nologin$' \
  || fail "user logcollect: $(getent passwd logcollect || echo missing)"
[ "$(stat -c '%U:%G %a' /var/lib/logcollect)" = "logcollect:logcollect 750" ] \
  || fail "/var/lib/logcollect: $(stat -c '%U:%G %a' /var/lib/logcollect)"
! id -nG logcollect | grep -qw adm || fail "user logcollect is in group adm (the units give it)"

# The installed binary on the installed config, as the units run it: the
# user logcollect, the environment of /etc/default/logcollect (empty: every
# ${…} there takes its default).
log "logcollect validate --no-connect, as user logcollect"
report="$(cd /var/lib/logcollect && runuser -u logcollect -- /usr/bin/logcollect validate --no-connect \
  --config /etc/logcollect/config.ini 2>&1)" || { echo "$report" >&2; fail "validate"; }
echo "$report" >&2
grep -q '^config ok: 1 entry in \[collect\], data_dir /var/lib/logcollect' <<<"$report" || fail "validate's report"
# And a ${NAME} from the environment reaching it: an unset one is refused.
sed 's|^host = .*|host = ${LC_DEB_TEST_HOST}|' /etc/logcollect/config.ini >"$out/env.ini"
chmod 644 "$out/env.ini"
chmod 755 "$out"
if msg="$(env -u LC_DEB_TEST_HOST /usr/bin/logcollect validate --no-connect --config "$out/env.ini" 2>&1)"; then
  fail "an unset \${LC_DEB_TEST_HOST} was accepted: $msg"
fi
grep -q 'config agent.host: environment variable LC_DEB_TEST_HOST is not set' <<<"$msg" || fail "$msg"
LC_DEB_TEST_HOST=web-01 /usr/bin/logcollect validate --no-connect --config "$out/env.ini" >/dev/null \
  || fail "validate with LC_DEB_TEST_HOST set"

# The units as installed, with the real binary path.
log "systemd-analyze verify (installed units)"
verify="$(systemd-analyze verify --man=no "${units[@]/#//lib/systemd/system/}" 2>&1)" || fail "verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
# No unit is enabled by the install: the operator picks the role.
for u in "${units[@]}"; do
  [ ! -e "/etc/systemd/system/multi-user.target.wants/$u" ] || fail "$u is enabled by the install"
done

# The bash completion loads and completes the subcommands.
words="$(bash -c 'source /usr/share/bash-completion/completions/logcollect
  COMP_WORDS=(logcollect "") COMP_CWORD=1 COMP_LINE="logcollect " COMP_POINT=11
  _logcollect logcollect "" logcollect; printf "%s\n" "${COMPREPLY[@]}"')"
for c in run agent transfer validate config status completions; do
  grep -qx "$c" <<<"$words" || fail "bash completion of 'logcollect ' has no $c: $words"
done

log "dpkg --purge"
dpkg --purge logcollect >"$out/dpkg.log" 2>&1 || { cat "$out/dpkg.log" >&2; fail "dpkg --purge"; }
for f in /usr/bin/logcollect /etc/logcollect /etc/default/logcollect /var/lib/logcollect \
  /usr/share/bash-completion/completions/logcollect /usr/share/doc/logcollect "${units[@]/#//lib/systemd/system/}"; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
! getent passwd logcollect >/dev/null || fail "user logcollect is left after purge"
! getent group logcollect >/dev/null || fail "group logcollect is left after purge"
! dpkg-query -W logcollect >/dev/null 2>&1 || fail "dpkg still knows logcollect after purge"
log "ok: built, installed, validated, purged"
