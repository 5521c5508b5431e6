#!/usr/bin/env bash
# Crash campaign (issue 15): a mixed workload (appends, INSERTs, swaps, bulk imports, journey runs,
# CREATE OR REPLACE TABLE AS, background flushes and compactions) SIGKILLed N times through the
# embedded engine (a child process) and N times through `journeydb serve`; after each kill
# `journeydb check` must pass and every acknowledged operation must be there whole
# (tools/tests/crash_campaign.rs). CI runs it with N = 6 each.
#   scripts/crash-campaign.sh [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
CAMPAIGN_KILLS="${1:-1000}" cargo test -p journeydb --test crash_campaign -- --nocapture --test-threads=2 2>&1 \
  | grep -E "campaign seed|kills|test result|panicked|round"
