# Sourced by the scripts that need Python (check-deploy.sh, test-python.sh,
# bench-langgraph.sh, bench-split.sh).
# shellcheck shell=bash
#
# make_venv DIR: creates a venv at DIR with the system's python3 (3.10 or later). On
# Debian, installs python3 when it is missing and python3-venv when the system Python
# lacks the venv module (with apt-get; sudo when not root), as scripts/setup.sh
# installs build packages. The caller defines `say` and `die`.
#
# need_python3 [PACKAGES...]: installs python3 (and PACKAGES) with apt-get when there
# is no python3, for scripts that only run python3 -c (scripts/bench-split.sh).
need_python3() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v python3 >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1 ||
      die "python3 is missing and this is not root (no sudo): run \`apt-get install python3 $*\` as root"
    say "installing python3${*:+ $*} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 "$@" >/dev/null
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 not found; install Python 3.10 or later"
}

make_venv() {
  local venv="$1" py sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  need_python3 python3-venv
  py="$(command -v python3)"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$py is Python $("$py" -c 'import platform; print(platform.python_version())'); 3.10 or later is needed"
  mkdir -p "$(dirname "$venv")"
  if "$py" -m venv "$venv" 2>/dev/null; then return; fi
  rm -rf "$venv"
  command -v apt-get >/dev/null 2>&1 ||
    die "\`$py -m venv\` failed; install the venv module for $py (Debian: python3-venv)"
  say "installing python3-venv (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  "$py" -m venv "$venv" || die "\`$py -m venv $venv\` failed even with python3-venv"
}
