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
scripts/setup.sh
KEYS="${KEYS:-4096}"
VALUE_SIZE="${VALUE_SIZE:-65536}"
cargo build --release --bin ctxd --bin ctxctl
BIN="${CARGO_TARGET_DIR:-target}/release"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}
cat >"$WORK/ctxd.toml" <<'EOF'
[raft]
# Compact the Raft log soon after the load, so a new replica needs a snapshot.
log-gc-threshold = 256
log-gc-keep = 16
EOF
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
for _ in $(seq 1 120); do
  "$BIN/ctxctl" --endpoints "$EPS" put ready yes >/dev/null 2>&1 && break
  sleep 0.5
done
logical=$((KEYS * (VALUE_SIZE + 14)))
echo "machine: $(nproc) cores; 3 nodes, 1 shard; loading $KEYS keys x $VALUE_SIZE B = $((logical / 1048576)) MiB"
"$BIN/ctxctl" --endpoints "$EPS" bench --workload load --keys "$KEYS" \
  --value-size "$VALUE_SIZE" --clients 16 --warmup 0s --duration 1h 2>/dev/null | head -n 1
sizes() {
  local total=0 s i
  for i in 1 2 3; do
    s=$(du -sb "$WORK/n$i" | cut -f1)
    total=$((total + s))
  done
  echo "$total"
}
after_load=$(sizes)
awk -v d="$after_load" -v l="$logical" 'BEGIN { printf "after the load: %.0f MiB on disk per node, %.2f bytes on disk per stored byte per replica\n", d / 3 / 1048576, d / 3 / l }'
# Enough further writes to trigger log compaction on every replica.
"$BIN/ctxctl" --endpoints "$EPS" bench --workload put --keys 64 --value-size 16 \
  --clients 4 --warmup 0s --duration 3s >/dev/null 2>&1
sleep 2
after_gc=$(sizes)
awk -v d="$after_gc" -v l="$logical" 'BEGIN { printf "after log compaction: %.0f MiB on disk per node, %.2f bytes on disk per stored byte per replica\n", d / 3 / 1048576, d / 3 / l }'
RUST_LOG=warn "$BIN/ctxd" --config "$WORK/ctxd.toml" --node-id 4 \
  --listen "127.0.0.1:${ports[3]}" --data-dir "$WORK/n4" --join >"$WORK/n4.log" 2>&1 &
PIDS+=($!)
sleep 1
start=$(date +%s.%N)
"$BIN/ctxctl" --endpoints "$EPS" --timeout 10m member add 4 "127.0.0.1:${ports[3]}"
end=$(date +%s.%N)
n4=$(du -sb "$WORK/n4" | cut -f1)
awk -v s="$start" -v e="$end" -v l="$logical" -v n="$n4" 'BEGIN { t = e - s; printf "new node caught up (snapshot) in %.1f s: %.1f s per GiB stored; its data dir: %.0f MiB\n", t, t / (l / 1073741824), n / 1048576 }'
