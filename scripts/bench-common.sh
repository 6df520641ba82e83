# Sourced by the bench scripts: builds the release binaries (or uses the ones in
# $BIN, when set) and provides a work directory, background-process cleanup and free
# loopback ports.
# shellcheck shell=bash
if [ -z "${BIN:-}" ]; then
  scripts/setup.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ctxstore-release}"
  cargo build --release -p ctxstore --bin ctxd -p ctxctl --bin ctxctl
  BIN="$CARGO_TARGET_DIR/release"
fi

WORK="$(mktemp -d)"
PIDS=()
CGROUPS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  for d in "${CGROUPS[@]}"; do rmdir "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

# NODE_CPU (root, cgroup v1 `cpu` or cgroup v2) gives each ctxd its own CPU budget, as
# separate small machines would have: on one 2-core machine the three nodes and the
# load generator otherwise share the same cores, and work moved off one node finds no
# idle CPU elsewhere. Checked before any node starts.
NODE_CPU="${NODE_CPU:-}"
if [ -n "$NODE_CPU" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "NODE_CPU needs root (it makes CPU cgroups)" >&2
    exit 1
  fi
  if ! { [ -f /sys/fs/cgroup/cpu/cgroup.procs ] ||
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; }; then
    echo "NODE_CPU needs cgroup v1's cpu controller or cgroup v2 with +cpu in /sys/fs/cgroup/cgroup.subtree_control" >&2
    exit 1
  fi
fi

# Puts process $1 into its own CPU cgroup limited to $NODE_CPU cores (cfs quota); does
# nothing without NODE_CPU. The cgroups go with the work directory.
cap_cpu() { # pid
  local dir quota
  [ -n "$NODE_CPU" ] || return 0
  quota="$(awk -v c="$NODE_CPU" 'BEGIN { printf "%d", c * 100000 }')"
  if [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then
    dir="/sys/fs/cgroup/cpu/ctxstore-bench-$$-$1"
    mkdir "$dir"
    echo 100000 >"$dir/cpu.cfs_period_us"
    echo "$quota" >"$dir/cpu.cfs_quota_us"
  else
    dir="/sys/fs/cgroup/ctxstore-bench-$$-$1"
    mkdir "$dir"
    echo "$quota 100000" >"$dir/cpu.max"
  fi
  echo "$1" >"$dir/cgroup.procs"
  CGROUPS+=("$dir")
}

free_port() {
  # Ask the kernel for a free loopback port (random high port without python3).
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1
}

# The machine's memory, as "23 GiB" (from /proc: `free` is not on a minimal Debian).
mem_total() {
  awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo
}

# Writes a ctxd config file that keeps the cluster as the script makes it: no
# placement driver, no leader balancing, no automatic splits; further lines of the
# [split] table may follow the file name.
still_config() { # file [split-lines...]
  {
    printf '[pd]\nenabled = false\n[raft]\nleader-balance = false\n[split]\nenabled = false\n'
    if [ "$#" -gt 1 ]; then printf '%s\n' "${@:2}"; fi
  } >"$1"
}

# Runs "$@" every 0.2 s until it succeeds; fails after WAIT_SECS (default 60) seconds.
wait_until() {
  local _
  for _ in $(seq 1 $((${WAIT_SECS:-60} * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

# --- ctxstore: 3 ctxd processes (start_ctx SHARDS; stop_ctx), with the extra ctxd
# flags in CTXD_FLAGS, if set ---
CTX_PIDS=()
CTX_EPS=""
start_ctx() { # shards
  local dir="$WORK/ctx-$1" ports=() initial="" i
  for i in 1 2 3; do ports+=("$(free_port)"); done
  initial="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
  mkdir -p "$dir"
  CTX_PIDS=()
  for i in 0 1 2; do
    # shellcheck disable=SC2086 # CTXD_FLAGS: extra flags, word-split on purpose
    RUST_LOG=warn "$BIN/ctxd" --node-id "$((i + 1))" --listen "127.0.0.1:${ports[$i]}" \
      --data-dir "$dir/n$((i + 1))" --initial-cluster "$initial" \
      --initial-shards "$1" ${CTXD_FLAGS:-} >"$dir-n$((i + 1)).log" 2>&1 &
    CTX_PIDS+=($!)
    PIDS+=($!)
    cap_cpu "$!"
  done
  CTX_EPS="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
  wait_ready ctxstore "$CTX_EPS"
}
stop_ctx() {
  for p in "${CTX_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CTX_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

wait_ready() { # target endpoints
  # shellcheck disable=SC2086 # BENCH_FLAGS: extra global flags, word-split on purpose
  wait_until "$BIN/ctxctl" --endpoints "$2" ${BENCH_FLAGS:-} bench --target "$1" --clients 1 \
    --duration 200ms --warmup 0s --keys 1 --workload put ||
    { echo "$1 did not become ready; logs in $WORK" >&2; return 1; }
}

field() { # json field
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"
}

# Summed over the pids, in MiB: RSS (`VmRSS` in /proc/PID/status), or PSS (`Pss` in
# /proc/PID/smaps_rollup), the proportional set size, where pages the nodes share
# (above all the `ctxd` binary's code, about 18 MiB) count once instead of once per
# node. RSS is what three machines would each need; PSS what this machine holds for
# the three.
mem_mib() { # Field: file pids...
  local field="$1" file="$2" total=0 p kb
  shift 2
  for p in "$@"; do
    kb=$(awk -v f="$field" '$1 == f {print $2}' "/proc/$p/$file" 2>/dev/null) ||
      { echo "ctxd $p is gone; logs in $WORK" >&2; exit 1; }
    total=$((total + kb))
  done
  echo $((total / 1024))
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
if [[ "${DURATION:-}" =~ ^([0-9]+)s$ ]] && [ "${BASH_REMATCH[1]}" -ge 3 ]; then
  SECS="${BASH_REMATCH[1]}"
fi

# Runs one measurement (with the global ctxctl flags in BENCH_FLAGS and further bench
# flags in RUN_ARGS, if set; the caller sets DURATION, WARMUP and VALUE_SIZE before
# sourcing); prints its JSON line with `"cpu_us_per_op":N` appended: the
# servers' CPU time (all three processes) per completed op, sampled from second 1 to
# second DURATION-1 of the measurement, so preloading and warm-up are not counted.
run() { # target endpoints workload clients server-pids...
  local target="$1" eps="$2" workload="$3" clients="$4"
  shift 4
  local err="$WORK/bench.err" out="$WORK/bench.out" cpu="-" t0 t1 s0 s1 line ops
  : >"$err"
  # shellcheck disable=SC2086 # BENCH_FLAGS, RUN_ARGS: extra flags, word-split on purpose
  "$BIN/ctxctl" --endpoints "$eps" ${BENCH_FLAGS:-} bench --target "$target" --workload "$workload" \
    --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" \
    --value-size "$VALUE_SIZE" --json ${RUN_ARGS:-} >"$out" 2>"$err" &
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
