"""The hot methods of an initialized stdio session, answered without the SDK's dispatcher.

Measured here, the SDK's per-request machinery (pydantic models in and out, a task and
several memory streams per request) costs about 0.9 ms per call, more than the gateway's
own pipeline and a worker round trip together. Once the SDK has completed the
`initialize` handshake, plain `tools/call`, `tools/list` and `ping` requests (no `_meta`,
no extra params) are answered here with the same result shapes (a unit test holds the two
paths equal); everything else, including anything malformed, still goes to the SDK.
A `notifications/cancelled` naming a fast-path call does not stop it: the call ends by its
own deadline and is answered and audited like any other.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from mcp_gateway.supervisor.gateway import Gateway, Outcome
from mcp_gateway.supervisor.mcp_server import tool_definition

Send = Callable[[bytes], Awaitable[None]]


def call_result_payload(outcome: Outcome) -> dict[str, Any]:
    """The CallToolResult as JSON, exactly as the SDK would serialize mcp_server.call_result()."""
    if outcome.is_error:
        return {"content": [{"type": "text", "text": f"{outcome.error_code}: {outcome.reason}"}],
                "structuredContent": outcome.error_payload(), "isError": True}
    return {"content": [{"type": "text", "text": outcome.text}], "structuredContent": outcome.result,
            "isError": False}


def response_line(request_id: Any, result: dict[str, Any]) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "result": result}
    try:
        return msgspec.json.encode(message) + b"\n"
    except (UnicodeEncodeError, msgspec.EncodeError):
        return json.dumps(message, ensure_ascii=True).encode() + b"\n"  # escapes lone surrogates


class FastPath:
    def __init__(self, gateway: Gateway, actor: str) -> None:
        self.gateway = gateway
        self.actor = actor
        self.enabled = False  # set once the SDK has answered `initialize`
        self._tools_list = {"tools": [tool_definition(s).model_dump(by_alias=True, exclude_unset=True,
                                                                    mode="json")
                                      for s in gateway.tools_for(actor)]}

    def route(self, obj: Any) -> Callable[[Send], Awaitable[None]] | None:
        """A handler for this decoded message, or None to leave it to the SDK."""
        if not self.enabled or type(obj) is not dict or obj.get("jsonrpc") != "2.0":
            return None
        rid = obj.get("id")
        if type(rid) not in (int, str) or not set(obj) <= {"jsonrpc", "id", "method", "params"}:
            return None
        method = obj.get("method")
        params = obj.get("params")
        if method == "tools/call":
            if type(params) is not dict or not set(params) <= {"name", "arguments"}:
                return None
            name, arguments = params.get("name"), params.get("arguments")
            if type(name) is not str or not (arguments is None or type(arguments) is dict):
                return None
            return lambda send: self._call(send, rid, name, arguments)
        if method in ("tools/list", "ping") and (params is None or params == {}):
            result = self._tools_list if method == "tools/list" else {}
            return lambda send: send(response_line(rid, result))
        return None

    async def _call(self, send: Send, rid: Any, name: str, arguments: dict[str, Any] | None) -> None:
        outcome = await self.gateway.call(name, arguments, self.actor)
        await send(response_line(rid, call_result_payload(outcome)))

