#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 30),
# one after another, starting from the checked-in seeds in
# fuzz/seeds/<target>/, and prints one summary line per target (executions,
# coverage, crashes).
#
#   FUZZ_SECONDS=270 scripts/fuzz.sh         # all targets, 270 s each
#   scripts/fuzz.sh split query              # only the named targets
#
# Settings (environment):
#   FUZZ_SECONDS    time per target (default 30)
#   FUZZ_RUNS       stop a target after this many executions, whichever of
#                   the two limits comes first (default: no count limit)
#   FUZZ_TOOLCHAIN  rustup toolchain for cargo-fuzz, e.g. `nightly`; default:
#                   nightly when rustup has one, else the default toolchain
#   FUZZ_SANITIZER  address (default on nightly) or none (default on stable);
#                   address on stable sets RUSTC_BOOTSTRAP=1
#   FUZZ_MAX_LEN    longest input for every target (default: per target, below)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (10)
#   FUZZ_NICE       niceness of build and run (10: the machine is shared)
#   CARGO_TARGET_DIR  honoured; give ASan builds their own
#
# One process per target (no -jobs/-workers: libFuzzer's default). New corpus
# entries go to fuzz/corpus/<target>/, crashes to fuzz/artifacts/<target>/
# and each run's log to fuzz/artifacts/<target>.log (all ignored by git). A
# crash input belongs in fuzz/seeds/<target>/ once fixed, as a regression
# seed, and in a unit test beside the code.
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_NICE=${FUZZ_NICE:-10}
FUZZ_RUNS=${FUZZ_RUNS:--1}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# The longest input worth trying, from each target's input layout.
max_len_of() {
    case "$1" in
        # The data is repeated up to 16 times: 4 KiB already makes 64 KiB,
        # past the 16 KiB chunk, and keeps the naive model fast.
        split) echo 4096 ;;
        # MAX_QUERY_BYTES is 4096: a little past it reaches the length check.
        query) echo 4200 ;;
        # Records of up to 255-byte fields, values repeated up to 65 times.
        bulk_body) echo 16384 ;;
        # Up to 1000 built items of 3 bytes plus texts; raw bodies any size.
        classify) echo 16384 ;;
        *) echo 65536 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# libfuzzer-sys compiles libFuzzer itself, which takes a C++ compiler.
if ! command -v c++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz.sh: installing g++ for libFuzzer" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
    else
        echo "fuzz.sh: no C++ compiler (c++); install g++ first" >&2
        exit 1
    fi
fi

toolchain=${FUZZ_TOOLCHAIN:-}
if [ -z "$toolchain" ] && command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    toolchain=nightly
fi
cargo=(cargo)
rustc=(rustc)
if [ -n "$toolchain" ]; then
    cargo=(cargo "+$toolchain")
    rustc=(rustc "+$toolchain")
fi

sanitizer=${FUZZ_SANITIZER:-}
if [ -z "$sanitizer" ]; then
    if "${rustc[@]}" --version | grep -q nightly; then sanitizer=address; else sanitizer=none; fi
fi
if [ "$sanitizer" != none ]; then
    if ! "${rustc[@]}" --version | grep -q nightly; then
        # -Zsanitizer on a stable compiler.
        export RUSTC_BOOTSTRAP=1
    fi
    # cc instruments C code for the sanitizer rustc uses; librdkafka's
    # configure then links its probes without the runtime and fails. The
    # targets fuzz Rust code: leave the C dependencies uninstrumented.
    # Written exactly so (no stray space): cc's build scripts rerun when
    # CFLAGS changes at all, and then most of the tree rebuilds.
    export CFLAGS="${CFLAGS:-} -fno-sanitize=$sanitizer"
    export CXXFLAGS="${CXXFLAGS:-} -fno-sanitize=$sanitizer"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

# Build everything first, so the time budget below is all fuzzing.
echo "fuzz.sh: building ${targets[*]} (${toolchain:-default toolchain}, sanitizer $sanitizer)" >&2
for t in "${targets[@]}"; do
    nice -n "$FUZZ_NICE" "${cargo[@]}" fuzz build --sanitizer "$sanitizer" "$t"
done

mkdir -p fuzz/artifacts
failed=()
summary=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "fuzz/seeds/$t" ]; then dirs+=("fuzz/seeds/$t"); fi
    max_len=${FUZZ_MAX_LEN:-$(max_len_of "$t")}
    log=fuzz/artifacts/$t.log
    echo "fuzz.sh: $t for ${FUZZ_SECONDS}s or $FUZZ_RUNS runs, inputs up to $max_len bytes (log: $log)" >&2
    # New inputs are written to the first directory only: the seeds stay as
    # they are checked in.
    status=0
    nice -n "$FUZZ_NICE" "${cargo[@]}" fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -runs="$FUZZ_RUNS" -max_len="$max_len" -timeout="$FUZZ_TIMEOUT" \
        -print_final_stats=1 2>&1 | tee "$log" >&2 || status=$?
    # The last status line (`#N DONE cov: … ft: …`, or the one before a crash).
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -E 's/^(#[0-9]+)[[:space:]]+[A-Z]+[[:space:]]+/\1 /; s/ (corp|lim|exec\/s|rss|L|MS):.*//')
    if [ "$status" != 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED ($last); input in fuzz/artifacts/$t/")
    else
        summary+=("$t: $last")
    fi
done

printf 'fuzz.sh: %s\n' "${summary[@]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), no crash in ${FUZZ_SECONDS}s each" >&2
