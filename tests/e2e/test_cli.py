"""The operator commands: check-config and the one-shot call."""

import json
import subprocess
import sys

from tests.support.gateway_process import REPO, audit_lines, fs_config, gateway_env


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mcp_gateway", *args], capture_output=True, text=True,
                          env=gateway_env(), cwd=cwd or REPO, timeout=60)


def test_check_config_prints_the_effective_policy():
    out = _run("check-config", "--config", str(REPO / "config.example.yaml"))
    assert out.returncode == 0, out.stderr
    assert "tools exposed to local-user: fs.readFile, fs.listDir" in out.stdout
    assert "fs.readFile: timeout 30000 ms, max 10485760 bytes" in out.stdout
    assert str(REPO / "data") in out.stdout


def test_check_config_names_the_bad_key_and_exits_1(gw_dir):
    bad = gw_dir / "bad.yaml"
    bad.write_text("policy:\n  default_deny: true\n  allow_tool: [fs.readFile]\n")
    out = _run("check-config", "--config", str(bad))
    assert out.returncode == 1
    assert "policy.allow_tool: unknown key" in out.stderr


def test_call_runs_through_policy_audit_and_a_worker(gw_dir):
    config = fs_config(gw_dir)
    ok = _run("call", "--config", str(config), "fs.readFile", '{"path": "hello.txt"}')
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["structuredContent"]["content"] == "hello world\n"
    denied = _run("call", "--config", str(config), "fs.readFile", '{"path": "/etc/passwd"}')
    assert denied.returncode == 1
    assert json.loads(denied.stdout)["error_code"] == "SECURITY_ERROR"
    bad_json = _run("call", "--config", str(config), "fs.readFile", "{path")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None, "SECURITY_ERROR"]


def test_default_config_path_falls_back_to_the_bundled_deny_all(gw_dir):
    out = _run("check-config", cwd=gw_dir)
    assert out.returncode == 0
    assert "default_config.yaml" in out.stdout and "tools exposed to local-user: none" in out.stdout


def test_a_required_layer_that_cannot_apply_stops_the_gateway(gw_dir):
    import os

    import pytest

    if os.geteuid() != 0:
        pytest.skip("the uid switch is only attempted as root")
    config = fs_config(gw_dir, sandbox={"uid_range": None, "user": "no-such-user-mcpgw",
                                        "layers": {"user": "required"}})
    out = _run("call", "--config", str(config), "fs.readFile", '{"path": "hello.txt"}')
    assert out.returncode == 1
    assert "cannot start" in out.stderr and "no-such-user-mcpgw" in out.stderr
    served = subprocess.run([sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
                            input="", capture_output=True, text=True, env=gateway_env(), timeout=60)
    assert served.returncode == 1 and "cannot start" in served.stderr
    assert "no-such-user-mcpgw" in served.stderr and "Traceback" not in served.stderr
    # The preflight refused before any call was accepted: nothing to audit.
    assert audit_lines(gw_dir) == []


def test_check_config_over_http_lists_the_token_actors():
    out = _run("check-config", "--schema-only", "--config", str(REPO / "examples" / "team-http-postgres.yaml"))
    assert out.returncode == 0, out.stderr
    assert "tools exposed to analyst-agent:" in out.stdout
    assert "local-user" not in out.stdout
