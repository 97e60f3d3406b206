"""`mcp-gateway doctor` starts each upstream server: one that never answers initialize is a FAIL row,
a working one a PASS with its tool count and its pins' state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.mcp_upstream.support import standin_server, upstream_config
from tests.support.gateway_process import REPO, gateway_env


def test_doctor_reports_a_server_that_never_initializes(gw_dir: Path) -> None:
    servers = {"good": standin_server(gw_dir, pin_tools=True),
               "mute": standin_server(gw_dir, env={"STANDIN_MODE": "never-init"}, init_timeout_ms=500)}
    config = upstream_config(gw_dir, servers, allow=[])
    done = subprocess.run([sys.executable, "-m", "mcp_gateway", "doctor", "--config", str(config)],
                          capture_output=True, text=True, env=gateway_env(), cwd=REPO, timeout=120)
    out = done.stdout
    assert done.returncode == 1
    assert "PASS" in out and "good: answers initialize and tools/list: 8 tool(s)" in out, out
    assert "good: pin_tools: 0 tool(s) match their approval, 8 withheld" in out
    assert "good: 2 tool(s) unusable" in out
    mute = next(line for line in out.splitlines() if "mute: the server started but did not" in line)
    assert mute.lstrip().startswith("FAIL") and "did not answer initialize within 500 ms" in mute
