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

# --- ctxstore: 3 ctxd processes (restarted with another shard count for scaling) ---
CTX_PIDS=()
CTX_EPS=""
start_ctx() { # shards
  local dir="$WORK/ctx-$1" ports=() initial="" i
  for i in 1 2 3; do ports+=("$(free_port)"); done
  initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
  mkdir -p "$dir"
  CTX_PIDS=()
  for i in 0 1 2; do
    RUST_LOG=warn "$BIN/ctxd" --node-id "$((i + 1))" --listen "127.0.0.1:${ports[$i]}" \
      --data-dir "$dir/n$((i + 1))" --initial-cluster "$initial" \
      --initial-shards "$1" >"$dir-n$((i + 1)).log" 2>&1 &
    CTX_PIDS+=($!)
    PIDS+=($!)
  done
  CTX_EPS="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
  wait_ready ctxstore "$CTX_EPS"
}
stop_ctx() {
  for p in "${CTX_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CTX_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

wait_ready() { # target endpoints
  wait_until "$BIN/ctxctl" --endpoints "$2" bench --target "$1" --clients 1 \
    --duration 200ms --warmup 0s --keys 1 --workload put ||
    { echo "$1 did not become ready; logs in $WORK" >&2; return 1; }
}
wait_ready etcd "$ETCD_EPS"
start_ctx "$SHARDS"

field() { # json field
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"
}

# Server CPU (user + system, in clock ticks) of the given processes so far.
cpu_ticks() {
  local p t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# Whether the bench's progress line (stderr, in $1) has reported second $2.
progress_at() {
  tr '\r' '\n' <"$1" | grep -q "bench: *$2s /"
}

CLK_TCK="$(getconf CLK_TCK)"
SECS=""
if [[ "$DURATION" =~ ^([0-9]+)s$ ]] && [ "${BASH_REMATCH[1]}" -ge 3 ]; then
  SECS="${BASH_REMATCH[1]}"
fi
ETCD_PIDS=("${PIDS[@]:0:3}")

# Runs one measurement; prints its JSON line with `"cpu_us_per_op":N` appended: the
# servers' CPU time (all three processes) per completed op, sampled from second 1 to
# second DURATION-1 of the measurement, so preloading and warm-up are not counted.
run() { # target endpoints workload clients server-pids...
  local target="$1" eps="$2" workload="$3" clients="$4"
  shift 4
  local err="$WORK/bench.err" out="$WORK/bench.out" cpu="-" t0 t1 s0 s1 line ops
  : >"$err"
  "$BIN/ctxctl" --endpoints "$eps" bench --target "$target" --workload "$workload" \
    --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" \
    --value-size "$VALUE_SIZE" --json >"$out" 2>"$err" &
  local bench=$!
  if [ -n "$SECS" ] && WAIT_SECS=$((SECS + 60)) wait_until progress_at "$err" 1; then
    t0="$(cpu_ticks "$@")" s0="$(date +%s.%N)"
    if WAIT_SECS=$((SECS + 60)) wait_until progress_at "$err" "$((SECS - 1))"; then
      t1="$(cpu_ticks "$@")" s1="$(date +%s.%N)"
      cpu="ok"
    fi
  fi
  wait "$bench" || true
  line="$(tail -n 1 "$out")"
  ops="$(field "$line" ops_per_sec)"
  if [ "$cpu" = ok ] && [ -n "$ops" ]; then
    cpu="$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v a="$s0" -v b="$s1" -v o="$ops" \
      'BEGIN { if (o > 0 && b > a) printf "%.0f", t / hz * 1e6 / (o * (b - a)); else print "-" }')"
  fi
  echo "${line%\}},\"cpu_us_per_op\":${cpu/-/null}}"
}

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo) GiB; ctxstore: 3 nodes, $SHARDS shards; etcd $(etcd --version | head -n 1 | awk '{print $3}'): 3 members; ${VALUE_SIZE} B values, ${DURATION} per row"
printf '%-10s %7s | %10s %8s %8s %7s | %10s %8s %8s %7s | %7s %9s %9s\n' \
  workload clients "etcd op/s" "p50 us" "p99 us" "cpu/op" "ctx op/s" "p50 us" "p99 us" "cpu/op" "ratio" "p99 ratio" "cpu ratio"
# ROWS="workload clients,..." picks rows; append is one conversation append of one
# message per op (a put on etcd); agent-step is one agent step per op (see
# `ctxctl bench --help`): a budgeted context read, a 2-message append, a checkpoint.
IFS=',' read -ra ROW_LIST <<<"${ROWS:-put 64,put 1,get 64,get-stale 64,mixed 64,ycsb-b 64,append 64,agent-step 1,agent-step 16,agent-step 64}"
for row in "${ROW_LIST[@]}"; do
  set -- $row
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
