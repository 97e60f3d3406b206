"""Property test against a live gateway: arbitrary JSON-RPC traffic never kills it, every
request gets exactly one answer, and every tools/call that was answered with a result has
exactly one audit line."""

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_process import audit_lines, error_of, fs_config, raw_gateway

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
paths = st.sampled_from(["hello.txt", "secrets/key.txt", "../config.yaml", "/etc/passwd", ".", "nope",
                         "a" * 5000, "%2e%2e/x", "..\\..\\x", "hello.txt\x00"])
tool_args = st.one_of(
    st.fixed_dictionaries({"path": paths}),
    st.fixed_dictionaries({"path": paths, "encoding": st.sampled_from(["utf-8", "base64", "latin-1", 7])}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    json_values,
)
tool_names = st.sampled_from(["fs.readFile", "fs.listDir", "web.fetch", "db.query", "nope", ""]) | st.text(max_size=12)
messages = st.one_of(
    st.builds(lambda n, a: {"method": "tools/call", "params": {"name": n, "arguments": a}}, tool_names, tool_args),
    st.builds(lambda p: {"method": "tools/call", "params": p}, json_values),
    st.builds(lambda m, p: {"method": m, "params": p},
              st.sampled_from(["tools/list", "ping", "resources/list", "prompts/get", "x/y", ""]), json_values),
)


@pytest.fixture(scope="module")
def live():
    d = Path(tempfile.mkdtemp(prefix="mcp-gw-fuzz-"))
    d.chmod(0o755)
    with raw_gateway(fs_config(d, policy={"global_timeout_ms": 5000})) as gw:
        yield gw, d, {"calls": 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages, request_id=st.integers(1, 2**31) | st.text(min_size=1, max_size=8))
def test_arbitrary_requests_get_one_answer_and_audit_lines_match(live, message, request_id):
    gw, _, counts = live
    gw.send_json({"jsonrpc": "2.0", "id": request_id, **message})
    reply = gw.read(timeout=15)
    assert reply.get("id") == request_id, reply
    assert ("result" in reply) != ("error" in reply)
    if message["method"] == "tools/call" and "result" in reply:
        counts["calls"] += 1
        result = reply["result"]
        if result.get("isError"):
            assert result["content"][0]["text"].split(":")[0] == error_of(result)["error_code"]
        json.dumps(result)  # serializable, no surprises


def test_after_the_fuzzing_the_gateway_serves_and_the_audit_log_is_exact(live):
    gw, d, counts = live
    assert counts["calls"] > 10  # the property test above really reached the pipeline
    assert gw.request("ping")["result"] == {}
    assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]
    assert len(audit_lines(d)) == counts["calls"] + 1
