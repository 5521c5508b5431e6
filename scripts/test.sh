#!/usr/bin/env bash
# Runs every test of journeydb: the one command README.md documents and .ci/run calls.
# Installs what the tests need beyond cargo (nothing yet beyond the Rust toolchain), runs
# `cargo test --workspace`, and ends with one line totalling every test binary's results.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
exit "$status"
