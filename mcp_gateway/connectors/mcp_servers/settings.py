"""Settings of one `connectors.mcp_servers.<instance>`: an upstream stdio MCP server.

The command is resolved at load, on the gateway's PATH, to the absolute path that will be
executed (and that the sandbox lets it execute): what runs is decided when the config is
read, not by whatever a later PATH finds. The environment the server sees is exactly `env`
plus the `env_from_gateway` variables copied by name.

"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mcp_gateway.connectors.base import InstanceSettings, Strict
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings

MiB = 1024 * 1024
LayerMode = Literal["required", "best_effort", "off"]
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
# Variables that change what the dynamic loader maps into the server: they would run code the
# Landlock execute rule never saw (it governs execve, not the loader's choices).
LOADER_VARIABLE_PREFIXES = ("LD_", "GCONV_PATH", "MALLOC_")


class UpstreamFilesystem(Strict):
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "read": ("Paths the server may read beyond its runtime's own files (resolved from the command).",
                 ["/opt/mcp/node_modules"]),
        "write": ("Paths the server may write; nothing else is writable.", ["/var/lib/mcp-memory"]),
    }
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

    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "allowed_domains": ("Hosts the server may reach through the egress (as web.fetch's allowed_domains).",
                            ["api.github.com"]),
        "allow_internal_cidrs": ("Exceptions to the internal-network block (metadata stays blocked).", None),
        "allowed_ports": ("Destination ports the egress proxy connects to.", [443]),
    }

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
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "memory_mb": ("RLIMIT_DATA of the server (not RLIMIT_AS: runtimes reserve much address space).", None),
        "cpu_s": ("RLIMIT_CPU of the server over its whole life (it is restarted when it ends).", None),
        "nofile": ("Open descriptors.", None),
        "max_processes": ("Threads and processes together (RLIMIT_NPROC).", None),
        "max_file_mb": ("Largest file it may write (RLIMIT_FSIZE); 0 without write paths.", None),
    }
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
    # docs/CONFIG.md: (description, example) per key (scripts/gen_config_doc.py); docs/UPSTREAM.md has more.
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": ("Run the server and offer its tools as `<instance>.<tool>`.", None),
        "command": ("argv of the server; `command[0]` absolute or a name found on the gateway's PATH when the "
                    "config is loaded (that path, and its interpreter, are all it may execute).",
                    ["node", "/opt/mcp/node_modules/@modelcontextprotocol/server-memory/dist/index.js"]),
        "env": ("The server's whole environment (with env_from_gateway); loader variables (LD_*) refused.",
                {"MEMORY_FILE_PATH": "/var/lib/mcp-memory/memory.json"}),
        "env_from_gateway": ("Variables copied from the gateway's environment by name (a missing one refuses "
                             "the start).", ["GITHUB_TOKEN"]),
        "filesystem": ("What the server may read and write beyond its runtime.", None),
        "network": ("`none` (no socket but stdio), or outbound HTTP(S) through the gateway's checked egress only.",
                    {"allowed_domains": ["api.github.com"]}),
        "limits": ("rlimits shaped for a runtime (threads).", None),
        "namespaces": ("Own pid and network namespaces: `required` refuses to start without them, `best_effort` "
                       "runs on the floor where the host cannot (doctor says so), `off`.", None),
        "pin_tools": ("Offer only tool definitions approved with `mcp-gateway approve-tools`; a changed or new "
                      "tool is withheld and refused POLICY_DENIED.", True),
        "pin_file": ("Where the approved definitions are (relative: to the config file's directory); default "
                     "`mcp-pins/<instance>.json` beside the config.", "pins/memory.json"),
        "init_timeout_ms": ("`initialize` must be answered within this, else the server is reported unhealthy "
                            "and restarted with backoff.", None),
        "list_timeout_ms": ("`tools/list` (every page) must be answered within this.", None),
        "max_concurrent_calls": ("Calls in flight on the server at once; more wait for a slot.", None),
        "queue_size": ("Calls waiting for a slot beyond this get UNAVAILABLE at once.", None),
        "max_message_bytes": ("A longer message from the server ends its session (it is restarted).", None),
        "max_tools": ("Tools beyond this many are ignored (logged).", None),
    }
    # Naming a server is asking for it: enabled unless it says otherwise.
    enabled: bool = True
    # argv; command[0] is resolved on PATH at load (see _resolve_command).
    command: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=256)]
    env: dict[EnvName, Annotated[str, Field(max_length=32_768)]] = {}
    env_from_gateway: list[EnvName] = []
    filesystem: UpstreamFilesystem = UpstreamFilesystem()
    network: Literal["none"] | UpstreamNetwork = "none"
    limits: UpstreamLimits = UpstreamLimits()
    # Own pid and network namespaces (docs/SANDBOX.md "Upstream servers"): required = refuse
    # to start without them; best_effort = the floor where the host cannot (doctor says so).
    namespaces: LayerMode = "best_effort"
    # Refuse a tool whose definition changed since `mcp-gateway approve-tools` (docs/UPSTREAM.md).
    pin_tools: bool = False
    # Where the approved definitions' hashes live: absolute, or relative to the config file's
    # directory; default mcp-pins/<instance>.json beside the config file.
    pin_file: Path | None = None
    # initialize must be answered within this; otherwise the server is reported unhealthy,
    # killed and started again with backoff (the rest of the gateway serves on).
    init_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 20_000
    # tools/list (every page together) must be answered within this.
    list_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 20_000
    # Calls in flight on the server at once; more wait (within their deadline) for a slot.
    max_concurrent_calls: Annotated[int, Field(ge=1, le=1024)] = 16
    # Calls waiting for a slot beyond this are refused at once (UNAVAILABLE).
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = 256
    # Any one JSON-RPC message from the server longer than this ends the session (the server
    # is killed and restarted); a result is also held to the call's max_bytes.
    max_message_bytes: Annotated[int, Field(ge=64 * 1024, le=256 * MiB)] = 16 * MiB
    # Tools beyond this many (over all tools/list pages) are ignored, with a warning.
    max_tools: Annotated[int, Field(ge=1, le=10_000)] = 512

    @field_validator("command")
    @classmethod
    def _resolve_command(cls, v: list[str]) -> list[str]:
        """A bare name is resolved on the gateway's PATH now; an absolute path is kept as given (a
        config may be for another machine: whether it can be executed here is the host checks'
        question, `doctor` and the start, which refuses a program that is not an executable file)."""
        program = v[0]
        if "/" in program:
            if not os.path.isabs(program):
                raise ValueError(f"command[0] {program!r}: give an absolute path or a bare name found on PATH")
            return [os.path.normpath(program), *v[1:]]
        found = shutil.which(program)
        if found is None:
            raise ValueError(f"command[0] {program!r} is not an executable file on the gateway's PATH")
        return [os.path.abspath(found), *v[1:]]

    @field_validator("env", "env_from_gateway")
    @classmethod
    def _no_loader_variables(cls, v: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        for name in v:
            if name.upper().startswith(LOADER_VARIABLE_PREFIXES):
                raise ValueError(f"{name}: variables of the dynamic loader are refused (they would load code "
                                 "the sandbox's execute rule never allowed)")
        return v

    @model_validator(mode="after")
    def _env_once(self) -> McpServerSettings:
        both = sorted(set(self.env) & set(self.env_from_gateway))
        if both:
            raise ValueError(f"{', '.join(both)}: given in both env and env_from_gateway; keep one")
        if len(set(self.env_from_gateway)) != len(self.env_from_gateway):
            raise ValueError("env_from_gateway names a variable twice")
        return self
