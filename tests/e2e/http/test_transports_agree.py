"""The stdio and HTTP answers to the same calls are identical (issue 16), refusals included.

Two real gateways serve one config and one data tree, one over stdio and one over Streamable
HTTP, each with real sandboxed workers and its own audit log. Hypothesis draws requests:
tools/call of served, unserved and unknown tools with good, hostile and malformed arguments,
tools/list and ping; each goes to stdio, to HTTP as a plain request (the hot route on both),
and to both with a `_meta` (which the hot route leaves to the SDK). Every answer must be the
same JSON, once the per-call request id (a fresh UUID each time) is set aside.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.gateway_process import RawGateway
from tests.support.http_gateway import PROTOCOL, HttpGateway, McpHttp, http_config, stdio_variant

REQUEST_ID = "io.mcp-gateway/request_id"
OWN_UIDS = 1_900_000_000  # first uid of this module's two gateways (not the default range)
ERROR = "io.mcp-gateway/error"


@pytest.fixture(scope="module")
def both(module_gw_dir):
    # As root each gateway's workers take uids of its own range: two gateways that shared one
    # would each see the other's workers as foreign processes in it (and refuse to start).
    config = http_config(module_gw_dir, policy={"allow_tools": ["fs.readFile", "fs.listDir"]},
                         sandbox={"uid_range": [OWN_UIDS, 4096]})
    data = module_gw_dir / "data"
    (data / "sub").mkdir(exist_ok=True)
    (data / "sub" / "é ü.txt").write_text("accents é\u2028 and a line separator\n")
    (data / "big.txt").write_text("x" * 50_000)
    stdio_config = stdio_variant(config)
    stdio_config.write_text(stdio_config.read_text().replace(str(OWN_UIDS), str(OWN_UIDS + 4096)))
    with HttpGateway(config) as http_gw:
        stdio = RawGateway(stdio_config)
        http = McpHttp(http_gw.url)
        try:
            stdio.initialize()
            stdio.wait_ready()
            http.initialize()
            yield stdio, http, data
        finally:
            http.close()
            stdio.close()


def _without_request_ids(reply: dict) -> dict:
    """The reply with the per-call request ids (fresh for every call) replaced by a marker."""
    reply = copy.deepcopy(reply)
    meta = (reply.get("result") or {}).get("_meta") or {}
    rid = meta.get(REQUEST_ID)
    if rid is not None:
        meta[REQUEST_ID] = "<id>"
        error = meta.get(ERROR)
        if error is not None:
            assert error["request_id"] == rid
            error["request_id"] = "<id>"
            error["reason"] = error["reason"].replace(rid, "<id>")
            reply["result"]["content"][0]["text"] = reply["result"]["content"][0]["text"].replace(rid, "<id>")
    return reply


_paths = st.sampled_from([
    "hello.txt", "sub", "sub/é ü.txt", "big.txt", "missing.txt", "secrets/key.txt", "../../etc/passwd",
    "/etc/passwd", "sub/../hello.txt", "hello.txt\x00.png", "%2e%2e/etc/passwd", "sub\\..\\hello.txt", "",
    ".", "/proc/self/environ",
])
_junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.text(max_size=12),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@st.composite
def arguments(draw) -> Any:
    kind = draw(st.sampled_from(["path", "path", "path+", "junk", "none", "not-an-object"]))
    if kind == "none":
        return None
    if kind == "not-an-object":
        return draw(st.one_of(st.lists(st.integers(), max_size=2), st.text(max_size=5)))
    if kind == "junk":
        return draw(st.dictionaries(st.sampled_from(["path", "encoding", "offset", "length", "x"]), _junk,
                                    max_size=3))
    args: dict[str, Any] = {"path": draw(_paths)}
    if kind == "path+":
        args[draw(st.sampled_from(["encoding", "offset", "length", "unknown"]))] = draw(
            st.one_of(st.sampled_from(["utf-8", "base64", "latin-1"]), st.integers(-1, 100), _junk))
    return args


@st.composite
def requests(draw) -> tuple[str, dict | None]:
    method = draw(st.sampled_from(["tools/call"] * 8 + ["tools/list", "ping"]))
    if method != "tools/call":
        return method, None
    tool = draw(st.sampled_from(["fs.readFile", "fs.readFile", "fs.listDir", "web.fetch", "db.query",
                                 "no.such.tool", "", "FS.READFILE"]))
    params: dict[str, Any] = {"name": tool}
    args = draw(arguments())
    if args is not None or draw(st.booleans()):
        params["arguments"] = args
    return method, params


def _ask(stdio: RawGateway, http: McpHttp, method: str, params: dict | None) -> list[dict]:
    stdio_reply = stdio.request(method, params)
    http_reply = http.request(method, params)
    return [stdio_reply, http_reply]


@settings(max_examples=80, deadline=None)
@given(requests(), st.booleans())
def test_stdio_and_http_answer_every_call_alike(both, request, with_meta):
    stdio, http, _ = both
    method, params = request
    if with_meta:  # leaves the request to the SDK on both transports
        params = {**(params or {}), "_meta": {"progressToken": 7}}
    stdio_reply, http_reply = (_without_request_ids(r) for r in _ask(stdio, http, method, params))
    stdio_reply.pop("id")
    http_reply.pop("id")
    assert stdio_reply == http_reply


def test_the_hot_route_and_the_sdk_answer_alike_on_both_transports(both):
    stdio, http, _ = both
    for method, params in [("tools/call", {"name": "fs.readFile", "arguments": {"path": "sub/é ü.txt"}}),
                           ("tools/call", {"name": "fs.readFile", "arguments": {"path": "secrets/key.txt"}}),
                           ("tools/call", {"name": "nope", "arguments": {}}), ("tools/list", None), ("ping", None)]:
        plain = [_without_request_ids(r)["result"] for r in _ask(stdio, http, method, params)]
        sdk = [_without_request_ids(r)["result"]
               for r in _ask(stdio, http, method, {**(params or {}), "_meta": {"progressToken": 1}})]
        assert plain[0] == plain[1] == sdk[0] == sdk[1], (method, params)
    refused = _without_request_ids(stdio.request("tools/call", {"name": "fs.readFile",
                                                                "arguments": {"path": "secrets/key.txt"}}))
    assert refused["result"]["isError"] is True
    assert refused["result"]["content"][0]["text"].startswith("SECURITY_ERROR")


def test_a_lone_surrogate_in_arguments_is_refused_alike_on_both_transports(both, module_gw_dir):
    """Red-team: an escaped lone surrogate is valid JSON text. stdio refused it as VALIDATION_ERROR
    with an audit line; HTTP's hot route could not decode it and left it to the SDK, which
    answered a parse error and wrote no audit line."""

    stdio, http, _ = both
    body = ('{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"fs.readFile",'
            '"arguments":{"path":"\\ud800.txt"}}}')
    stdio.send(body.encode() + b"\n")
    stdio_reply = stdio.read()
    audit = module_gw_dir / "audit.jsonl"  # both gateways' (one config)
    before = audit.read_text().count("\n")
    r = http.client.post(http.url, content=body.encode(), headers={
        "mcp-session-id": http.session_id or "", "mcp-protocol-version": PROTOCOL})
    assert r.status_code == 200, r.text
    assert _without_request_ids(stdio_reply) == _without_request_ids(r.json())
    assert r.json()["result"]["content"][0]["text"].startswith("VALIDATION_ERROR")
    assert audit.read_text().count("\n") == before + 1
