"""The MCP face of the gateway: the SDK's low-level `Server` wired to `Gateway`.

The SDK does the protocol (initialize, ping, method routing, JSON-RPC errors); tools/list
and tools/call are answered from the catalogue and the gateway pipeline, through the same
`Calls` and tool definitions as the hot route (fastpath.py). A middleware hands each
session's SDK object to whoever serves that session's hot route, once `initialize` was
answered (`on_initialize`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
import msgspec
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from mcp_gateway import __version__
from mcp_gateway.connectors.base import ToolSpec
from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.fastpath import Calls, CloseSignal, current_actor
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.modern_protocol import LIST_CACHE_HINTS

REQUEST_CANCELLED = -32800  # as the SDK answers a cancelled request on 2025-era HTTP
# Scope key of the HTTP layer's ClosedRequest (its `on_close` fires when the client closes the request).
REQUEST_CLOSED_KEY = "mcp_gateway.request_closed"
OnInitialize = Callable[[ServerRequestContext[Any]], None]


def tool_definition(spec: ToolSpec) -> types.Tool:
    if spec.discovered is not None:  # as its kind advertises it (an upstream's hints are not ours to give)
        return spec.discovered.advertised()
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


class ToolDefinitions:
    """The tools an actor may see, as SDK models and as the encoded tools/list result (per actor),
    cached until the catalogue changes (a discovered tool withdrawn or withheld leaves at once)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._models: dict[str, list[types.Tool]] = {}
        self._encoded: dict[str, bytes] = {}
        self._version = gateway.catalogue.version

    def _current(self) -> None:
        """Forget the renderings when the catalogue changed (an instance discovered its tools again)."""
        if self._version != self.gateway.catalogue.version:
            self._models.clear()
            self._encoded.clear()
            self._version = self.gateway.catalogue.version

    def models(self, actor: str) -> list[types.Tool]:
        self._current()
        if actor not in self._models:
            self._models[actor] = [tool_definition(s) for s in self.gateway.tools_for(actor)]
        return self._models[actor]

    def encoded(self, actor: str) -> bytes:
        self._current()
        if actor not in self._encoded:
            self._encoded[actor] = msgspec.json.encode(
                {"tools": [t.model_dump(by_alias=True, exclude_unset=True, mode="json") for t in self.models(actor)]})
        return self._encoded[actor]


def request_closed(ctx: ServerRequestContext[Any]) -> CloseSignal | None:
    """The HTTP layer's close signal for the request carrying this call (None on stdio)."""
    scope = getattr(ctx.request, "scope", None)
    return scope.get(REQUEST_CLOSED_KEY) if isinstance(scope, dict) else None


class _InitializeWatch:
    """Server middleware: after the SDK answered `initialize`, report the session (its state is
    then read from the SDK's session object, never from the traffic)."""

    def __init__(self, on_initialize: OnInitialize) -> None:
        self.on_initialize = on_initialize

    async def __call__(self, ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "initialize":
            self.on_initialize(ctx)
        return result


class _Handlers:
    def __init__(self, calls: Calls, definitions: ToolDefinitions) -> None:
        self.calls = calls
        self.definitions = definitions

    async def list_tools(self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.definitions.models(current_actor()))

    async def call_tool(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        outcome = await self.calls.run(params.name, params.arguments, current_actor(), closed=request_closed(ctx))
        if outcome is None:  # cancelled by the close and audited; nobody is left to read an answer
            raise MCPError(REQUEST_CANCELLED, "Request cancelled: the client closed the HTTP request")
        # The answer as encoded once for every transport; the SDK shapes it for the negotiated
        # version (2026-07-28 adds resultType) and encodes it again.
        return types.CallToolResult.model_validate(results.decode(outcome.answer), by_name=False)


def build_server(gateway: Gateway, calls: Calls, definitions: ToolDefinitions,
                 on_initialize: OnInitialize | None = None) -> Server[Any]:
    handlers = _Handlers(calls, definitions)
    server = Server(
        gateway.config.server.name,
        version=__version__,
        instructions="Read-only tools behind a policy gateway. Every call is audited; refusals come back "
                     "as tool errors whose text starts with an error code.",
        cache_hints=LIST_CACHE_HINTS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
    )
    if on_initialize is not None:
        server.middleware.append(_InitializeWatch(on_initialize))
    return server
