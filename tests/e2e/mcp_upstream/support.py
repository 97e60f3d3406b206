"""Configs of gateways with upstream MCP servers: the tests' protocol stand-in and the real servers.

Upstream servers run under an identity of their own (as root), so what they execute and read is
put where that identity can reach it: the stand-in is copied into a world-readable directory;
the real servers are used where bootstrap installed them when every directory above is
traversable by others, and the test is skipped otherwise (a checkout under a 0700 directory).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway_process import RawGateway
from tests.support.upstream_servers import NPM_SERVERS
from tests.support.upstream_servers import command as real_command

STANDIN = Path(__file__).resolve().parents[2] / "support/upstream_standin.py"
PYTHON = os.path.realpath(sys.executable)


def traversable(path: Path) -> bool:
    """Whether any identity may reach `path` (every directory above it has o+x)."""
    for parent in [path, *path.parents]:
        if parent.exists() and parent.is_dir() and not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def standin_server(directory: Path, **extra: Any) -> dict[str, Any]:
    """The settings of a stand-in upstream whose script is readable by any identity."""
    code = directory / "standin-code"
    code.mkdir(mode=0o755, exist_ok=True)
    code.chmod(0o755)
    script = code / "upstream_standin.py"
    shutil.copy(STANDIN, script)
    script.chmod(0o644)
    return {"command": [PYTHON, "-I", str(script)], "filesystem": {"read": [str(code)]}, **extra}


def real_server(name: str, directory: Path) -> dict[str, Any]:
    """A real server's settings: npm servers read their node_modules (their dependencies), a
    PyPI server's venv is part of its runtime (the gateway resolves it from the command)."""
    argv = real_command(name)
    program = Path(argv[1] if argv[1:] and argv[1].startswith("/") else argv[0])
    if os.geteuid() == 0 and not traversable(program):
        pytest.skip(f"{program} is below a directory other identities cannot traverse: the confined server "
                    "could not read it (run from a world-readable checkout)")
    server: dict[str, Any] = {"command": argv}
    if NPM_SERVERS in program.parents:
        server["filesystem"] = {"read": [str(NPM_SERVERS.parent)]}
    if name == "memory":
        state = directory / "memory-state"
        state.mkdir(mode=0o777, exist_ok=True)
        state.chmod(0o777)
        server["env"] = {"MEMORY_FILE_PATH": str(state / "memory.json")}
        server["filesystem"]["write"] = [str(state)]
    return server


def upstream_config(directory: Path, servers: dict[str, dict[str, Any]], allow: list[str],
                    deny: list[str] | None = None, **extra: Any) -> Path:
    directory.chmod(0o755)
    cfg: dict[str, Any] = {
        "server": {"transport": "stdio", "actor": "tester"},
        "audit": {"path": str(directory / "audit.jsonl")},
        "policy": {"default_deny": True, "allow_tools": allow, "deny_tools": deny or []},
        "connectors": {"mcp_servers": servers},
        **extra,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def listed_with(gw: RawGateway, *names: str) -> dict[str, dict] | None:
    """tools/list by name, once it has every one of `names` (None before)."""
    tools = {t["name"]: t for t in gw.request("tools/list")["result"]["tools"]}
    return tools if set(names) <= set(tools) else None


def stopped_log(gw: RawGateway) -> str:
    """Stop the gateway (stdin closed) and return everything it logged."""
    assert gw.proc.stdin is not None and gw.proc.stderr is not None
    gw.proc.stdin.close()
    gw.proc.wait(30)
    return gw.proc.stderr.read().decode(errors="replace")
