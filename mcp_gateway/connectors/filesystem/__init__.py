"""The filesystem connector kind: read-only files beneath allowed directories."""

from __future__ import annotations

from mcp_gateway.connectors.base import ConnectorKind, DataPaths, Guard, Instance, ToolSpec
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.connectors.filesystem.tools import TOOLS


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

    def data_paths(self, instance: Instance) -> DataPaths:
        s, key = instance.settings, instance.key
        return DataPaths(tuple(s.allowed_paths), f"{key}.allowed_paths", tuple(s.denied_paths), f"{key}.denied_paths")


KIND = FilesystemKind()
