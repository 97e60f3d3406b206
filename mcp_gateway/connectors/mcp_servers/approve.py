"""`mcp-gateway approve-tools`: review what each pinned upstream server offers now, and pin it.

For every instance with `pin_tools: true` (or the ones named), the server is started as the
gateway starts it, initialized, listed and stopped; each tool is shown as new, changed (with
the diff against its approved definition), unchanged or gone; then, when the operator agrees,
the pin file is replaced with the definitions offered now.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Instance
from mcp_gateway.connectors.mcp_servers.backend import StartUpstream
from mcp_gateway.connectors.mcp_servers.discovery import Discovered, UpstreamTool, discover
from mcp_gateway.connectors.mcp_servers.pins import PinFileError, definition_diff, load_pins, pin_path, write_pins
from mcp_gateway.connectors.mcp_servers.process import UpstreamStartError, start_upstream
from mcp_gateway.connectors.mcp_servers.serving import config_dir
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


def pinned_instances(config: GatewayConfig, names: list[str]) -> list[Instance]:
    """The instances to review: the named ones, else every enabled one with pin_tools."""
    servers = {i.name: i for i in config.instances(enabled_only=False) if i.kind == "mcp_servers"}
    unknown = [n for n in names if n not in servers]
    if unknown:
        raise ListingFailed(f"no upstream server named {', '.join(unknown)} in connectors.mcp_servers")
    return [servers[n] for n in names] or [i for i in servers.values() if i.enabled and i.settings.pin_tools]


async def _review_all(instances: list[Instance], config: GatewayConfig) -> list[Review]:
    reviews = []
    for instance in instances:
        discovered = await list_once(instance.name, instance.settings,
                                     lambda i=instance: start_upstream(i, config))  # type: ignore[misc]
        path = pin_path(instance.name, instance.settings.pin_file, config_dir(config))
        reviews.append(review(instance.name, path, discovered))
    return reviews


def approve_tools(config: GatewayConfig, names: list[str], *, dry_run: bool, yes: bool) -> int:
    """`mcp-gateway approve-tools`: the exit code (1: nothing approved, or --dry-run with changes)."""
    try:
        instances = pinned_instances(config, names)
        if not instances:
            print("mcp-gateway approve-tools: no upstream server has pin_tools: true", file=sys.stderr)
            return 1
        reviews = trio.run(_review_all, instances, config)
    except (ListingFailed, PinFileError, UpstreamStartError) as e:
        print(f"mcp-gateway approve-tools: {e}", file=sys.stderr)
        return 1
    for r in reviews:
        r.report(sys.stdout)
    pending = [r for r in reviews if r.pending]
    if not pending:
        print("every tool is approved as offered; nothing to do")
        return 0
    if dry_run:
        print(f"{sum(len(r.new) + len(r.changed) + len(r.gone) for r in pending)} change(s) await approval (--dry-run)")
        return 1
    if not yes and not _operator_agrees():
        return 1
    for r in pending:
        write_pins(r.path, r.instance, r.tools)
        print(f"{r.instance}: {len(r.tools)} tool definition(s) pinned in {r.path}")
    print("a running gateway applies them when the server next lists its tools (restart it to apply now)")
    return 0


def _operator_agrees() -> bool:
    if not sys.stdin.isatty():
        print("mcp-gateway approve-tools: review the changes above, then run again with --yes", file=sys.stderr)
        return False
    if input("approve these definitions? [y/N] ").strip().lower() in ("y", "yes"):
        return True
    print("nothing approved")
    return False
