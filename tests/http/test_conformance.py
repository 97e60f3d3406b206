"""The official MCP conformance suite (@modelcontextprotocol/conformance) against the HTTP transport.

Installed by `scripts/bootstrap.sh test` into .cache/conformance. The suite cannot send a
bearer token, so this gateway runs on loopback without tokens (every caller is server.actor).
"""

import shutil
import subprocess

import pytest

from tests.gateway_process import REPO
from tests.http.helpers import HttpGateway, http_config

pytestmark = pytest.mark.integration

PREFIX = REPO / ".cache" / "conformance"
SCENARIOS = ["server-initialize", "tools-list", "ping"]


@pytest.fixture(scope="module")
def npx():
    path = shutil.which("npx")
    if path is None or shutil.which("node") is None:
        pytest.skip("!!! node/npx not installed: the MCP conformance suite was NOT run !!!")
    if not (PREFIX / "node_modules" / "@modelcontextprotocol" / "conformance").is_dir():
        pytest.fail(f"the conformance suite is not installed in {PREFIX}: run scripts/bootstrap.sh test")
    return path


@pytest.fixture(scope="module")
def gateway(module_gw_dir):
    with HttpGateway(http_config(module_gw_dir)) as gw:
        yield gw


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_conformance_scenario(npx, gateway, scenario):
    done = subprocess.run([npx, "--prefix", str(PREFIX), "--no-install", "conformance", "server",
                           "--url", gateway.url, "--scenario", scenario],
                          capture_output=True, timeout=120, cwd=str(REPO), stdin=subprocess.DEVNULL)
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, out[-4000:]
    assert "0 failed" in out, out[-4000:]
