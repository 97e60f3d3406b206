"""Helpers of the upstream-server tests: the hostile stand-in started through start_upstream.

The stand-in (upstream_hostile.py) is copied into a world-readable directory and run by the
system interpreter with -I, so the server's uid (as root) can execute and read it wherever
the checkout lives (a 0700 directory in one `make test` pass).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.mcp_servers.process import ConfinedUpstream, start_upstream
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings

HERE = Path(__file__).resolve().parent
PYTHON = os.path.realpath(sys.executable)
MODES = ("namespaces", "floor")  # own pid+net namespaces / namespaces off (what holds without them)
CALL_TIMEOUT_S = 30


@dataclass
class Instance:
    name: str
    settings: McpServerSettings


class Area:
    """A world-readable directory with the stand-in, a secret beside it, and a writable subdirectory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mcp-upstream-"))
        self.root.chmod(0o755)
        self.code = self.root / "code"
        self.code.mkdir(mode=0o755)
        self.script = self.code / "upstream_hostile.py"
        shutil.copy(HERE / "upstream_hostile.py", self.script)
        self.script.chmod(0o644)
        self.secret = self.root / "secret.txt"
        self.secret.write_text("secret\n")
        self.secret.chmod(0o644)
        self.writable = self.root / "state"
        self.writable.mkdir()
        self.writable.chmod(0o777)  # the server's own uid (as root) must be able to create files here
        self.outside = self.root / "elsewhere"
        self.outside.mkdir()
        self.outside.chmod(0o777)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def make_config(area: Area, mode: str, network: Any = "none", command: list[str] | None = None,
                **extra: Any) -> GatewayConfig:
    server = {
        "command": command or [PYTHON, "-I", str(area.script)],
        "filesystem": {"read": [str(area.code)], "write": [str(area.writable)]},
        "network": network,
        "namespaces": "off" if mode == "floor" else "required",
        **extra,
    }
    return GatewayConfig.model_validate({"connectors": {"mcp_servers": {"hostile": server}}})


class Client:
    """Minimal MCP over the server's stdio: one request at a time, newline-delimited JSON."""

    def __init__(self, proc: ConfinedUpstream) -> None:
        self.proc = proc
        self.next_id = 0
        self.buffer = b""

    async def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        await self.proc.send_stream.send_all((json.dumps(msg) + "\n").encode())
        with trio.fail_after(CALL_TIMEOUT_S):
            while b"\n" not in self.buffer:
                data = await self.proc.receive_stream.receive_some(1 << 16)
                if not data:
                    raise EOFError("the server closed its stdout")
                self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)["result"]

    async def tool(self, name: str, **arguments: Any) -> dict:
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        return json.loads(result["content"][0]["text"])


def start(config: GatewayConfig) -> Instance:
    return Instance("hostile", config.connectors.mcp_servers["hostile"])


async def run_session(config: GatewayConfig, script) -> Any:
    """Start the stand-in, initialize, run `script(client, proc)`, kill the tree; its result."""
    proc = await start_upstream(start(config), config)
    try:
        client = Client(proc)
        await client.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                            "clientInfo": {"name": "test", "version": "0"}})
        return await script(client, proc)
    finally:
        await proc.kill_tree()
