#!/usr/bin/env bash
# What a token-budget read costs as a conversation grows: 3 release `ctxd` with one data
# shard and no placement driver or splits. For each length in LENGTHS (default "10 1000
# 100000"), `ctxctl bench --workload budget` fills conversation bench/budget-<length>
# with that many messages of 256 bytes (about 65 tokens each), then CLIENTS clients
# (default 4) read its newest messages that fit 2,000 tokens for DURATION (default
# 10s); prints reads/s, latency and the servers' CPU per read. The read walks back
# from the newest message until the budget is spent, so its cost should not grow
# with the conversation.
#
#   scripts/bench-budget.sh
#   LENGTHS="100 10000" scripts/bench-budget.sh
#   BIN=/path/to/binaries scripts/bench-budget.sh   # ctxd and ctxctl already built
set -euo pipefail
cd "$(dirname "$0")/.."
LENGTHS="${LENGTHS:-10 1000 100000}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
VALUE_SIZE=256
source scripts/bench-common.sh

still_config "$WORK/budget.toml"
CTXD_FLAGS="--config $WORK/budget.toml" start_ctx 1

printf 'machine: %s cores, %s; 3 ctxd, 1 data shard, %s reading clients, a 2,000-token budget\n' \
  "$(nproc)" "$(mem_total)" "$CLIENTS"
printf '%10s %10s %10s %10s %14s\n' "messages" "reads/s" "p50 (us)" "p99 (us)" "CPU/read (us)"
for n in $LENGTHS; do
  # Filled first, so the measurement's CPU window sees the reads only.
  "$BIN/ctxctl" --endpoints "$CTX_EPS" bench --workload budget --keys "$n" --clients 1 \
    --duration 1s --warmup 0s --value-size "$VALUE_SIZE" >/dev/null 2>&1
  line="$(RUN_ARGS="--keys $n" run ctxstore "$CTX_EPS" budget "$CLIENTS" "${CTX_PIDS[@]}")"
  printf '%10s %10s %10s %10s %14s\n' "$n" "$(field "$line" ops_per_sec)" \
    "$(field "$line" p50_us)" "$(field "$line" p99_us)" "$(field "$line" cpu_us_per_op)"
done
