#!/usr/bin/env bash
# Writes tests/fixtures/v0-data.tar.gz: the data directories of a 3-node, 4-shard
# cluster written by an older ctxd (before shards had explicit arcs), for
# tests/upgrade.rs. Usage:
#   OLD_CTXD=/path/to/old/ctxd OLD_CTXCTL=/path/to/old/ctxctl scripts/make-upgrade-fixture.sh
# (build them from commit d53b219, the last version with ring_shards descriptors).
# The data it writes is what tests/upgrade.rs checks: keys k000..k199 = v000..v199,
# "{tag}:a".."{tag}:e" = 1..5, "cas" rewritten once, conversation demo/chat with
# messages m1..m5.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD_CTXD:?set OLD_CTXD}" "${OLD_CTXCTL:?set OLD_CTXCTL}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ports=(47101 47102 47103)
initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
eps="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
for i in 1 2 3; do
  RUST_LOG=warn "$OLD_CTXD" --node-id "$i" --listen "127.0.0.1:${ports[$((i-1))]}" \
    --data-dir "$work/node$i" --initial-cluster "$initial" --initial-shards 4 \
    >"$work/node$i.log" 2>&1 &
done
ctl() { "$OLD_CTXCTL" --endpoints "$eps" --timeout 20s "$@"; }
until ctl put probe ok >/dev/null 2>&1; do sleep 0.2; done
ctl del probe >/dev/null
for i in $(seq 0 199); do ctl put "$(printf 'k%03d' "$i")" "$(printf 'v%03d' "$i")" >/dev/null; done
for x in a b c d e; do ctl put "{tag}:$x" "$(( $(printf '%d' "'$x") - 96 ))" >/dev/null; done
v=$(ctl put cas first | sed -n 's/.*version=\([0-9]*\).*/\1/p')
ctl cas cas "$v" second >/dev/null
for m in 1 2 3 4 5; do ctl conv append demo/chat user "m$m" >/dev/null; done
# shellcheck disable=SC2046 # the job PIDs, one a word
kill -TERM $(jobs -p)
wait || true
rm -f "$work"/node*/LOG* "$work"/node*.log
tar -C "$work" -czf tests/fixtures/v0-data.tar.gz node1 node2 node3
ls -la tests/fixtures/v0-data.tar.gz
