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

# The official MCP conformance suite, for tests/http (skipped there, loudly, without node).
if [ "$mode" = test ] && command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -f .cache/conformance/node_modules/@modelcontextprotocol/conformance/package.json ]; then
    echo "bootstrap: installing the MCP conformance suite into .cache/conformance"
    mkdir -p .cache/conformance
    npm install --prefix .cache/conformance --no-audit --no-fund --loglevel=error \
      @modelcontextprotocol/conformance@0.1.10 >&2 \
      || echo "bootstrap: warning: could not install the MCP conformance suite"
  fi
fi
exit 0
