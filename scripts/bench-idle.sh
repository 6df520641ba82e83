#!/usr/bin/env bash
# What idle shards cost, with and without hibernation, in one run: 3 release `ctxd`
# with SHARDS data shards (default 1000) and no load, first as they are, then with
# `--hibernate`. After the cluster is ready and settled (SETTLE, default 15 s: the
# shards fall asleep after two idle election timeouts), prints the three servers'
# CPU over WINDOW (default 10 s) and their RSS.
#
#   scripts/bench-idle.sh
#   SHARDS=256 WINDOW=20s scripts/bench-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS="${SHARDS:-1000}"
SETTLE="${SETTLE:-15}"
WINDOW="${WINDOW:-10}"
DURATION="${DURATION:-10s}" # read by bench-common.sh
source scripts/bench-common.sh

# Split checks, the placement driver and leader balancing stay out of the picture.
cat >"$WORK/idle.toml" <<TOML
[pd]
enabled = false
[raft]
leader-balance = false
[split]
enabled = false
max-shards-per-node = $((SHARDS + 16))
TOML

rss_mib() { # pids: summed VmRSS in MiB
  local total=0 p kb
  for p in "$@"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")
    total=$((total + kb))
  done
  echo $((total / 1024))
}

measure() { # label
  local t0=0 t1=0 p hz
  hz=$(getconf CLK_TCK)
  sleep "$SETTLE"
  for p in "${CTX_PIDS[@]}"; do t0=$((t0 + $(cpu_ticks "$p"))); done
  sleep "$WINDOW"
  for p in "${CTX_PIDS[@]}"; do t1=$((t1 + $(cpu_ticks "$p"))); done
  printf '%-22s %12s %14s\n' "$1" \
    "$(awk -v d=$((t1 - t0)) -v hz="$hz" -v w="$WINDOW" 'BEGIN { printf "%.1f%%", 100 * d / hz / w }')" \
    "$(rss_mib "${CTX_PIDS[@]}") MiB"
}

printf 'machine: %s cores, %s; 3 ctxd, %s idle data shards, CPU over %s s after %s s\n' \
  "$(nproc)" "$(mem_total)" "$SHARDS" "$WINDOW" "$SETTLE"
printf '%-22s %12s %14s\n' "" "CPU (3 nodes)" "RSS (3 nodes)"
CTXD_FLAGS="--config $WORK/idle.toml" start_ctx "$SHARDS"
measure "awake"
stop_ctx
CTXD_FLAGS="--config $WORK/idle.toml --hibernate" start_ctx "$SHARDS"
measure "hibernate"
stop_ctx
