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

# Creates the venv at $venv, installing python3-venv with apt-get if Debian's system
# Python lacks it.
make_venv() {
  local py sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v python3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "installing python3 and python3-venv (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  py="$(command -v python3)" || die "python3 not found; install Python 3.10 or later"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$py is Python $("$py" -c 'import platform; print(platform.python_version())'); 3.10 or later is needed"
  mkdir -p "$(dirname "$venv")"
  if "$py" -m venv "$venv" 2>/dev/null; then return; fi
  rm -rf "$venv"
  command -v apt-get >/dev/null 2>&1 ||
    die "\`$py -m venv\` failed; install the venv module for $py (Debian: python3-venv)"
  say "installing python3-venv (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  "$py" -m venv "$venv" || die "\`$py -m venv $venv\` failed even with python3-venv"
}

# The pins live in pyproject.toml: reinstall whenever it changes.
stamp="$(sha256sum "$pkg/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/ctxstore-pyproject" 2>/dev/null)" != "$stamp" ]; then
  say "installing $pkg[test,langgraph,langchain] into $venv"
  rm -rf "$venv"
  make_venv
  "$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet install --upgrade pip >/dev/null ||
    die "pip upgrade failed (is PyPI reachable?)"
  printf '%s\n' "$stamp" >"$venv/ctxstore-pyproject"
fi
# The package itself is reinstalled every run (cheap: its dependencies are there).
"$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet install "./$pkg[test,langgraph,langchain]" ||
  { rm -f "$venv/ctxstore-pyproject"; die "pip install ./$pkg failed (is PyPI reachable?)"; }

say "checking the generated stubs"
PYTHON="$venv/bin/python" "$pkg/gen_protos.sh" --check

say "pytest with CTXD_BIN=$CTXD_BIN"
cd "$pkg"
# Tests import the installed package, not the source tree.
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
