"""The hot route must answer exactly as the SDK would, and leave everything else to it."""

import json

from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.fastpath import SessionState, cancelled_request_id, hot_request, response_parts


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


class _SdkSession:
    """The two public properties of the SDK's ServerSession that SessionState reads."""

    def __init__(self) -> None:
        self.client_params = None
        self.protocol_version = "2025-11-25"


def test_a_session_is_ready_once_the_sdk_accepted_initialize():
    state = SessionState()
    assert not state.ready and state.version is None  # nothing attached: every request goes to the SDK
    sdk = _SdkSession()
    state.attach(sdk)
    assert not state.ready and state.version is None  # initialize not accepted yet
    sdk.client_params = object()
    assert state.ready and state.version == "2025-11-25"
    assert SessionState(born_ready=True).ready  # a stateless HTTP exchange


def test_only_plain_hot_requests_take_the_hot_route():
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fs.readFile", "arguments": {}}}
    assert hot_request(call) is not None
    assert hot_request({"jsonrpc": "2.0", "id": 2, "method": "ping"}) is not None
    assert hot_request({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}) is not None
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
        assert hot_request(other) is None, other
