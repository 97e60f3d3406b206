"""Every outcome reaches the client the same way on both routes (hot and SDK) of both transports.

The real transports (stdio_transport over OS pipes, the SDK's Server, the HTTP app under
hypercorn on loopback) run in a thread of their own; only the pipeline behind them is scripted,
so that every kind of outcome can be drawn: each error code with any reason, successes with odd
Unicode and control characters, large results, and answers over max_bytes.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.gateway import Gateway, Outcome
from tests.conftest import write_config
from tests.support.gateway_process import wait_until

TOOLS = {spec.name: spec for spec in GatewayConfig().catalogue()}  # the seed config's instances

CODES = [code for code in ErrorCode if code is not ErrorCode.CANCELLED]  # CANCELLED is never answered
ACCEPT = "application/json, text/event-stream"


class ScriptedGateway:
    """What the transports see of a Gateway; every call ends as the outcome the test set."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.pools: dict[str, Any] = {}
        self.catalogue = SimpleNamespace(version=0)  # the tools never change here
        self.audit = SimpleNamespace(healthy=True)
        self.rate_limiter = SimpleNamespace(check=lambda actor: None)
        self.stopping = False
        self.outcome: Outcome | None = None

    def tools_for(self, actor: str) -> list[Any]:
        return [TOOLS["fs.readFile"], TOOLS["db.query"]]

    async def call(self, tool: str, arguments: Any, actor: str, cancelled_by: Any = None) -> Outcome:
        assert self.outcome is not None
        return self.outcome


def _serve(gateway: ScriptedGateway, wire_in: int, wire_out: int, bound: list, ready: threading.Event) -> None:
    from mcp_gateway.supervisor.http import HttpServer, build_app, hypercorn_config
    from mcp_gateway.supervisor.http_listener import ConnectionLimits
    from mcp_gateway.supervisor.metrics import GatewayMetrics
    from mcp_gateway.supervisor.stdio import serve_stdio_session

    async def main() -> None:
        config = gateway.config
        s = config.server.http
        hc = hypercorn_config(config)
        sockets = hc.create_sockets()
        for sock in sockets.insecure_sockets:
            sock.listen(hc.backlog)
            bound.append(sock.getsockname())
        app, manager = build_app(config, gateway, GatewayMetrics())
        limits = ConnectionLimits(s.max_connections, s.max_connections_per_client)
        async with manager.run(), trio.open_nursery() as nursery:
            # The listeners of serve_http, without its signal handling (this is not the main thread).
            for listener in HttpServer(app, hc, list(sockets.insecure_sockets), limits, False).listeners:
                nursery.start_soon(listener.serve, nursery)
            ready.set()
            await serve_stdio_session(gateway, wire_in, wire_out)
            nursery.cancel_scope.cancel()

    trio.run(main)


class Stdio:
    def __init__(self, to_server: int, from_server: int) -> None:
        self.to_server = to_server
        self.from_server = from_server
        self.buf = b""
        self.next_id = 0

    def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, **({"params": params} if params else {})}
        os.write(self.to_server, json.dumps(message).encode() + b"\n")
        deadline = time.monotonic() + 20
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.from_server], [], [], left)[0], "no answer on stdio"
            self.buf += os.read(self.from_server, 1 << 20)
        line, _, self.buf = self.buf.partition(b"\n")
        reply = json.loads(line)
        assert reply["id"] == self.next_id, reply
        return reply


class _WatchedHotRoute:
    """Records whether each HTTP request was answered by the hot route (True) or left to the SDK."""

    def __init__(self) -> None:
        from mcp_gateway.supervisor.http_hot import HttpHotRoute

        self.cls = HttpHotRoute
        self.answer = HttpHotRoute.answer
        self.seen: list[bool] = []
        answer, seen = self.answer, self.seen

        async def watched(route, *args, **kwargs) -> bool:
            seen.append(await answer(route, *args, **kwargs))
            return seen[-1]

        HttpHotRoute.answer = watched  # type: ignore[method-assign]

    def restore(self) -> None:
        self.cls.answer = self.answer  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def transports(tmp_path_factory):
    directory = tmp_path_factory.mktemp("transports")
    from mcp_gateway.config import load_config

    config = load_config(write_config(directory, {
        "server": {"transport": "http", "http": {"host": "127.0.0.1", "port": 0}},
        "audit": {"path": str(directory / "audit.jsonl")}}))
    gateway = ScriptedGateway(config)
    watch = _WatchedHotRoute()
    hot_answers = watch.seen
    client_in, server_out = os.pipe()
    server_in, client_out = os.pipe()
    bound: list = []
    ready = threading.Event()
    thread = threading.Thread(target=_serve, args=(gateway, server_in, server_out, bound, ready), daemon=True)
    thread.start()
    assert ready.wait(20)
    stdio = Stdio(client_out, client_in)
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    assert stdio.request("initialize", init)["result"]["protocolVersion"] == "2025-11-25"
    os.write(client_out, b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    host, port = bound[0][:2]
    http = httpx.Client(base_url=f"http://{host}:{port}", timeout=20,
                        headers={"accept": ACCEPT, "content-type": "application/json"})
    r = http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    session = {"mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)

    def answers(outcome: Outcome) -> tuple[dict, dict, dict, dict]:
        gateway.outcome = outcome
        params = {"name": outcome.tool, "arguments": {}}
        fast = stdio.request("tools/call", params)
        sdk = stdio.request("tools/call", {**params, "_meta": {}})  # _meta: the hot route leaves it to the SDK
        replies = []
        for p in (params, {**params, "_meta": {}}):
            hot_answers.clear()
            reply = http.post("/mcp", headers=session, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                              "params": p})
            assert reply.status_code == 200, reply.text
            # (recorded once the route returns, which may be just after the client has the answer)
            wait_until(lambda: hot_answers, what="the HTTP request never reached the endpoint")
            assert hot_answers == ["_meta" not in p], "a plain call takes the hot route on HTTP too"
            replies.append(reply.json()["result"])
        return fast["result"], sdk["result"], replies[0], replies[1]

    yield answers
    watch.restore()
    http.close()
    os.close(client_out)  # end of input: the server returns and the thread ends
    thread.join(20)
    os.close(client_in)


# Text a worker can return: any Unicode scalar value (msgpack refuses lone surrogates).
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# A reason may echo what the agent sent, lone surrogates included.
_reason = st.text(max_size=60)


@st.composite
def outcomes(draw) -> Outcome:
    rid = draw(st.uuids()).hex
    if draw(st.booleans()):
        return Outcome.failed(rid, draw(st.sampled_from(["fs.readFile", "no.such.tool"])),
                              draw(st.sampled_from(CODES)), draw(_reason))
    if draw(st.booleans()):
        content = draw(_text) * draw(st.sampled_from([1, 1, 1000, 20000]))
        result = {"path": "/d/" + draw(_text), "size": len(content), "offset": 0, "length": len(content),
                  "encoding": "utf-8", "content": content}
        spec = TOOLS["fs.readFile"]
    else:
        rows = draw(st.lists(st.lists(st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), _text,
                                                st.booleans()), max_size=4), max_size=5))
        result = {"columns": [{"name": draw(_text), "type": "text"}], "rows": rows, "row_count": len(rows),
                  "truncated": draw(st.booleans())}
        spec = TOOLS["db.query"]
    max_bytes = draw(st.sampled_from([10 * 1024 * 1024, 2048]))
    return Gateway._answer(rid, spec, spec.encode_result(result), max_bytes)


@settings(max_examples=60)
@given(outcomes())
def test_every_outcome_is_answered_alike_on_every_transport(transports, outcome):
    fast, sdk, http, http_sdk = transports(outcome)
    expected = json.loads(outcome.answer)
    assert fast == sdk == http == http_sdk == expected
    assert expected["_meta"][results.REQUEST_ID_META] == outcome.request_id
    if outcome.is_error:
        assert "structuredContent" not in expected and expected["isError"] is True
        error = expected["_meta"][results.ERROR_META]
        assert error["error_code"] == outcome.error_code and error["request_id"] == outcome.request_id
        assert expected["content"][0]["text"] == f"{outcome.error_code}: {error['reason']}"
    else:
        assert len(outcome.answer) <= 10 * 1024 * 1024 and expected["isError"] is False


@pytest.mark.parametrize("forged", [
    {"path": "/d/a", "size": 1, "offset": 0, "length": 1, "encoding": "utf-8", "content": 7},  # wrong type
    {"path": "/d/a", "size": 1, "offset": 0, "length": 1, "encoding": "utf-8", "content": "x",
     "leak": "/etc/shadow"},  # a field the tool does not have
    {"path": "/d/a", "size": 1, "offset": 0, "length": 1, "encoding": "rot13", "content": "x"},  # not in the enum
    {"content": "x"},  # fields missing
    ["not", "an", "object"],
])
def test_a_result_that_does_not_match_the_tools_type_is_internal_error(forged):
    """A worker (buggy or subverted) cannot pass arbitrary data through as structuredContent."""
    outcome = Gateway._answer("r", TOOLS["fs.readFile"], msgspec.msgpack.encode(forged), 10_000)
    assert outcome.error_code == "INTERNAL_ERROR" and outcome.reason == "the worker returned a malformed result"
    answer = json.loads(outcome.answer)
    assert "structuredContent" not in answer and "/etc/shadow" not in outcome.answer.decode()


def test_an_answer_over_max_bytes_is_refused_whole():
    content = "é" * 1000
    spec = TOOLS["fs.readFile"]
    result = spec.encode_result({"path": "/d/a", "size": 2000, "offset": 0, "length": 2000, "encoding": "utf-8",
                                 "content": content})
    fits = Gateway._answer("r", spec, result, 10_000)
    assert not fits.is_error and fits.result_bytes == len(fits.answer)
    # 2000 bytes of UTF-8 content travel twice (text and structured): 4000+ bytes of JSON
    refused = Gateway._answer("r", spec, result, 4000)
    assert refused.error_code == "RESULT_TOO_LARGE" and "over the cap of 4000 bytes" in refused.reason
