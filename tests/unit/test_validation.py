from contextlib import contextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.supervisor.validation import decode_arguments

TOOLS = {spec.name: spec for spec in GatewayConfig().catalogue()}  # the seed config's instances


@contextmanager
def invalid(match: str | None = None):
    with pytest.raises(Refusal, match=match) as e:
        yield
    assert e.value.code is ErrorCode.VALIDATION_ERROR


def test_strict_decoding_refuses_wrong_types_unknown_fields_and_missing():
    spec = TOOLS["fs.readFile"]
    assert decode_arguments(spec, {"path": "a.txt"}).encoding == "utf-8"
    for bad in ({"path": 1}, {"path": "a", "extra": 1}, {}, {"path": "a", "encoding": "latin-1"},
                {"path": "a", "offset": -1}, {"path": "a", "offset": "1"}, {"path": ""}):
        with invalid():
            decode_arguments(spec, bad)


def test_path_capped_in_bytes_not_characters():
    spec = TOOLS["fs.readFile"]
    decode_arguments(spec, {"path": "a" * 4096})
    with invalid():
        decode_arguments(spec, {"path": "a" * 4097})
    with invalid("4096 bytes"):
        decode_arguments(spec, {"path": "é" * 2049})  # 2049 characters, 4098 bytes


def test_lone_surrogates_are_validation_errors_anywhere():
    with invalid("surrogate"):
        decode_arguments(TOOLS["fs.readFile"], {"path": "a\ud800b"})
    with invalid("surrogate"):
        decode_arguments(TOOLS["web.fetch"], {"url": "http://x/", "headers": {"\udfff": "v"}})


def test_every_tool_schema_comes_from_its_struct():
    for spec in TOOLS.values():
        schema = spec.input_schema()
        assert schema["type"] == "object"
        assert schema.get("additionalProperties") is False
        assert set(schema["properties"]) == set(spec.args_type.__struct_fields__)
    assert TOOLS["fs.readFile"].input_schema()["properties"]["path"]["maxLength"] == 4096


@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10), max_size=5))
def test_decoder_never_raises_anything_but_validation_errors(args):
    for spec in TOOLS.values():
        try:
            decode_arguments(spec, args)
        except Refusal as e:
            assert e.code is ErrorCode.VALIDATION_ERROR
