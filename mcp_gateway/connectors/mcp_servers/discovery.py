"""From an upstream server's tools/list to the tools the gateway offers as `<instance>.<tool>`.

What the gateway advertises for an upstream tool is built here, from fields it checked:
the prefixed name, title, description, input and output schemas. Everything else the server
sent is dropped:
- `annotations` (readOnlyHint, destructiveHint, ...) are claims of an untrusted server; a
  client that auto-approves "read-only" tools would take the server's word for it. Dropped,
  so clients apply the spec's cautious defaults (not read-only, possibly destructive, open
  world). They still count in the pinned definition, so a server that changes them is seen.
- `icons` (URLs the client would fetch), `_meta` and `execution` are dropped.
A tool is withheld (not offered, calls refused) when its name or schemas cannot be used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import msgspec

from mcp_gateway.connectors.mcp_servers.schema import SchemaCheck, SchemaRefused, unsupported_patterns

log = logging.getLogger("mcp_gateway.upstream")

# MCP 2025-11-25's tool-name rule (letters, digits, _ - .; 1 to 128 characters).
TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # fullmatch: `$` would allow a final newline
MAX_TITLE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 64 * 1024
# All the schemas of one listing together: checking a schema costs about 0.2 ms per node of
# CPU, and a server may list again at will (notifications/tools/list_changed).
MAX_LISTING_SCHEMA_BYTES = 512 * 1024
# The fields of a tool's definition that pinning covers (and that the definition's hash is of).
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def definition_of(tool: types.Tool) -> dict[str, Any]:
    """The tool's definition as the server sent it, limited to the pinned fields."""
    dumped = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {k: dumped[k] for k in PINNED_FIELDS if k in dumped}


def canonical_json(value: Any) -> str:
    """The canonical JSON also used for audit argument hashes: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_of(definition: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(definition).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, eq=False)
class UpstreamTool:
    instance: str
    upstream_name: str
    definition: dict[str, Any]  # what the server sent (pinned fields)
    digest: str  # sha256 of the definition's canonical JSON
    arguments: SchemaCheck
    results: SchemaCheck | None  # the outputSchema's check, when the tool has one

    @property
    def name(self) -> str:
        return f"{self.instance}.{self.upstream_name}"

    @property
    def title(self) -> str | None:
        return self.definition.get("title")

    @property
    def description(self) -> str | None:
        return self.definition.get("description")

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.definition["inputSchema"]

    @property
    def output_schema(self) -> dict[str, Any] | None:
        return self.definition.get("outputSchema")

    def advertised(self) -> types.Tool:
        """The definition the gateway lists: checked fields only, no upstream annotations."""
        fields = {"title": self.title, "description": self.description, "output_schema": self.output_schema}
        return types.Tool(name=self.name, input_schema=self.input_schema,
                          **{k: v for k, v in fields.items() if v is not None})  # unset, not null


@dataclass(frozen=True)
class Discovered:
    tools: list[UpstreamTool]
    withheld: dict[str, str]  # full name -> why it is not offered


def _refusal(tool: types.Tool, seen: set[str]) -> str | None:
    if not TOOL_NAME.fullmatch(tool.name):
        return "its name is not a valid MCP tool name (letters, digits, _ - . only; at most 128)"
    if tool.name in seen:
        return "the server lists a tool of this name twice (the first is kept)"
    if tool.title is not None and len(tool.title) > MAX_TITLE_CHARS:
        return f"its title is longer than {MAX_TITLE_CHARS} characters"
    if tool.description is not None and len(tool.description) > MAX_DESCRIPTION_CHARS:
        return f"its description is longer than {MAX_DESCRIPTION_CHARS} characters"
    if tool.input_schema.get("type") != "object":
        return "its inputSchema is not an object schema (MCP requires type: object)"
    if tool.output_schema is not None and tool.output_schema.get("type") != "object":
        return "its outputSchema is not an object schema (MCP requires type: object)"
    return None


def _schema_bytes(tool: types.Tool) -> int:
    schemas = [tool.input_schema, tool.output_schema]
    return sum(len(msgspec.json.encode(s)) for s in schemas if s is not None)


def _build(instance: str, tool: types.Tool) -> UpstreamTool:
    arguments = SchemaCheck(tool.input_schema, "its inputSchema")
    results = SchemaCheck(tool.output_schema, "its outputSchema") if tool.output_schema is not None else None
    skipped = unsupported_patterns(tool.input_schema)
    if skipped:
        log.warning("upstream %s: tool %s: %d pattern(s) of its inputSchema are not RE2 syntax; the gateway does not "
                    "check them (the server still does): %s", instance, tool.name, len(skipped),
                    ", ".join(repr(p[:60]) for p in skipped[:3]))
    definition = definition_of(tool)
    return UpstreamTool(instance, tool.name, definition, digest_of(definition), arguments, results)


def discover(instance: str, listed: list[types.Tool]) -> Discovered:
    """The usable tools of a tools/list answer, and why each other one is withheld."""
    tools: list[UpstreamTool] = []
    withheld: dict[str, str] = {}
    seen: set[str] = set()
    schema_bytes = 0
    for tool in listed:
        full = f"{instance}.{tool.name}" if TOOL_NAME.fullmatch(tool.name) else f"{instance}.<invalid name>"
        reason = _refusal(tool, seen)
        if reason is None:
            schema_bytes += _schema_bytes(tool)
            if schema_bytes > MAX_LISTING_SCHEMA_BYTES:
                reason = f"the listing's schemas together pass {MAX_LISTING_SCHEMA_BYTES} bytes"
        if reason is None:
            try:
                tools.append(_build(instance, tool))
            except SchemaRefused as e:
                reason = str(e)
        seen.add(tool.name)
        if reason is not None:
            withheld.setdefault(full, reason)
            log.warning("upstream %s: tool %r withheld: %s", instance, tool.name[:128], reason)
    return Discovered(tools, withheld)
