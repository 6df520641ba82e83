#!/usr/bin/env bash
# Reads in every read mode, in one run: 3 release `ctxd` nodes with 8 shards (leaders
# spread over the nodes), `ctxctl bench --workload get` with 64 clients, twice per
# read mode (in order, then in reverse order, so background compaction after the
# preloads does not favour one mode). Prints the mean ops/s, latency and servers'
# CPU per read of each mode, and its ratio to leader reads (the same run's baseline).
#
#   scripts/bench-reads.sh                          # 10 s per row, 8 shards
#   DURATION=20s SHARDS=4 CLIENTS=16 scripts/bench-reads.sh
#   BALANCE=round-robin scripts/bench-reads.sh     # another balancing policy
#   SHARDS=1 NODE_CPU=0.5 scripts/bench-reads.sh   # one hot shard, nodes capped
#
# NODE_CPU caps each ctxd's CPU (scripts/bench-common.sh): as on separate machines,
# reads moved off a busy leader's node then find CPU to spare on the others.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
SHARDS="${SHARDS:-8}"
CLIENTS="${CLIENTS:-64}"
VALUE_SIZE="${VALUE_SIZE:-1024}"
BALANCE="${BALANCE:-p2c-peak-ewma}"
source scripts/bench-common.sh

start_ctx "$SHARDS"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo) GiB; 3 ctxd (CPU per node: ${NODE_CPU:-uncapped}), $SHARDS shards, $CLIENTS clients, ${VALUE_SIZE} B values, ${DURATION} per row; replica reads balanced by $BALANCE"
printf '%-16s | %10s %8s %8s %7s | %7s %9s\n' "read mode" "op/s" "p50 us" "p99 us" "cpu/op" "ratio" "cpu ratio"
MODES=(leader follower bounded:1s stale)
declare -A OPS P50 P99 CPU
for mode in "${MODES[@]}" $(printf '%s\n' "${MODES[@]}" | tac); do
  r="$(BENCH_FLAGS="--read $mode --balance $BALANCE" run ctxstore "$CTX_EPS" get "$CLIENTS" "${CTX_PIDS[@]}")"
  OPS[$mode]+=" $(field "$r" ops_per_sec)" P50[$mode]+=" $(field "$r" p50_us)"
  P99[$mode]+=" $(field "$r" p99_us)" CPU[$mode]+=" $(field "$r" cpu_us_per_op)"
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; if (NF) printf "%.0f", s / NF }' <<<"$1"; }
base_ops="$(mean "${OPS[leader]}")" base_cpu="$(mean "${CPU[leader]}")"
for mode in "${MODES[@]}"; do
  ops="$(mean "${OPS[$mode]}")" cpu="$(mean "${CPU[$mode]}")"
  ratio="$(awk -v a="$ops" -v b="$base_ops" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
  cpur="$(awk -v a="$cpu" -v b="$base_cpu" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }')"
  printf '%-16s | %10s %8s %8s %7s | %7s %9s\n' "$mode" "$ops" "$(mean "${P50[$mode]}")" \
    "$(mean "${P99[$mode]}")" "${cpu:--}" "$ratio" "$cpur"
done
echo "ratio = ops/s / leader reads' ops/s (higher is better); cpu/op = microseconds of CPU the three servers used per read; cpu ratio = that / leader reads' (lower is better)"
