#!/usr/bin/env bash
# Soak (issue 15): `journeydb demo --connect` in a loop against one `journeydb serve` while a client
# runs set-operation queries, for MINUTES; the server's RSS, open file descriptors and database size
# are sampled every second and must stay flat (tools/tests/soak.rs). Writes the samples and a chart
# to docs/soak.csv and docs/soak.svg. CI runs 40 s in the test profile. The server runs without its
# query log (SOAK_QUERY_LOG_DAYS, default 0 here): the log's table grows with every statement.
#   scripts/soak.sh [MINUTES=30] [CUSTOMERS=100000]
set -uo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=$(( ${1:-30} * 60 )) SOAK_CUSTOMERS="${2:-100000}" SOAK_QUERY_LOG_DAYS="${SOAK_QUERY_LOG_DAYS:-0}" \
  cargo test --release -p journeydb --test soak -- --nocapture 2>&1 \
  | grep -E -A3 "journeydb serve|quarter|test result|panicked|grew"
cp target/tmp/soak/soak.svg docs/soak.svg
cp target/tmp/soak/soak.csv docs/soak.csv
echo "chart: docs/soak.svg"
