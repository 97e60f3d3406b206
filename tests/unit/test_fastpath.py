"""The stdio fast path must answer exactly as the SDK would, and leave everything else to it."""

import json

from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.fastpath import FastPath, cancelled_request_id, response_parts


def test_response_parts_splice_the_encoded_answer():
    answer = results.success("r1", "é\u2028", {"content": "é\u2028"})
    line = b"".join(response_parts("a\"b", answer))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    message = json.loads(line)
    assert message == {"jsonrpc": "2.0", "id": "a\"b", "result": json.loads(answer)}


def test_errors_carry_no_structured_content():
    answer = json.loads(results.error("r2", "SECURITY_ERROR", "outside 'x' \ud800"))
    assert "structuredContent" not in answer and answer["isError"] is True
    assert answer["_meta"][results.ERROR_META] == {"error_code": "SECURITY_ERROR", "reason": "outside 'x' \\ud800",
                                                   "request_id": "r2"}
    assert answer["_meta"][results.REQUEST_ID_META] == "r2"
    assert answer["content"] == [{"type": "text", "text": "SECURITY_ERROR: outside 'x' \\ud800"}]


def test_cancel_notifications_are_recognized():
    assert cancelled_request_id({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": 7}}) == 7
    assert cancelled_request_id({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                 "params": {"requestId": "x"}}) == "x"
    for other in ({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": True}},
                  {"jsonrpc": "2.0", "id": 1, "method": "notifications/cancelled", "params": {"requestId": 7}},
                  {"jsonrpc": "2.0", "method": "notifications/cancelled"}, [1], "x"):
        assert cancelled_request_id(other) is None


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
        {**call, "id": "\ud800"},
        {**call, "jsonrpc": "1.0"},
        {**call, "extra": 1},
        {"jsonrpc": "2.0", "method": "tools/call", "params": call["params"]},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": "x"}},
        [call],
        "text",
    ):
        assert fp.route(other) is None, other
