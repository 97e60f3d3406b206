"""Upstream MCP servers (connector kind `mcp_servers`): stdio servers run confined by the gateway.

Minimal kind (upstream-run): the settings, the zygote-side launcher and the doctor rows. The
session backend, discovered tools and pinning are the upstream-mcp branch's.
"""

from __future__ import annotations

from mcp_gateway.connectors.base import ConnectorKind, DoctorFinding, Instance
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings


class McpServersKind(ConnectorKind):
    name = "mcp_servers"
    summary = "Upstream stdio MCP servers, each run confined (docs/SANDBOX.md \"Upstream servers\")."
    settings = McpServerSettings
    seed_instance = None
    worker = "mcp_gateway.connectors.mcp_servers.launcher:UpstreamLauncher"
    discovers_tools = True
    backend = "upstream"

    def describe(self, instance: Instance) -> str:
        s = instance.settings
        network = "no network" if s.network == "none" else "egress to " + ", ".join(s.network.allowed_domains)
        return f"{' '.join(s.command)}; {network}; writes {', '.join(map(str, s.filesystem.write)) or 'nothing'}"

    def doctor_checks(self, instance: Instance) -> list[DoctorFinding]:
        from mcp_gateway.connectors.mcp_servers.doctor import instance_rows
        from mcp_gateway.sandbox import namespaces

        return [DoctorFinding(level, text)
                for level, text in instance_rows(instance.name, instance.settings, namespaces.available())]


KIND = McpServersKind()
