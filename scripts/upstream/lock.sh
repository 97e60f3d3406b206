#!/usr/bin/env bash
# Regenerate scripts/upstream/requirements.lock from the two pins below, in a clean venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check mcp-server-time==2026.10.19 mcp-server-fetch==2026.10.24
{
  sed -n '1,3p' scripts/upstream/requirements.lock
  "$tmp/venv/bin/pip" freeze | sort -f
} > "$tmp/lock"
mv "$tmp/lock" scripts/upstream/requirements.lock
echo "lock: wrote scripts/upstream/requirements.lock" >&2
