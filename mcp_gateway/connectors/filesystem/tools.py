"""The filesystem tools: argument structs, descriptions, output schemas, text rendering."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from msgspec import Meta

from mcp_gateway.connectors.base import Args, Result, ToolSpec
from mcp_gateway.connectors.filesystem.paths import PATH_MAX_BYTES

# Capped in characters here, and in UTF-8 bytes by __post_init__ (the kernel's PATH_MAX).
Path = Annotated[str, Meta(min_length=1, max_length=PATH_MAX_BYTES, description="file or directory path")]


class _PathArgs(Args):
    path: Path

    def __post_init__(self) -> None:
        if len(self.path.encode("utf-8", "surrogatepass")) > PATH_MAX_BYTES:
            raise ValueError(f"`path` is longer than {PATH_MAX_BYTES} bytes")


class ReadFileArgs(_PathArgs):
    encoding: Literal["utf-8", "base64"] = "utf-8"
    offset: Annotated[int, Meta(ge=0, le=2**62, description="byte offset to start at")] = 0
    length: Annotated[int, Meta(ge=0, le=2**62, description="bytes to read (default: to the end)")] | None = None


class ListDirArgs(_PathArgs):
    pass


class ReadFileResult(Result):
    path: str
    size: int
    offset: int
    length: int
    encoding: Literal["utf-8", "base64"]
    content: str


class DirEntry(Result):
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int


class ListDirResult(Result):
    path: str
    entries: list[DirEntry]


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

READ_FILE = ToolSpec(
    instance="",
    tool="readFile",
    args_type=ReadFileArgs,
    result_type=ReadFileResult,
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
    smaller="read a part with offset/length",
)

LIST_DIR = ToolSpec(
    instance="",
    tool="listDir",
    args_type=ListDirArgs,
    result_type=ListDirResult,
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
)

TOOLS = (READ_FILE, LIST_DIR)
