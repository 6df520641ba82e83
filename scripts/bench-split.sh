#!/usr/bin/env bash
# Throughput before and after splitting a hot shard, in one run: 3 release `ctxd`
# nodes with one shard take `ctxctl bench` puts; the shard is split in the middle of
# the hash space and the new shard's leadership moved to another node; the same
# bench runs again. Prints puts/s and latency for both, and the ratio.
#
#   scripts/bench-split.sh                    # 64 clients, 10 s per measurement
#   CLIENTS=16 DURATION=20s scripts/bench-split.sh
#   NODE_CPU=0.4 scripts/bench-split.sh       # each ctxd capped at 0.4 of a core
#   NODES=6 NODE_CPU=0.3 scripts/bench-split.sh
#
# NODE_CPU gives each node its own CPU budget (see scripts/bench-common.sh), as
# separate small machines would have.
#
# NODES=6 is scale-out: nodes 4-6 join the cluster idle; after the split the new
# shard's replicas move to them (added one by one, each caught up by snapshot, its
# leadership handed to node 4, then the replicas on nodes 1-3 removed), so each half
# is served by its own three nodes, as adding machines to a cluster does.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
NODES="${NODES:-3}"
case "$NODES" in 3 | 6) ;; *) echo "bench-split: NODES must be 3 or 6" >&2; exit 2 ;; esac
say() { printf 'bench-split: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
# python3 reads ctxctl's JSON; a minimal Debian has none.
source scripts/python-venv.sh
need_python3
source scripts/bench-common.sh

ports=()
for _ in $(seq "$NODES"); do ports+=("$(free_port)"); done
initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
eps="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
# Leaders stay where the script puts them: no placement driver, no local balancing.
still_config "$WORK/still.toml"
for i in $(seq "$NODES"); do
  if [ "$i" -le 3 ]; then start=(--initial-cluster "$initial"); else start=(--join --peers "$eps"); fi
  RUST_LOG=warn "$BIN/ctxd" --config "$WORK/still.toml" --node-id "$i" \
    --listen "127.0.0.1:${ports[$((i - 1))]}" --data-dir "$WORK/node$i" \
    "${start[@]}" >"$WORK/node$i.log" 2>&1 &
  PIDS+=($!)
  cap_cpu "$!"
done
ctl() { "$BIN/ctxctl" --endpoints "$eps" "$@"; }
wait_until ctl put probe ok

# The bench's result (JSON); each node's CPU during it (% of one core, over the
# bench's whole run, warm-up included) goes to $WORK/cpu.<label>.
measure() {
  local t0=() t1=() i start end
  for i in "${!PIDS[@]}"; do t0+=("$(cpu_ticks "${PIDS[$i]}")"); done
  start=$(date +%s.%N)
  ctl bench --workload put --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
    --json 2>/dev/null | tail -n 1
  end=$(date +%s.%N)
  for i in "${!PIDS[@]}"; do t1+=("$(cpu_ticks "${PIDS[$i]}")"); done
  python3 -c 'import sys
hz, secs = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2])
t = [int(x) for x in sys.argv[4:]]
n = len(t) // 2
print(" ".join(f"{100 * (t[i + n] - t[i]) / hz / secs:.0f}%" for i in range(n)))' \
    "$(getconf CLK_TCK)" "$start" "$end" "${t0[@]}" "${t1[@]}" >"$WORK/cpu.$1"
}
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

before=$(measure before)
split=$(ctl shard split 1 --at 0x8000000000000000)
child=$(sed -n 's/^split shard 1: new shard \([0-9]*\)$/\1/p' <<<"$split")
# The new shard's leader is where the parent's is (it campaigns at once): move it to
# another replica so the two halves are served by two nodes. Wait until the status
# names its leader first (right after the split it may not yet).
has_leader() {
  ctl status -o json | python3 -c 'import json,sys
d=json.load(sys.stdin)
sys.exit(0 if [s for s in d["shards"] if s["shard"]==int(sys.argv[1])][0]["leader_node"] else 1)' "$1"
}
wait_until has_leader "$child"
status=$(ctl status -o json)
leaders=$(python3 -c '
import json,sys
d=json.loads(sys.argv[1]); child=int(sys.argv[2])
by={s["shard"]:s for s in d["shards"]}
p=by[1]["leader_node"]; c=by[child]["leader_node"]
other=[r["node"] for r in by[child]["replicas"] if r["node"]!=p][0]
print(p, c, other)' "$status" "$child")
read -r parent_leader child_leader target <<<"$leaders"
leader_is() { # leader_is SHARD NODE
  ctl status -o json | python3 -c 'import json,sys
d=json.load(sys.stdin)
sys.exit(0 if [s for s in d["shards"] if s["shard"]==int(sys.argv[1])][0]["leader_node"]==int(sys.argv[2]) else 1)' "$1" "$2"
}
if [ "$NODES" = 6 ]; then
  # Scale-out: the new shard's replicas go to the idle nodes 4-6.
  for n in 4 5 6; do
    ctl --timeout 10m member --shard "$child" add "$n" "127.0.0.1:${ports[$((n - 1))]}" >/dev/null
  done
  ctl transfer-leader "$child" 4 >/dev/null
  wait_until leader_is "$child" 4
  for n in 1 2 3; do ctl member --shard "$child" remove "$n" >/dev/null; done
  child_leader=4
elif [ "$child_leader" = "$parent_leader" ]; then
  ctl transfer-leader "$child" "$target" >/dev/null
  wait_until leader_is "$child" "$target"
  child_leader=$target
fi
after=$(measure after)

ops_b=$(json_field "$before" ops_per_sec); ops_a=$(json_field "$after" ops_per_sec)
printf 'machine: %s cores, %s; %s ctxd (CPU per node: %s), %s clients, 1 KiB puts, %s per measurement\n' \
  "$(nproc)" "$(mem_total)" "$NODES" "${NODE_CPU:-uncapped}" "$CLIENTS" "$DURATION"
if [ "$NODES" = 6 ]; then
  echo "after the split the new shard's replicas are on nodes 4 5 6, the first shard's on 1 2 3"
fi
printf '%-34s %10s %9s %9s   %s\n' "" "ops/s" "p50 us" "p99 us" "cpu of nodes $(seq -s ' ' "$NODES")"
printf '%-34s %10.0f %9s %9s   %s\n' "1 shard, leader on node $parent_leader" "$ops_b" \
  "$(json_field "$before" p50_us)" "$(json_field "$before" p99_us)" "$(cat "$WORK/cpu.before")"
printf '%-34s %10.0f %9s %9s   %s\n' "2 shards, leaders on nodes $parent_leader and $child_leader" "$ops_a" \
  "$(json_field "$after" p50_us)" "$(json_field "$after" p99_us)" "$(cat "$WORK/cpu.after")"
python3 -c "import sys; print(f'ratio after/before: {float(sys.argv[2])/float(sys.argv[1]):.2f}x')" "$ops_b" "$ops_a"
