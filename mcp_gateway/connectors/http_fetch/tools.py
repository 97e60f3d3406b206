"""The http_fetch tool: its argument struct, description and output schema."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from mcp_gateway.connectors.base import Args, Result, ToolSpec

Url = Annotated[str, Meta(min_length=1, max_length=8192, description="http:// or https:// URL")]
HeaderName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, Meta(max_length=8192)]


class FetchArgs(Args):
    url: Url
    headers: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=64)] = {}


class FetchResult(Result):
    status: int
    url: str
    headers: dict[str, str]
    size: int
    encoding: Literal["text", "base64"]
    body: str
    lossy: Literal[True] | None = None  # present when bytes invalid in the charset became U+FFFD


_STR = {"type": "string"}
_INT = {"type": "integer"}

FETCH = ToolSpec(
    instance="",
    tool="fetch",
    args_type=FetchArgs,
    result_type=FetchResult,
    title="Fetch a web page",
    description=(
        "HTTP GET of a URL on an allowed public host. Only content-negotiation, caching, conditional "
        "and range request headers are sent (others are dropped); redirects are followed (each hop "
        "re-checked). The body is the text content: decoded text, or base64 for binary bodies and "
        "bodies that would grow as JSON text (see `encoding`); status, final URL, response headers "
        "and the body's size in bytes are the structured content."
    ),
    output_schema={
        "type": "object",
        "properties": {
            "status": _INT,
            "url": _STR,
            "headers": {"type": "object", "additionalProperties": _STR},
            "encoding": {"type": "string", "enum": ["text", "base64"]},
            "size": _INT,
            "lossy": {"type": "boolean", "const": True,
                      "description": "present when bytes invalid in the charset became U+FFFD"},
        },
        "required": ["status", "url", "headers", "encoding", "size"],
    },
    open_world=True,
    render_text=lambda r: r["body"],
    structured=lambda r: {k: v for k, v in r.items() if k != "body"},
)

TOOLS = (FETCH,)
