"""Run test_upstream_egress_in_netns.py inside a network namespace this test creates.

Only a loopback interface: the upstream server's attempts on metadata, private and other
blocked addresses cannot leave the machine whatever the code under test does. As root:
`unshare -n`; otherwise a user namespace with the current uid mapped to itself (the gateway
then runs as that uid, not as a namespace root, like a non-root container).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/sandbox/test_upstream_egress_in_netns.py"
LOOPBACK_UP = "from mcp_gateway.sandbox.namespaces import loopback_up; loopback_up()"  # no `ip` on a bare PATH


def test_upstream_egress_inside_a_network_namespace():
    # Not root: --keep-caps so loopback can be brought up; setpriv then drops the ambient set, so
    # the tests run without any capability, as a non-root gateway does.
    cmd = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-U", "-n", "--map-current-user", "--keep-caps"]
    drop = "" if os.geteuid() == 0 else "setpriv --ambient-caps=-all --inh-caps=-all "
    probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace ({' '.join(cmd)}): {probe.stderr.decode()[:200]}")
    env = {**os.environ, "MCPGW_IN_NETNS": "1"}
    run = subprocess.run(
        [*cmd, "sh", "-c", f'"$0" -c "$2" && exec {drop}"$0" -m pytest -q -p no:cacheprovider -x "$1"',
         sys.executable, INNER, LOOPBACK_UP],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
