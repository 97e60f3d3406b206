"""Run the upstream egress tests inside a network namespace this test creates.

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

from tests.e2e.mcp_upstream.support import real_server

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_UP = "from mcp_gateway.sandbox.namespaces import loopback_up; loopback_up()"  # no `ip` on a bare PATH
# The real fetch server's test listens on these too (lo:1, lo:2): refused by the egress, never reached.
ADD_ADDRESSES = """
import fcntl, socket, struct
for label, address in ((b"lo:1", "169.254.169.254"), (b"lo:2", "10.1.2.3")):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # SIOCSIFADDR
        fcntl.ioctl(s, 0x8916, struct.pack("16sH2x4s8x", label, socket.AF_INET, socket.inet_aton(address)))
"""


def run_in_netns(inner: str, setup: str) -> None:
    # Not root: --keep-caps so loopback can be set up; setpriv then drops the ambient set, so
    # the tests run without any capability, as a non-root gateway does.
    cmd = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-U", "-n", "--map-current-user", "--keep-caps"]
    drop = "" if os.geteuid() == 0 else "setpriv --ambient-caps=-all --inh-caps=-all "
    probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace ({' '.join(cmd)}): {probe.stderr.decode()[:200]}")
    env = {**os.environ, "MCPGW_IN_NETNS": "1"}
    run = subprocess.run(
        [*cmd, "sh", "-c", f'"$0" -c "$2" && exec {drop}"$0" -m pytest -q -p no:cacheprovider -x "$1"',
         sys.executable, inner, setup],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]


def test_upstream_egress_inside_a_network_namespace():
    run_in_netns("tests/sandbox/test_upstream_egress_in_netns.py", LOOPBACK_UP)


def test_real_fetch_server_egress_inside_a_network_namespace(tmp_path):
    # Skips, saying why, when bootstrap did not install it or (as root) its own uid could not reach
    # it (a checkout under a 0700 directory): inside the namespace a skip counts as a failure.
    real_server("fetch", tmp_path)
    run_in_netns("tests/sandbox/test_fetch_server_in_netns.py", LOOPBACK_UP + ADD_ADDRESSES)
