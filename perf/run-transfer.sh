#!/usr/bin/env bash
# Load test of the transfer (Kafka -> Elasticsearch _bulk). See perf/README.md.
#
# 1. One fresh Tansu; PERF_DOCS agent-shaped records (~200-byte lines, key =
#    fid, headers host/path/offset/fid, three pretend files, one per
#    partition) are loaded once into topic perf-transfer (3 partitions), and
#    counted back.
# 2. Rounds alternate, in turn order, two contenders reading all of them:
#    - consumer: a plain consumer-group member that only reads (the
#      Kafka-side ceiling; perf-tools consume), new group each round;
#    - transfer: `logcollect transfer` (release build), new group each round,
#      into perf-tools bulk-sink, which checks every _bulk body (NDJSON, action
#      + source line per document, item count) and answers all-201; timed
#      until the sink has acknowledged all PERF_DOCS documents.
#    Both join a group (on Tansu that takes about half of session.timeout.ms,
#    6000 here), so each is rated from its partition assignment to its last
#    record (steady) as well as from its start (wall).
# 3. noida-db (PERF_NOIDA_DOCS records in topic perf-noida, loaded once): a
#    transfer into the sink saves its _bulk bodies; then rounds alternate
#    - noida-transfer: the transfer into a fresh noida-db, through the sink in
#      counting-proxy mode (bulk-sink --forward), timed until every document
#      is acknowledged by noida;
#    - noida-replay: the saved bodies replayed by perf-tools bulk-send at the
#      same concurrency (es.workers) into a fresh noida-db through the same
#      proxy: noida's own intake ceiling.
#    Each round ends with noida's _count checked.
#
# usage: perf/run-transfer.sh [ROUNDS]       (default 3; or PERF_ROUNDS)
#
# Environment (and lib.sh's: LOGCOLLECT_BIN, PERF_AGENT_REV,
# LOGCOLLECT_TARGET_DIR, PERF_TARGET_DIR, PERF_OUT, TANSU):
#   PERF_DOCS=N             records for the mock-endpoint part (default 1000000)
#   PERF_NOIDA_DOCS=N       records for the noida-db part (default 50000; 0 skips it)
#   PERF_NOIDA_ROUNDS=R     rounds of the noida-db part (default ROUNDS)
#   PERF_WORKERS=W          es.workers of the transfer, and bulk-send's (default 4)
#   PERF_TRANSFER_ES        extra lines for the transfer's [es] section
#   PERF_TRANSFER_ENV       VAR=value words set for the transfer process only
#   PERF_CONSUMER_ARGS      extra args for `perf-tools consume`, e.g. "--commit-ms 1000"
#                           (commit the position every second, as the transfer does)
#   PERF_CONSUMER_PROPS     extra librdkafka consumer properties, "k=v" words, for
#                           both the transfer and the plain consumer
#   PERF_PROFILE_ARGS       `perf record` arguments instead of "-g", e.g.
#                           "-e sched:sched_switch -g" (where threads wait)
#   PERF_PROFILE=1          after the rounds, one more transfer run (not in the
#                           table), sampled by `perf record -g` for PERF_PROFILE_S
#                           (5) s from its partition assignment
#   NOIDA=PATH              the noida-db binary (default: the PyPI package's)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ME=run-transfer.sh
# shellcheck source=perf/lib.sh
source "$HERE/lib.sh"
ROUNDS=${1:-${PERF_ROUNDS:-3}}
DOCS=${PERF_DOCS:-1000000}
NDOCS=${PERF_NOIDA_DOCS:-50000}
NROUNDS=${PERF_NOIDA_ROUNDS:-$ROUNDS}
WORKERS=${PERF_WORKERS:-4}
TOPIC=perf-transfer
NTOPIC=perf-noida
# Group joins on Tansu take about half of session.timeout.ms.
read -r -a PROPS <<<"session.timeout.ms=6000 heartbeat.interval.ms=500 ${PERF_CONSUMER_PROPS:-}"

for v in ROUNDS DOCS NROUNDS WORKERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number, got '${!v}'"
done
[[ $NDOCS =~ ^[0-9]+$ ]] || die "PERF_NOIDA_DOCS must be a number, got '$NDOCS'"
if ((NDOCS > 0)); then
    if [[ -z ${NOIDA:-} ]]; then
        NOIDA=$(python3 -c 'import noida_db,os;print(os.path.dirname(noida_db.__file__))' 2>/dev/null)/noida-db ||
            die "no noida-db: pip install noida-db==0.2.3 (or set NOIDA, or PERF_NOIDA_DOCS=0)"
    fi
    [[ -x $NOIDA ]] || die "no noida-db at $NOIDA: pip install noida-db==0.2.3 (or set NOIDA)"
fi

build_tools

# --- the lines (cached): generated a little past what is needed ----------------
BYTES=$(((DOCS > NDOCS ? DOCS : NDOCS) * 230))
FILE=$OUT/lines-$BYTES.log
META=$FILE.meta
if [[ ! -f $FILE || ! -f $META || $(stat -c %s "$FILE") != "$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$META")" ]]; then
    note "generating $FILE"
    "$PT" gen --bytes "$BYTES" --out "$FILE" >"$META" || die "gen failed"
fi
LINES=$(sed -n 's/.* lines=\([0-9]*\).*/\1/p' "$META")
((LINES >= DOCS && LINES >= NDOCS)) || die "$FILE has $LINES lines, fewer than needed (delete it)"

# --- process bookkeeping: everything started here is stopped on exit ---------
BROKER_PID=
TRANSFER_PID=
SINK_PID=
NOIDA_PID=
cleanup() {
    for pid in $TRANSFER_PID $SINK_PID $NOIDA_PID $BROKER_PID; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local port=$1 what=$2 pid=$3
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || die "$what exited at start"
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    die "$what did not open port $port"
}

# ns since the epoch of the first "partitions assigned" in a transfer log.
assigned_ns() {
    local ts
    ts=$(grep -m1 'partitions assigned' "$1" | awk '{print $1}')
    [[ -n $ts ]] || { echo 0; return; }
    date -d "$ts" +%s%N
}

# --- the broker and the records, once ------------------------------------------
RUN=$OUT/transfer-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
topics=("$TOPIC")
((NDOCS > 0)) && topics+=("$NTOPIC")
start_broker "$RUN" "${topics[@]}"
load() {
    local topic=$1 n=$2
    note "loading $n records into $topic"
    "$PT" produce --brokers "$BROKERS" --topic "$topic" --file "$FILE" --agent-like --lines "$n" \
        --files 3 --partitions 3 >"$RUN/load-$topic.out" 2>"$RUN/load-$topic.err" ||
        { cat "$RUN/load-$topic.err" >&2; die "loading $topic failed"; }
    "$PT" count --brokers "$BROKERS" --topic "$topic" --expect "$n" --idle-ms 5000 \
        >"$RUN/count-$topic.out" 2>"$RUN/count-$topic.err" ||
        die "$topic: $(cat "$RUN/count-$topic.err") $(cat "$RUN/count-$topic.out")"
    note "$topic: $(kv records <"$RUN/count-$topic.out") records, partitions $(kv partitions <"$RUN/count-$topic.out")"
}
load "$TOPIC" "$DOCS"
VALUE_BYTES=$(kv bytes <"$RUN/load-$TOPIC.out")
if ((NDOCS > 0)); then
    load "$NTOPIC" "$NDOCS"
fi

# Each run appends: kind round wall_s steady_s cpu_s hwm_kb broker_cpu_s verified note
RESULTS=$RUN/results.tsv
printf 'kind\tround\twall_s\tsteady_s\tcpu_s\thwm_kb\tbroker_cpu_s\tverified\tnote\n' >"$RESULTS"
record() {
    local IFS=$'\t'
    echo "$*" >>"$RESULTS"
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }

run_consumer() {
    local round=$1 dir=$RUN/$1-consumer
    mkdir -p "$dir"
    local b0 t0 t1 x=()
    for p in "${PROPS[@]}"; do x+=(-X "$p"); done
    # shellcheck disable=SC2206 # a list of words
    x+=(${PERF_CONSUMER_ARGS:-})
    b0=$(broker_cpu)
    t0=$(date +%s%N)
    "$PT" consume --brokers "$BROKERS" --topic "$TOPIC" --group "plain-$round" --expect "$DOCS" "${x[@]}" \
        >"$dir/consume.out" 2>"$dir/consume.err" ||
        { cat "$dir/consume.err" >&2; die "consumer failed (round $round)"; }
    t1=$(date +%s%N)
    local o=$dir/consume.out v=ok
    [[ $(kv records <"$o") == "$DOCS" ]] || v="BAD:$(kv records <"$o")"
    record consumer "$round" "$(secs "$t0" "$t1")" "$(secs "$(kv assigned_ns <"$o")" "$(kv last_ns <"$o")")" \
        "$(kv cpu_s <"$o")" "$(kv hwm_kb <"$o")" "$(awk -v a="$b0" -v b="$(broker_cpu)" 'BEGIN{printf "%.2f", b-a}')" "$v" -
    note "round $round consumer: $(tail -1 "$RESULTS" | cut -f3-8)"
}

# start_sink DIR EXPECT [bulk-sink args...]: sets SINK_PID and SINK_URL.
start_sink() {
    local dir=$1 expect=$2 port
    shift 2
    port=$(free_port)
    "$PT" bulk-sink --port "$port" --expect "$expect" --done-file "$dir/done" "$@" \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    SINK_PID=$!
    wait_port "$port" bulk-sink "$SINK_PID"
    SINK_URL=http://127.0.0.1:$port
}

stop_sink() {
    stop_pid "$SINK_PID"
    SINK_PID=
}

# transfer DIR TOPIC GROUP EXPECT: runs the transfer into $SINK_URL until
# the sink has EXPECT documents acknowledged; leaves watch.out in DIR.
transfer() {
    local dir=$1 topic=$2 group=$3 expect=$4 p
    {
        printf '[kafka]\naddress = %s\ntopic = %s\ngroup_id = %s\n\n[kafka.consumer]\n' "$BROKERS" "$topic" "$group"
        for p in "${PROPS[@]}"; do printf '%s = %s\n' "${p%%=*}" "${p#*=}"; done
        printf '\n[agent]\ndata_dir = %s\n\n[es]\naddress = %s\nworkers = %s\n%s\n\n[log]\nlevel = info\n' \
            "$dir/data" "$SINK_URL" "$WORKERS" "${PERF_TRANSFER_ES:-}"
    } >"$dir/config.ini"
    local t0
    t0=$(date +%s%N)
    env ${PERF_TRANSFER_ENV:-} "$LOGCOLLECT_BIN" transfer --config "$dir/config.ini" 2>"$dir/transfer.log" &
    TRANSFER_PID=$!
    local prof=
    if [[ ${PROFILE_THIS:-} == 1 ]]; then
        # From the assignment on (the group join idles for ~3 s).
        for _ in $(seq 200); do grep -q 'partitions assigned' "$dir/transfer.log" && break; sleep 0.05; done
        # shellcheck disable=SC2086 # a list of words
        perf record ${PERF_PROFILE_ARGS:--g} -o "$RUN/transfer.perf.data" -p "$TRANSFER_PID" -- sleep "${PERF_PROFILE_S:-5}" \
            >"$dir/perf-record.log" 2>&1 &
        prof=$!
    fi
    "$PT" watch-transfer --pid "$TRANSFER_PID" --done-file "$dir/done" --t0-ns "$t0" \
        --broker-pid "$BROKER_PID" --sink-pid "$SINK_PID" >"$dir/watch.out" 2>"$dir/watch.err" ||
        { cat "$dir/watch.err" >&2; tail -20 "$dir/transfer.log" >&2; die "transfer did not finish ($dir)"; }
    [[ -z $prof ]] || wait "$prof" || true
    kill -TERM "$TRANSFER_PID"
    local rc=0
    wait "$TRANSFER_PID" || rc=$?
    TRANSFER_PID=
    [[ $rc == 0 ]] || note "transfer exited with $rc after SIGTERM: see $dir/transfer.log"
}

run_transfer() {
    local round=$1 dir=$RUN/$1-transfer
    mkdir -p "$dir"
    local b0
    b0=$(broker_cpu)
    start_sink "$dir" "$DOCS"
    transfer "$dir" "$TOPIC" "transfer-$round" "$DOCS"
    stop_sink
    local w=$dir/watch.out s=$dir/sink.out v=ok
    if [[ $(kv docs <"$s") != "$DOCS" || $(kv unique_ids <"$s") != "$DOCS" || $(kv bad_bodies <"$s") != 0 ||
        $(kv other_requests <"$s") != 0 ]]; then
        v="BAD:docs=$(kv docs <"$s"),unique=$(kv unique_ids <"$s"),bad=$(kv bad_bodies <"$s")"
    fi
    record transfer "$round" "$(kv wall_s <"$w")" "$(secs "$(assigned_ns "$dir/transfer.log")" "$(kv done_ns <"$w")")" \
        "$(kv cpu_s <"$w")" "$(kv hwm_kb <"$w")" "$(awk -v a="$b0" -v b="$(broker_cpu)" 'BEGIN{printf "%.2f", b-a}')" "$v" \
        "sink:bodies=$(kv bodies <"$s"),body_MB=$(awk -v b="$(kv bytes <"$s")" 'BEGIN{printf "%.0f", b/1e6}'),cpu_s=$(kv cpu_s <"$s")"
    note "round $round transfer: $(tail -1 "$RESULTS" | cut -f3-8)"
}

# --- noida-db --------------------------------------------------------------------
# start_noida DIR: a fresh server; sets NOIDA_PID and NOIDA_URL.
start_noida() {
    local dir=$1 port
    port=$(free_port)
    "$NOIDA" start --only elasticsearch --elasticsearch-port "$port" --data-dir "$dir/noida-data" \
        >"$dir/noida.out" 2>"$dir/noida.log" &
    NOIDA_PID=$!
    NOIDA_URL=http://127.0.0.1:$port
    for _ in $(seq 400); do
        kill -0 "$NOIDA_PID" 2>/dev/null || die "noida-db exited at start: see $dir/noida.log"
        curl -sf "$NOIDA_URL/" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    die "noida-db did not answer at $NOIDA_URL"
}

stop_noida() {
    stop_pid "$NOIDA_PID"
    NOIDA_PID=
}

noida_count() {
    curl -sf -X POST "$NOIDA_URL/$NTOPIC/_refresh" >/dev/null 2>&1 || true
    curl -sf "$NOIDA_URL/$NTOPIC/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])' 2>/dev/null ||
        echo "?"
}

BODIES=$RUN/noida-bodies
capture_bodies() {
    local dir=$RUN/0-capture
    mkdir -p "$dir"
    start_sink "$dir" "$NDOCS" --save-dir "$BODIES"
    transfer "$dir" "$NTOPIC" capture "$NDOCS"
    stop_sink
    [[ $(kv docs <"$dir/sink.out") == "$NDOCS" ]] || die "capture: $(cat "$dir/sink.out")"
    note "captured $(kv bodies <"$dir/sink.out") bodies of $NTOPIC ($NDOCS documents) in $BODIES"
}

# noida_round ROUND transfer|replay
noida_round() {
    local round=$1 how=$2 dir=$RUN/$1-noida-$2
    mkdir -p "$dir"
    start_noida "$dir"
    start_sink "$dir" "$NDOCS" --forward "$NOIDA_URL"
    local steady wall cpu=- hwm=- t0
    if [[ $how == transfer ]]; then
        transfer "$dir" "$NTOPIC" "noida-$round" "$NDOCS"
        wall=$(kv wall_s <"$dir/watch.out")
        steady=$(secs "$(assigned_ns "$dir/transfer.log")" "$(kv done_ns <"$dir/watch.out")")
        cpu=$(kv cpu_s <"$dir/watch.out")
        hwm=$(kv hwm_kb <"$dir/watch.out")
    else
        t0=$(date +%s%N)
        "$PT" bulk-send --url "$SINK_URL" --dir "$BODIES" --workers "$WORKERS" \
            >"$dir/send.out" 2>"$dir/send.err" || { cat "$dir/send.err" >&2; die "bulk-send failed ($dir)"; }
        local done_ns
        done_ns=$(sed -n 's/.*done_ns=\([0-9]*\).*/\1/p' "$dir/done" 2>/dev/null)
        [[ -n $done_ns ]] || die "replay: the sink saw $(kv acked <"$dir/sink.out") of $NDOCS acknowledged"
        wall=$(secs "$t0" "$done_ns")
        steady=$(secs "$(kv first_ns <"$dir/send.out")" "$done_ns")
    fi
    local count v=ok
    count=$(noida_count)
    stop_sink
    stop_noida
    [[ $count == "$NDOCS" && $(kv item_errors <"$dir/sink.out") == 0 ]] ||
        v="BAD:count=$count,item_errors=$(kv item_errors <"$dir/sink.out")"
    record "noida-$how" "$round" "$wall" "$steady" "$cpu" "$hwm" - "$v" "requests=$(kv bodies <"$dir/sink.out")"
    note "round $round noida-$how: $(tail -1 "$RESULTS" | cut -f3-8)"
}

note "$DOCS records ($VALUE_BYTES value bytes) in $TOPIC; $ROUNDS round(s); transfer $LOGCOLLECT_BIN ($BIN_REV), workers $WORKERS"
for round in $(seq "$ROUNDS"); do
    # Alternate which goes first, so a drift in machine noise hits both.
    if ((round % 2)); then
        run_consumer "$round"
        run_transfer "$round"
    else
        run_transfer "$round"
        run_consumer "$round"
    fi
done
if [[ ${PERF_PROFILE:-0} == 1 ]]; then
    command -v perf >/dev/null || die "PERF_PROFILE=1 needs perf (apt-get install linux-perf)"
    dir=$RUN/profile-transfer
    mkdir -p "$dir"
    start_sink "$dir" "$DOCS"
    PROFILE_THIS=1 transfer "$dir" "$TOPIC" profile "$DOCS"
    stop_sink
    note "profile: perf report -i $RUN/transfer.perf.data --no-children --sort comm,dso,symbol"
fi
if ((NDOCS > 0)); then
    capture_bodies
    for round in $(seq "$NROUNDS"); do
        if ((round % 2)); then
            noida_round "$round" replay
            noida_round "$round" transfer
        else
            noida_round "$round" transfer
            noida_round "$round" replay
        fi
    done
fi
stop_broker

# --- report ----------------------------------------------------------------------
# Per run: docs/s and MB/s (record values) over the steady window, docs/s
# over the whole wall time, CPU-s per million docs, peak RSS MB.
TABLE=$(awk -F'\t' -v docs="$DOCS" -v ndocs="$NDOCS" -v bytes="$VALUE_BYTES" 'NR>1 {
    n = ($1 ~ /^noida/) ? ndocs : docs
    mb = ($1 ~ /^noida/) ? "-" : sprintf("%.1f", bytes/1e6/$4)
    cpu = ($5 == "-") ? "-" : sprintf("%.2f", $5/(n/1e6))
    rss = ($6 == "-") ? "-" : sprintf("%.1f", $6/1024)
    printf "%s\t%s\t%.2f\t%.2f\t%.0f\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\n",
        $1, $2, $3, $4, n/$4, mb, n/$3, $5, cpu, rss, $7, $8 "\t" $9
}' "$RESULTS")

echo
echo "logcollect transfer load test: $DOCS records ($(awk -v b="$VALUE_BYTES" -v d="$DOCS" 'BEGIN{printf "%.1f", b/d}') value bytes each), transfer $BIN_REV, workers $WORKERS, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "steady = from partition assignment (consumer, transfer) or first request (replay) to the last record/acknowledgement"
echo
fmt='%-14s %5s %7s %8s %11s %7s %9s %7s %9s %7s %8s %-8s %s\n'
# shellcheck disable=SC2059
printf "$fmt" kind round wall_s steady_s docs/s MB/s wall_dps cpu_s cpu_s/M rss_MB broker verified note
# shellcheck disable=SC2059
while IFS=$'\t' read -r k r w s d m wd c cm h b v n; do
    printf "$fmt" "$k" "$r" "$w" "$s" "$d" "$m" "$wd" "$c" "$cm" "$h" "$b" "$v" "$n"
done <<<"$TABLE"
echo
col() { awk -F'\t' -v k="$1" -v c="$2" '$1==k && $c != "-" {print $c}' <<<"$TABLE" | median | sed 's/^nan$/-/'; }
rng() { awk -F'\t' -v k="$1" -v c="$2" '$1==k && $c != "-" {print $c}' <<<"$TABLE" | spread; }
echo "medians (spread):"
for k in consumer transfer noida-replay noida-transfer; do
    grep -q "^$k"$'\t' <<<"$TABLE" || continue
    printf '  %-14s docs/s %s (%s)  MB/s %s  wall docs/s %s (%s)  cpu_s/M %s (%s)  rss_MB %s (%s)\n' "$k" \
        "$(col $k 5)" "$(rng $k 5)" "$(col $k 6)" "$(col $k 7)" "$(rng $k 7)" "$(col $k 9)" "$(rng $k 9)" \
        "$(col $k 10)" "$(rng $k 10)"
done
ratios() { # per round: kind $1 over kind $2, column $3
    awk -F'\t' -v a="$1" -v b="$2" -v c="$3" '$1==a {x[$2]=$c} $1==b {y[$2]=$c}
        END {for (r in x) if (r in y && y[r] > 0) printf "%.3f\n", x[r]/y[r]}' <<<"$TABLE"
}
echo
R=$(ratios transfer consumer 5)
if [[ -n $R ]]; then
    echo "transfer/consumer steady docs/s per round: $(tr '\n' ' ' <<<"$R")(median $(median <<<"$R"), target >= 0.90)"
    R=$(ratios transfer consumer 7)
    echo "transfer/consumer wall docs/s per round:   $(tr '\n' ' ' <<<"$R")(median $(median <<<"$R"))"
fi
R=$(ratios noida-transfer noida-replay 5)
[[ -z $R ]] || echo "noida: transfer/replay steady docs/s per round: $(tr '\n' ' ' <<<"$R")(median $(median <<<"$R"))"
echo
echo "runs: $RESULTS; logs: $RUN/"
