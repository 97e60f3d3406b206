"""HTTP protocol core: a closed POST cancels its call; a plain 401 that starts no OAuth flow."""

import os
import signal

import httpx
import pytest
import trio

from tests.e2e.test_worker_pool import _alive
from tests.support.gateway_process import audit_lines, error_of, wait_until, worker_pids
from tests.support.http_gateway import HttpGateway, McpHttp, http_config, sha256_hex

TOKEN = "proto-token-0123456789"  # noqa: S105


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
def test_closing_the_post_cancels_the_call_and_stops_its_worker(gw_dir, stateless):
    config = http_config(gw_dir, http={"stateless": stateless}, policy={"global_timeout_ms": 20000},
                         connectors={"filesystem": {"workers": 1}})
    with HttpGateway(config) as gw, McpHttp(gw.url) as client:
        client.initialize()
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the call can only end by its 20 s deadline or a cancel
        try:
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
                client.client.post(client.url, timeout=httpx.Timeout(10, read=0.5), json={
                    "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}},
                    headers={"mcp-session-id": client.session_id or "", "mcp-protocol-version": "2025-11-25"}
                    if client.session_id else {})
            wait_until(lambda: not _alive(worker))  # killed, not left to run to its deadline
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
        wait_until(lambda: audit_lines(gw_dir))
        assert not client.call("fs.readFile", {"path": "hello.txt"})["isError"]  # a replacement serves
    lines = audit_lines(gw_dir)
    assert [x["error_code"] for x in lines] == ["CANCELLED", None]
    assert "cancelled (the client closed the HTTP request)" in lines[0]["reason"]


def test_401_says_what_is_expected_and_offers_no_oauth(gw_dir):
    config = http_config(gw_dir, http={"auth": {"bearer_tokens": [{"actor": "a", "sha256": sha256_hex(TOKEN)}]}})
    with HttpGateway(config) as gw:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            r = httpx.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers, timeout=10)
            assert r.status_code == 401
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and 'error_description="' in challenge
            assert "resource_metadata" not in challenge
            assert r.json()["error_description"] in challenge
        # OAuth discovery finds nothing (404, not a 401 that would read as protected metadata).
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                     "/.well-known/oauth-authorization-server"):
            r = httpx.get(gw.base + path, timeout=10)
            assert r.status_code == 404 and "does not offer OAuth" in r.json()["error_description"]


def test_batches_for_2025_03_26_clients(gw_dir):
    with HttpGateway(http_config(gw_dir)) as gw, httpx.Client(timeout=20, headers={
            "accept": "application/json, text/event-stream", "content-type": "application/json"}) as http:
        init = http.post(gw.url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "old", "version": "0"}}})
        assert init.json()["result"]["protocolVersion"] == "2025-03-26"
        session = {"mcp-session-id": init.headers["mcp-session-id"]}  # 2025-03-26 has no protocol header
        assert http.post(gw.url, headers=session, json=[
            {"jsonrpc": "2.0", "method": "notifications/initialized"}]).status_code == 202
        r = http.post(gw.url, headers=session, json=[
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "fs.readFile", "arguments": {"path": "/etc/passwd"}}},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
            {"jsonrpc": "2.0", "id": 5, "method": "initialize", "params": {}},
        ])
        assert r.status_code == 200, r.text
        by_id = {a["id"]: a for a in r.json()}
        assert sorted(by_id) == [1, 2, 3, 5]
        assert by_id[1]["result"] == {}
        assert by_id[2]["result"]["structuredContent"]["content"] == "hello world\n"
        assert error_of(by_id[3]["result"])["error_code"] == "SECURITY_ERROR"
        assert by_id[5]["error"]["code"] == -32600
        empty = http.post(gw.url, headers=session, json=[])
        assert empty.status_code == 400 and empty.json()["error"]["code"] == -32600
        # A client that negotiated a later revision (it sends the header) gets no batches.
        later = http.post(gw.url, headers={**session, "mcp-protocol-version": "2025-11-25"},
                          json=[{"jsonrpc": "2.0", "id": 9, "method": "ping"}])
        assert later.status_code == 400
    assert sorted(str(x["error_code"]) for x in audit_lines(gw_dir)) == ["None", "SECURITY_ERROR"]


def test_the_python_sdk_client_cancelling_a_call_stops_its_worker(gw_dir):
    """Python SDK 2.3 speaks 2026-07-28 and cancels by closing the call's POST."""
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    config = http_config(gw_dir, policy={"global_timeout_ms": 20000}, connectors={"filesystem": {"workers": 1}})
    with HttpGateway(config) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))

        async def cancelled_call() -> bool:
            async with Client(streamable_http_client(gw.url)) as client:
                await client.list_tools()
                os.kill(worker, signal.SIGSTOP)
                with trio.move_on_after(1) as scope:
                    await client.call_tool("fs.readFile", {"path": "hello.txt"})
                return scope.cancelled_caught

        try:
            assert trio.run(cancelled_call)
            wait_until(lambda: not _alive(worker))
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
        wait_until(lambda: audit_lines(gw_dir))
    (line,) = audit_lines(gw_dir)
    assert line["error_code"] == "CANCELLED", line
    assert "cancelled (the client closed the HTTP request)" in line["reason"]


def test_notifications_cancelled_stops_a_hot_call_as_the_sdk_would(gw_dir):
    """A plain tools/call of a ready session runs on the hot route; a `notifications/cancelled`
    naming it (its own POST) cancels it there: the worker is stopped, the call's POST gets the
    SDK's -32800 answer, and the audit line says what cancelled it."""
    import threading

    config = http_config(gw_dir, policy={"global_timeout_ms": 20000}, connectors={"filesystem": {"workers": 1}})
    with HttpGateway(config) as gw, McpHttp(gw.url) as client:
        client.initialize()
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the call can only end by its 20 s deadline or a cancel
        answer: list[httpx.Response] = []
        headers = {"accept": "application/json, text/event-stream", "mcp-session-id": client.session_id or "",
                   "mcp-protocol-version": "2025-11-25"}
        call = threading.Thread(target=lambda: answer.append(httpx.post(client.url, headers=headers, timeout=30, json={
            "jsonrpc": "2.0", "id": 41, "method": "tools/call",
            "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})))
        call.start()
        try:
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41}}

            def cancelled() -> bool:  # resent until the call is in flight to be cancelled
                assert client.post(cancel).status_code == 202
                call.join(0.2)
                return not call.is_alive()

            wait_until(cancelled, timeout=15)
            wait_until(lambda: not _alive(worker))  # killed, not left to run to its deadline
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
            call.join(20)
        assert answer[0].status_code == 200
        assert answer[0].json() == {"jsonrpc": "2.0", "id": 41, "error": {"code": -32800,
                                                                           "message": "Request cancelled"}}
        assert not client.call("fs.readFile", {"path": "hello.txt"})["isError"]  # a replacement serves
    lines = audit_lines(gw_dir)
    assert [x["error_code"] for x in lines] == ["CANCELLED", None]
    assert "cancelled (the client cancelled the call (notifications/cancelled))" in lines[0]["reason"]
