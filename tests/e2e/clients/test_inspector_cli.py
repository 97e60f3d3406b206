"""MCP Inspector's CLI (@modelcontextprotocol/inspector, on Node 22) against the gateway on stdio and HTTP.

Each step is one `mcp-inspector --cli --format json` run, as an operator would type it: list
tools, a good call, a refused call (its code and reason must reach the Inspector as a tool
error, not as "data must have required property 'path'..."), and a cancelled call: the Inspector
is interrupted (SIGINT) while the call is in flight, which closes its connection; the call's
worker must stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.clients.helpers import (
    STOPPED_WITHIN_S,
    StallServer,
    assert_cancel_stopped_the_worker,
    assert_good_read,
    assert_refusal,
    clients_config,
    wait_for,
)
from tests.support.gateway_process import gateway_env
from tests.support.http_gateway import HttpGateway
from tests.support.node_clients import INSPECTOR, node_env


class Inspector:
    """`mcp-inspector --cli` against one target: the gateway's command line, or its URL."""

    def __init__(self, node: Path, directory: Path, target: list[str]) -> None:
        self.directory = directory
        self.base = [str(node), str(INSPECTOR), "--cli", "--format", "json", "-q"]
        self.target = target
        self.env = node_env(directory)

    def argv(self, *args: str) -> list[str]:
        return [*self.base, *args, *self.target]

    def run(self, *args: str) -> dict:
        done = subprocess.run(self.argv(*args), capture_output=True, timeout=120, cwd=str(self.directory),
                              env=self.env, stdin=subprocess.DEVNULL)
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        assert out.strip(), f"rc={done.returncode}, nothing on stdout; stderr: {err[-3000:]}"
        return json.loads(out)

    def call(self, tool: str, **arguments: str) -> dict:
        reply = self.run("--method", "tools/call", "--tool-name", tool, "--tool-args-json", json.dumps(arguments))
        assert "result" in reply, f"the Inspector saw an error, not a tool result: {reply}"
        return reply["result"]

    def start(self, *args: str) -> subprocess.Popen:
        # A session of its own: Ctrl-C in a terminal signals the whole foreground group.
        return subprocess.Popen(self.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, cwd=str(self.directory), env=self.env,
                                start_new_session=True)


def list_refuse_read(inspector: Inspector, directory: Path) -> None:
    listed = inspector.run("--method", "tools/list")
    assert [t["name"] for t in listed["result"]["tools"]] == ["fs.readFile", "fs.listDir", "web.fetch"], listed
    assert_refusal(inspector.call("fs.readFile", path="/etc/passwd"), "SECURITY_ERROR", directory)
    assert_good_read(inspector.call("fs.readFile", path="hello.txt"), directory)


def ctrl_c_during_a_call(inspector: Inspector, stall: StallServer, directory: Path, *, by_client: bool = True) -> None:
    running = inspector.start("--method", "tools/call", "--tool-name", "web.fetch",
                              "--tool-args-json", json.dumps({"url": stall.url}))
    try:
        wait_for(stall.started.exists, 30, "the Inspector's web.fetch never reached the upstream")
        os.killpg(running.pid, signal.SIGINT)  # Ctrl-C: the Inspector and, on stdio, the gateway it started
        running.wait(STOPPED_WITHIN_S + 5)
        assert_cancel_stopped_the_worker(stall, directory, by_client=by_client)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.pid, signal.SIGKILL)
        running.wait(5)


def stdio_inspector(node: Path, directory: Path, stall: StallServer) -> Inspector:
    config = clients_config(directory, stall)
    # The Inspector gives a stdio server only a default environment (HOME, PATH...) plus -e.
    env = [arg for key, value in gateway_env().items() for arg in ("-e", f"{key}={value}")]
    return Inspector(node, directory, [*env, "--cwd", str(directory), "--",
                                       sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)])


def test_inspector_cli_over_stdio(node, client_dir, stall):
    list_refuse_read(stdio_inspector(node, client_dir, stall), client_dir)


def test_inspector_ctrl_c_over_stdio_stops_the_call(node, client_dir, stall):
    # The gateway is in the Inspector's process group: the Ctrl-C stops it too (exit 130).
    ctrl_c_during_a_call(stdio_inspector(node, client_dir, stall), stall, client_dir, by_client=False)


def test_inspector_cli_over_http(node, client_dir, stall):
    # Stateful HTTP; stateless differs only in sessions, which the TS SDK test and the conformance
    # suite cover (each Inspector run costs a Node start-up: a few seconds on a loaded machine).
    config = clients_config(client_dir, stall, server={
        "transport": "http", "http": {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 1}})
    with HttpGateway(config) as gw:
        inspector = Inspector(node, client_dir, [gw.url])
        list_refuse_read(inspector, client_dir)
        ctrl_c_during_a_call(inspector, stall, client_dir)  # closes the POST: the gateway cancels the call
