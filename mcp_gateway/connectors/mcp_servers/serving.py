"""One instance's backend wired to the gateway: started confined, its tools into the catalogue."""

from __future__ import annotations

from pathlib import Path

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Catalogue, Instance
from mcp_gateway.connectors.mcp_servers.backend import UpstreamBackend
from mcp_gateway.connectors.mcp_servers.discovery import Discovered
from mcp_gateway.connectors.mcp_servers.pins import PinCheck, pin_path
from mcp_gateway.connectors.mcp_servers.process import start_upstream
from mcp_gateway.connectors.mcp_servers.tools import tool_spec


def config_dir(config: GatewayConfig) -> Path:
    return Path(config.source).resolve().parent if config.source else Path.cwd()


def pin_check(instance: Instance, config: GatewayConfig) -> PinCheck | None:
    settings = instance.settings
    if not settings.pin_tools:
        return None
    return PinCheck(instance.name, pin_path(instance.name, settings.pin_file, config_dir(config)))


def backend_of(instance: Instance, config: GatewayConfig, catalogue: Catalogue) -> UpstreamBackend:
    def publish(discovered: Discovered) -> None:
        catalogue.set_discovered(instance.name, [tool_spec(t) for t in discovered.tools], discovered.withheld)

    return UpstreamBackend(instance.name, instance.settings, lambda: start_upstream(instance, config), publish,
                           pin_check(instance, config))
