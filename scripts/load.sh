#!/usr/bin/env bash
# Load campaign (issue 15): 64 clients on one `journeydb serve`, native and PostgreSQL protocols
# mixed (appends, INSERTs, set operations, catalog queries, swaps with a swap-pair checker, journey
# runs), a connection storm and torn Append frames, then every acknowledged row counted before and
# after a SIGKILL and restart. Prints throughput and p50/p99 per kind and the server's peak RSS.
# CI runs 60 s in the test profile; this runs SECONDS in release.
#   scripts/load.sh [SECONDS=300]
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD_SECONDS="${1:-300}" cargo test --release -p journeydb --test load -- --nocapture 2>&1 \
  | grep -vE "^\s+(Compiling|Finished|Running)"
