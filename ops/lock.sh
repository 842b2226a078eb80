#!/usr/bin/env bash
# Re-pins every Python dependency (the whole tree, exact versions) for Linux x86_64 / CPython 3.11.
# Run it after editing requirements/*.in; commit the .lock files it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
uv() { python3 -m uv "$@"; }
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
uv pip compile --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
  --no-header --output-file requirements/runtime.lock requirements/runtime.in
uv pip compile --quiet --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
  --no-header --output-file requirements/dev.lock requirements/dev.in
