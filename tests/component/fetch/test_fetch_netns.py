"""Run tests/fetch/test_fetch_in_netns.py inside network and mount namespaces this test creates.

The namespace has only a loopback interface, so whatever those tests do (a regression that
resolves or connects where it must not), no packet can leave the machine. As root:
`unshare -n`; otherwise `unshare -rn` (a user namespace of one's own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
INNER = "tests/component/fetch/test_fetch_in_netns.py"


def _unshare() -> list[str]:
    # A mount namespace too: the inner tests bind-mount their own /etc/resolv.conf and /etc/hosts.
    cmd = ["unshare", "-n", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-n", "-m"]
    try:
        probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot create a network namespace: {e}")
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace ({' '.join(cmd)}): {probe.stderr.decode()[:200]}")
    return cmd


def test_fetch_checks_inside_a_network_namespace():
    cmd = _unshare()
    env = {**os.environ, "MCPGW_IN_NETNS": "1"}
    run = subprocess.run(
        [*cmd, "sh", "-c", 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider -x "$1"',
         sys.executable, INNER],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
