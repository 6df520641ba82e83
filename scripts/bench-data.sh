#!/usr/bin/env bash
# The data-scale bench: what an agent platform's everyday operations cost as the store
# grows. For each store size in SIZES (default "100000 1000000" records), starts 3
# release `ctxd` with SHARDS data shards (default 8) and a purge round every PURGE
# (default 1s), loads that many `Kv` records of 256 bytes, 200 conversations in
# namespace `bench`, 64 keys with an hour's TTL (so the purge has an expiry index to
# read), conversations bench/budget-10, -1000 and -100000 (101,010 messages of 256
# bytes) and WATCHED puts (default 500) under hash tag `{w}`, then prints one row of:
#   list           ListConversations pages/s, the servers' CPU per page, latency
#   budget-N       token-budget reads/s on the N-message conversation, CPU per read,
#                  latency
#   purge          the idle servers' CPU over WINDOW s (default 10): purge rounds
#   resume         after all three nodes restart: seconds until a watch from before the
#                  `{w}` puts has printed every one of them
#   disk           bytes on disk (3 nodes) per byte of keys and values written, x3
#   RSS            per node, before the restart
# Each read measurement runs CLIENTS clients (default 4) for DURATION (default 10s).
#
#   scripts/bench-data.sh
#   SIZES="200000" DURATION=5s scripts/bench-data.sh
#   BIN=/path/to/binaries scripts/bench-data.sh   # ctxd and ctxctl already built
set -euo pipefail
cd "$(dirname "$0")/.."
SHARDS="${SHARDS:-8}"
SIZES="${SIZES:-100000 1000000}"
PURGE="${PURGE:-1s}"
WATCHED="${WATCHED:-500}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
WINDOW="${WINDOW:-10}"
VALUE_SIZE=256
LENGTHS="10 1000 100000"
source scripts/bench-common.sh

still_config "$WORK/data.toml"
printf '[context]\npurge-interval = "%s"\n' "$PURGE" >>"$WORK/data.toml"

ctl() { "$BIN/ctxctl" --endpoints "$CTX_EPS" "$@"; }

# Restarts the three ctxd of start_ctx on their data dirs and ports.
restart_ctx() { # shards
  local dir="$WORK/ctx-$1" eps i
  IFS=, read -r -a eps <<<"$CTX_EPS"
  stop_ctx
  CTX_PIDS=()
  for i in 0 1 2; do
    RUST_LOG=warn "$BIN/ctxd" --node-id "$((i + 1))" --listen "${eps[$i]}" \
      --data-dir "$dir/n$((i + 1))" --initial-cluster "1=${eps[0]},2=${eps[1]},3=${eps[2]}" \
      --initial-shards "$1" --config "$WORK/data.toml" >>"$dir-n$((i + 1)).log" 2>&1 &
    CTX_PIDS+=($!)
    PIDS+=($!)
  done
}

rss_per_node() { # pids: mean VmRSS in MiB
  local total=0 p
  for p in "$@"; do total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done
  echo $((total / 1024 / $#))
}

measure() { # workload [bench flags...]: "ops/s cpu-us-per-op p50-us p99-us"
  local line
  line="$(RUN_ARGS="${*:2}" run ctxstore "$CTX_EPS" "$1" "$CLIENTS" "${CTX_PIDS[@]}")"
  echo "$(field "$line" ops_per_sec) $(field "$line" cpu_us_per_op) $(field "$line" p50_us) $(field "$line" p99_us)"
}

printf 'machine: %s cores, %s; 3 ctxd, %s data shards, %s clients per read row\n' \
  "$(nproc)" "$(mem_total)" "$SHARDS" "$CLIENTS"
for size in $SIZES; do
  CTXD_FLAGS="--config $WORK/data.toml" start_ctx "$SHARDS"
  t0=$(date +%s)
  ctl bench --workload load --keys "$size" --value-size "$VALUE_SIZE" --clients 32 \
    --warmup 0s --duration 3600s >/dev/null 2>&1
  ctl bench --workload append --clients 200 --duration 2s --warmup 0s --value-size 64 >/dev/null 2>&1
  for i in $(seq 1 64); do ctl put "ttl-$i" v --ttl 1h >/dev/null; done
  for n in $LENGTHS; do
    ctl bench --workload budget --keys "$n" --clients 1 --duration 1s --warmup 0s \
      --value-size "$VALUE_SIZE" >/dev/null 2>&1
  done
  start="$(ctl put '{w}start' x | sed -n 's/.*version=\([0-9]*\) .*/\1/p')"
  for i in $(seq 1 "$WATCHED"); do ctl put "{w}k$i" "v$i" >/dev/null; done
  echo "store of $size records loaded in $(($(date +%s) - t0)) s"

  read -r ops cpu p50 p99 <<<"$(measure list)"
  printf '  %-14s %10s pages/s %8s us CPU/page, p50 %s us, p99 %s us\n' list "$ops" "$cpu" "$p50" "$p99"
  for n in $LENGTHS; do
    read -r ops cpu p50 p99 <<<"$(measure budget --keys "$n")"
    printf '  %-14s %10s reads/s %8s us CPU/read, p50 %s us, p99 %s us\n' "budget-$n" "$ops" "$cpu" "$p50" "$p99"
  done
  c0=$(cpu_ticks "${CTX_PIDS[@]}")
  sleep "$WINDOW"
  c1=$(cpu_ticks "${CTX_PIDS[@]}")
  printf '  %-14s %10s of a core (3 nodes, idle but for purge rounds every %s)\n' purge \
    "$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v w="$WINDOW" 'BEGIN { printf "%.1f%%", 100 * d / hz / w }')" "$PURGE"
  rss="$(rss_per_node "${CTX_PIDS[@]}")"

  restart_ctx "$SHARDS"
  r0=$(date +%s.%N)
  wait_ready ctxstore "$CTX_EPS"
  r1=$(date +%s.%N)
  got="$(ctl watch '{w}' --prefix --from "$start" --count "$WATCHED" | grep -c '^PUT')"
  r2=$(date +%s.%N)
  [ "$got" -eq "$WATCHED" ] || { echo "the watch resumed with $got of $WATCHED changes" >&2; exit 1; }
  printf '  %-14s %10s s to serve after a restart, then %s s to replay %s changes from disk\n' resume \
    "$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.1f", b - a }')" \
    "$(awk -v a="$r1" -v b="$r2" 'BEGIN { printf "%.2f", b - a }')" "$WATCHED"
  written=$(((size * (VALUE_SIZE + 10)) + (101010 * VALUE_SIZE)))
  disk=$(du -sb "$WORK/ctx-$SHARDS" | cut -f1)
  printf '  %-14s %10s bytes on disk per byte written, per node (%s MiB in 3 data dirs)\n' disk \
    "$(awk -v d="$disk" -v w="$written" 'BEGIN { printf "%.2f", d / 3 / w }')" $((disk / 1048576))
  printf '  %-14s %10s MiB per node\n' RSS "$rss"
  stop_ctx
  rm -rf "$WORK/ctx-$SHARDS"
done
