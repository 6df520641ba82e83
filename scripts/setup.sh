#!/usr/bin/env bash
# Installs what building ctxstore needs beyond Rust: libclang and clang's own headers
# for RocksDB's bindings (bindgen), a C++ compiler and make. Safe to run repeatedly;
# prints nothing and does nothing when all is present.
#
#   scripts/setup.sh           install what is missing (apt-get; sudo when not root)
#   scripts/setup.sh --check   only print what it finds and would install; exit 0
#
# Environment:
#   CTXSTORE_SETUP_DRY_RUN=1   same as --check
#   CTXSTORE_SETUP_ROOT=DIR    look for everything under DIR instead of / (for tests
#                              with fake trees); implies --check, and ignores the
#                              environment that only describes this machine
#                              (LIBCLANG_PATH, llvm-config, LD_LIBRARY_PATH, PATH...)
#
# Why libclang needs care: rocksdb's `bindgen-runtime` feature makes bindgen load
# libclang with clang-sys at build time. clang-sys looks only for the file names
#   libclang.so  libclang-*.so  libclang.so.*  libclang-*.so.*
# and drops every name containing "-cpp." (clang-sys 1.9, build/common.rs and
# build/dynamic.rs). libclang-cpp.so.N (Debian package libclang-cppN, which llvm-N
# pulls in) is clang's C++ API, not the C API bindgen calls, so it must not count:
# a machine with only that file fails after minutes of building with bindgen's
# "Unable to find libclang". libclang also needs clang's resource headers
# (stddef.h, stdbool.h: rocksdb/c.h includes them and only the compiler ships them),
# packaged by Debian in libclang-common-N-dev; libclang-dev pulls in both.
set -euo pipefail

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }

dry_run=0
case "${CTXSTORE_SETUP_DRY_RUN:-0}" in 0 | "") ;; *) dry_run=1 ;; esac
for arg in "$@"; do
  case "$arg" in
    --check | --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

# Every searched directory is "$root" + an absolute path; for the real machine root is
# empty and `system` is 1.
root="${CTXSTORE_SETUP_ROOT:-/}"
while [[ "$root" == */ ]]; do root="${root%/}"; done
system=1
if [[ -n "$root" ]]; then
  system=0
  dry_run=1 # never install packages on this machine because of a fake tree
  if [[ ! -d "$root" ]]; then
    echo "setup: CTXSTORE_SETUP_ROOT=$CTXSTORE_SETUP_ROOT is not a directory" >&2
    exit 2
  fi
fi

# Prints the first file in directory $1 that clang-sys would load as libclang.
# Subshell body: the shopt changes stay inside.
libclang_in_dir() (
  shopt -s nullglob
  local f
  for f in "$1"/libclang.so "$1"/libclang-*.so "$1"/libclang.so.* "$1"/libclang-*.so.*; do
    # clang-sys skips libclang-cpp (the C++ API, see the top of this file).
    [[ "${f##*/}" == *-cpp.* ]] && continue
    # It must be loadable: a file, or a symlink that resolves to one.
    [[ -f "$f" ]] || continue
    printf '%s\n' "$f"
    return 0
  done
  return 1
)

# Prints the path of a libclang clang-sys would find, searching where clang-sys 1.9
# searches on Linux (build/common.rs, search_libclang_directories), or fails.
# clang-sys also rejects libraries of the wrong ELF class (32-bit on a 64-bit
# target); that case is rare enough not to be checked here.
find_libclang() (
  shopt -s nullglob
  local d p dirs=()
  if ((system)); then
    # LIBCLANG_PATH, when set, is the only place clang-sys looks: a libclang file,
    # or a directory holding one.
    if [[ -n "${LIBCLANG_PATH:-}" ]]; then
      p="$LIBCLANG_PATH"
      case "${p##*/}" in
        *-cpp.*) ;;
        libclang.so | libclang-*.so | libclang.so.* | libclang-*.so.*)
          if [[ -f "$p" ]]; then printf '%s\n' "$p"; return 0; fi ;;
      esac
      libclang_in_dir "$p"
      return
    fi
    # `llvm-config --prefix` (LLVM_CONFIG_PATH names another llvm-config): its bin,
    # lib and lib64.
    if p="$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null)" && [[ -n "$p" ]]; then
      p="${p%%$'\n'*}"
      dirs+=("$p/bin" "$p/lib" "$p/lib64")
    fi
    # The directories in LD_LIBRARY_PATH and LIBRARY_PATH.
    local list parts
    for list in "${LD_LIBRARY_PATH:-}" "${LIBRARY_PATH:-}"; do
      IFS=: read -r -a parts <<<"$list"
      for d in "${parts[@]}"; do
        if [[ -n "$d" ]]; then dirs+=("$d"); fi
      done
    done
  fi
  # The fixed patterns, in clang-sys's order (matched case-insensitively, as it does).
  # They cover /usr/lib/llvm-N/lib (Debian), /usr/lib/x86_64-linux-gnu (multiarch),
  # /usr/lib64, /usr/lib, /usr/local/lib, /usr/local/llvmN/lib...
  shopt -s nocaseglob dotglob
  for d in "$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/local/lib*/* \
    "$root"/usr/local/lib* "$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*; do
    if [[ -d "$d" ]]; then dirs+=("$d"); fi
  done
  shopt -u nocaseglob dotglob
  for d in "${dirs[@]}"; do
    libclang_in_dir "$d" && return 0
  done
  return 1
)

# Prints a directory of clang's resource headers (one holding stddef.h) that the
# libclang at $1 can use, or fails. libclang looks for them relative to itself
# (<its dir>/clang/<version>/include or <its dir>/../lib/clang/<version>/include,
# depending on the LLVM version); when bindgen finds a clang binary it adds that
# clang's include dirs. Any version's headers count here. Debian's libclang-common-N-dev puts them in
# /usr/lib/llvm-N/lib/clang/<version>/include and links that from /usr/lib/clang/N/
# and /usr/include/clang/N/; other layouts use /usr/lib64/clang/N/include.
find_clang_headers() (
  shopt -s nullglob
  local h libdir=.
  if [[ "$1" == */* ]]; then libdir="${1%/*}"; fi
  for h in "$libdir"/clang/*/include/stddef.h "$libdir"/../lib*/clang/*/include/stddef.h \
    "$root"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$root"/usr/lib*/clang/*/include/stddef.h \
    "$root"/usr/local/llvm*/lib*/clang/*/include/stddef.h "$root"/usr/local/lib*/clang/*/include/stddef.h \
    "$root"/usr/include/clang/*/include/stddef.h; do
    if [[ -f "$h" ]]; then printf '%s\n' "${h%/stddef.h}"; return 0; fi
  done
  return 1
)

# Whether command $1 exists: on PATH for this machine, in the usual bin dirs for a
# fake root.
have_command() {
  if ((system)); then
    command -v "$1" >/dev/null 2>&1
    return
  fi
  local d
  for d in usr/local/sbin usr/local/bin usr/sbin usr/bin sbin bin; do
    if [[ -f "$root/$d/$1" && -x "$root/$d/$1" ]]; then return 0; fi
  done
  return 1
}

# Fills `need` with the packages to install and `report` with one line per check.
detect() {
  need=()
  report=()
  local lib headers
  if lib="$(find_libclang)"; then
    if headers="$(find_clang_headers "$lib")"; then
      report+=("libclang: ok: $lib (headers: $headers)")
    else
      report+=("libclang: missing: $lib has no clang resource headers (lib/clang/*/include/stddef.h) -> libclang-dev")
      need+=(libclang-dev)
    fi
  else
    local where="clang-sys's search dirs"
    if ((system)) && [[ -n "${LIBCLANG_PATH:-}" ]]; then where="LIBCLANG_PATH=$LIBCLANG_PATH"; fi
    report+=("libclang: missing: no libclang.so, libclang-*.so, libclang.so.* or libclang-*.so.* in $where (libclang-cpp does not count) -> libclang-dev")
    need+=(libclang-dev)
  fi
  if have_command c++; then report+=("c++: ok"); else report+=("c++: missing -> g++"); need+=(g++); fi
  if have_command make; then report+=("make: ok"); else report+=("make: missing -> make"); need+=(make); fi
}

detect

if ((dry_run)); then
  printf 'setup: %s\n' "${report[@]}"
  if [[ ${#need[@]} -gt 0 ]]; then
    echo "setup: would install ${need[*]}"
  else
    echo "setup: nothing to install"
  fi
  exit 0
fi

if [[ ${#need[@]} -eq 0 ]]; then exit 0; fi

for line in "${report[@]}"; do
  if [[ "$line" == *" missing"* ]]; then echo "setup: $line" >&2; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: no apt-get here; install the equivalent of: ${need[*]}" >&2
  exit 1
fi
echo "setup: installing ${need[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null

# Check again, so a build does not start only to fail minutes later (for instance
# when LIBCLANG_PATH points at a directory without libclang).
detect
if [[ ${#need[@]} -gt 0 ]]; then
  for line in "${report[@]}"; do
    if [[ "$line" == *" missing"* ]]; then echo "setup: still $line" >&2; fi
  done
  exit 1
fi
