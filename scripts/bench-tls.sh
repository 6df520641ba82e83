#!/usr/bin/env bash
# TLS against plaintext, in one run: 3 `ctxd` processes with one shard take
# `ctxctl bench` puts and gets, first over plaintext, then over mutual TLS (a
# throwaway CA from `ctxd certs`; the nodes' Raft traffic is TLS too), then over TLS
# with auth on (the bench's token: a user whose role may read and write every key, so
# every call is authenticated and each key checked against its grants). Prints one
# JSON line per measurement with the servers' CPU time per operation, and the ratios.
#
#   scripts/bench-tls.sh                              # release build, 16 clients, 10 s
#   ROUNDS=3 scripts/bench-tls.sh                     # the three modes in turn, 3 times:
#                                                     # ratios of the medians
#   BIN=$CARGO_TARGET_DIR/debug scripts/bench-tls.sh  # binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-16}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
VALUE_SIZE="${VALUE_SIZE:-256}"
ROUNDS="${ROUNDS:-1}"
source scripts/bench-common.sh

"$BIN/ctxd" certs --out "$WORK/tls" >/dev/null
tls_node="--ca-path $WORK/tls/ca.crt --cert-path $WORK/tls/node.crt --key-path $WORK/tls/node.key --peer-cert-allowed-cn ctxstore-node"
tls_client="--cacert $WORK/tls/ca.crt --cert $WORK/tls/client.crt --key $WORK/tls/client.key"

declare -A result
# Turns auth on in the running cluster; prints a token of user bench (read-write on
# every key, not root).
enable_auth() {
  # shellcheck disable=SC2086 # tls_client: flags, word-split on purpose
  c() { "$BIN/ctxctl" --endpoints "$CTX_EPS" $tls_client "$@"; }
  c auth user add root >/dev/null
  c auth user grant root root >/dev/null
  local root
  root="$(c auth token create root 2>/dev/null)"
  c auth role add bench >/dev/null
  c auth role grant bench kv "" readwrite >/dev/null
  c auth user add bench >/dev/null
  c auth user grant bench bench >/dev/null
  CTXCTL_TOKEN="$root" c auth enable >/dev/null
  CTXCTL_TOKEN="$root" c auth token create bench 2>/dev/null
}

# Every measurement of a mode and workload, space-separated, over the rounds.
for round in $(seq 1 "$ROUNDS"); do
for mode in plaintext tls auth; do
  if [ "$mode" = plaintext ]; then
    CTXD_FLAGS="" BENCH_FLAGS=""
  else
    CTXD_FLAGS="$tls_node" BENCH_FLAGS="$tls_client"
  fi
  export CTXD_FLAGS BENCH_FLAGS
  start_ctx 1
  if [ "$mode" = auth ]; then
    BENCH_FLAGS="$tls_client --token $(enable_auth)"
  fi
  for workload in put get; do
    line="$(run ctxstore "$CTX_EPS" "$workload" "$CLIENTS" "${CTX_PIDS[@]}")"
    echo "round $round $mode $workload $line"
    result[$mode-$workload-ops]+="$(field "$line" ops_per_sec) "
    result[$mode-$workload-cpu]+="$(field "$line" cpu_us_per_op) "
  done
  stop_ctx
  # A fresh cluster for every measurement: the auth run's state must not outlive it.
  rm -rf "$WORK"/ctx-1*
done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
for k in "${!result[@]}"; do result[$k]="$(median "${result[$k]}")"; done
for workload in put get; do
  for mode in tls auth; do
    awk -v w="$workload" -v m="$mode" -v po="${result[plaintext-$workload-ops]}" -v to="${result[$mode-$workload-ops]}" \
      -v pc="${result[plaintext-$workload-cpu]}" -v tc="${result[$mode-$workload-cpu]}" \
      'BEGIN { printf "%s: %s/plaintext throughput %.2fx, server CPU per op %.2fx (medians)\n", w, (m == "auth" ? "TLS+auth" : "TLS"), to / po, (pc > 0 ? tc / pc : 0) }'
  done
done
