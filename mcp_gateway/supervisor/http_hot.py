"""The hot route over Streamable HTTP: the same hot methods as stdio, answered before the SDK.

A POST is answered here only when the SDK would serve it as a plain request of a ready
session and answer it with nothing but the result: a JSON body (Content-Type
`application/json`), a client that accepts JSON, a handshake-era protocol version (or none),
and, when stateful, the session id of an open session the SDK has initialized, presented by
the actor that opened it. Everything else (initialize, the 2026-07-28 envelope, an unknown or
foreign session, a malformed body, every rarer method) goes to the SDK, which applies the
session rules the conformance suite checks. The answer is the SDK's, byte for byte in JSON:
the result encoded once by results.py; a call cancelled by `notifications/cancelled` gets the
SDK's -32800 error, one cancelled by closing its POST gets nothing (nobody is left to read it).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import msgspec
from mcp.server.streamable_http import check_accept_headers
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers

from mcp_gateway.supervisor.fastpath import (
    CANCELLED,
    NOT_JSON,
    CloseSignal,
    HotRoute,
    SessionState,
    cancelled_request_id,
    decode_message,
    hot_request,
    response_parts,
)
from mcp_gateway.supervisor.http_sessions import OpenSession, SessionBook

_STATELESS = SessionState(born_ready=True)  # the SDK serves every stateless exchange as initialized
_CANCELLED_ERROR = b',"error":{"code":-32800,"message":"Request cancelled"}}'


class _Accept:
    """The `request.headers` that the SDK's own Accept rule (`check_accept_headers`) reads."""

    def __init__(self, headers: Headers) -> None:
        self.headers = headers


def plain_post(headers: Headers) -> bool:
    """Headers the SDK's transport would accept for a JSON-answered POST of the handshake era."""
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return False
    version = headers.get("mcp-protocol-version")
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return False  # the 2026-07-28 entry: the SDK's
    return check_accept_headers(_Accept(headers))[0]  # type: ignore[arg-type]


class HttpHotRoute:
    def __init__(self, hot: HotRoute, sessions: SessionBook | None) -> None:
        self.hot = hot
        self.sessions = sessions  # None when stateless

    async def answer(self, method: str, headers: Headers, body: bytes, actor: str, closing: CloseSignal,
                     send: Any) -> bool:
        """True when the request was answered here; False leaves it, untouched, to the SDK."""
        if method != "POST" or not plain_post(headers):
            return False
        session_id = headers.get("mcp-session-id")
        session = self._session(session_id, actor)
        if session is False:
            return False
        obj = decode_message(body)
        if obj is NOT_JSON:
            return False  # the SDK answers with the JSON-RPC error it deserves
        extra = [(b"mcp-session-id", session_id.encode())] if session is not None and session_id else []
        cancelled = cancelled_request_id(obj)
        if cancelled is not None:
            if session is None or not self.hot.calls.cancel((session_id, cancelled)):
                return False  # not a hot call: the SDK cancels its own
            await _respond(send, 202, b"", extra)
            return True
        request = hot_request(obj)
        state = session.state if session is not None else _STATELESS
        if request is None or not state.ready:
            return False
        key = (session_id, request.request_id) if session is not None else None
        with session.request_in_flight() if session is not None else nullcontext():
            result = await self.hot.result(request, actor, key, closing)
        if result is CANCELLED:
            if not closing.is_closed:  # cancelled by notifications/cancelled: answered as the SDK does
                await _respond(send, 200, b'{"jsonrpc":"2.0","id":' + msgspec.json.encode(request.request_id)
                               + _CANCELLED_ERROR, extra)
            return True
        await _respond(send, 200, b"".join(response_parts(request.request_id, result)).rstrip(b"\n"), extra)
        return True

    def _session(self, session_id: str | None, actor: str) -> OpenSession | None | bool:
        """The open session a stateful request names (False: leave the request to the SDK);
        None when stateless."""
        if self.sessions is None:
            return None
        session = self.sessions.session(session_id, actor)
        if session is None or not session.serving:
            return False
        return session


async def _respond(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
