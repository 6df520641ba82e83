#!/usr/bin/env bash
# What a `ListConversations` page costs as the store grows: 3 release `ctxd` with
# SHARDS data shards (default 8), no placement driver or splits. For each store size
# in SIZES (default "0 100000 1000000": `Kv` keys of 256 bytes, the other records an
# agent platform's shards hold), starts a fresh cluster, loads that many keys, makes
# CONVS conversations in namespace `bench` (default 200, one `append` client each),
# then lists their first page (100 conversations, every shard asked) with CLIENTS
# clients (default 4) for DURATION (default 10s) and prints pages/s, latency and the
# servers' CPU per page. The page reads the conversation index, not the shard, so its
# cost should not grow with the store.
#
#   scripts/bench-list.sh
#   SIZES="0 200000" CONVS=1000 scripts/bench-list.sh
#   BIN=/path/to/binaries scripts/bench-list.sh   # ctxd and ctxctl already built
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS="${SHARDS:-8}"
SIZES="${SIZES:-0 100000 1000000}"
CONVS="${CONVS:-200}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
VALUE_SIZE=256
source scripts/bench-common.sh

still_config "$WORK/list.toml"

printf 'machine: %s cores, %s; 3 ctxd, %s data shards, %s conversations, %s listing clients\n' \
  "$(nproc)" "$(mem_total)" "$SHARDS" "$CONVS" "$CLIENTS"
printf '%10s %10s %10s %10s %14s\n' "keys" "pages/s" "p50 (us)" "p99 (us)" "CPU/page (us)"
for size in $SIZES; do
  CTXD_FLAGS="--config $WORK/list.toml" start_ctx "$SHARDS"
  if [ "$size" -gt 0 ]; then
    "$BIN/ctxctl" --endpoints "$CTX_EPS" bench --workload load --keys "$size" \
      --value-size 256 --clients 32 --warmup 0s --duration 3600s >/dev/null 2>&1
  fi
  # One conversation per client: append-0 .. append-(CONVS-1).
  "$BIN/ctxctl" --endpoints "$CTX_EPS" bench --workload append --clients "$CONVS" \
    --duration 2s --warmup 0s --value-size 64 >/dev/null 2>&1
  line="$(run ctxstore "$CTX_EPS" list "$CLIENTS" "${CTX_PIDS[@]}")"
  printf '%10s %10s %10s %10s %14s\n' "$size" "$(field "$line" ops_per_sec)" \
    "$(field "$line" p50_us)" "$(field "$line" p99_us)" "$(field "$line" cpu_us_per_op)"
  stop_ctx
done
