"""The tool catalogue: name, connector, arguments, description, output schema, annotations.

`tools/list` is generated from here, the validator decodes against the argument structs
listed here, and the worker pool routes by the connector named here.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from mcp_gateway.tools.arguments import (
    Args,
    FetchArgs,
    ListDirArgs,
    QueryArgs,
    ReadFileArgs,
    SchemaArgs,
)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    connector: str
    args_type: type[Args]
    title: str
    description: str
    output_schema: dict[str, Any]
    open_world: bool
    # Text content shown to the model, derived from the worker's result.
    render_text: Callable[[dict[str, Any]], str]
    # The structured content: the worker's result, less what render_text already carries
    # when that would be sent twice (web.fetch's body).
    structured: Callable[[dict[str, Any]], dict[str, Any]] = lambda r: r

    def input_schema(self) -> dict[str, Any]:
        return _inline_schema(self.args_type)


def _inline_schema(struct: type) -> dict[str, Any]:
    """msgspec's schema with the top-level $ref resolved (MCP wants an object schema)."""
    schema = msgspec.json.schema(struct)
    defs = schema.pop("$defs", {})
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        schema = defs.pop(ref.removeprefix("#/$defs/"))
    if defs:
        schema["$defs"] = defs
    schema.pop("title", None)
    return schema


def _json_text(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


# Characters that could end a line, add a column or restyle the text the agent reads:
# controls (C0, DEL, C1), invisible format characters (bidi overrides...), line/paragraph
# separators. Shown as Python-style escapes; a backslash itself is doubled so the escaping
# stays unambiguous.
_UNPRINTED = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_name(name: str) -> str:
    """A file name as one printable table cell: a newline in it shows as backslash-n."""
    out = []
    for ch in name:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif unicodedata.category(ch) in _UNPRINTED:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _list_text(result: dict[str, Any]) -> str:
    lines = [f"{e['type']}\t{e['size']}\t{escape_name(e['name'])}" for e in result["entries"]]
    return "\n".join(lines) if lines else "(empty directory)"


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}

TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="fs.readFile",
            connector="filesystem",
            args_type=ReadFileArgs,
            title="Read a file",
            description=(
                "Read a regular file beneath the allowed directories. `path` is absolute or relative to "
                "the first allowed directory; `encoding` is utf-8 (text) or base64 (binary); "
                "`offset`/`length` page through large files."
            ),
            output_schema=_obj(
                {
                    "path": _STR,
                    "size": _INT,
                    "offset": _INT,
                    "length": _INT,
                    "encoding": {"type": "string", "enum": ["utf-8", "base64"]},
                    "content": _STR,
                },
                ["path", "size", "encoding", "content"],
            ),
            open_world=False,
            render_text=lambda r: r["content"],
        ),
        ToolSpec(
            name="fs.listDir",
            connector="filesystem",
            args_type=ListDirArgs,
            title="List a directory",
            description="List the entries of a directory beneath the allowed directories (name, type, size).",
            output_schema=_obj(
                {
                    "path": _STR,
                    "entries": {
                        "type": "array",
                        "items": _obj(
                            {
                                "name": _STR,
                                "type": {"type": "string", "enum": ["file", "directory", "symlink", "other"]},
                                "size": _INT,
                            },
                            ["name", "type", "size"],
                        ),
                    },
                },
                ["path", "entries"],
            ),
            open_world=False,
            render_text=_list_text,
        ),
        ToolSpec(
            name="web.fetch",
            connector="http_fetch",
            args_type=FetchArgs,
            title="Fetch a web page",
            description=(
                "HTTP GET of a URL on an allowed public host. Only content-negotiation, caching, conditional "
                "and range request headers are sent (others are dropped); redirects are followed (each hop "
                "re-checked). The body is the text content: decoded text, or base64 for binary bodies and "
                "bodies that would grow as JSON text (see `encoding`); status, final URL, response headers "
                "and the body's size in bytes are the structured content."
            ),
            output_schema=_obj(
                {
                    "status": _INT,
                    "url": _STR,
                    "headers": {"type": "object", "additionalProperties": _STR},
                    "encoding": {"type": "string", "enum": ["text", "base64"]},
                    "size": _INT,
                    "lossy": {"type": "boolean", "const": True,
                              "description": "present when bytes invalid in the charset became U+FFFD"},
                },
                ["status", "url", "headers", "encoding", "size"],
            ),
            open_world=True,
            render_text=lambda r: r["body"],
            structured=lambda r: {k: v for k, v in r.items() if k != "body"},
        ),
        ToolSpec(
            name="db.query",
            connector="postgres",
            args_type=QueryArgs,
            title="Run a read-only SQL query",
            description=(
                "Run one SELECT (or EXPLAIN of one) on PostgreSQL in a read-only transaction. Bind values "
                "with `params` and %s placeholders. At most `max_rows` rows come back (`truncated` says so)."
            ),
            output_schema=_obj(
                {
                    "columns": {
                        "type": "array",
                        "items": _obj({"name": _STR, "type": _STR}, ["name", "type"]),
                    },
                    "rows": {"type": "array", "items": {"type": "array"}},
                    "row_count": _INT,
                    "truncated": _BOOL,
                },
                ["columns", "rows", "row_count", "truncated"],
            ),
            open_world=False,
            render_text=_json_text,
        ),
        ToolSpec(
            name="db.schema",
            connector="postgres",
            args_type=SchemaArgs,
            title="Describe database tables",
            description="Tables and views with their columns and types, optionally filtered by schema and table.",
            output_schema=_obj(
                {
                    "tables": {
                        "type": "array",
                        "items": _obj(
                            {
                                "schema": _STR,
                                "name": _STR,
                                "kind": _STR,
                                "columns": {
                                    "type": "array",
                                    "items": _obj(
                                        {"name": _STR, "type": _STR, "nullable": _BOOL},
                                        ["name", "type", "nullable"],
                                    ),
                                },
                            },
                            ["schema", "name", "kind", "columns"],
                        ),
                    }
                },
                ["tables"],
            ),
            open_world=False,
            render_text=_json_text,
        ),
    )
}
