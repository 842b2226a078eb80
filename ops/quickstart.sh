#!/usr/bin/env bash
# Sets up everything Dark Tower needs from a fresh clone, then runs one thing:
#   ops/quickstart.sh serve [darktower serve options]   run the server on embedded defaults
#   ops/quickstart.sh test  [pytest options]             run every check and the whole test suite
#                                                        (Python and the browser app, ops/web.sh)
#   ops/quickstart.sh setup                              only set up (.venv with dev tools)
# Idempotent: a second run reuses .venv and reinstalls only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
mode=${1:-}
[ $# -gt 0 ] && shift

log() { printf '\033[1mquickstart:\033[0m %s\n' "$*" >&2; }

apt_install() {
  # Installs Debian packages that are missing; needs root (a fresh Debian machine runs this as root).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or install them first)"; exit 1
  fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

python_env() {
  local want_dev=$1
  if ! python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    log "Python >= 3.11 is required"; exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
      apt_install python3-venv
    fi
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$want_dev" sum
  sum=$(cat requirements/*.lock pyproject.toml | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    log "installing Python dependencies (pinned in requirements/*.lock)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements/runtime.lock
    if [ "$want_dev" = dev ]; then
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements/dev.lock
    fi
    echo "$sum" >"$stamp"
  fi
  # Strict editable mode builds a link tree that mypy and the interpreter both see (docs/ARCHITECTURE.md).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    -e . --config-settings editable_mode=strict
}

case "$mode" in
  serve)
    python_env runtime
    # The browser app is served at / when built; the server runs without it (API and bots only).
    if command -v node >/dev/null 2>&1; then ./ops/web.sh build; else log "no Node.js: serving without the browser app"; fi
    exec "$VENV/bin/darktower" serve "$@"
    ;;
  setup)
    python_env dev
    ;;
  test)
    python_env dev
    export PATH="$VENV/bin:$PATH"
    log "checking generated protobuf code is current"
    python proto/generate.py --check
    log "ruff"
    ruff check .
    ruff format --check .
    log "mypy --strict"
    mypy -p darktower.core -p darktower.proto -p darktower.workers -p darktower.control \
      -p darktower.supervisor -p darktower.client
    # Each test room is its own mypy run: rooms reuse module names (conftest, test_api) by design.
    mypy bench tests/conftest.py
    for room in tests/*/; do
      if compgen -G "$room*.py" >/dev/null; then mypy "$room"; fi
    done
    log "browser app: generated code, eslint, prettier, tsc, vitest"
    ./ops/web.sh test
    log "pytest"
    python -m pytest "$@"
    log "browser app end to end: headless Chromium against a real darktower serve"
    ./ops/web.sh e2e
    ;;
  *)
    echo "usage: ops/quickstart.sh serve|test|setup [args...]" >&2
    exit 2
    ;;
esac
