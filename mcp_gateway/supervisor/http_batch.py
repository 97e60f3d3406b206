"""JSON-RPC batches over Streamable HTTP, for clients of protocol 2025-03-26 (the one revision with them).

The SDK's transport refuses a body that is an array. A 2025-03-26 client sends no
`MCP-Protocol-Version` header (it came with 2025-06-18, which also dropped batches), so a POST
without it, or with `2025-03-26`, whose body is an array is served here: each member goes to the
SDK's app as a POST of its own (same headers, same session, run concurrently), and the answers
come back as one JSON array (202 with no body when the batch held no request). Members share the
batch's `http.disconnect`: closing the POST cancels every call in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import trio

BATCH_VERSION = b"2025-03-26"
INVALID_REQUEST = -32600


def batches_allowed(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"mcp-protocol-version":
            return value.strip() == BATCH_VERSION
    return True


def as_batch(body: bytes) -> list[Any] | None:
    """The members of a batch body, or None when the body is anything else (the SDK answers it)."""
    if not body.lstrip().startswith(b"["):
        return None
    try:
        items = json.loads(body)
    except ValueError:
        return None
    return items if isinstance(items, list) else None


def _error(message: str, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": INVALID_REQUEST, "message": message}}


async def serve_batch(inner: Any, scope: dict[str, Any], items: list[Any],
                      receive_for: Callable[[bytes], Any], send: Any) -> None:
    """Each member through `inner` as a POST of its own (`receive_for(body)` is its ASGI receive)."""
    if not items:
        await _respond(send, 400, json.dumps(_error("Invalid Request: an empty batch")).encode(), [])
        return
    answers: list[Any] = [None] * len(items)
    session: list[tuple[bytes, bytes]] = []

    async def member(i: int, item: Any) -> None:
        if isinstance(item, dict) and item.get("method") == "initialize":
            rid = item.get("id") if isinstance(item.get("id"), str | int) else None
            answers[i] = _error("Invalid Request: initialize must not be part of a batch", rid)
            return
        body = json.dumps(item).encode()
        sub = dict(scope)
        sub["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        sub["headers"].append((b"content-length", str(len(body)).encode()))
        response = _Captured()
        await inner(sub, receive_for(body), response.send)
        if response.body.strip():
            answers[i] = json.loads(response.body)
        session.extend((k, v) for k, v in response.headers if k.lower() == b"mcp-session-id")

    async with trio.open_nursery() as nursery:
        for i, item in enumerate(items):
            nursery.start_soon(member, i, item)
    present = [a for a in answers if a is not None]
    if not present:  # notifications and responses only
        await _respond(send, 202, b"", session[:1])
        return
    await _respond(send, 200, json.dumps(present).encode(), session[:1])


class _Captured:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": body})
