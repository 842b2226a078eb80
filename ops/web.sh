#!/usr/bin/env bash
# Builds and checks the browser app (client/web) with the machine's Node.js (>= 20.19) and npm:
#   ops/web.sh build   install the pinned packages if needed, then build client/web/dist
#                      (the control plane serves it at / when it exists)
#   ops/web.sh test    install if needed, then: generated code current, eslint, prettier, tsc and
#                      svelte-check, vitest
#   ops/web.sh e2e     build, then the Playwright suite (client/web/e2e) in headless Chromium against a
#                      freshly started `darktower serve`: two browsers and a `darktower bot` in one meeting
#                      receive each other, end-to-end encrypted; mute, camera-off, decoder recovery, reconnect,
#                      leave, host mute/remove and the lobby; the meeting
#                      grid's screenshot goes to test-artifacts/meeting-grid.png (installs Debian's chromium
#                      when missing; needs root for that)
#   ops/web.sh bench   build, then browser media figures on loopback (client/web/bench): glass-to-glass
#                      latency p50/p99 between two browsers and CPU per received stream; printed and written
#                      to test-artifacts/web-bench.json
# Packages come from the npm registry only, exactly as package-lock.json pins them (`npm ci`); nothing
# downloads a browser or a toolchain of its own. Idempotent: node_modules is reinstalled only when
# package-lock.json changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WEB="$ROOT/client/web"
mode=${1:-}
[ $# -gt 0 ] && shift

log() { printf '\033[1mweb:\033[0m %s\n' "$*" >&2; }

require_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "Node.js >= 20.19 with npm is required (Debian 12's own nodejs package is too old)"; exit 1
  fi
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    log "Node.js >= 20.19 is required, found $(node --version)"; exit 1
  fi
}

install_packages() {
  require_node
  local stamp="$WEB/node_modules/.darktower-lock" sum
  sum=$(sha256sum "$WEB/package-lock.json" | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    log "installing npm packages (pinned in client/web/package-lock.json)"
    (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$sum" >"$stamp"
  fi
}

require_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && return
  if [ "$(id -u)" != 0 ]; then log "install Debian's chromium first (apt-get install chromium)"; exit 1; fi
  log "installing Debian's chromium"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

build() {
  install_packages
  log "vite build -> client/web/dist"
  (cd "$WEB" && npm run --silent build)
}

case "$mode" in
  build)
    build
    ;;
  test)
    install_packages
    cd "$WEB"
    log "generated protobuf code is current"
    npm run --silent check:generated
    log "eslint"
    npx --no-install eslint --max-warnings 0 .
    log "prettier"
    npx --no-install prettier --check --log-level warn .
    log "tsc --noEmit, svelte-check"
    npm run --silent typecheck
    log "vitest"
    npx --no-install vitest run "$@"
    ;;
  e2e | bench)
    require_chromium
    build
    cd "$WEB"
    script=$([ "$mode" = e2e ] && echo test:e2e || echo bench)
    DARKTOWER="${DARKTOWER:-$ROOT/.venv/bin/darktower}" npm run --silent "$script" -- "$@"
    ;;
  *)
    echo "usage: ops/web.sh build|test|e2e|bench [args...]" >&2
    exit 2
    ;;
esac
