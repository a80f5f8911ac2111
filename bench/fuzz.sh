#!/usr/bin/env bash
# Runs every fuzz target in fuzz/, one after the other, SECONDS in all (default
# 240), split evenly between the targets, and prints one line per target: runs,
# corpus size, crashes.
#
#   bash bench/fuzz.sh 3600          # the recorded one-hour run (12 min per target)
#   JOBS=2 bash bench/fuzz.sh 600    # two libFuzzer processes per target
#   TARGETS="session path" bash bench/fuzz.sh 60
#
# Installs cargo-fuzz into the checkout's .tools/ on first use. Targets are
# built with the stable toolchain and `--sanitizer none` (nightly is only
# needed for ASan, and the code under test is safe Rust); debug assertions and
# overflow checks are on. New corpus entries go to fuzz/work/TARGET (not
# committed); the seeds in fuzz/corpus/TARGET are read too. A crash leaves its
# input in fuzz/artifacts/TARGET/ and makes this script exit non-zero.
set -euo pipefail

TOTAL_SECONDS=${1:-240}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
JOBS=${JOBS:-1}
TARGETS=${TARGETS:-"line_reader path config session proxy_header"}

if ! [[ "$TOTAL_SECONDS" =~ ^[0-9]+$ ]]; then
    echo "usage: bash bench/fuzz.sh [SECONDS]" >&2
    exit 2
fi
read -r -a target_list <<<"$TARGETS"
SECONDS_PER_TARGET=$(( TOTAL_SECONDS / ${#target_list[@]} ))
(( SECONDS_PER_TARGET > 0 )) || SECONDS_PER_TARGET=1

export PATH="$TOOLS/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz into $TOOLS" >&2
    cargo install cargo-fuzz --locked --version 0.13.2 --root "$TOOLS" -j2 >&2
fi

cd "$ROOT/fuzz"
CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo fuzz build --sanitizer none --debug-assertions >&2

failed=0
printf '%-12s %10s %8s %8s %s\n' target seconds runs corpus result
for target in "${target_list[@]}"; do
    mkdir -p "work/$target" "artifacts/$target"
    log="work/$target.log"
    set +e
    cargo fuzz run --sanitizer none --debug-assertions "$target" \
        "work/$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs="$JOBS" -workers="$JOBS" \
        -max_len=4096 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"$log" 2>&1
    status=$?
    set -e
    # With -jobs, libFuzzer writes each job's output to fuzz-N.log and, when
    # the job ends, copies it into its own output: read that copy only (both
    # would count every run twice).
    stats=$(cat "$log")
    rm -f fuzz-*.log
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$stats" | awk '{s += $2} END {print s + 0}')
    corpus=$(find "work/$target" -type f | wc -l)
    if [[ $status -eq 0 ]]; then
        result="0 crashes"
    else
        result="FAILED (exit $status), see fuzz/$log and fuzz/artifacts/$target/"
        failed=1
    fi
    printf '%-12s %10s %8s %8s %s\n' "$target" "$SECONDS_PER_TARGET" "$runs" "$corpus" "$result"
done
exit $failed
