"""The connector kinds: the one list that registers them.

Adding a kind is adding its folder and one line here (docs/ARCHITECTURE.md, "Adding a
connector kind"); nothing else in the gateway names a kind or one of its tools.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from mcp_gateway.connectors.base import Catalogue, ConnectorKind, Instance

_KIND_MODULES = (
    "mcp_gateway.connectors.filesystem",
    "mcp_gateway.connectors.http_fetch",
    "mcp_gateway.connectors.postgres",
    "mcp_gateway.connectors.mcp_servers",
)


def _load() -> dict[str, ConnectorKind]:
    kinds: dict[str, ConnectorKind] = {}
    for module in _KIND_MODULES:
        kind: ConnectorKind = importlib.import_module(module).KIND
        kinds[kind.name] = kind
    return kinds


KINDS: dict[str, ConnectorKind] = _load()


def catalogue_of(instances: Iterable[Instance]) -> Catalogue:
    """The static tools of these instances (give a disabled one too: policy names its tools)."""
    return Catalogue(instances, KINDS)


__all__ = ["KINDS", "catalogue_of"]
