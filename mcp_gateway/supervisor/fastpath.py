"""The hot methods of an initialized stdio session, answered without the SDK's dispatcher.

Measured here, the SDK's per-request machinery (pydantic models in and out, a task and
several memory streams per request) costs about 0.9 ms per call, more than the gateway's
own pipeline and a worker round trip together. Once the SDK has completed the
`initialize` handshake, plain `tools/call`, `tools/list` and `ping` requests (no `_meta`,
no extra params) are answered here; everything else, including anything malformed, still
goes to the SDK. A call's answer is the bytes results.py encoded once for every transport
(a property test holds this path, the SDK's and HTTP's answers equal).

`notifications/cancelled` naming a call in flight here cancels it like the SDK would: its
worker is killed and replaced, the call is audited as CANCELLED, and no answer is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.mcp_server import tool_definition

# Writes the parts of one message, whole and in order (PipeWriter.write, or a batch's collector).
Send = Callable[..., Awaitable[None]]

_RESULT_OPEN = b',"result":'
_CLOSE = b"}\n"


def response_parts(request_id: int | str, result: bytes) -> tuple[bytes, bytes, bytes]:
    """A JSON-RPC response line around an already encoded result, as parts (never copied whole)."""
    return b'{"jsonrpc":"2.0","id":' + msgspec.json.encode(request_id) + _RESULT_OPEN, result, _CLOSE


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CANCELLED_BY_CLIENT = "the client cancelled the call (notifications/cancelled)"


def cancelled_request_id(obj: Any) -> int | str | None:
    """The request a `notifications/cancelled` names, or None for anything else."""
    if type(obj) is not dict or obj.get("method") != "notifications/cancelled" or "id" in obj:
        return None
    params = obj.get("params")
    rid = params.get("requestId") if type(params) is dict else None
    return rid if type(rid) in (int, str) else None


class FastPath:
    def __init__(self, gateway: Gateway, actor: str) -> None:
        self.gateway = gateway
        self.actor = actor
        self.enabled = False  # set once the SDK has answered `initialize`
        self._tools_list = msgspec.json.encode(
            {"tools": [tool_definition(s).model_dump(by_alias=True, exclude_unset=True, mode="json")
                       for s in gateway.tools_for(actor)]})
        self._in_flight: dict[int | str, trio.CancelScope] = {}
        self._client_gone = False

    def cancel_all(self) -> None:
        """The client went away (stdin and stdout closed): nothing left can be answered."""
        self._client_gone = True
        for scope in self._in_flight.values():
            scope.cancel()

    def cancel(self, request_id: int | str) -> bool:
        """Cancel the fast-path call `request_id`; False when none is in flight here."""
        scope = self._in_flight.get(request_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    def route(self, obj: Any) -> Callable[[Send], Awaitable[None]] | None:
        """A handler for this decoded message, or None to leave it to the SDK."""
        if not self.enabled or type(obj) is not dict or obj.get("jsonrpc") != "2.0":
            return None
        rid = obj.get("id")
        if type(rid) not in (int, str) or not set(obj) <= {"jsonrpc", "id", "method", "params"}:
            return None
        if type(rid) is str and not rid.isascii() and not _encodable(rid):
            return None  # a lone surrogate: the SDK path answers with the id escaped
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
            result = self._tools_list if method == "tools/list" else b"{}"
            return lambda send: send(*response_parts(rid, result))
        return None

    def _cause(self, scope: trio.CancelScope) -> str:
        if not scope.cancel_called:
            return "the gateway stopped"
        return "the client went away: stdin and stdout closed" if self._client_gone else _CANCELLED_BY_CLIENT

    async def _call(self, send: Send, rid: int | str, name: str, arguments: dict[str, Any] | None) -> None:
        scope = trio.CancelScope()
        self._in_flight[rid] = scope
        outcome = None
        try:
            with scope:
                outcome = await self.gateway.call(
                    name, arguments, self.actor,
                    lambda: self._cause(scope))
        finally:
            if self._in_flight.get(rid) is scope:
                del self._in_flight[rid]
        if outcome is not None:  # a cancelled request is not answered (the spec's SHOULD NOT)
            await send(*response_parts(rid, outcome.answer))

