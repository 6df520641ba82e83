#!/usr/bin/env bash
# Moving a shard by snapshot: how fast, and how much memory each side needs.
#   scripts/bench-snapshot.sh                        # 1 GiB: 16,384 keys x 64 KiB
#   KEYS=4096 scripts/bench-snapshot.sh              # 256 MiB
#   BIN=/path/to/release scripts/bench-snapshot.sh   # prebuilt ctxd and ctxctl
# One release ctxd (one data shard, automatic splits off) loads KEYS x VALUE_SIZE
# bytes with `ctxctl bench --workload load`. Once its Raft log is compacted, a second
# ctxd starts with --join and is added to shard 1 with `ctxctl member --shard 1 add`:
# the leader builds a snapshot file, streams it, and the new replica installs it.
# The script times from the add until the leader records the new replica as caught
# up (no longer lagging in `ctxctl status -o json`, i.e. its match index is within 64
# entries of the leader's commit; nothing is written meanwhile), and reports MiB/s of
# the logical data moved and the peak RSS (VmHWM) of the sender and the receiver. The
# sender's peak is reset (/proc/PID/clear_refs) right before the add, so it covers
# the move only; the receiver starts empty.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${KEYS:-16384}"
VALUE_SIZE="${VALUE_SIZE:-65536}"
source scripts/bench-common.sh

cat >"$WORK/ctxd.toml" <<'TOML'
[raft]
# Compact the Raft log soon after the load: the sender's memory is then the
# snapshot's, not the log mirror's.
log-gc-threshold = 256
log-gc-keep = 16
[split]
# Keep the whole load in one shard.
enabled = false
TOML
p1="$(free_port)"
p2="$(free_port)"
LOG_FILTER="warn,ctxstore::raft::ready=info"
RUST_LOG="$LOG_FILTER" "$BIN/ctxd" --config "$WORK/ctxd.toml" --node-id 1 \
  --listen "127.0.0.1:$p1" --data-dir "$WORK/n1" \
  --initial-cluster "1=127.0.0.1:$p1" >"$WORK/n1.log" 2>&1 &
PIDS+=($!)
sender=$!
EP="127.0.0.1:$p1"
wait_until "$BIN/ctxctl" --endpoints "$EP" put ready yes
logical=$((KEYS * (VALUE_SIZE + 14)))
echo "machine: $(nproc) cores, one disk; 1 node, 1 shard; loading $KEYS keys x $VALUE_SIZE B = $((logical / 1048576)) MiB"
"$BIN/ctxctl" --endpoints "$EP" bench --workload load --keys "$KEYS" \
  --value-size "$VALUE_SIZE" --clients 16 --warmup 0s --duration 1h 2>/dev/null | head -n 1
compacted() { # the shard's log no longer holds the loaded entries
  "$BIN/ctxctl" --endpoints "$EP" put tick x >/dev/null
  local first
  first="$("$BIN/ctxctl" --endpoints "$EP" status -o json | jq -r '.shards[] | select(.shard == 1) | .first_index')"
  [ -n "$first" ] && [ "$first" -gt "$KEYS" ]
}
WAIT_SECS=120 wait_until compacted
rss() { awk -v what="$2" '$1 == what":" { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
echo "sender before the move: RSS $(rss "$sender" VmRSS) MiB (peak during the load $(rss "$sender" VmHWM) MiB)"

RUST_LOG="$LOG_FILTER" "$BIN/ctxd" --config "$WORK/ctxd.toml" --node-id 2 \
  --listen "127.0.0.1:$p2" --data-dir "$WORK/n2" --join >"$WORK/n2.log" 2>&1 &
PIDS+=($!)
receiver=$!
wait_until "$BIN/ctxctl" --endpoints "127.0.0.1:$p2" status
# From here the sender's peak RSS is the move's.
echo 5 >"/proc/$sender/clear_refs"
start=$(date +%s.%N)
"$BIN/ctxctl" --endpoints "$EP" --timeout 10m member --shard 1 add 2 "127.0.0.1:$p2" \
  >"$WORK/add.log" 2>&1 &
PIDS+=($!)
caught_up() {
  "$BIN/ctxctl" --endpoints "$EP,127.0.0.1:$p2" status -o json 2>/dev/null |
    jq -e '.shards[] | select(.shard == 1)
           | (.replicas | map(.node) | index(2)) != null and (.lagging | index(2)) == null' >/dev/null
}
WAIT_SECS=900 wait_until caught_up
end=$(date +%s.%N)
sleep 1
awk -v s="$start" -v e="$end" -v l="$logical" 'BEGIN { t = e - s; printf "new replica caught up in %.1f s: %.0f MiB/s of logical data\n", t, l / 1048576 / t }'
echo "peak RSS during the move: sender $(rss "$sender" VmHWM) MiB, receiver $(rss "$receiver" VmHWM) MiB"
echo "receiver data dir: $(($(du -sb "$WORK/n2" | cut -f1) / 1048576)) MiB"
# Where the time went, from the replicas' logs (build on the sender; the install's
# start and the end of its record load on the receiver).
grep -h -E "snapshot built|installing snapshot|snapshot records loaded" "$WORK/n1.log" "$WORK/n2.log" |
  sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200
