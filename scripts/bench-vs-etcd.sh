#!/usr/bin/env bash
# Side by side on this machine: a 3-member etcd and a 3-node ctxstore on loopback, both
# fsyncing before every acknowledgement, driven by the same closed-loop load generator
# (`ctxctl bench`, `--target etcd` speaks etcd's gRPC KV API). Prints one table with
# ctxstore/etcd ratios.
#
#   scripts/bench-vs-etcd.sh                  # 10 s per measurement, ctxstore with 1 shard
#   DURATION=30s SHARDS=8 scripts/bench-vs-etcd.sh
#   SCALING=0 ...                             # skip the scaling table (shards 1/4/16, clients 1-256)
#   ROWS="put 64,agent-step 16" ...           # only these rows of the comparison table
#
# Installs Debian's etcd-server when `etcd` is missing. Builds ctxstore in release mode
# (the first build compiles RocksDB: about 30-40 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
SHARDS="${SHARDS:-1}"
VALUE_SIZE="${VALUE_SIZE:-1024}"

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi

source scripts/bench-common.sh

# --- etcd: 3 members ---
ETCD_CLIENT=() ETCD_PEER=()
for i in 1 2 3; do ETCD_CLIENT+=("$(free_port)"); ETCD_PEER+=("$(free_port)"); done
INITIAL=""
for i in 0 1 2; do INITIAL+="e$((i + 1))=http://127.0.0.1:${ETCD_PEER[$i]},"; done
INITIAL="${INITIAL%,}"
for i in 0 1 2; do
  etcd --name "e$((i + 1))" --data-dir "$WORK/etcd$((i + 1))" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$i]}" \
    --initial-cluster "$INITIAL" --initial-cluster-state new \
    --initial-cluster-token ctxstore-bench --log-level error >"$WORK/etcd$((i + 1)).log" 2>&1 &
  PIDS+=($!)
done
ETCD_EPS="127.0.0.1:${ETCD_CLIENT[0]},127.0.0.1:${ETCD_CLIENT[1]},127.0.0.1:${ETCD_CLIENT[2]}"

wait_ready etcd "$ETCD_EPS"
ETCD_PIDS=("${PIDS[@]:0:3}")
start_ctx "$SHARDS"
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo) GiB; ctxstore: 3 nodes, $SHARDS shards; etcd $(etcd --version | head -n 1 | awk '{print $3}'): 3 members; ${VALUE_SIZE} B values, ${DURATION} per row"
printf '%-10s %7s | %10s %8s %8s %7s | %10s %8s %8s %7s | %7s %9s %9s\n' \
  workload clients "etcd op/s" "p50 us" "p99 us" "cpu/op" "ctx op/s" "p50 us" "p99 us" "cpu/op" "ratio" "p99 ratio" "cpu ratio"
# ROWS="workload clients,..." picks rows; append is one conversation append of one
# message per op (a put on etcd); agent-step is one agent step per op (see
# `ctxctl bench --help`): a budgeted context read, a 2-message append, a checkpoint;
# queue is one task enqueued, leased and acked per op (half the clients produce).
IFS=',' read -ra ROW_LIST <<<"${ROWS:-put 64,put 1,get 64,get-stale 64,mixed 64,ycsb-b 64,append 64,agent-step 1,agent-step 16,agent-step 64,queue 32}"
for row in "${ROW_LIST[@]}"; do
  read -r workload clients <<<"$row"
  set -- "$workload" "$clients"
  e="$(run etcd "$ETCD_EPS" "$1" "$2" "${ETCD_PIDS[@]}")"
  c="$(run ctxstore "$CTX_EPS" "$1" "$2" "${CTX_PIDS[@]}")"
  eo="$(field "$e" ops_per_sec)" ep50="$(field "$e" p50_us)" ep99="$(field "$e" p99_us)"
  co="$(field "$c" ops_per_sec)" cp50="$(field "$c" p50_us)" cp99="$(field "$c" p99_us)"
  ecpu="$(field "$e" cpu_us_per_op)" ccpu="$(field "$c" cpu_us_per_op)"
  ratio="$(awk -v a="$co" -v b="$eo" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
  p99r="$(awk -v a="$cp99" -v b="$ep99" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')"
  cpur="$(awk -v a="$ccpu" -v b="$ecpu" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }')"
  printf '%-10s %7s | %10s %8s %8s %7s | %10s %8s %8s %7s | %7s %9s %9s\n' \
    "$1" "$2" "$eo" "$ep50" "$ep99" "${ecpu:--}" "$co" "$cp50" "$cp99" "${ccpu:--}" "$ratio" "$p99r" "$cpur"
done
echo "ratio = ctxstore ops/s / etcd ops/s (higher is better); p99 ratio = ctxstore p99 / etcd p99 (lower is better)"
echo "cpu/op = microseconds of CPU the three servers used per op; cpu ratio = ctxstore / etcd (lower is better)"

if [ "${SCALING:-1}" = 1 ]; then
  echo
  echo "ctxstore scaling (puts, ${VALUE_SIZE} B values, ${DURATION} per row)"
  printf '%-8s %8s | %10s %8s %8s %7s\n' shards clients "op/s" "p50 us" "p99 us" "cpu/op"
  scaling_row() { # shards clients
    local r
    r="$(run ctxstore "$CTX_EPS" put "$2" "${CTX_PIDS[@]}")"
    printf '%-8s %8s | %10s %8s %8s %7s\n' "$1" "$2" "$(field "$r" ops_per_sec)" \
      "$(field "$r" p50_us)" "$(field "$r" p99_us)" "$(field "$r" cpu_us_per_op)"
  }
  for c in 1 16 64 256; do scaling_row "$SHARDS" "$c"; done
  for sh in 4 16; do
    stop_ctx
    start_ctx "$sh"
    scaling_row "$sh" 64
  done
fi
