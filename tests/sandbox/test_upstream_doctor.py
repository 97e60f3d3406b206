"""doctor's rows for upstream servers say what confines each instance here, and what does not."""

from __future__ import annotations

import os

from mcp_gateway.connectors.mcp_servers.doctor import instance_rows
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from tests.sandbox.upstream_support import PYTHON


def settings(**kw) -> McpServerSettings:
    return McpServerSettings.model_validate({"command": [PYTHON, "-c", "pass"], **kw})


def levels(rows):
    return [level for level, _ in rows]


def test_with_namespaces_every_row_passes():
    rows = instance_rows("s", settings(network="none"), None)
    assert levels(rows) == ["PASS", "PASS"]
    assert "own network namespace" in rows[1][1]
    assert PYTHON in rows[0][1]  # what it may execute is named


def test_the_floor_with_an_egress_names_its_gap():
    rows = instance_rows("s", settings(network={"allowed_domains": ["example.com"]}), "no user namespaces")
    assert levels(rows) == ["PASS", "WARN", "WARN"]
    assert "no user namespaces" in rows[1][1]
    assert "same port" in rows[2][1]


def test_the_floor_without_network_holds():
    rows = instance_rows("s", settings(namespaces="off"), None)
    assert levels(rows) == ["PASS", "WARN", "PASS"]
    assert "no socket()" in rows[2][1]


def test_required_namespaces_that_cannot_be_made_fail():
    rows = instance_rows("s", settings(namespaces="required"), "max_user_namespaces is 0")
    assert rows[-1][0] == "FAIL" and "max_user_namespaces is 0" in rows[-1][1]


def test_an_unconfinable_command_and_a_missing_variable_fail(tmp_path):
    script = tmp_path / "srv"
    script.write_text("#!/usr/bin/env node\n")
    script.chmod(0o755)
    name = "MCPGW_TEST_DOCTOR_MISSING"
    assert name not in os.environ
    rows = instance_rows("s", McpServerSettings(command=[str(script)], env_from_gateway=[name]), None)
    assert levels(rows)[:2] == ["FAIL", "FAIL"]
    assert "#!/usr/bin/env" in rows[0][1] and name in rows[1][1]


def test_doctor_reports_an_upstream_server_through_its_kind():
    import io

    from mcp_gateway.config import GatewayConfig
    from mcp_gateway.doctor import run_doctor

    config = GatewayConfig.model_validate({"connectors": {"mcp_servers": {"upstream": {
        "command": [PYTHON, "-c", "pass"], "namespaces": "off"}}}})
    out = io.StringIO()
    run_doctor(config, out)
    text = out.getvalue()
    assert "PASS  upstream: executes only" in text
    assert "WARN  upstream: no namespaces (namespaces: off)" in text
    assert "a upstream worker" not in text  # not probed as a pool worker: it has none
