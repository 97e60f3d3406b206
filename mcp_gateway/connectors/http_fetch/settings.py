"""Settings of one http_fetch instance (`connectors.http_fetch`)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator

from mcp_gateway.connectors.base import WorkerPoolSettings
from mcp_gateway.connectors.http_fetch.urls import DEFAULT_REQUEST_HEADERS, header_never_sent, parse_host
from mcp_gateway.guards import GuardDenied


class HttpFetchSettings(WorkerPoolSettings):
    # docs/CONFIG.md: (description, example) per key (scripts/gen_config_doc.py).
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": (
            "Serve the instance's tool, `<instance>.fetch` (`web.fetch` in the single-object form; GET "
            "only).", True),
        "allowed_domains": (
            "Host names agents may fetch: exact names, `*.example.com` (subdomains), or `*` alone (any public "
            "host). Internal addresses stay blocked either way.", ['api.github.com', '*.example.com']),
        "allow_internal_cidrs": (
            "Explicit exceptions to the internal-network block (cloud metadata addresses stay blocked).",
            ["10.20.0.0/16"]),
        "allowed_ports": (
            "Destination ports the fetch worker may connect to (URL check and Landlock TCP rule).", [443]),
        "max_redirects": (
            "Redirects followed, each hop re-checked.", 3),
        "user_agent": (
            "User-Agent header sent.", 'corp-agent/1.0'),
    }

    enabled: bool = False
    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = []
    allow_internal_cidrs: list[str] = []
    # Destination ports the fetch worker may connect to (Landlock TCP and URL check).
    allowed_ports: list[Annotated[int, Field(ge=1, le=65535)]] = [80, 443]
    max_redirects: Annotated[int, Field(ge=0, le=5)] = 5
    user_agent: str = "mcp-gateway/0.1 (+web.fetch)"
    request_headers: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=lambda: list(DEFAULT_REQUEST_HEADERS),
        description="Request headers an agent may set (case-insensitive); any other is dropped. Credential, "
                    "client-address, proxy and hop-by-hop headers are refused here (see docs/WEB_FETCH.md).")

    @field_validator("request_headers")
    @classmethod
    def _request_headers(cls, v: list[str]) -> list[str]:
        for name in v:
            if header_never_sent(name):
                raise ValueError(f"request_headers entry {name!r} is a header web.fetch never sends "
                                 "(credential, client address, proxy or hop-by-hop)")
        return [name.lower() for name in v]

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        # An entry that can never match must be an error, not a silently dead rule.
        for d in v:
            if d == "*":
                continue
            name = d[2:] if d.startswith("*.") else d
            try:
                parse_host(f"[{name}]" if ":" in name and not name.startswith("[") else name)
            except GuardDenied as e:
                raise ValueError(f"allowed_domains entry {d!r} is not valid: {e.reason}") from None
        return v

    @field_validator("allow_internal_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as e:
                raise ValueError(f"allow_internal_cidrs entry {c!r} is not a CIDR: {e}") from None
        return v
