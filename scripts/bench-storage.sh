#!/usr/bin/env bash
# Storage measurements (performance issue): disk bytes per stored byte after a bulk
# load, and how long a new node takes to catch up by snapshot, per GiB.
#   scripts/bench-storage.sh                  # 256 MiB: 4,096 keys x 64 KiB values
#   KEYS=16384 VALUE_SIZE=65536 scripts/bench-storage.sh   # 1 GiB
# Three release-built ctxd on loopback (1 shard) load KEYS x VALUE_SIZE bytes with
# `ctxctl bench --workload load`; `du` of each data directory is then divided by the
# logical bytes (keys + values), right after the load and again after the Raft log
# is compacted (a small log-gc threshold, so the new node must take a snapshot).
# A fourth node is then added with `ctxctl member add`, which returns once the new
# replica has caught up and been promoted.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-4096}"
VALUE_SIZE="${VALUE_SIZE:-65536}"
source scripts/bench-common.sh

cat >"$WORK/ctxd.toml" <<'TOML'
[raft]
# Compact the Raft log soon after the load, so a new replica needs a snapshot.
log-gc-threshold = 256
log-gc-keep = 16
TOML
ports=()
for i in 1 2 3 4; do ports+=("$(free_port)"); done
initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
for i in 0 1 2; do
  RUST_LOG=warn "$BIN/ctxd" --config "$WORK/ctxd.toml" --node-id "$((i + 1))" \
    --listen "127.0.0.1:${ports[$i]}" --data-dir "$WORK/n$((i + 1))" \
    --initial-cluster "$initial" >"$WORK/n$((i + 1)).log" 2>&1 &
  PIDS+=($!)
done
EPS="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
wait_until "$BIN/ctxctl" --endpoints "$EPS" put ready yes
logical=$((KEYS * (VALUE_SIZE + 14)))
echo "machine: $(nproc) cores; 3 nodes, 1 shard; loading $KEYS keys x $VALUE_SIZE B = $((logical / 1048576)) MiB"
"$BIN/ctxctl" --endpoints "$EPS" bench --workload load --keys "$KEYS" \
  --value-size "$VALUE_SIZE" --clients 16 --warmup 0s --duration 1h 2>/dev/null | head -n 1
per_byte() { # label
  local total=0 i
  for i in 1 2 3; do total=$((total + $(du -sb "$WORK/n$i" | cut -f1))); done
  awk -v d="$total" -v l="$logical" -v what="$1" 'BEGIN { printf "%s: %.0f MiB on disk per node, %.2f bytes on disk per stored byte per replica\n", what, d / 3 / 1048576, d / 3 / l }'
}
per_byte "after the load"
# Further small writes (3 s) make RocksDB flush and compact, and every replica
# compacts its Raft log past the loaded entries.
"$BIN/ctxctl" --endpoints "$EPS" bench --workload put --keys 64 --value-size 16 \
  --clients 4 --warmup 0s --duration 3s >/dev/null 2>&1
first_indexes() { "$BIN/ctxctl" --endpoints "$EPS" status | sed -n 's/.*shard 1: .*log=\[\([0-9]*\)\.\..*/\1/p'; }
compacted() { # every replica's first log index is past the loaded entries
  "$BIN/ctxctl" --endpoints "$EPS" put tick x >/dev/null
  [ "$(first_indexes | awk -v k="$KEYS" '$1 <= k { n++ } END { print n + 0 }')" = 0 ]
}
wait_until compacted
per_byte "after log compaction"
RUST_LOG=warn "$BIN/ctxd" --config "$WORK/ctxd.toml" --node-id 4 \
  --listen "127.0.0.1:${ports[3]}" --data-dir "$WORK/n4" --join >"$WORK/n4.log" 2>&1 &
PIDS+=($!)
wait_until "$BIN/ctxctl" --endpoints "127.0.0.1:${ports[3]}" status
start=$(date +%s.%N)
"$BIN/ctxctl" --endpoints "$EPS" --timeout 10m member add 4 "127.0.0.1:${ports[3]}"
end=$(date +%s.%N)
n4=$(du -sb "$WORK/n4" | cut -f1)
awk -v s="$start" -v e="$end" -v l="$logical" -v n="$n4" 'BEGIN { t = e - s; printf "new node caught up (snapshot) in %.1f s: %.1f s per GiB stored; its data dir: %.0f MiB\n", t, t / (l / 1073741824), n / 1048576 }'
