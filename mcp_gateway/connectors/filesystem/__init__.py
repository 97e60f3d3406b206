"""The filesystem connector kind: read-only files beneath allowed directories."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_gateway.connectors.base import ConnectorKind, Guard, Instance, ToolSpec
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.connectors.filesystem.tools import TOOLS

if TYPE_CHECKING:
    from mcp_gateway.config import GatewayConfig
    from mcp_gateway.preflight import Finding


class FilesystemKind(ConnectorKind):
    name = "filesystem"
    summary = "Read-only access beneath allowed directories. See [FILESYSTEM.md](FILESYSTEM.md)."
    settings = FilesystemSettings
    seed_instance = "fs"
    static_tools = TOOLS
    worker = "mcp_gateway.connectors.filesystem.worker:FilesystemConnector"

    def guard(self, instance: Instance, spec: ToolSpec) -> Guard:
        from mcp_gateway.connectors.filesystem.paths import check_path

        settings = instance.settings
        return lambda args: check_path(args.path, settings)  # type: ignore[attr-defined]

    def describe(self, instance: Instance) -> str:
        s = instance.settings
        return f"allowed {[str(p) for p in s.allowed_paths]}, denied {[str(p) for p in s.denied_paths]}"

    def preflight(self, instance: Instance, config: GatewayConfig) -> list[Finding]:
        from mcp_gateway.connectors.filesystem.preflight import check_paths

        return check_paths(instance, config)


KIND = FilesystemKind()
