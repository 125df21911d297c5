#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 30),
# starting from the checked-in seeds in fuzz/seeds/<target>/.
#
# Works with only the stable toolchain: without nightly, targets are built
# with `--sanitizer none` (coverage-guided libFuzzer, debug assertions on, no
# AddressSanitizer). FUZZ_SANITIZER=address asks for ASan; on stable that
# needs RUSTC_BOOTSTRAP=1, which this script then sets (and it keeps the C
# dependencies uninstrumented, see below).
#
# New corpus entries go to fuzz/corpus/<target>/ and crashes to
# fuzz/artifacts/<target>/ (both ignored by git). A crash input belongs in
# fuzz/seeds/<target>/ once fixed, as a regression seed.
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh          # all targets, 60 s each
#   scripts/fuzz.sh split                    # only the named targets
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

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

sanitizer=${FUZZ_SANITIZER:-}
if [ -z "$sanitizer" ]; then
    if rustc --version | grep -q nightly; then sanitizer=address; else sanitizer=none; fi
fi
if [ "$sanitizer" != none ]; then
    if ! rustc --version | grep -q nightly; then
        # -Zsanitizer on a stable compiler.
        export RUSTC_BOOTSTRAP=1
    fi
    # cc instruments C code for the sanitizer rustc uses; librdkafka's
    # configure then links its probes without the runtime and fails. The
    # targets fuzz Rust code: leave the C dependencies uninstrumented.
    export CFLAGS="${CFLAGS:+$CFLAGS }-fno-sanitize=$sanitizer"
    export CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }-fno-sanitize=$sanitizer"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
for t in "${targets[@]}"; do
    corpus=fuzz/corpus/$t
    mkdir -p "$corpus"
    dirs=("$corpus")
    if [ -d "fuzz/seeds/$t" ]; then dirs+=("fuzz/seeds/$t"); fi
    echo "fuzz.sh: $t for ${FUZZ_SECONDS}s (sanitizer $sanitizer)" >&2
    # New inputs are written to the first directory only: the seeds stay as
    # they are checked in.
    if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), no crash in ${FUZZ_SECONDS}s each" >&2
