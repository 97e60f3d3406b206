"""The upstream decoders and checks hold on hostile input: properties over arbitrary bytes and JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gateway.connectors.mcp_servers.discovery import digest_of
from mcp_gateway.connectors.mcp_servers.pins import PinFileError, load_pins
from mcp_gateway.connectors.mcp_servers.schema import SchemaCheck, SchemaRefused, check_shape
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.connectors.mcp_servers.wire import LineReader, WireError, decode_message

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_message_or_a_wire_error(line: bytes) -> None:
    try:
        message = decode_message(line)
    except WireError:
        return
    assert message.jsonrpc == "2.0" and (message.method is not None or message.id is not None)


def test_deep_nesting_and_mixed_responses_are_wire_errors() -> None:
    with pytest.raises(WireError):
        decode_message(b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with pytest.raises(WireError):
        decode_message(b'{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}')
    with pytest.raises(WireError):
        decode_message(b'{"jsonrpc":"1.0","id":1,"result":{}}')


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=1, max_value=64))
def test_line_reader_never_returns_more_than_its_cap(chunks: list[bytes], cap: int) -> None:
    async def main() -> None:
        send, receive = trio.testing.memory_stream_pair()
        await send.send_all(b"".join(chunks))
        await send.aclose()
        reader = LineReader(receive, cap)
        while True:
            try:
                line = await reader.next_line()
            except (EOFError, WireError):
                return
            assert len(line) <= cap and b"\n" not in line and line.strip()

    trio.run(main)


OBJECT = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"},
                                           "n": {"type": "integer", "minimum": 0}},
          "patternProperties": {"^x-(a|aa)+$": {"type": "string"}}, "additionalProperties": False}


OBJECT_CHECK = SchemaCheck(OBJECT, "s")


@settings(max_examples=100)
@given(JSON)
def test_a_check_never_raises_on_any_instance(instance: object) -> None:
    check = OBJECT_CHECK.first_error(instance)  # the property: an answer, never an exception
    assert check is None or isinstance(check, str)


def test_catastrophic_patterns_run_in_linear_time() -> None:
    # On a backtracking engine these would not finish at all (the test's own timeout would fail it).
    check = SchemaCheck(OBJECT, "s")
    assert check.first_error({"a": "a" * 50_000 + "!"}) is not None
    assert check.first_error({"x-" + "a" * 50_000 + "!": "v"}) is not None  # patternProperties and additional


def test_exponential_schemas_hit_the_budget_not_the_cpu() -> None:
    node = {"anyOf": [{"type": "array", "items": {"$ref": "#"}}, {"type": "array", "items": {"$ref": "#"}}]}
    instance: list = []
    for _ in range(40):
        instance = [instance, instance]
    assert "too costly" in (SchemaCheck(node, "s").first_error(instance) or "")


def test_schemas_beyond_the_caps_or_reaching_outside_are_refused() -> None:
    deep: dict = {"type": "object"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(SchemaRefused, match="nested"):
        check_shape(deep, "s")
    with pytest.raises(SchemaRefused, match="refers outside"):
        SchemaCheck({"type": "object", "properties": {"x": {"$ref": "https://example.invalid/s.json"}}}, "s")
    with pytest.raises(SchemaRefused, match="draft"):
        SchemaCheck({"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"}, "s")
    with pytest.raises(SchemaRefused, match="not a valid JSON Schema"):
        SchemaCheck({"type": "object", "minProperties": "three"}, "s")


@settings(max_examples=50)
@given(st.dictionaries(st.text(max_size=5), JSON, max_size=5))
def test_the_definition_digest_ignores_key_order(definition: dict) -> None:
    reordered = dict(reversed(list(definition.items())))
    assert digest_of(definition) == digest_of(reordered)


def test_a_pin_file_edited_by_hand_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    definition = {"name": "t", "description": "honest", "inputSchema": {"type": "object"}}
    entry = {"sha256": digest_of(definition), "definition": {**definition, "description": "edited"}}
    path.write_text(json.dumps({"version": 1, "instance": "up", "tools": {"t": entry}}))
    with pytest.raises(PinFileError, match="does not match its own sha256"):
        load_pins(path, "up")
    path.write_text(json.dumps({"version": 1, "instance": "other", "tools": {}}))
    with pytest.raises(PinFileError, match="for instance 'other'"):
        load_pins(path, "up")
    assert load_pins(tmp_path / "absent.json", "up") == {}


def test_settings_resolve_the_command_and_refuse_loader_variables() -> None:
    name = Path(sys.executable).name
    assert McpServerSettings(command=[sys.executable]).command[0] == sys.executable
    with pytest.raises(ValueError, match="not an executable file on the gateway's PATH"):
        McpServerSettings(command=["no-such-program-on-path"])
    assert McpServerSettings(command=["/opt/elsewhere/../bin/server"]).command == ["/opt/bin/server"]
    with pytest.raises(ValueError, match="absolute path"):
        McpServerSettings(command=[f"./{name}"])
    for key in ("env", "env_from_gateway"):
        value = {"LD_PRELOAD": "/opt/x.so"} if key == "env" else ["LD_PRELOAD"]
        with pytest.raises(ValueError, match="dynamic loader"):
            McpServerSettings(command=[sys.executable], **{key: value})
    with pytest.raises(ValueError, match="both env and env_from_gateway"):
        McpServerSettings(command=[sys.executable], env={"A": "1"}, env_from_gateway=["A"])
