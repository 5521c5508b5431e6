#!/usr/bin/env bash
# Power-cut campaign (issue 18): the storage model operations on the simulated file system, each
# sequence stopped at 8 points by a power cut or a kill (then a power cut after recovery), and by an
# injected I/O error (then a restart in the same boot and a power cut). Prints how many stops were
# explored. CI runs the same test with its default of 48 sequences.
#   scripts/power.sh [SEQUENCES]      default 20000
set -euo pipefail
cd "$(dirname "$0")/.."
POWER_CASES="${1:-20000}" cargo test -p journeydb-storage --test power every_power_cut -- --nocapture 2>&1 \
  | grep -E "stops explored|test result|panicked|minimal failing|Test failed" 
