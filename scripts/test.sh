#!/usr/bin/env bash
# Runs every test of the workspace (unit, property, simulation, multi-node and
# process-level tests), after checking that the client crates stay free of RocksDB,
# then the Python client's tests against this build's ctxd (scripts/test-python.sh;
# it makes its own venv). Arguments go to the Rust test runner (a filter, say); with
# arguments the Python tests are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/check-client-deps.sh
# Every binary, ctxctl included (a package of its own that process tests run), built
# with the test targets so both share one build of the dependencies.
cargo build --workspace --bins --tests
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests: run them first so its summary closes the output.
  cargo test --workspace --doc --quiet
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
if [ "$#" -eq 0 ]; then
  CTXD_BIN="${CARGO_TARGET_DIR:-target}/debug/ctxd" scripts/test-python.sh
fi
