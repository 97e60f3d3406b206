"""Connector kind `mcp_servers`: upstream stdio MCP servers, run confined by the gateway, behind its
validation, policy, rate limits and audit (docs/UPSTREAM.md)."""

from __future__ import annotations

from typing import Any

from mcp_gateway.connectors.base import Backend, Catalogue, ConnectorKind, DoctorFinding, Instance
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings


class McpServersKind(ConnectorKind):
    name = "mcp_servers"
    summary = ("Upstream stdio MCP servers, run confined by the gateway; their tools are discovered and offered "
               "as `<instance>.<tool>`. See [UPSTREAM.md](UPSTREAM.md).")
    settings = McpServerSettings
    seed_instance = None
    worker = "mcp_gateway.connectors.mcp_servers.launcher:UpstreamLauncher"
    backend = "own"
    discovers_tools = True

    def describe(self, instance: Instance) -> str:
        s: McpServerSettings = instance.settings
        network = "no network" if s.network == "none" else "egress to " + ", ".join(s.network.allowed_domains)
        writes = ", ".join(map(str, s.filesystem.write)) or "nothing"
        return f"{' '.join(s.command)[:200]}; {network}; writes {writes}; pin_tools {'on' if s.pin_tools else 'OFF'}"

    def start_backend(self, instance: Instance, config: Any, catalogue: Catalogue) -> Backend:
        from mcp_gateway.connectors.mcp_servers.serving import backend_of

        return backend_of(instance, config, catalogue)

    def doctor_checks(self, instance: Instance) -> list[DoctorFinding]:
        from mcp_gateway.connectors.mcp_servers.doctor import instance_rows
        from mcp_gateway.sandbox import namespaces

        rows = instance_rows(instance.name, instance.settings, namespaces.available())
        return [DoctorFinding(level, text) for level, text in rows]  # type: ignore[arg-type]

    def live_checks(self, instance: Instance, config: Any) -> list[DoctorFinding]:
        from mcp_gateway.connectors.mcp_servers.probe import probe_rows

        return [DoctorFinding(level, text) for level, text in probe_rows(instance, config)]  # type: ignore[arg-type]


KIND = McpServersKind()
