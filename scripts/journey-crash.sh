#!/usr/bin/env bash
# A longer crash campaign of the journey runner: N runs of `journeydb journey run` SIGKILLed at
# points spread over the run; each must leave the old or the new published state, and the next
# run must complete with the uninterrupted run's state and activation log. CI runs 10.
#   scripts/journey-crash.sh [N=200]
set -euo pipefail
cd "$(dirname "$0")/.."
JOURNEY_CRASH_TRIALS="${1:-200}" cargo test --release -p journeydb --test journey_crash -- --nocapture
