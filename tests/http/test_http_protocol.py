"""HTTP protocol core: a closed POST cancels its call; a plain 401 that starts no OAuth flow."""

import os
import signal

import httpx
import pytest

from tests.gateway_process import audit_lines, worker_pids
from tests.http.helpers import HttpGateway, McpHttp, http_config, sha256_hex
from tests.integration.test_worker_pool import _alive, _wait_for

TOKEN = "proto-token-0123456789"


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
def test_closing_the_post_cancels_the_call_and_stops_its_worker(gw_dir, stateless):
    config = http_config(gw_dir, http={"stateless": stateless}, policy={"global_timeout_ms": 20000},
                         connectors={"filesystem": {"workers": 1}})
    with HttpGateway(config) as gw, McpHttp(gw.url) as client:
        client.initialize()
        (worker,) = _wait_for(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the call can only end by its 20 s deadline or a cancel
        try:
            with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
                client.client.post(client.url, timeout=httpx.Timeout(10, read=0.5), json={
                    "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}},
                    headers={"mcp-session-id": client.session_id or "", "mcp-protocol-version": "2025-11-25"}
                    if client.session_id else {})
            _wait_for(lambda: not _alive(worker))  # killed, not left to run to its deadline
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
        _wait_for(lambda: audit_lines(gw_dir))
        assert not client.call("fs.readFile", {"path": "hello.txt"})["isError"]  # a replacement serves
    lines = audit_lines(gw_dir)
    assert [x["error_code"] for x in lines] == ["CANCELLED", None]
    assert lines[0]["reason"].startswith("the client closed the HTTP request")


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
