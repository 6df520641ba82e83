#!/usr/bin/env bash
# Runs every test (unit, property and multi-node integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --doc
else
  cargo test --no-fail-fast "$@"
fi
