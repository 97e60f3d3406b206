"""`mcp-gateway approve-tools`: review what each pinned upstream server offers now, and pin it.

For every instance with `pin_tools: true` (or the ones named), the server is started as the
gateway starts it, initialized, listed and stopped; each tool is shown as new, changed (with
the diff against its approved definition), unchanged or gone; then, when the operator agrees,
the pin file is replaced with the definitions offered now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from mcp_gateway.connectors.mcp_servers.backend import StartUpstream
from mcp_gateway.connectors.mcp_servers.discovery import Discovered, UpstreamTool, discover
from mcp_gateway.connectors.mcp_servers.pins import definition_diff, load_pins
from mcp_gateway.connectors.mcp_servers.session import (
    BadAnswer,
    ListedTools,
    SessionEnded,
    UpstreamRpcError,
    UpstreamSession,
)
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings


class ListingFailed(Exception):
    pass


async def list_once(instance: str, settings: McpServerSettings, start: StartUpstream) -> Discovered:
    """Start the server, initialize it, list its tools, stop it (its whole tree)."""
    process = await start()
    session = UpstreamSession(process, name=instance, max_message_bytes=settings.max_message_bytes,
                              on_tools_changed=lambda: None)
    listed: ListedTools | ListingFailed
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.read_until_end)
            try:
                listed = await _initialize_and_list(session, settings)
            except ListingFailed as e:  # raised out here, not wrapped in the nursery's group
                listed = e
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await process.kill_tree()
    if isinstance(listed, ListingFailed):
        raise listed
    return discover(instance, listed.tools)


async def _initialize_and_list(session: UpstreamSession, settings: McpServerSettings) -> ListedTools:
    """ListingFailed with the reason when the server does not answer both in time and well."""
    step = f"initialize within {settings.init_timeout_ms} ms"
    try:
        with trio.fail_after(settings.init_timeout_ms / 1000):
            await session.initialize()
        step = f"tools/list within {settings.list_timeout_ms} ms"
        with trio.fail_after(settings.list_timeout_ms / 1000):
            return await session.list_tools(settings.max_tools)
    except trio.TooSlowError:
        raise ListingFailed(f"the server did not answer {step}") from None
    except (SessionEnded, UpstreamRpcError, BadAnswer) as e:
        raise ListingFailed(f"the server did not answer {step}: {e}") from None


@dataclass
class Review:
    instance: str
    path: Path
    tools: list[UpstreamTool]
    new: list[str] = field(default_factory=list)
    changed: dict[str, str] = field(default_factory=dict)  # name -> diff
    gone: list[str] = field(default_factory=list)
    withheld: dict[str, str] = field(default_factory=dict)  # not usable at all, so not pinnable

    @property
    def pending(self) -> bool:
        return bool(self.new or self.changed or self.gone)

    def report(self, out: TextIO) -> None:
        print(f"== {self.instance} ({self.path})", file=out)
        for tool in self.tools:
            if tool.upstream_name in self.new:
                print(f"  NEW       {tool.name}  sha256 {tool.digest}", file=out)
                print(f"            description: {(tool.description or '')[:300]!r}", file=out)
            elif tool.upstream_name in self.changed:
                print(f"  CHANGED   {tool.name}  sha256 {tool.digest}", file=out)
                print("\n".join("            " + line for line in self.changed[tool.upstream_name].splitlines()),
                      file=out)
            else:
                print(f"  unchanged {tool.name}", file=out)
        for name in self.gone:
            print(f"  GONE      {self.instance}.{name} (no longer offered; its pin is dropped)", file=out)
        for name, why in self.withheld.items():
            print(f"  UNUSABLE  {name}: {why} (never offered, cannot be approved)", file=out)


def review(instance: str, path: Path, discovered: Discovered) -> Review:
    pins = load_pins(path, instance)
    result = Review(instance, path, discovered.tools, withheld=dict(discovered.withheld))
    offered = {t.upstream_name for t in discovered.tools}
    for tool in discovered.tools:
        pinned = pins.get(tool.upstream_name)
        if pinned is None:
            result.new.append(tool.upstream_name)
        elif pinned.sha256 != tool.digest:
            result.changed[tool.upstream_name] = definition_diff(pinned.definition, tool.definition, tool.name)
    result.gone = sorted(set(pins) - offered)
    return result


@dataclass
class _Named:
    name: str
    settings: McpServerSettings


def pinned_instances(servers: dict[str, McpServerSettings], names: list[str]) -> list[_Named]:
    """The instances to review: the named ones, else every enabled one with pin_tools."""
    unknown = [n for n in names if n not in servers]
    if unknown:
        raise ListingFailed(f"no upstream server named {', '.join(unknown)} in connectors.mcp_servers")
    chosen = names or [n for n, s in servers.items() if s.enabled and s.pin_tools]
    return [_Named(n, servers[n]) for n in chosen]


async def review_all(instances: list[_Named], config_dir: Path, start: Callable[[_Named], Awaitable[object]]
                     ) -> list[Review]:
    from mcp_gateway.connectors.mcp_servers.pins import pin_path

    reviews = []
    for instance in instances:
        discovered = await list_once(instance.name, instance.settings, lambda i=instance: start(i))  # type: ignore[misc]
        path = pin_path(instance.name, instance.settings.pin_file, config_dir)
        reviews.append(review(instance.name, path, discovered))
    return reviews
