"""Settings of one upstream MCP server instance (`connectors.mcp_servers.<instance>`).

Minimal model created by the upstream-run branch for the keys the confinement needs; the
upstream-mcp branch owns the model (session keys: pin_tools, init_timeout_ms,
max_concurrent_calls) and merges its keys in here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mcp_gateway.connectors.base import InstanceSettings, Strict
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings

# config.py imports the kinds, this module among them: nothing here may import config.py.
LayerMode = Literal["required", "best_effort", "off"]


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class UpstreamFilesystem(Strict):
    # Beyond the runtime's own files (resolved from the command, docs/SANDBOX.md).
    read: list[Path] = []
    # Directories (or files) the server may write; nothing else is writable.
    write: list[Path] = []
    # Other programs it may execute, beyond its command (each with its own interpreters and
    # libraries), e.g. node for mcp-server-fetch's readability step. Nothing else may be executed.
    execute: list[Path] = []

    @field_validator("read", "write", "execute")
    @classmethod
    def _absolute(cls, v: list[Path]) -> list[Path]:
        for p in v:
            if not p.is_absolute():
                raise ValueError(f"path {str(p)!r} must be absolute")
        return v


class UpstreamNetwork(Strict):
    """Outbound HTTP(S) only through the gateway's egress proxy, under web.fetch's rules."""

    allowed_domains: Annotated[list[Annotated[str, Field(min_length=1, max_length=253)]], Field(min_length=1)]
    allow_internal_cidrs: list[str] = []
    # Destination ports the egress proxy connects to (CONNECT and plain HTTP).
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = [80, 443]

    @model_validator(mode="after")
    def _valid_rules(self) -> UpstreamNetwork:
        self.fetch_rules()  # the same validation as connectors.http_fetch's keys
        return self

    def fetch_rules(self) -> HttpFetchSettings:
        """web.fetch's settings carrying this instance's rules (what the guards take)."""
        return HttpFetchSettings(enabled=True, allowed_domains=self.allowed_domains,
                                 allow_internal_cidrs=self.allow_internal_cidrs, allowed_ports=self.allowed_ports)


class UpstreamLimits(Strict):
    # RLIMIT_DATA in MiB (not RLIMIT_AS: node reserves far more address space than it uses).
    memory_mb: Annotated[int, Field(ge=64, le=65536)] = 1024
    # CPU seconds over the process's life (RLIMIT_CPU; SIGKILL 2 s later).
    cpu_s: Annotated[int, Field(ge=1, le=7 * 86400)] = 86400
    # Open descriptors (RLIMIT_NOFILE).
    nofile: Annotated[int, Field(ge=32, le=65536)] = 1024
    # Threads and processes together (RLIMIT_NPROC counts both); node needs about a dozen.
    max_processes: Annotated[int, Field(ge=4, le=4096)] = 128
    # Largest file it may write (RLIMIT_FSIZE); 0 when it has no write paths.
    max_file_mb: Annotated[int, Field(ge=0, le=65536)] = 256


class McpServerSettings(InstanceSettings):
    # docs/CONFIG.md: (description, example) per key (scripts/gen_config_doc.py).
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": ("Run this server (naming it is asking for it: on unless it says otherwise).", None),
        "command": ("The server's argv; `command[0]` is resolved on the gateway's PATH at load. The server may "
                    "execute this program (and its `#!` and ELF interpreters) and nothing else.",
                    ["node", "/opt/mcp/server-memory/dist/index.js"]),
        "env": ("Its whole environment, with `env_from_gateway`: nothing else is inherited.",
                {"MEMORY_FILE_PATH": "/var/lib/mcp-memory/memory.json"}),
        "env_from_gateway": ("Variables copied by name from the gateway's environment (a missing one refuses "
                             "the start).", ["GITHUB_TOKEN"]),
        "filesystem": ("What it may read beyond its runtime's own files, write, and execute beyond its command.",
                       None),
        "network": ("`none` (no socket but stdio), or outbound HTTP(S) through the gateway's egress proxy only, "
                    "under web.fetch's rules.", {"allowed_domains": ["api.github.com"]}),
        "limits": ("Resource limits of the server process (rlimits).", None),
    }
    # Naming a server is asking for it: enabled unless it says otherwise.
    enabled: bool = True
    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], str] = {}
    env_from_gateway: list[Annotated[str, Field(pattern=ENV_NAME)]] = []
    filesystem: UpstreamFilesystem = UpstreamFilesystem()
    network: Literal["none"] | UpstreamNetwork = "none"
    limits: UpstreamLimits = UpstreamLimits()
    # Own pid and network namespaces (docs/SANDBOX.md "Upstream servers"): required = refuse
    # to start without them; best_effort = the floor where the host cannot (doctor says so).
    namespaces: LayerMode = "best_effort"

    @field_validator("command")
    @classmethod
    def _resolve_command(cls, v: list[str]) -> list[str]:
        program = v[0]
        if "/" not in program:
            found = shutil.which(program)
            if found is None:
                raise ValueError(f"command {program!r} is not on PATH")
            program = found
        if not os.path.isabs(program):
            raise ValueError(f"command {program!r} must be absolute or a name on PATH")
        return [program, *v[1:]]
