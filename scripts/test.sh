#!/usr/bin/env bash
# Runs every test of journeydb: the one command README.md documents and .ci/run calls.
# Installs what the tests need beyond cargo (nothing yet beyond the Rust toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
