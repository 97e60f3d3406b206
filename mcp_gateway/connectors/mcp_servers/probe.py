"""doctor's live check of each upstream server: started confined as `serve` starts it, it must
answer initialize and tools/list in time; with pin_tools, how many tools match their approval."""

from __future__ import annotations

import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Instance
from mcp_gateway.connectors.mcp_servers.approve import ListingFailed, list_once
from mcp_gateway.connectors.mcp_servers.process import UpstreamStartError, start_upstream
from mcp_gateway.connectors.mcp_servers.serving import pin_check

Row = tuple[str, str]  # (PASS | WARN | FAIL, text)


async def _probe(instance: Instance, config: GatewayConfig) -> list[Row]:
    name, settings = instance.name, instance.settings
    try:
        discovered = await list_once(name, settings, lambda: start_upstream(instance, config))
    except UpstreamStartError as e:
        return [("FAIL", f"{name}: the server cannot start confined: {e.reason}")]
    except ListingFailed as e:
        return [("FAIL", f"{name}: the server started but did not initialize and list its tools: {e} "
                         "(the gateway serves on without it, and /healthz reports it unhealthy)")]
    rows: list[Row] = [("PASS", f"{name}: answers initialize and tools/list: {len(discovered.tools)} tool(s)")]
    if discovered.withheld:
        rows.append(("WARN", f"{name}: {len(discovered.withheld)} tool(s) unusable and never offered: "
                             + "; ".join(f"{n}: {why}" for n, why in list(discovered.withheld.items())[:5])))
    pins = pin_check(instance, config)
    if pins is not None:
        approved, withheld = pins.split(discovered.tools)
        level = "PASS" if not withheld else "WARN"
        rows.append((level, f"{name}: pin_tools: {len(approved)} tool(s) match their approval, {len(withheld)} "
                            "withheld (new or changed)" + ("; review with `mcp-gateway approve-tools --dry-run`"
                                                           if withheld else "")))
    else:
        rows.append(("WARN", f"{name}: pin_tools is off: a changed tool definition (description, schema) is offered "
                             "as it comes"))
    return rows


def probe_rows(instance: Instance, config: GatewayConfig) -> list[Row]:
    """Start, initialize and list the instance's server (doctor runs outside trio)."""
    return trio.run(_probe, instance, config)
