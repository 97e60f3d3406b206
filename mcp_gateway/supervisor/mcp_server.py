"""The MCP face of the gateway: the SDK's low-level `Server` wired to `Gateway`.

The SDK does the protocol (initialize, ping, method routing, JSON-RPC errors); tools/list
and tools/call are answered from the catalogue and the gateway pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from mcp_gateway import __version__
from mcp_gateway.supervisor.gateway import Gateway, Outcome
from mcp_gateway.supervisor.modern_protocol import LIST_CACHE_HINTS
from mcp_gateway.tools import ToolSpec

ActorOf = Callable[[ServerRequestContext[Any]], str]


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


def call_result(outcome: Outcome) -> types.CallToolResult:
    if outcome.is_error:
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"{outcome.error_code}: {outcome.reason}")],
            structured_content=outcome.error_payload(),
            is_error=True,
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.text)],
        structured_content=outcome.result,
        is_error=False,
    )


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
        outcome = await gateway.call(params.name, params.arguments, actor_of(ctx))
        return call_result(outcome)

    return Server(
        gateway.config.server.name,
        version=__version__,
        instructions="Read-only tools behind a policy gateway. Every call is audited; refusals come back "
                     "as tool errors whose text starts with an error code.",
        cache_hints=LIST_CACHE_HINTS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )
