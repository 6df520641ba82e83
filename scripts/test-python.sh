#!/usr/bin/env bash
# Tests the Python client (clients/python) against real ctxd processes:
#
#   1. creates (or reuses) a venv and installs the package with its pinned test
#      dependencies (LangGraph, LangChain, pytest, grpcio-tools);
#   2. checks that the committed protobuf stubs are current (gen_protos.sh --check);
#   3. runs pytest on clients/python/tests, which starts its own 3-node clusters.
#
# Needs Python 3.10+ with the venv module (on a Debian system Python without it, the
# python3-venv package is installed with apt-get, as scripts/check-deploy.sh does),
# PyPI for the first run, and a built ctxd.
#
# Environment:
#   CTXD_BIN=PATH              the ctxd binary (default: $CARGO_TARGET_DIR/debug/ctxd,
#                              else target/debug/ctxd)
#   CTXSTORE_PY_VENV=DIR       the venv (default ~/.cache/ctxstore-pyvenv); it is
#                              reinstalled when clients/python/pyproject.toml changes
# Extra arguments go to pytest (e.g. `scripts/test-python.sh -k ring -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CTXSTORE_PY_VENV:-$HOME/.cache/ctxstore-pyvenv}"
pkg=clients/python

say() { printf 'test-python: %s\n' "$*"; }
die() { printf 'test-python: %s\n' "$*" >&2; exit 1; }

if [ -z "${CTXD_BIN:-}" ]; then
  CTXD_BIN="${CARGO_TARGET_DIR:-target}/debug/ctxd"
fi
[ -x "$CTXD_BIN" ] || die "ctxd not found at $CTXD_BIN: build it (cargo build --bin ctxd) or set CTXD_BIN"
CTXD_BIN="$(cd "$(dirname "$CTXD_BIN")" && pwd)/$(basename "$CTXD_BIN")"
export CTXD_BIN

# make_venv DIR
source scripts/python-venv.sh

# The pins live in pyproject.toml: reinstall whenever it changes.
stamp="$(sha256sum "$pkg/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/ctxstore-pyproject" 2>/dev/null)" != "$stamp" ]; then
  say "installing ${pkg}[test,langgraph,langchain] into $venv"
  rm -rf "$venv"
  make_venv "$venv"
  "$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet install --upgrade pip >/dev/null ||
    die "pip upgrade failed (is PyPI reachable?)"
  printf '%s\n' "$stamp" >"$venv/ctxstore-pyproject"
fi
# The package itself is reinstalled every run (cheap: its dependencies are there).
"$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet install "./${pkg}[test,langgraph,langchain]" ||
  { rm -f "$venv/ctxstore-pyproject"; die "pip install ./$pkg failed (is PyPI reachable?)"; }

say "checking the generated stubs"
PYTHON="$venv/bin/python" "$pkg/gen_protos.sh" --check

say "pytest with CTXD_BIN=$CTXD_BIN"
cd "$pkg"
# Tests import the installed package, not the source tree.
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
