#!/usr/bin/env bash
# Generates the Python protobuf and gRPC stubs of the public API (proto/ctxstore/v1)
# into clients/python/src/ctxstore/_proto/, with their imports rewritten so the
# package is self-contained (protoc writes `from ctxstore.v1 import kv_pb2`, which
# would resolve against this very package, `ctxstore`).
#
#   clients/python/gen_protos.sh           regenerate the committed stubs
#   clients/python/gen_protos.sh --check   regenerate into a temporary directory and
#                                          fail (exit 1) if the committed stubs differ
#
# Needs a Python with grpcio-tools at the version pinned in pyproject.toml (extra
# `dev`/`test`): the generated code embeds the generator's version, so another
# version produces different files. PYTHON selects the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"
out_dir="$here/src/ctxstore/_proto"
protos=(common kv cluster context auth)

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

"$py" -c 'import grpc_tools.protoc' 2>/dev/null || {
  echo "gen_protos: grpcio-tools is not installed for $py (pip install 'clients/python[dev]')" >&2
  exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# protoc, from the repository root so the files are registered under the names the
# server uses ("ctxstore/v1/kv.proto").
(
  cd "$repo/proto"
  files=()
  for p in "${protos[@]}"; do files+=("ctxstore/v1/$p.proto"); done
  "$py" -m grpc_tools.protoc -I . \
    --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${files[@]}"
)

gen="$tmp/flat"
mkdir -p "$gen"
for p in "${protos[@]}"; do
  for suffix in _pb2.py _pb2.pyi _pb2_grpc.py; do
    src="$tmp/ctxstore/v1/$p$suffix"
    [ -f "$src" ] || { echo "gen_protos: protoc did not write $p$suffix" >&2; exit 1; }
    # `from ctxstore.v1 import x_pb2 as ...` -> `from ctxstore._proto import x_pb2 as ...`,
    # and `from ctxstore.v1.x_pb2 import ...` (a public import) likewise.
    sed -e 's/^from ctxstore\.v1 import /from ctxstore._proto import /' \
        -e 's/^import ctxstore\.v1\.\([a-z_0-9]*\) as /from ctxstore._proto import \1 as /' \
        -e 's/^from ctxstore\.v1\.\([a-z_0-9]*\) import /from ctxstore._proto.\1 import /' \
        "$src" >"$gen/$p$suffix"
  done
done
cat >"$gen/__init__.py" <<'EOF'
"""Generated protobuf and gRPC stubs of proto/ctxstore/v1 (do not edit: run
clients/python/gen_protos.sh)."""
EOF

if [ "$check" = 1 ]; then
  if diff -r -u "$gen" "$out_dir" >"$tmp/diff"; then
    echo "gen_protos: the committed stubs are current"
  else
    cat "$tmp/diff"
    echo "gen_protos: the committed stubs in $out_dir differ from proto/; run clients/python/gen_protos.sh" >&2
    exit 1
  fi
else
  rm -rf "$out_dir"
  mkdir -p "$out_dir"
  cp "$gen"/* "$out_dir/"
  echo "gen_protos: wrote $(ls "$out_dir" | wc -l) files to $out_dir"
fi
