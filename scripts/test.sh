#!/usr/bin/env bash
# `make test`: set up, run the whole suite, then (when root) the integration, sandbox, postgres, filesystem, http
# suites again as an unprivileged user, since the container image runs non-root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

if [ "$(id -u)" = 0 ] && [ $# -eq 0 ]; then
  echo "== again as the unprivileged user nobody: integration, sandbox, postgres, filesystem and http suites =="
  # nobody cannot traverse a checkout under /root: run from a world-readable copy.
  copy=$(mktemp -d /tmp/mcp-gateway-nonroot.XXXXXX)
  trap 'rm -rf "$copy"' EXIT
  tar --exclude=./.git --exclude='*/__pycache__' -cf - . | tar -xf - -C "$copy"
  chmod -R a+rX "$copy"
  chmod 1777 "$copy"
  runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME="$copy" TMPDIR=/tmp LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$copy" \
    "$copy/.venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$copy" \
    "$copy/tests/integration" "$copy/tests/sandbox" "$copy/tests/postgres" "$copy/tests/filesystem" "$copy/tests/http"
fi
