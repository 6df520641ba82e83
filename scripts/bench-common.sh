# Sourced by the bench scripts: builds the release binaries (or uses the ones in
# $BIN, when set) and provides a work directory, background-process cleanup and free
# loopback ports.
# shellcheck shell=bash
if [ -z "${BIN:-}" ]; then
  scripts/setup.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctxstore-release}"
  cargo build --release -p ctxstore --bin ctxd -p ctxctl --bin ctxctl
  BIN="$CARGO_TARGET_DIR/release"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  # Ask the kernel for a free loopback port (random high port without python3).
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1
}

# Runs "$@" every 0.2 s until it succeeds; fails after WAIT_SECS (default 60) seconds.
wait_until() {
  local _
  for _ in $(seq 1 $((${WAIT_SECS:-60} * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for: $*" >&2
  return 1
}
