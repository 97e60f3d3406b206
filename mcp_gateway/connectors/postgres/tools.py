"""The postgres tools: argument structs, descriptions, output schemas."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta

from mcp_gateway.connectors.base import Args, Result, ToolSpec, json_text

Sql = Annotated[str, Meta(min_length=1, max_length=100_000, description="one SELECT statement")]
Identifier = Annotated[str, Meta(min_length=1, max_length=128)]
SqlParam = None | bool | int | float | Annotated[str, Meta(max_length=1_000_000)]


class QueryArgs(Args):
    sql: Sql
    params: Annotated[list[SqlParam], Meta(max_length=1000)] = []
    max_rows: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class SchemaArgs(Args):
    schema: Identifier | None = None
    table: Identifier | None = None


class Column(Result):
    name: str
    type: str


class QueryResult(Result):
    columns: list[Column]
    rows: list[list[Any]]  # JSON values (postgres/worker.py's _json_value)
    row_count: int
    truncated: bool


class TableColumn(Result):
    name: str
    type: str
    nullable: bool


class Table(Result):
    schema: str
    name: str
    kind: str
    columns: list[TableColumn]


class SchemaResult(Result):
    tables: list[Table]


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}

QUERY = ToolSpec(
    instance="",
    tool="query",
    args_type=QueryArgs,
    result_type=QueryResult,
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
    render_text=json_text,
    smaller="fewer rows with max_rows",
)

SCHEMA = ToolSpec(
    instance="",
    tool="schema",
    args_type=SchemaArgs,
    result_type=SchemaResult,
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
    render_text=json_text,
)

TOOLS = (QUERY, SCHEMA)
