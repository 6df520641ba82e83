#!/usr/bin/env bash
# LangGraph steps per second with CtxstoreSaver against PostgresSaver and SqliteSaver,
# in one run: 3 release `ctxd` (4 shards), one PostgreSQL server (fsync on, as
# ctxstore syncs every write) and a SQLite file, on this machine; the same graph and
# workers for each (scripts/bench_langgraph.py). Run as root: PostgreSQL is installed
# with apt-get when missing and run as the `postgres` user.
#
#   scripts/bench-langgraph.sh                   # 8 workers, 10 s per saver
#   WORKERS=1 DURATION=20 scripts/bench-langgraph.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS="${WORKERS:-8}"
DURATION="${DURATION:-10}"
say() { printf 'bench-langgraph: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run it as root: it installs PostgreSQL and runs it as the postgres user"
source scripts/bench-common.sh
source scripts/python-venv.sh

# PostgreSQL.
newest_pg() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1; }
pg_bin="$(newest_pg || true)"
if [ -z "$pg_bin" ]; then
  say "installing postgresql (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bin="$(newest_pg)"
  # Debian's package starts a cluster of its own on port 5432; this bench runs its
  # own server, so that one is stopped again.
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --force "$(basename "$(dirname "$pg_bin")")" main stop 2>/dev/null || true
  fi
fi
chmod 755 "$WORK"
install -d -o postgres "$WORK/pg"
pg_port="$(free_port)"
as_pg() { su postgres -s /bin/sh -c "$*"; }
stop_pg() { as_pg "'$pg_bin/pg_ctl' -D '$WORK/pg/data' -m fast stop >/dev/null 2>&1" || true; }
trap 'stop_pg; cleanup' EXIT
as_pg "'$pg_bin/initdb' -D '$WORK/pg/data' -A trust -U bench >/dev/null"
as_pg "'$pg_bin/pg_ctl' -D '$WORK/pg/data' -l '$WORK/pg/log' -w -o \"-p $pg_port -k '$WORK/pg' -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on\" start >/dev/null"

# The Python side: the ctxstore package and the other savers.
venv="${CTXSTORE_BENCH_VENV:-$HOME/.cache/ctxstore-bench-lg-venv}"
if [ ! -x "$venv/bin/python" ]; then
  make_venv "$venv"
fi
"$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet install \
  "./clients/python[langgraph]" "langgraph-checkpoint-postgres==3.2.0" "psycopg[binary]>=3.2,<4" \
  "psycopg-pool>=3.2,<4" "langgraph-checkpoint-sqlite==3.1.2"

start_ctx 4
printf 'machine: %s cores, %s; 3 ctxd (4 shards), PostgreSQL %s, SQLite; %s workers, %s s per saver\n' \
  "$(nproc)" "$(mem_total)" "$("$pg_bin/postgres" --version | awk '{print $3}')" \
  "$WORKERS" "$DURATION"
"$venv/bin/python" scripts/bench_langgraph.py --ctxstore "$CTX_EPS" \
  --postgres "postgresql://bench@127.0.0.1:$pg_port/postgres" --sqlite "$WORK/lg.sqlite" \
  --workers "$WORKERS" --duration "$DURATION"
