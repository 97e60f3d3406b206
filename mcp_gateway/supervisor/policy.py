"""The policy engine: default deny, allow and deny lists, per-tool and per-actor limits.

Every decision carries a human-readable reason. Actor policies only narrow: an actor's
allow list is intersected with the global one and its deny list is added to the global one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp_gateway.config import GatewayConfig, ToolLimits
from mcp_gateway.tools import TOOLS


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    timeout_ms: int = 0
    max_bytes: int = 0


class Policy:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.policy = config.policy
        self.enabled_connectors = set(config.enabled_connectors())

    def _tool_refusal(self, tool: str, actor: str) -> str | None:
        """Why `tool` is not available to `actor`, or None when it is."""
        p = self.policy
        spec = TOOLS.get(tool)
        if spec is None:
            return f"unknown tool {tool!r}"
        if spec.connector not in self.enabled_connectors:
            return f"tool {tool} is unavailable: connector {spec.connector} is not enabled"
        if tool in p.deny_tools:
            return f"tool {tool} is in policy.deny_tools"
        actor_policy = p.actors.get(actor)
        if actor_policy is not None and tool in actor_policy.deny_tools:
            return f"tool {tool} is in policy.actors.{actor}.deny_tools"
        if p.default_deny and tool not in p.allow_tools:
            return f"tool {tool} is not in policy.allow_tools (default deny)"
        if actor_policy is not None and actor_policy.allow_tools is not None and tool not in actor_policy.allow_tools:
            return f"tool {tool} is not in policy.actors.{actor}.allow_tools"
        return None

    def exposed_tools(self, actor: str) -> list[str]:
        return [name for name in TOOLS if self._tool_refusal(name, actor) is None]

    def limits(self, tool: str, actor: str) -> tuple[int, int]:
        p = self.policy
        layers: list[ToolLimits | None] = [p.per_tool.get(tool)]  # type: ignore[call-overload]
        actor_policy = p.actors.get(actor)
        if actor_policy is not None:
            layers.append(actor_policy.per_tool.get(tool))  # type: ignore[call-overload]
        timeout_ms, max_bytes = p.global_timeout_ms, p.global_max_bytes
        for lim in layers:
            if lim is not None:
                timeout_ms = lim.timeout_ms if lim.timeout_ms is not None else timeout_ms
                max_bytes = lim.max_bytes if lim.max_bytes is not None else max_bytes
        return timeout_ms, max_bytes

    def _allowlist_refusal(self, tool: str, actor: str, args: dict[str, Any]) -> str | None:
        p = self.policy
        scopes = [("policy.per_tool", p.per_tool.get(tool))]  # type: ignore[call-overload]
        actor_policy = p.actors.get(actor)
        if actor_policy is not None:
            scopes.append((f"policy.actors.{actor}.per_tool", actor_policy.per_tool.get(tool)))  # type: ignore[call-overload]
        for where, lim in scopes:
            if lim is None:
                continue
            for name, allowed in lim.arg_allowlist.items():
                if args.get(name) not in allowed:
                    return (f"argument {name}={args.get(name)!r} is not in {where}.{tool}.arg_allowlist."
                            f"{name} {allowed!r}")
        return None

    def check_tool(self, tool: str, actor: str) -> Decision:
        reason = self._tool_refusal(tool, actor)
        if reason is not None:
            return Decision(False, reason)
        timeout_ms, max_bytes = self.limits(tool, actor)
        return Decision(True, f"tool {tool} allowed for actor {actor}", timeout_ms, max_bytes)

    def check_arguments(self, tool: str, actor: str, args: dict[str, Any]) -> str | None:
        """Reason the (decoded, defaults filled) arguments are refused, or None."""
        return self._allowlist_refusal(tool, actor, args)
