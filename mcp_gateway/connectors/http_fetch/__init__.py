"""The http_fetch connector kind: GET on allowed public hosts, SSRF-checked."""

from __future__ import annotations

from mcp_gateway.connectors.base import ConnectorKind, DoctorFinding, Guard, Instance, ToolSpec
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.tools import TOOLS


class HttpFetchKind(ConnectorKind):
    name = "http_fetch"
    summary = "GET on allowed public hosts. See [WEB_FETCH.md](WEB_FETCH.md)."
    settings = HttpFetchSettings
    seed_instance = "web"
    static_tools = TOOLS
    worker = "mcp_gateway.connectors.http_fetch.worker:HttpFetchConnector"

    def guard(self, instance: Instance, spec: ToolSpec) -> Guard:
        from mcp_gateway.connectors.http_fetch.urls import check_url

        settings = instance.settings
        return lambda args: check_url(args.url, settings)  # type: ignore[attr-defined]

    def describe(self, instance: Instance) -> str:
        s = instance.settings
        return f"domains {s.allowed_domains}, ports {s.allowed_ports}, internal exceptions {s.allow_internal_cidrs}"

    def doctor_checks(self, instance: Instance) -> list[DoctorFinding]:
        s, key = instance.settings, instance.key
        out = []
        if "*" in s.allowed_domains:
            out.append(DoctorFinding("WARN", f'{key}.allowed_domains contains "*" (any public host): list '
                                             "the domains agents need instead."))
        else:
            out.append(DoctorFinding("PASS", f"{instance.name} is limited to {len(s.allowed_domains)} "
                                             "domain pattern(s)"))
        if s.allow_internal_cidrs:
            out.append(DoctorFinding("WARN", f"{key}.allow_internal_cidrs opens {', '.join(s.allow_internal_cidrs)} "
                                             f"to {instance.name}: keep it only if agents must reach those "
                                             "internal hosts."))
        return out


KIND = HttpFetchKind()
