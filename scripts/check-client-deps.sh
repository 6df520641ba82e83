#!/usr/bin/env bash
# Fails if the client crate or the CLI pulls in the server's heavy dependencies: a
# Rust user who only wants to talk to ctxstore must not compile RocksDB (20 minutes
# here, and libclang) or Raft. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for pkg in ctxstore-client ctxctl; do
  deps=$(cargo tree --quiet -p "$pkg" --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  bad=$(grep -xE 'rocksdb|librocksdb-sys|raft|raft-proto|bindgen|clang-sys|protobuf' <<<"$deps" || true)
  if [ -n "$bad" ]; then
    echo "check-client-deps: $pkg depends on: $(tr '\n' ' ' <<<"$bad")" >&2
    status=1
  else
    echo "check-client-deps: $pkg: $(wc -l <<<"$deps") crates, none of rocksdb/raft/bindgen"
  fi
done
exit $status
