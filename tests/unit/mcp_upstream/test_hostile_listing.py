"""Red-team: tool definitions from a hostile server (discovery.py)."""

from __future__ import annotations

import mcp_types as types

from mcp_gateway.connectors.mcp_servers.discovery import MAX_LISTING_SCHEMA_BYTES, discover


def test_a_name_with_a_final_newline_is_withheld():
    # `re.match(r"^...$")` accepts "delete\n": `$` matches before a final newline.
    found = discover("m", [types.Tool(name="delete\n", input_schema={"type": "object"}),
                           types.Tool(name="read", input_schema={"type": "object"})])
    assert [t.name for t in found.tools] == ["m.read"]
    assert list(found.withheld) == ["m.<invalid name>"]


def test_a_listing_of_schema_bombs_is_checked_within_a_budget():
    # Checking a schema costs ~0.2 ms of CPU per node: 4 MB of them took 45 s, on the event loop.
    props = {f"p{i}": {"type": "string", "minLength": 1} for i in range(1000)}
    schema = {"type": "object", "properties": props}
    tools = [types.Tool(name=f"t{i}", input_schema=schema) for i in range(60)]
    found = discover("m", tools)
    checked = len(found.tools)
    assert 0 < checked < 60 and checked * len(str(schema)) <= MAX_LISTING_SCHEMA_BYTES * 1.1
    assert all("schemas together" in why for why in found.withheld.values())
