#!/usr/bin/env bash
# perf/torture.sh [short|full]: the torture suite (issue 14). Real Tansu and
# noida-db on free ports (a fresh broker per scenario), the agent and the
# transfer as separate processes (and `logcollect run`), a workload over
# many files and a fault schedule, then every line counted by clients that
# are not logcollect's: a plain Kafka consumer from the earliest offsets
# (perf-tools torture-count), Elasticsearch `_count` and a scroll over
# every document. One row per scenario; exits non-zero on any loss or
# duplicate document.
#
# Scenarios:
#   agent-kill     agent kill -9'd at random moments (restarted at once)
#   rotate-kill    the same while every file is renamed out of the glob every second
#                  (full only: it loses lines today, see perf/README.md)
#   transfer-kill  transfer kill -9'd at random moments
#   outages        broker SIGSTOPped, then Elasticsearch unreachable (a dropping proxy)
#   run-kill       `logcollect run` (embedded index) kill -9'd; counted over its search API
#
# Environment: LOGCOLLECT_BIN (default: the dev build in $CARGO_TARGET_DIR),
# PERF_TARGET_DIR (perf-tools' target dir), TANSU_BIN, NOIDA_BIN,
# TORTURE_ONLY (scenario names), TORTURE_OUT (default perf/out/torture).
# short: ~3 minutes (scripts/test.sh); full: the sizes of perf/README.md.
set -euo pipefail
ME=torture
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-short}
TANSU=${TANSU:-${TANSU_BIN:-}}
PERF_TARGET_DIR=${PERF_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/logcollect-target}/perf}
source "$HERE/lib.sh"
NOIDA=${NOIDA_BIN:-$(python3 -c 'import noida_db,os;print(os.path.dirname(noida_db.__file__))')/noida-db}
PT=$PERF_TARGET_DIR/debug/perf-tools
(cd "$HERE" && CARGO_TARGET_DIR=$PERF_TARGET_DIR cargo build --quiet) || die "perf-tools did not build"
LC=${LOGCOLLECT_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/logcollect-target}/debug/logcollect}
[[ -x $LC ]] || die "no logcollect at $LC (cargo build, or set LOGCOLLECT_BIN)"
T=${TORTURE_OUT:-$HERE/out/torture}
rm -rf "$T" && mkdir -p "$T"

case $MODE in
    short) FILES=8 LINES=3000 SECS=15 KILLS=4 STOP_S=5 ONLY="agent-kill transfer-kill outages run-kill" ;; # 24,000 lines each
    full) FILES=20 LINES=10000 SECS=40 KILLS=20 STOP_S=60 ONLY="agent-kill rotate-kill transfer-kill outages run-kill" ;; # 200,000 lines, 5,000/s
    *) die "usage: torture.sh [short|full]" ;;
esac

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# peak RSS (MB) seen for a role: sampled every 200 ms into $dir/rss.<role>
sample_rss() { # dir role pidfile
    while [[ -f $1/sampling ]]; do
        local p kb
        p=$(cat "$3" 2>/dev/null) || true
        kb=$(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        echo "${kb:-0}" >>"$1/rss.$2"
        sleep 0.2
    done
}
peak_mb() { sort -n "$1" 2>/dev/null | tail -1 | awk '{printf "%d", $1/1024}'; }

# start_role DIR ROLE: logcollect ROLE --config DIR/ROLE.ini, pid in DIR/ROLE.pid
start_role() {
    "$LC" "$2" --config "$1/$2.ini" >>"$1/$2.log" 2>&1 &
    echo $! >"$1/$2.pid"
    PIDS+=($!)
}
# kill -9 and start again at once (a supervisor's restart)
crash_role() {
    kill -KILL "$(cat "$1/$2.pid")" 2>/dev/null || true
    start_role "$1" "$2"
}
# seconds (ms resolution) until FILE's mtime is after now, polling
flowing_after() { # file-or-command
    local t0 now
    t0=$(date +%s%N)
    # At most 10 s: an idle pipeline (the writer done) has nothing to show.
    for _ in $(seq 200); do
        if eval "$1"; then
            now=$(date +%s%N)
            echo $(((now - t0) / 1000000))
            return
        fi
        sleep 0.05
    done
    echo 10000
}
newer() { [[ -f $1 ]] && (($(date -r "$1" +%s%3N) > $2)); }

start_noida() { # dir
    NOIDA_PORT=$(free_port)
    "$NOIDA" start --only elasticsearch --elasticsearch-port "$NOIDA_PORT" --data-dir "$1/noida" >"$1/noida.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$NOIDA_PORT/" >/dev/null && return; sleep 0.1; done
    die "noida-db did not answer"
}

ROWS=()
FAIL=0
# scenario NAME FAULT: agent + transfer through a dropping proxy into noida
scenario() {
    local name=$1 fault=$2 d=$T/$1
    mkdir -p "$d/logs"
    start_broker "$d" app
    PIDS+=("$BROKER_PID")
    start_noida "$d"
    local pport
    pport=$(free_port)
    "$PT" drop-proxy --port "$pport" --upstream "127.0.0.1:$NOIDA_PORT" --flag "$d/es-down" >"$d/proxy.log" 2>&1 &
    PIDS+=($!)
    printf '[kafka]\naddress = %s\n[agent]\ndata_dir = %s/adata\nhost = torture\nread_from = beginning\nscan_interval_ms = 200\n[http]\nlisten = off\n[collect]\napp = %s/logs/*.log\n' \
        "$BROKERS" "$d" "$d" >"$d/agent.ini"
    printf '[kafka]\naddress = %s\ntopic = app\ngroup_id = torture\n[kafka.consumer]\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 500\n[agent]\ndata_dir = %s/tdata\n[es]\naddress = http://127.0.0.1:%s\nindex = {topic}-%%Y.%%m.%%d\nworkers = 2\nbulk_max_docs = 2000\nbulk_max_wait_ms = 100\nretry_max_backoff_ms = 1000\n[http]\nlisten = off\n' \
        "$BROKERS" "$d" "$pport" >"$d/transfer.ini"
    touch "$d/sampling"
    start_role "$d" agent
    start_role "$d" transfer
    sample_rss "$d" agent "$d/agent.pid" &
    sample_rss "$d" transfer "$d/transfer.pid" &
    local rotate=0
    [[ $fault == rotate-kill ]] && rotate=1000
    "$PT" torture-write --dir "$d/logs" --files "$FILES" --lines "$LINES" --secs "$SECS" --rotate-ms "$rotate" >"$d/write.out" &
    local writer=$! longest=0 r k t
    sleep 2
    case $fault in
        agent-kill | rotate-kill | transfer-kill)
            local role=${fault%-kill}
            [[ $role == rotate ]] && role=agent
            for k in $(seq "$KILLS"); do
                sleep "0.$((RANDOM % 9 + 1))" && sleep $((SECS / KILLS / 2))
                kill -0 "$writer" 2>/dev/null || break # faults under load only
                t=$(($(date +%s%N) / 1000000))
                crash_role "$d" "$role"
                if [[ $role == agent ]]; then
                    r=$(flowing_after "newer $d/adata/checkpoints.json $t")
                else
                    r=$(flowing_after "grep -c 'partitions assigned' $d/transfer.log | awk '{exit !(\$1 >= $((k + 1)))}'")
                fi
                ((r > longest)) && longest=$r
            done
            ;;
        outages)
            kill -STOP "$BROKER_PID"
            sleep "$STOP_S"
            kill -CONT "$BROKER_PID"
            t=$(($(date +%s%N) / 1000000))
            r=$(flowing_after "newer $d/adata/checkpoints.json $t")
            longest=$r
            touch "$d/es-down"
            sleep "$STOP_S"
            local before
            before=$(curl -s "http://127.0.0.1:$NOIDA_PORT/app-*/_count" | sed 's/.*"count":\([0-9]*\).*/\1/')
            rm -f "$d/es-down"
            r=$(flowing_after "(( \$(curl -s -XPOST http://127.0.0.1:$NOIDA_PORT/_refresh >/dev/null; curl -s http://127.0.0.1:$NOIDA_PORT/app-*/_count | sed 's/.*\"count\":\([0-9]*\).*/\1/') > ${before:-0} ))")
            ((r > longest)) && longest=$r
            ;;
    esac
    wait "$writer"
    local written
    written=$(cat "$d/logs/written")
    # Let the pipeline drain: ES count stops growing for 5 s.
    local index last=-1 same=0 n
    index=app-$(date -u +%Y.%m.%d)
    for _ in $(seq 240); do
        curl -s -XPOST "http://127.0.0.1:$NOIDA_PORT/$index/_refresh" >/dev/null || true
        n=$(curl -s "http://127.0.0.1:$NOIDA_PORT/$index/_count" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
        if [[ $n == "$last" ]]; then same=$((same + 1)); else same=0; fi
        last=$n
        ((same >= 10 && ${n:-0} >= written)) && break
        ((same >= 40)) && break
        sleep 0.5
    done
    rm -f "$d/sampling"
    local ok=ok out
    out=$("$PT" torture-count --brokers "$BROKERS" --topic app --written "$written" --es "http://127.0.0.1:$NOIDA_PORT" --index "$index" 2>"$d/count.err") || ok=FAIL
    echo "$out" >"$d/count.out"
    [[ $ok == ok ]] || FAIL=1
    ROWS+=("$(printf '%-14s %8s %8s %8s %8s %8s %8s %8s %6s %6s %8s %5s' "$name" "$written" \
        "$(kv kafka_distinct <<<"$out")" "$(kv kafka_dups <<<"$out")" "$(kv es_count <<<"$out")" \
        "$(kv es_ids <<<"$out")" "$(kv es_dup_contents <<<"$out")" "$(kv lost <<<"$out")" \
        "$(peak_mb "$d/rss.agent")" "$(peak_mb "$d/rss.transfer")" "$longest" "$ok")")
    for p in agent transfer; do kill -KILL "$(cat "$d/$p.pid")" 2>/dev/null || true; done
    cleanup
    PIDS=()
    wait 2>/dev/null || true
}

# run-kill: `logcollect run` alone, kill -9'd and restarted at once
scenario_run() {
    local d=$T/run-kill
    mkdir -p "$d/logs"
    local port
    port=$(free_port)
    printf '[agent]\ndata_dir = %s/data\nhost = torture\nread_from = beginning\nscan_interval_ms = 200\n[index]\ncommit_interval_ms = 500\n[http]\nlisten = 127.0.0.1:%s\n[collect]\napp = %s/logs/*.log\n' \
        "$d" "$port" "$d" >"$d/run.ini"
    touch "$d/sampling"
    start_role "$d" run
    sample_rss "$d" run "$d/run.pid" &
    "$PT" torture-write --dir "$d/logs" --files "$FILES" --lines "$LINES" --secs "$SECS" >"$d/write.out" &
    local writer=$! longest=0 r k
    sleep 2
    for k in $(seq "$KILLS"); do
        sleep "0.$((RANDOM % 9 + 1))" && sleep $((SECS / KILLS / 2))
        kill -0 "$writer" 2>/dev/null || break # faults under load only
        crash_role "$d" run
        r=$(flowing_after "curl -sf 'http://127.0.0.1:$port/api/search?q=&from=0&size=1' >/dev/null")
        ((r > longest)) && longest=$r
    done
    wait "$writer"
    local written total=0 last=-1 same=0
    written=$(cat "$d/logs/written")
    for _ in $(seq 240); do
        total=$(curl -s "http://127.0.0.1:$port/api/search?q=&from=0&size=1" | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
        [[ $total == "$written" ]] && same=$((same + 1))
        ((same >= 4)) && break
        sleep 0.5
    done
    rm -f "$d/sampling"
    local ok=ok lost=$((written - ${total:-0}))
    ((lost == 0)) || ok=FAIL
    [[ $ok == ok ]] || FAIL=1
    kill -0 "$(cat "$d/run.pid")" 2>/dev/null || { ok="FAIL(exited)"; FAIL=1; }
    ROWS+=("$(printf '%-14s %8s %8s %8s %8s %8s %8s %8s %6s %6s %8s %5s' run-kill "$written" - - "${total:-0}" - - "$lost" \
        "$(peak_mb "$d/rss.run")" - "$longest" "$ok")")
    cleanup
    PIDS=()
    wait 2>/dev/null || true
}

for s in ${TORTURE_ONLY:-$ONLY}; do
    note "scenario $s ($MODE)"
    if [[ $s == run-kill ]]; then scenario_run; else scenario "$s" "$s"; fi
done
printf '%-14s %8s %8s %8s %8s %8s %8s %8s %6s %6s %8s %5s\n' scenario written kafka kdups es_count es_ids es_dupc lost rssA_MB rssT_MB recov_ms ok
printf '%s\n' "${ROWS[@]}"
exit $FAIL
