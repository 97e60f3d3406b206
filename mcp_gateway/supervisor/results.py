"""The one serializer of tool results: what a call ended as, in the bytes every transport sends.

A call's answer is encoded once, here, as the JSON of an MCP `CallToolResult`; the stdio fast
path splices those bytes into its response line, the SDK paths (stdio and HTTP) hand their
decoded form to the SDK. So the shape is decided in one place, and the size checked against
max_bytes is the size of what the client gets (text and structured forms together).

Errors carry no `structuredContent`: clients (the TypeScript SDK, MCP Inspector) validate it
against the tool's `outputSchema` even when `isError` is true, so an error shape there turns a
refusal into a protocol error. The structured error goes in `_meta` instead; every result
carries its request id there, so a client can find its audit line.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

ERROR_META = "io.mcp-gateway/error"
REQUEST_ID_META = "io.mcp-gateway/request_id"

_encoder = msgspec.json.Encoder()


def _printable(text: str) -> str:
    """`text` with lone surrogates spelled out: JSON encoders refuse them (the SDK's would fail
    mid-response), and a refusal's reason may echo what the agent sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _encode(payload: dict[str, Any]) -> bytes:
    try:
        return _encoder.encode(payload)
    except (UnicodeEncodeError, msgspec.EncodeError):
        # Only reachable with a lone surrogate in a worker's result, which msgpack decoding
        # already refuses; kept so a bug elsewhere becomes an escape, never a dropped answer.
        return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def success(request_id: str, text: str, structured: dict[str, Any]) -> bytes:
    return success_content(request_id, [{"type": "text", "text": text}], structured)


def success_content(request_id: str, content: list[dict[str, Any]], structured: dict[str, Any] | None) -> bytes:
    """A success of any content blocks (an upstream MCP server's, rebuilt from checked fields)."""
    payload: dict[str, Any] = {"content": content}
    if structured is not None:
        payload["structuredContent"] = structured
    payload["isError"] = False
    payload["_meta"] = {REQUEST_ID_META: request_id}
    return _encode(payload)


def error(request_id: str, code: str, reason: str) -> bytes:
    reason = _printable(reason)
    return _encode({
        "content": [{"type": "text", "text": f"{code}: {reason}"}],
        "isError": True,
        "_meta": {REQUEST_ID_META: request_id,
                  ERROR_META: {"error_code": code, "reason": reason, "request_id": request_id}},
    })


def decode(answer: bytes) -> dict[str, Any]:
    """The answer as a JSON object (for the SDK, which encodes it again itself)."""
    try:
        return msgspec.json.decode(answer)
    except msgspec.DecodeError:
        return json.loads(answer)  # msgspec refuses escaped lone surrogates (see _encode)
