"""An upstream tool's CallToolResult, checked and rebuilt into what the gateway answers.

Nothing of the server's result object is passed on as such: each content block is rebuilt
from its checked fields (text, image, audio, resource link, embedded resource), without the
server's `annotations` (audience, priority: claims of an untrusted server) or `_meta`; the
structured content is checked against the tool's outputSchema when it has one (a client
would otherwise fail the whole call on it). The gateway's one serializer (supervisor/results.py)
then encodes the answer with the gateway's own `_meta` and holds it to max_bytes.
A result with `isError` becomes UPSTREAM_ERROR with the server's text as the reason.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
import msgspec
import trio

from mcp_gateway.connectors.mcp_servers.discovery import UpstreamTool
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.ipc.messages import CallOk, CallRequest

MAX_ERROR_TEXT = 4000
_encoder = msgspec.msgpack.Encoder()  # as a worker's result travels (ipc.messages.CallOk)


def _resource(resource: types.TextResourceContents | types.BlobResourceContents) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": str(resource.uri)}
    if resource.mime_type is not None:
        out["mimeType"] = resource.mime_type
    if isinstance(resource, types.TextResourceContents):
        out["text"] = resource.text
    else:
        out["blob"] = resource.blob
    return out


def _block(block: types.ContentBlock) -> dict[str, Any]:
    if isinstance(block, types.TextContent):
        return {"type": "text", "text": block.text}
    if isinstance(block, types.ImageContent | types.AudioContent):
        return {"type": block.type, "data": block.data, "mimeType": block.mime_type}
    if isinstance(block, types.ResourceLink):
        link: dict[str, Any] = {"type": "resource_link", "uri": str(block.uri), "name": block.name}
        for key, value in (("title", block.title), ("description", block.description),
                           ("mimeType", block.mime_type), ("size", block.size)):
            if value is not None:
                link[key] = value
        return link
    return {"type": "resource", "resource": _resource(block.resource)}


def _error_text(result: types.CallToolResult) -> str:
    text = " ".join(b.text for b in result.content if isinstance(b, types.TextContent)).strip()
    text = text or "(no text)"
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


async def answer_of(request: CallRequest, tool: UpstreamTool, result: types.CallToolResult,
                    limiter: trio.CapacityLimiter) -> CallOk:
    """The checked answer, {"content": [...], "structuredContent"?: {...}} encoded as a worker's
    result is; raises Refusal."""
    if result.is_error:
        raise Refusal(ErrorCode.UPSTREAM_ERROR, f"the {tool.instance} server reported an error: {_error_text(result)}")
    answer: dict[str, Any] = {"content": [_block(b) for b in result.content]}
    structured = result.structured_content
    if tool.results is not None:
        if structured is None:
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"the {tool.instance} server returned no structured content, "
                                                    "which the tool's outputSchema requires")
        problem = await trio.to_thread.run_sync(tool.results.first_error, structured, limiter=limiter)
        if problem is not None:
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"the {tool.instance} server's structured content does not "
                                                    f"match the tool's outputSchema: {problem}")
    if structured is not None:
        answer["structuredContent"] = structured
    return CallOk(request.request_id, msgspec.Raw(_encoder.encode(answer)))
