#!/usr/bin/env bash
# What idle shards cost, with and without hibernation, in one run: 3 release `ctxd`
# with SHARDS data shards (default 1000) and no load, first as they are, then with
# `--hibernate`. After the cluster is ready and settled (SETTLE, default 15 s; with
# hibernation, and until every replica sleeps: the shards fall asleep after two idle
# election timeouts), prints the three servers' CPU over WINDOW (default 10 s), their
# RSS and PSS, and how many replicas sleep.
#
#   scripts/bench-idle.sh
#   SHARDS=256 WINDOW=20s scripts/bench-idle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS="${SHARDS:-1000}"
SETTLE="${SETTLE:-15}"
WINDOW="${WINDOW:-10}"
source scripts/bench-common.sh

# Split checks, the placement driver and leader balancing stay out of the picture.
still_config "$WORK/idle.toml" "max-shards-per-node = $((SHARDS + 16))"

# Replicas that hibernate, all nodes together (ctxctl status lists, per shard, the
# nodes whose replica sleeps).
asleep() {
  "$BIN/ctxctl" --endpoints "$CTX_EPS" status -o json |
    grep -o '"hibernating":\[[0-9,]*\]' | grep -o '[0-9][0-9]*' | wc -l
}
all_asleep() { [ "$(asleep)" -ge $((3 * SHARDS)) ]; }

measure() { # label
  local t0 t1
  sleep "$SETTLE"
  if [ "$1" = hibernate ]; then WAIT_SECS=300 wait_until all_asleep; fi
  t0=$(cpu_ticks "${CTX_PIDS[@]}")
  sleep "$WINDOW"
  t1=$(cpu_ticks "${CTX_PIDS[@]}")
  printf '%-22s %12s %14s %14s %10s\n' "$1" \
    "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN { printf "%.1f%%", 100 * d / hz / w }')" \
    "$(mem_mib VmRSS: status "${CTX_PIDS[@]}") MiB" "$(mem_mib Pss: smaps_rollup "${CTX_PIDS[@]}") MiB" "$(asleep)"
}

printf 'machine: %s cores, %s; 3 ctxd, %s idle data shards, CPU over %s s after %s s\n' \
  "$(nproc)" "$(mem_total)" "$SHARDS" "$WINDOW" "$SETTLE"
printf '%-22s %12s %14s %14s %10s\n' "" "CPU (3 nodes)" "RSS (3 nodes)" "PSS (3 nodes)" "asleep"
CTXD_FLAGS="--config $WORK/idle.toml" start_ctx "$SHARDS"
measure "awake"
stop_ctx
CTXD_FLAGS="--config $WORK/idle.toml --hibernate" start_ctx "$SHARDS"
measure "hibernate"
stop_ctx
