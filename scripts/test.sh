#!/usr/bin/env bash
# Runs every test (unit, property, simulation, multi-node and process-level tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests: run them first so its summary closes the output.
  cargo test --doc --quiet
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
