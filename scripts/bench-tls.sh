#!/usr/bin/env bash
# TLS against plaintext, in one run: 3 `ctxd` processes with one shard take
# `ctxctl bench` puts and gets, first over plaintext, then over mutual TLS (a
# throwaway CA from `ctxd certs`; the nodes' Raft traffic is TLS too). Prints one JSON
# line per measurement with the servers' CPU time per operation, and the ratios.
#
#   scripts/bench-tls.sh                              # release build, 16 clients, 10 s
#   BIN=$CARGO_TARGET_DIR/debug scripts/bench-tls.sh  # binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-16}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
VALUE_SIZE="${VALUE_SIZE:-256}"
source scripts/bench-common.sh

"$BIN/ctxd" certs --out "$WORK/tls" >/dev/null
tls_node="--ca-path $WORK/tls/ca.crt --cert-path $WORK/tls/node.crt --key-path $WORK/tls/node.key --peer-cert-allowed-cn ctxstore-node"
tls_client="--cacert $WORK/tls/ca.crt --cert $WORK/tls/client.crt --key $WORK/tls/client.key"

declare -A result
for mode in plaintext tls; do
  if [ "$mode" = tls ]; then
    CTXD_FLAGS="$tls_node" BENCH_FLAGS="$tls_client"
  else
    CTXD_FLAGS="" BENCH_FLAGS=""
  fi
  export CTXD_FLAGS BENCH_FLAGS
  start_ctx 1
  for workload in put get; do
    line="$(run ctxstore "$CTX_EPS" "$workload" "$CLIENTS" "${CTX_PIDS[@]}")"
    echo "$mode $workload $line"
    result[$mode-$workload-ops]="$(field "$line" ops_per_sec)"
    result[$mode-$workload-cpu]="$(field "$line" cpu_us_per_op)"
  done
  stop_ctx
done
for workload in put get; do
  awk -v w="$workload" -v po="${result[plaintext-$workload-ops]}" -v to="${result[tls-$workload-ops]}" \
    -v pc="${result[plaintext-$workload-cpu]}" -v tc="${result[tls-$workload-cpu]}" \
    'BEGIN { printf "%s: TLS/plaintext throughput %.2fx, server CPU per op %.2fx\n", w, to / po, (pc > 0 ? tc / pc : 0) }'
done
