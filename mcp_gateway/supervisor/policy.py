"""The policy engine: default deny, allow and deny lists, per-tool and per-actor limits.

Every decision carries a human-readable reason. Actor policies only narrow: an actor's
allow list is intersected with the global one and its deny list is added to the global one.
Entries name tools by full name or by glob (`fs.*`). Deny lists match regardless of case: a
discovered tool's name is chosen by an untrusted server, and `Delete_all` must not slip past
`memory.delete_*`. `per_tool` limits (timeout, max_bytes) come from the exact name before any
glob, and the first matching glob otherwise; its `arg_allowlist`s are restrictions, so every
matching entry's applies. An allowlisted value matches only a value of the same JSON type
(`true` is not `1`, `1.0` is not `1`).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp_gateway.config import GatewayConfig, ToolLimits
from mcp_gateway.connectors.base import Catalogue
from mcp_gateway.connectors.sections import matches


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    timeout_ms: int = 0
    max_bytes: int = 0


def _listed(tool: str, entries: Iterable[str]) -> bool:
    return any(matches(entry, tool) for entry in entries)


def _denied(tool: str, entries: Iterable[str]) -> bool:
    folded = tool.lower()
    return any(matches(entry.lower(), folded) for entry in entries)


# A refused value as the reason shows it: an agent's argument may be megabytes or deeply nested
# JSON (a discovered tool takes any), and the reason goes to the agent and the audit line.
_shown = reprlib.Repr()
_shown.maxlevel, _shown.maxstring, _shown.maxother, _shown.maxlist, _shown.maxdict = 3, 60, 60, 5, 5


def _same(a: Any, b: Any) -> bool:
    """JSON equality: Python's `True == 1 == 1.0` would let one value pass for another."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _per_tool(table: Mapping[str, ToolLimits], tool: str) -> tuple[str, ToolLimits] | None:
    """(its key, the limits) of `tool` in a per_tool table: the exact name, else the first glob."""
    if tool in table:
        return tool, table[tool]
    return next(((key, lim) for key, lim in table.items() if matches(key, tool)), None)


class Policy:
    def __init__(self, config: GatewayConfig, catalogue: Catalogue | None = None) -> None:
        self.config = config
        self.policy = config.policy
        self.catalogue = catalogue or config.catalogue()

    def _tool_refusal(self, tool: str, actor: str) -> str | None:
        """Why `tool` is not available to `actor`, or None when it is."""
        p = self.policy
        spec = self.catalogue.get(tool)
        if spec is None:
            withheld = self.catalogue.withheld_reason(tool)
            return f"tool {tool} is withheld: {withheld}" if withheld else f"unknown tool {tool!r}"
        instance = self.catalogue.instances[spec.instance]
        if not instance.enabled:
            return f"tool {tool} is unavailable: connector {instance.name} ({instance.kind}) is not enabled"
        if _denied(tool, p.deny_tools):
            return f"tool {tool} is in policy.deny_tools"
        actor_policy = p.actors.get(actor)
        if actor_policy is not None and _denied(tool, actor_policy.deny_tools):
            return f"tool {tool} is in policy.actors.{actor}.deny_tools"
        if p.default_deny and not _listed(tool, p.allow_tools):
            return f"tool {tool} is not in policy.allow_tools (default deny)"
        if (actor_policy is not None and actor_policy.allow_tools is not None
                and not _listed(tool, actor_policy.allow_tools)):
            return f"tool {tool} is not in policy.actors.{actor}.allow_tools"
        return None

    def exposed_tools(self, actor: str) -> list[str]:
        return [spec.name for spec in self.catalogue if self._tool_refusal(spec.name, actor) is None]

    def _tables(self, actor: str) -> list[tuple[str, Mapping[str, ToolLimits]]]:
        """The per_tool tables that apply to `actor`: (where, table), global first."""
        p = self.policy
        tables: list[tuple[str, Mapping[str, ToolLimits]]] = [("policy.per_tool", p.per_tool)]
        actor_policy = p.actors.get(actor)
        if actor_policy is not None:
            tables.append((f"policy.actors.{actor}.per_tool", actor_policy.per_tool))
        return tables

    def _scopes(self, tool: str, actor: str) -> list[tuple[str, ToolLimits]]:
        """The per_tool entry that sets `tool`'s limits in each table: (where, limits)."""
        out = []
        for where, table in self._tables(actor):
            found = _per_tool(table, tool)
            if found is not None:
                out.append((f"{where}.{found[0]}", found[1]))
        return out

    def limits(self, tool: str, actor: str) -> tuple[int, int]:
        p = self.policy
        timeout_ms, max_bytes = p.global_timeout_ms, p.global_max_bytes
        for _, lim in self._scopes(tool, actor):
            timeout_ms = lim.timeout_ms if lim.timeout_ms is not None else timeout_ms
            max_bytes = lim.max_bytes if lim.max_bytes is not None else max_bytes
        return timeout_ms, max_bytes

    def check_tool(self, tool: str, actor: str) -> Decision:
        reason = self._tool_refusal(tool, actor)
        if reason is not None:
            return Decision(False, reason)
        timeout_ms, max_bytes = self.limits(tool, actor)
        return Decision(True, f"tool {tool} allowed for actor {actor}", timeout_ms, max_bytes)

    def check_arguments(self, tool: str, actor: str, args: dict[str, Any]) -> str | None:
        """Reason the (decoded, defaults filled) arguments are refused, or None."""
        for where, table in self._tables(actor):
            for key, lim in table.items():
                if not matches(key, tool):
                    continue
                for name, allowed in lim.arg_allowlist.items():
                    value = args.get(name)
                    if not any(_same(value, a) for a in allowed):
                        return (f"argument {name}={_shown.repr(value)} is not in "
                                f"{where}.{key}.arg_allowlist.{name} {allowed!r}")
        return None
