#!/usr/bin/env bash
# Fail-point campaign (issue 15): every occurrence of every file-system fail point of a mixed
# workload (storage/tests/failpoints.rs), each tripped as an EIO and as a SIGKILL of the child
# process, then checked, reopened, compared with the acknowledged operations and written to again.
# CI trips the first, middle and last occurrence of each point.
#   scripts/failpoints.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FAILPOINT_OCCURRENCES=all cargo test -p journeydb-storage --test failpoints -- --nocapture 2>&1 \
  | grep -E "points reached|test result|panicked"
