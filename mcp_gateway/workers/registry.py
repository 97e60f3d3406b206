"""Connector name -> implementation, imported only in the connector's own zygote."""

from __future__ import annotations

import importlib

from mcp_gateway.config import GatewayConfig
from mcp_gateway.workers.connector import Connector

_IMPLEMENTATIONS = {
    "filesystem": "mcp_gateway.connectors.filesystem.worker:FilesystemConnector",
    "http_fetch": "mcp_gateway.connectors.http_fetch.worker:HttpFetchConnector",
    "postgres": "mcp_gateway.connectors.postgres.worker:PostgresConnector",
}


def connector_class(name: str) -> type[Connector]:
    module, _, attr = _IMPLEMENTATIONS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def connector_for(name: str, config: GatewayConfig):
    """The object a zygote named `name` holds: a built-in connector, or the launcher of an
    upstream MCP server instance."""
    if name in config.connectors.mcp_servers:
        from mcp_gateway.connectors.mcp_servers.launcher import UpstreamLauncher

        return UpstreamLauncher(config, name)
    return connector_class(name)(config)
