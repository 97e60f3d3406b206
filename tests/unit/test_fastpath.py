"""The stdio fast path must answer exactly as the SDK would, and leave everything else to it."""

import json

from mcp_gateway.supervisor.fastpath import FastPath, call_result_payload, response_line
from mcp_gateway.supervisor.gateway import Outcome
from mcp_gateway.supervisor.mcp_server import call_result


def _sdk_json(outcome: Outcome) -> dict:
    return json.loads(call_result(outcome).model_dump_json(by_alias=True, exclude_unset=True))


def test_call_results_match_the_sdk_serialization():
    ok = Outcome("r1", "fs.readFile", result={"path": "/a", "size": 1, "encoding": "utf-8", "content": "é\u2028"},
                 text="é\u2028")
    err = Outcome("r2", "fs.readFile", error_code="SECURITY_ERROR", reason="outside 'x'")
    for outcome in (ok, err):
        assert call_result_payload(outcome) == _sdk_json(outcome)


def test_response_line_survives_lone_surrogates():
    line = response_line(1, {"content": [{"type": "text", "text": "a\ud800"}]})
    assert json.loads(line)["result"]["content"][0]["text"] == "a\ud800"


class _Gateway:
    def tools_for(self, actor):
        return []


def test_routes_only_plain_requests_after_initialize():
    fp = FastPath(_Gateway(), "actor")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fs.readFile", "arguments": {}}}
    assert fp.route(call) is None  # not initialized yet: the SDK answers (and refuses)
    fp.enabled = True
    assert fp.route(call) is not None
    assert fp.route({"jsonrpc": "2.0", "id": 2, "method": "ping"}) is not None
    for other in (
        {**call, "params": {**call["params"], "_meta": {"progressToken": 1}}},
        {**call, "params": {"name": 5, "arguments": {}}},
        {**call, "params": {"name": "x", "arguments": []}},
        {**call, "id": None},
        {**call, "id": True},
        {**call, "jsonrpc": "1.0"},
        {**call, "extra": 1},
        {"jsonrpc": "2.0", "method": "tools/call", "params": call["params"]},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": "x"}},
        [call],
        "text",
    ):
        assert fp.route(other) is None, other
