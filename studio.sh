#!/usr/bin/env bash
# Set up Continuity Studio from this checkout and run it, on a fresh machine, in one command:
#
#   ./studio.sh demo            install the app into .venv and open a copy of the demo project
#   ./studio.sh test [ARGS]     install the test dependencies into .venv and run the test suite
#                               (Qt offscreen; ARGS go to pytest, e.g. tests/ui -x -q)
#   ./studio.sh run [ARGS]      continuity-studio ARGS from .venv (after `demo` or `test`)
#
# Works with the system python3 of Debian 12 and Ubuntu 22.04/24.04, whose pip refuses to install
# outside a virtual environment (PEP 668): everything goes into .venv, made with
# `${PYTHON:-python3} -m venv`. On Debian/Ubuntu it first checks, with dpkg-query, the shared
# libraries Qt needs (the offscreen ones for `test`, the X11/xcb ones too for `demo`) and installs
# the missing ones with apt-get when run as root; otherwise it prints the `sudo apt install` line
# and, on a terminal, offers to run it. The pip step is skipped when .venv already holds what
# this mode needs for this pyproject.toml (a stamp file in .venv).
#
# Environment: PYTHON (the interpreter to build .venv from; default python3), STUDIO_VENV (where
# the venv lives; default .venv here), STUDIO_SKIP_APT=1 (skip the system-library check).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
MODE=${1:-}
[ $# -gt 0 ] && shift
PY=${PYTHON:-python3}
VENV=${STUDIO_VENV:-$HERE/.venv}

say() { printf 'studio.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "$MODE" in
  demo|test|run) ;;
  *) echo "usage: ./studio.sh demo | test [PYTEST ARGS] | run [CONTINUITY-STUDIO ARGS]" >&2; exit 2 ;;
esac

# -- Python ------------------------------------------------------------------------------------
command -v "$PY" >/dev/null 2>&1 || die "no '$PY' found: install Python 3.10 or newer (Debian/Ubuntu: sudo apt install python3 python3-venv) or set PYTHON=/path/to/python3"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Continuity Studio needs Python 3.10 or newer; $PY is $PYVER (set PYTHON=/path/to/python3.10+)"

# -- system libraries (Debian/Ubuntu) ----------------------------------------------------------
# Offscreen Qt (tests) needs the first group; a window on X11 needs the xcb group as well. An
# entry "a|b" is satisfied by either (Ubuntu 24.04 renamed some libraries with a t64 suffix).
QT_DEBS="libegl1 libgl1 libopengl0 libfontconfig1 libfreetype6 libxkbcommon0 libglib2.0-0t64|libglib2.0-0 libdbus-1-3"
# The same list as the .deb's Depends (installer/linux/build-deb.sh XCB_DEPENDS).
XCB_DEBS="libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1
  libxcb-xfixes0 libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0 libx11-6 libx11-xcb1"

deb_installed() {  # one line per installed architecture; "ii" = installed and configured
  dpkg-query -W -f '${db:Status-Abbrev}\n' "$1" 2>/dev/null | grep -q '^ii'
}

check_debs() {
  [ "${STUDIO_SKIP_APT:-0}" = 1 ] && return 0
  command -v dpkg-query >/dev/null 2>&1 && [ -f /etc/debian_version ] || return 0  # not Debian-like
  local wanted=$QT_DEBS missing="" entry alt pick
  [ "$MODE" = test ] || wanted="$wanted $XCB_DEBS"
  # The venv: Debian ships ensurepip separately (python3-venv, or python3.X-venv for another X).
  if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    local default
    default=$(dpkg-query -W -f '${Version}' python3 2>/dev/null | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')
    if [ "$PYVER" = "$default" ]; then wanted="$wanted python3-venv"; else wanted="$wanted python$PYVER-venv"; fi
  fi
  for entry in $wanted; do
    pick=""
    for alt in ${entry//|/ }; do
      if deb_installed "$alt"; then pick=ok; break; fi
    done
    [ -n "$pick" ] && continue
    # Missing: install the first alternative this system's apt knows.
    pick=${entry%%|*}
    for alt in ${entry//|/ }; do
      if apt-cache show "$alt" >/dev/null 2>&1; then pick=$alt; break; fi
    done
    missing="$missing $pick"
  done
  missing=${missing# }
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    say "installing system packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086  # a list of package names
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    return 0
  fi
  say "Qt needs system packages that are missing: $missing"
  echo "    sudo apt install $missing" >&2
  if [ -t 0 ] && command -v sudo >/dev/null 2>&1; then
    read -r -p "Run it now with sudo? [Y/n] " answer
    case "${answer:-y}" in
      [Yy]*)
        # shellcheck disable=SC2086
        sudo apt install -y $missing && return 0
        die "apt failed; install them and run ./studio.sh $MODE again" ;;
    esac
  fi
  die "install them (the line above) and run ./studio.sh $MODE again (STUDIO_SKIP_APT=1 skips this check)"
}

# -- the virtual environment -------------------------------------------------------------------
make_venv() {
  local vpy=$VENV/bin/python want have
  want=$("$PY" -c 'import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))')
  if [ -x "$vpy" ]; then
    # Rebuild a venv made from another interpreter, or one whose Python no longer runs.
    have=$("$vpy" -c 'import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))' 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
      say "rebuilding $VENV (it was made with ${have:-a Python that no longer runs})"
      rm -rf "$VENV"
    fi
  fi
  [ -x "$vpy" ] && return 0
  say "creating the virtual environment $VENV with $PY ($PYVER)"
  local log
  log=$(mktemp "${TMPDIR:-/tmp}/studio-venv.XXXXXX")
  if ! "$PY" -m venv "$VENV" >"$log" 2>&1; then
    cat "$log" >&2
    rm -rf "$VENV"  # half made (no pip): the next run must not take it for a good one
    if grep -q ensurepip "$log"; then
      rm -f "$log"
      die "could not create the virtual environment: Python's venv support is not installed; on Debian/Ubuntu: sudo apt install python3-venv (python$PYVER-venv for Python $PYVER)"
    fi
    rm -f "$log"
    die "could not create the virtual environment $VENV (the reason is above)"
  fi
  rm -f "$log"
}

# The stamp: what this mode installs (this script's pip lines), for this pyproject.toml, into this
# venv's Python. Same stamp: nothing to do.
stamp_of() {
  { echo "$1"; cat pyproject.toml "$HERE/studio.sh"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } \
    | "$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())'
}

pip_install() {
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  local stamp=$VENV/.studio-stamp-$1
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(stamp_of "$1")" ]; then
    return 0
  fi
  say "installing the $1 dependencies into $VENV (pip)"
  rm -f "$VENV"/.studio-stamp-*
  if [ "$1" = test ]; then
    # CPU-only torch build; insightface without its dependencies: it only provides public-domain
    # test photos and would otherwise pull in the non-headless OpenCV, which clashes with PySide6.
    "${pip[@]}" install -q torch==2.13.0 -e ".[gpu,test]"
    "${pip[@]}" install -q --no-deps insightface==2.1
    stamp_of demo >"$VENV/.studio-stamp-demo"  # test's install includes the app's
  else
    "${pip[@]}" install -q -e .
  fi
  # The Face Mesh landmark model (Apache-2.0), one of the two the app offers at first use, is a
  # file inside this wheel, run by OpenCV; the wheel's own dependencies (numpy<2, non-headless
  # OpenCV, jax) are not wanted.
  "${pip[@]}" install -q --no-deps mediapipe==0.10.21
  stamp_of "$1" >"$stamp"
}

check_debs
make_venv
case "$MODE" in
  demo) pip_install demo ;;
  test) pip_install test ;;
  run) pip_install demo ;;
esac

# Like `source .venv/bin/activate`: the suite runs lint-imports and continuity-studio from PATH.
export VIRTUAL_ENV=$VENV
export PATH=$VENV/bin:$PATH
unset PYTHONHOME
case "$MODE" in
  demo) exec "$VENV/bin/continuity-studio" --demo "$@" ;;
  run) exec "$VENV/bin/continuity-studio" "$@" ;;
  test) QT_QPA_PLATFORM=offscreen exec "$VENV/bin/python" -m pytest "$@" ;;
esac
