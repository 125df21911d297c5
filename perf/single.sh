#!/usr/bin/env bash
# Single-host measurement: `logcollect run` (no Kafka, no Elasticsearch)
# indexes a generated file of ~200-byte lines into its embedded index; then
# the search API is timed over the whole index. See perf/README.md.
#
# usage: perf/single.sh
#
# Environment:
#   PERF_LINES=N          lines to index (default 10000000; the file is about
#                         N x 200 bytes and is cached in PERF_OUT)
#   PERF_REQUESTS=N       timed requests per query (default 200)
#   PERF_INDEX_INI        extra lines for [index] (e.g. "writer_threads = 2")
#   LOGCOLLECT_BIN=PATH   binary to test (default: build the work tree's release
#                         binary into LOGCOLLECT_TARGET_DIR, default /work/target)
#   PERF_TARGET_DIR=DIR   cargo target dir of perf-tools (default /work/target-perf)
#   PERF_OUT=DIR          cache and results (default perf/out)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN=$(cd "$HERE/.." && pwd)
LINES_WANTED=${PERF_LINES:-10000000}
REQUESTS=${PERF_REQUESTS:-200}
OUT=${PERF_OUT:-$HERE/out}
PERF_TARGET_DIR=${PERF_TARGET_DIR:-/work/target-perf}
PT=$PERF_TARGET_DIR/release/perf-tools

die() { echo "single.sh: $*" >&2; exit 1; }
note() { echo "single.sh: $*" >&2; }
kv() { sed -n "s/^RESULT.* $1=\([^ ]*\).*/\1/p" | head -1; }

[[ $LINES_WANTED =~ ^[1-9][0-9]*$ ]] || die "PERF_LINES must be a positive number"
mkdir -p "$OUT"

note "building perf-tools (CARGO_TARGET_DIR=$PERF_TARGET_DIR)"
(cd "$HERE" && CARGO_TARGET_DIR=$PERF_TARGET_DIR cargo build --release --quiet) || die "perf-tools did not build"
if [[ -z ${LOGCOLLECT_BIN:-} ]]; then
    target=${LOGCOLLECT_TARGET_DIR:-/work/target}
    note "building logcollect (CARGO_TARGET_DIR=$target)"
    (cd "$MAIN" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin logcollect) || die "logcollect did not build"
    LOGCOLLECT_BIN=$target/release/logcollect
fi
[[ -x $LOGCOLLECT_BIN ]] || die "no binary at $LOGCOLLECT_BIN"

# --- the input file (cached): gen makes whole ~205-byte lines up to a size ---
BYTES=$((LINES_WANTED * 205))  # gen lines average 204.7 bytes
FILE=$OUT/lines-$BYTES.log
META=$FILE.meta
if [[ ! -f $FILE || ! -f $META ]]; then
    note "generating $FILE"
    "$PT" gen --bytes "$BYTES" --out "$FILE" >"$META" || die "gen failed"
fi
LINES=$(kv lines <"$META")
cat "$FILE" >/dev/null

# --- run: index the file from its beginning ----------------------------------
RUN=$OUT/single
rm -rf "$RUN" && mkdir -p "$RUN"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$RUN/config.ini" <<INI
[agent]
data_dir = $RUN/data
host = perf-host
read_from = beginning
[index]
${PERF_INDEX_INI:-}
[http]
listen = 127.0.0.1:$PORT
[collect]
perf = $FILE
INI
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE=http://127.0.0.1:$PORT
T0=$(date +%s%N)
"$LOGCOLLECT_BIN" run --config "$RUN/config.ini" 2>"$RUN/run.log" &
PID=$!
note "indexing $LINES lines (pid $PID, log $RUN/run.log)"
"$PT" wait-total --url "$BASE/api/search?from=0&size=1" --expect "$LINES" --t0-ns "$T0" | tee "$RUN/index.result"
"$PT" proc-stat --pid "$PID" | tee "$RUN/proc.result"
# Let merges settle before measuring the size and the searches.
sleep 20
INDEX_BYTES=$(du -sb "$RUN/data/index" | cut -f1)
echo "RESULT index_bytes=$INDEX_BYTES lines=$LINES bytes_per_line=$(python3 -c "print(round($INDEX_BYTES/$LINES,1))") file_bytes=$(stat -c %s "$FILE")" | tee "$RUN/size.result"

lat() {
    local name=$1 path=$2
    printf '%-22s ' "$name"
    "$PT" http-latency --url "$BASE$path" --n "$REQUESTS" | tee -a "$RUN/latency.result"
}
# Every search covers the whole index (from=0).
lat "term (orders)" "/api/search?from=0&size=100&q=orders"
lat "rare term" "/api/search?from=0&size=100&q=PaymentGateway"
lat "phrase" "/api/search?from=0&size=100&q=%22GET%20%2Fapi%22"
lat "all, newest 100" "/api/search?from=0&size=100"
lat "histogram (all)" "/api/histogram?from=0&buckets=60"
lat "histogram (orders)" "/api/histogram?from=0&buckets=60&q=orders"
note "results in $RUN/*.result"
