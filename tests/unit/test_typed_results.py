"""Typed results per tool: the worker encodes its result as the tool's result struct, and a
result of another shape fails the call (INTERNAL_ERROR) instead of travelling on."""

from __future__ import annotations

from types import SimpleNamespace

import msgspec
import pytest

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.ipc.messages import CallFailed, CallOk, CallRequest
from mcp_gateway.workers.connector import CallLimits
from mcp_gateway.workers.runtime import handle

TOOLS = {spec.name: spec for spec in GatewayConfig().catalogue()}
LIMITS = CallLimits(1000, 1 << 20)
GOOD = {"path": "/d/a", "size": 1, "offset": 0, "length": 1, "encoding": "utf-8", "content": "x"}


def _worker(result: object) -> SimpleNamespace:
    spec = TOOLS["fs.readFile"]
    return SimpleNamespace(tools={spec.name: spec}, call=lambda tool, args, limits: result)


def test_every_static_tool_has_a_result_struct_matching_its_output_schema():
    for spec in TOOLS.values():
        assert spec.result_type is not None, spec.name
        fields = set(spec.result_type.__struct_fields__)
        schema = spec.output_schema["properties"]
        assert set(schema) <= fields, spec.name  # the structured content is the result, less the text body
        assert set(spec.output_schema["required"]) <= fields, spec.name


def test_a_matching_result_travels_encoded_and_decodes_to_the_same_value():
    reply = handle(_worker(GOOD), CallRequest("r", "fs.readFile", {"path": "a"}, 1000, 1 << 20), LIMITS)
    assert isinstance(reply, CallOk)
    assert TOOLS["fs.readFile"].decode_result(reply.result) == GOOD


@pytest.mark.parametrize("bad", [{**GOOD, "size": "1"}, {**GOOD, "extra": 1}, {"content": "x"}, "x", None])
def test_a_result_of_another_shape_fails_in_the_worker(bad, capfd):
    reply = handle(_worker(bad), CallRequest("r1", "fs.readFile", {"path": "a"}, 1000, 1 << 20), LIMITS)
    assert isinstance(reply, CallFailed) and reply.error_code is ErrorCode.INTERNAL_ERROR
    assert "request r1" in reply.reason and "result type" in capfd.readouterr().err


def test_the_supervisor_decodes_strictly():
    spec = TOOLS["db.query"]
    ok = spec.encode_result({"columns": [{"name": "a", "type": "int4"}], "rows": [[1]], "row_count": 1,
                             "truncated": False})
    assert spec.decode_result(ok)["rows"] == [[1]]
    for forged in ({"columns": [], "rows": "DROP", "row_count": 0, "truncated": False},
                   {"columns": [], "rows": [], "row_count": 0, "truncated": False, "secret": "x"}):
        with pytest.raises(msgspec.ValidationError):
            spec.decode_result(msgspec.msgpack.encode(forged))
