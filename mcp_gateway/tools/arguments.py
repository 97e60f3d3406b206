"""Argument structs of every tool: one definition drives decoding, size caps and the JSON Schema.

Both sides use them: the supervisor decodes untrusted arguments into them (strictly: no
unknown fields, no type coercion), the worker decodes the forwarded arguments again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# Caps on every string an agent can send. Paths are also capped in bytes (see validation).
PATH_MAX_BYTES = 4096
Path = Annotated[str, Meta(min_length=1, max_length=PATH_MAX_BYTES, description="file or directory path")]
Url = Annotated[str, Meta(min_length=1, max_length=8192, description="http:// or https:// URL")]
HeaderName = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, Meta(max_length=8192)]
Sql = Annotated[str, Meta(min_length=1, max_length=100_000, description="one SELECT statement")]
Identifier = Annotated[str, Meta(min_length=1, max_length=128)]
SqlParam = None | bool | int | float | Annotated[str, Meta(max_length=1_000_000)]


class Args(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ReadFileArgs(Args):
    path: Path
    encoding: Literal["utf-8", "base64"] = "utf-8"
    offset: Annotated[int, Meta(ge=0, le=2**62, description="byte offset to start at")] = 0
    length: Annotated[int, Meta(ge=0, le=2**62, description="bytes to read (default: to the end)")] | None = None


class ListDirArgs(Args):
    path: Path


class FetchArgs(Args):
    url: Url
    headers: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=64)] = {}


class QueryArgs(Args):
    sql: Sql
    params: Annotated[list[SqlParam], Meta(max_length=1000)] = []
    max_rows: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class SchemaArgs(Args):
    schema: Identifier | None = None
    table: Identifier | None = None


def as_dict(args: Args) -> dict[str, Any]:
    return msgspec.structs.asdict(args)
