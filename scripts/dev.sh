#!/usr/bin/env bash
# Starts a local 3-node ctxstore cluster on 127.0.0.1:7001-7003 (Ctrl-C stops it).
# Extra arguments go to `ctxd dev` (e.g. --base-port 0, --nodes 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Build the binaries together with the test targets: the same dependency features as
# scripts/test.sh, so RocksDB is compiled once for both commands.
cargo build --workspace --bins --tests
exec "${CARGO_TARGET_DIR:-target}/debug/ctxd" dev "$@"
