"""The MCP face of the gateway: the SDK's low-level `Server` wired to `Gateway`.

The SDK does the protocol (initialize, ping, method routing, JSON-RPC errors); tools/list
and tools/call are answered from the catalogue and the gateway pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
import trio
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from mcp_gateway import __version__
from mcp_gateway.connectors.base import ToolSpec
from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.gateway import Gateway, Outcome
from mcp_gateway.supervisor.modern_protocol import LIST_CACHE_HINTS

REQUEST_CANCELLED = -32800  # as the SDK answers a cancelled request on 2025-era HTTP
ActorOf = Callable[[ServerRequestContext[Any]], str]
# Scope key of a trio.Event the HTTP layer sets when the client closes the request.
REQUEST_CLOSED_KEY = "mcp_gateway.request_closed"


def tool_definition(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema(),
        output_schema=spec.output_schema,
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=spec.open_world,
        ),
    )


def request_closed(ctx: ServerRequestContext[Any]) -> trio.Event | None:
    """The event the HTTP layer sets when the client closes the request carrying this call."""
    scope = getattr(ctx.request, "scope", None)
    event = scope.get(REQUEST_CLOSED_KEY) if isinstance(scope, dict) else None
    return event if isinstance(event, trio.Event) else None


def _sdk_cancel_cause() -> str:
    return "the client cancelled the call (notifications/cancelled) or ended the session"


async def _unless_closed(gateway: Gateway, params: types.CallToolRequestParams, actor: str,
                         closed: trio.Event) -> Outcome:
    """Run the call; if the HTTP request closes first, cancel it (the answer has nowhere to go).

    Closing the POST is how protocol 2026-07-28 cancels, and the only way in stateless HTTP."""
    outcome: Outcome | None = None
    by_close = False

    def cause() -> str:
        return "the client closed the HTTP request" if by_close else _sdk_cancel_cause()

    async with trio.open_nursery() as nursery:
        async def watch() -> None:
            nonlocal by_close
            await closed.wait()
            by_close = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        outcome = await gateway.call(params.name, params.arguments, actor, cause)
        nursery.cancel_scope.cancel()
    if outcome is None:  # cancelled by the close and audited; nobody is left to read an answer
        raise MCPError(REQUEST_CANCELLED, "Request cancelled: the client closed the HTTP request")
    return outcome


def build_server(gateway: Gateway, actor_of: ActorOf) -> Server[Any]:
    definitions: dict[str, list[types.Tool]] = {}

    def tools_for(actor: str) -> list[types.Tool]:
        if actor not in definitions:
            definitions[actor] = [tool_definition(s) for s in gateway.tools_for(actor)]
        return definitions[actor]

    async def on_list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools_for(actor_of(ctx)))

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        actor = actor_of(ctx)
        closed = request_closed(ctx)
        if closed is None:
            outcome = await gateway.call(params.name, params.arguments, actor, _sdk_cancel_cause)
        else:
            outcome = await _unless_closed(gateway, params, actor, closed)
        # The answer as encoded once for every transport; the SDK shapes it for the negotiated
        # version (2026-07-28 adds resultType) and encodes it again.
        return types.CallToolResult.model_validate(results.decode(outcome.answer), by_name=False)

    return Server(
        gateway.config.server.name,
        version=__version__,
        instructions="Read-only tools behind a policy gateway. Every call is audited; refusals come back "
                     "as tool errors whose text starts with an error code.",
        cache_hints=LIST_CACHE_HINTS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )
