#!/usr/bin/env bash
# What the TTL purge costs as the store grows: 3 release `ctxd` with SHARDS data
# shards (default 8), a purge round every PURGE (default 100ms), and no load. For each
# store size in SIZES (default "0 200000": keys of 256 bytes without a TTL), starts a
# fresh cluster, loads that many keys and TTL_KEYS more (default 64) that expire in an
# hour (so every shard holds records with an expiry, as an agent platform's do), lets
# it settle for SETTLE seconds (default 5), then prints the three servers' CPU over
# WINDOW seconds (default 10) and their RSS. The purge reads the expiry index (what
# has expired), not the records, so its cost should not grow with the store.
#
#   scripts/bench-purge.sh
#   SIZES="0 100000 400000" PURGE=1s scripts/bench-purge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS="${SHARDS:-8}"
PURGE="${PURGE:-100ms}"
SIZES="${SIZES:-0 200000}"
SETTLE="${SETTLE:-5}"
TTL_KEYS="${TTL_KEYS:-64}"
WINDOW="${WINDOW:-10}"
source scripts/bench-common.sh

still_config "$WORK/purge.toml"
printf '[context]\npurge-interval = "%s"\n' "$PURGE" >>"$WORK/purge.toml"

printf 'machine: %s cores, %s; 3 ctxd, %s data shards, a purge round every %s, CPU over %s s\n' \
  "$(nproc)" "$(mem_total)" "$SHARDS" "$PURGE" "$WINDOW"
printf '%10s %14s %14s\n' "keys" "CPU (3 nodes)" "RSS (3 nodes)"
for size in $SIZES; do
  CTXD_FLAGS="--config $WORK/purge.toml" start_ctx "$SHARDS"
  if [ "$size" -gt 0 ]; then
    "$BIN/ctxctl" --endpoints "$CTX_EPS" bench --workload load --keys "$size" \
      --value-size 256 --clients 32 --warmup 0s --duration 3600s >/dev/null 2>&1
  fi
  for i in $(seq 1 "$TTL_KEYS"); do
    "$BIN/ctxctl" --endpoints "$CTX_EPS" put "ttl-$i" v --ttl 1h >/dev/null
  done
  sleep "$SETTLE"
  t0=$(cpu_ticks "${CTX_PIDS[@]}")
  sleep "$WINDOW"
  t1=$(cpu_ticks "${CTX_PIDS[@]}")
  printf '%10s %14s %14s\n' "$size" \
    "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN { printf "%.1f%%", 100 * d / hz / w }')" \
    "$(mem_mib VmRSS: status "${CTX_PIDS[@]}") MiB"
  stop_ctx
done
