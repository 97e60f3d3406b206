#!/usr/bin/env bash
# `make test`: set up, run the whole suite, then (when root) two more passes: the tests that start every
# connector's workers from a copy of the checkout under a 0700 directory (a clone in /root or in
# `mktemp -d`), where the workers' uid cannot traverse the directories above the checkout; and, as the
# unprivileged user nobody (the container image runs non-root), the tests marked `identity`, those whose
# outcome depends on who runs them: tests/e2e but its third-party clients, tests/sandbox and
# tests/component/postgres (tests/conftest.py marks them by folder, so a new e2e test is in that pass
# without a change here). With arguments, or not root: only pytest with those arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
export PYTHONDONTWRITEBYTECODE=1
# The package compiled once (into its gitignored __pycache__): every gateway, zygote and CLI process
# the tests start would otherwise compile it from source again.
.venv/bin/python -m compileall -q mcp_gateway

if [ "$(id -u)" != 0 ] || [ $# -ne 0 ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi

copy_checkout() {  # copy_checkout DIR [TAR-OPTION...]: this checkout with its .venv, without .git or make run's audit log
  local dir=$1
  shift
  tar --exclude=./.git --exclude='*/__pycache__' --exclude=./audit.jsonl "$@" -cf - . | tar -xf - -C "$dir"
  "$dir/.venv/bin/python" -m compileall -q "$dir/mcp_gateway"  # its own paths in the bytecode
}

private=$(mktemp -d /tmp/mcp-gateway-0700.XXXXXX)
copy=$(mktemp -d /tmp/mcp-gateway-nonroot.XXXXXX)
nobody_log=$(mktemp /tmp/mcp-gateway-nonroot-log.XXXXXX)
nobody_pid=
trap '[ -z "$nobody_pid" ] || kill "$nobody_pid" 2>/dev/null; rm -rf "$private" "$copy" "$nobody_log"' EXIT

chmod 0700 "$private"
mkdir "$private/checkout"
copy_checkout "$private/checkout" --exclude=./.cache  # .cache: node and the npm test tools, not needed here
# nobody cannot traverse a checkout under /root: its pass runs from a world-readable copy.
copy_checkout "$copy"
chmod -R a+rX "$copy"
chmod 1777 "$copy"

# The nobody pass runs beside the two root passes (most of a pass is waiting on the processes it
# started, so two share 2 cores well): they share no file, port or uid (the workers' uids are locked
# host-wide, sandbox/identity.py). Its output follows theirs.
# From inside the copy: nobody cannot enter a checkout under a 0700 directory, which would
# otherwise be its working directory (pytest returns to it at the end, and tests inherit it).
(cd "$copy" && exec runuser -u nobody -- env -i PATH=/usr/bin:/bin HOME="$copy" TMPDIR=/tmp LANG=C.UTF-8 \
  PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$copy" \
  "$copy/.venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$copy" \
  -m identity "$copy/tests") >"$nobody_log" 2>&1 &
nobody_pid=$!

status=0
echo "== the whole suite, as root =="
.venv/bin/python -m pytest -q -p no:cacheprovider || status=1

echo "== again as root from a copy under a 0700 directory: the tests that start every connector's workers =="
(cd "$private/checkout" && .venv/bin/python -m pytest -q -p no:cacheprovider \
  tests/e2e/test_examples.py tests/sandbox/test_sandbox_probes.py tests/e2e/test_filesystem_gateway.py \
  tests/e2e/test_fetch_gateway.py tests/e2e/test_postgres_gateway.py) || status=1

wait "$nobody_pid" || status=1
nobody_pid=
echo "== again as the unprivileged user nobody, beside the passes above: the tests whose outcome depends on the identity (-m identity) =="
cat "$nobody_log"
exit "$status"
