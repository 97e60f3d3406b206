"""doctor's live check of each upstream server: started confined as `serve` starts it, it must
answer initialize and tools/list in time; with pin_tools, how many tools match their approval."""

from __future__ import annotations

from pathlib import Path

import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.mcp_servers.approve import ListingFailed, list_once
from mcp_gateway.connectors.mcp_servers.pins import PinCheck, pin_path
from mcp_gateway.connectors.mcp_servers.process import UpstreamStartError, start_upstream
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings

Row = tuple[str, str]  # (PASS | WARN | FAIL, text)


class _Named:
    def __init__(self, name: str, settings: McpServerSettings) -> None:
        self.name, self.settings = name, settings


async def _probe(name: str, settings: McpServerSettings, config: GatewayConfig, config_dir: Path) -> list[Row]:
    try:
        discovered = await list_once(name, settings, lambda: start_upstream(_Named(name, settings), config))
    except UpstreamStartError as e:
        return [("FAIL", f"{name}: the server cannot start confined: {e.reason}")]
    except ListingFailed as e:
        return [("FAIL", f"{name}: the server started but did not initialize and list its tools: {e} "
                         "(the gateway serves on without it, and /healthz reports it unhealthy)")]
    rows: list[Row] = [("PASS", f"{name}: answers initialize and tools/list: {len(discovered.tools)} tool(s)")]
    if discovered.withheld:
        rows.append(("WARN", f"{name}: {len(discovered.withheld)} tool(s) unusable and never offered: "
                             + "; ".join(f"{n}: {why}" for n, why in list(discovered.withheld.items())[:5])))
    if settings.pin_tools:
        approved, withheld = PinCheck(name, pin_path(name, settings.pin_file, config_dir)).split(discovered.tools)
        level = "PASS" if not withheld else "WARN"
        rows.append((level, f"{name}: pin_tools: {len(approved)} tool(s) match their approval, {len(withheld)} "
                            "withheld (new or changed)" + ("; review with `mcp-gateway approve-tools --dry-run`"
                                                           if withheld else "")))
    else:
        rows.append(("WARN", f"{name}: pin_tools is off: a changed tool definition (description, schema) is offered "
                             "as it comes"))
    return rows


def session_rows(config: GatewayConfig) -> list[Row]:
    """Start, initialize and list every enabled upstream server, one after the other."""
    config_dir = Path(config.source).resolve().parent if config.source else Path.cwd()
    rows: list[Row] = []
    for name, settings in config.connectors.mcp_servers.items():
        if settings.enabled:
            rows += trio.run(_probe, name, settings, config, config_dir)
    return rows
