"""The TypeScript SDK's client (most desktop agents) against the gateway on stdio and HTTP.

tests/clients/ts_sdk_client.mjs runs on Node 22 with @modelcontextprotocol/sdk from .cache/node:
list tools, a good call, a refused call (its code and reason must reach the client as a tool
error, not as the SDK's -32602 "Structured content does not match the tool's output schema"),
a cancelled call (the SDK's AbortSignal: notifications/cancelled) that must stop its worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.clients.helpers import (
    StallServer,
    assert_cancel_stopped_the_worker,
    assert_good_read,
    assert_refusal,
    clients_config,
)
from tests.support.gateway_process import gateway_env
from tests.support.http_gateway import HttpGateway
from tests.support.node_clients import NODE_MODULES, node_env

SCRIPT = Path(__file__).with_name("ts_sdk_client.mjs")
REFUSALS = [  # (tool, arguments, the code the client must read)
    ("fs.readFile", {"path": "/etc/passwd"}, "SECURITY_ERROR"),
    ("fs.readFile", {"path": "secrets/key.txt"}, "SECURITY_ERROR"),
    ("fs.readFile", {"path": 5}, "VALIDATION_ERROR"),
    ("db.query", {"sql": "SELECT 1"}, "POLICY_DENIED"),
]


def run_client(node: Path, directory: Path, transport: dict, stall: StallServer, cancel: bool = True) -> dict:
    plan: dict = {
        "sdk": str(NODE_MODULES / "@modelcontextprotocol" / "sdk"),
        "transport": transport,
        "good": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}},
        "refused": [{"name": name, "arguments": arguments} for name, arguments, _ in REFUSALS],
    }
    if cancel:
        plan["cancel"] = {"name": "web.fetch", "arguments": {"url": stall.url}, "startedFile": str(stall.started)}
    done = subprocess.run([str(node), str(SCRIPT), json.dumps(plan)], capture_output=True, timeout=120,
                          cwd=str(directory), env=node_env(directory), stdin=subprocess.DEVNULL)
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    assert done.returncode == 0 and out.strip(), f"rc={done.returncode}\n{out}\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def check(result: dict, directory: Path, stall: StallServer, cancel: bool = True) -> None:
    assert result["list"] == ["fs.readFile", "fs.listDir", "web.fetch"], result["list"]
    for refused, (_, _, code) in zip(result["refused"], REFUSALS, strict=True):
        assert_refusal(refused, code, directory)
    assert_good_read(result["good"], directory)
    if not cancel:
        return
    assert result["cancelStarted"] is True, result["cancelStarted"]
    assert "thrown" in result["cancelled"], f"the aborted call was not aborted: {result['cancelled']}"
    assert_cancel_stopped_the_worker(stall, directory)
    assert_good_read(result["afterCancel"], directory)


def test_ts_sdk_over_stdio(node, client_dir, stall):
    config = clients_config(client_dir, stall)
    stdio = {"command": sys.executable, "args": ["-m", "mcp_gateway", "serve", "--config", str(config)],
             "cwd": str(client_dir), "env": gateway_env()}
    check(run_client(node, client_dir, {"stdio": stdio}, stall), client_dir, stall)


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
def test_ts_sdk_over_http(node, client_dir, stall, stateless):
    # The SDK cancels only with notifications/cancelled, in a POST of its own, and never closes
    # the call's POST. Without sessions that notification cannot name the call (request ids are
    # per client, and a replica behind a balancer may not hold it), so stateless HTTP is
    # cancelled by closing the POST: tested with the Inspector.
    cancel = not stateless
    config = clients_config(client_dir, stall, server={
        "transport": "http", "http": {"host": "127.0.0.1", "port": 0, "stateless": stateless, "shutdown_grace_s": 1}})
    with HttpGateway(config) as gw:
        result = run_client(node, client_dir, {"http": gw.url}, stall, cancel)
        check(result, client_dir, stall, cancel)
