"""The gateway under test: its generated configs and command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.driver import StdioServer
from mcp_gateway.connectors import filesystem, http_fetch, postgres
from mcp_gateway.connectors.base import seed_name
from tests.support import REPO

# The kinds the benchmarks configure, and the seed config's tools they call, named by the kinds
# themselves (nothing outside a kind's folder spells them: tests/unit/test_kind_names.py).
FILESYSTEM, HTTP_FETCH, POSTGRES = filesystem.KIND.name, http_fetch.KIND.name, postgres.KIND.name
READ_FILE_TOOL = seed_name(filesystem.KIND, filesystem.tools.READ_FILE)
FETCH_TOOL = seed_name(http_fetch.KIND, http_fetch.tools.FETCH)
QUERY_TOOL = seed_name(postgres.KIND, postgres.tools.QUERY)

GATEWAY_PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() \
    else sys.executable

LAYERS_OFF = {"user": "off", "rlimits": "off", "prctl": "off", "landlock": "off", "seccomp": "off"}


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "TZ")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def gateway_config(workdir: Path, name: str, *, fs_root: Path | None = None, http_port: int | None = None,
                   postgres: dict[str, Any] | None = None, layers_off: bool = False, workers: int | None = None,
                   per_tool: dict[str, Any] | None = None) -> Path:
    tools: list[str] = []
    connectors: dict[str, Any] = {}
    pool = {"workers": workers} if workers else {}
    if fs_root is not None:
        tools += [READ_FILE_TOOL]
        connectors[FILESYSTEM] = {"enabled": True, "allowed_paths": [str(fs_root)],
                                    "denied_paths": [str(fs_root / "secrets")], **pool}
    if http_port is not None:
        tools += [FETCH_TOOL]
        connectors[HTTP_FETCH] = {"enabled": True, "allowed_domains": ["*"],
                                    "allow_internal_cidrs": ["127.0.0.1/32"],
                                    "allowed_ports": [http_port], **pool}
    if postgres is not None:
        tools += [QUERY_TOOL]
        connectors[POSTGRES] = {**postgres, **pool}
    cfg: dict[str, Any] = {
        "server": {"name": "mcp-gateway", "transport": "stdio", "actor": "bench"},
        "audit": {"path": str(workdir / f"audit-{name}.jsonl")},
        "policy": {"default_deny": True, "allow_tools": tools, **({"per_tool": per_tool} if per_tool else {})},
        "connectors": connectors,
    }
    if layers_off:
        cfg["sandbox"] = {"layers": dict(LAYERS_OFF)}
    path = workdir / f"config-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o644)
    return path


def gateway_server(config: Path, label: str = "gateway", env: dict[str, str] | None = None) -> StdioServer:
    e = base_env(env)
    e["PYTHONPATH"] = str(REPO)
    return StdioServer(label, [GATEWAY_PYTHON, "-m", "mcp_gateway", "serve", "--config", str(config)],
                       env=e, cwd=str(config.parent))
