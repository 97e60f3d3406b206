"""Auth, Host/Origin checks, per-actor policy, body cap, /metrics and /healthz over HTTP."""

import httpx
import pytest

from tests.support.gateway_process import audit_lines, error_of
from tests.support.http_gateway import HttpGateway, McpHttp, http_config, scrape, sha256_hex

TOKEN_A, TOKEN_B = "token-for-agent-a-0123456789", "token-for-agent-b-9876543210"  # noqa: S105
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}}
JSON_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def gw(module_gw_dir):
    config = http_config(
        module_gw_dir,
        http={"auth": {"bearer_tokens": [{"actor": "agent-a", "sha256": sha256_hex(TOKEN_A)},
                                         {"actor": "agent-b", "sha256": sha256_hex(TOKEN_B).upper()}]},
              "allowed_origins": ["https://app.example.com"],
              "allowed_hosts": ["mcp.internal.example"],
              "max_body_bytes": 65536},
        policy={"actors": {"agent-a": {"allow_tools": ["fs.readFile"]}}})
    with HttpGateway(config) as g:
        g.dir = module_gw_dir
        yield g


def _post(gw, headers=None, body=INIT):
    return httpx.post(gw.url, json=body, headers={**JSON_HEADERS, **(headers or {})}, timeout=10)


def test_missing_or_wrong_token_is_401_before_any_mcp_handling(gw):
    before = len(audit_lines(gw.dir))
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {TOKEN_A}"},
                    {"authorization": "Bearer"}, {"authorization": f"Bearer {TOKEN_A}x"},
                    {"authorization": "Bearer " + "x" * 5000}):
        r = _post(gw, headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "mcp-session-id" not in r.headers
    r = _post(gw, {"authorization": "Bearer wrong-token"},
              {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert httpx.get(gw.base + "/metrics").status_code == 401
    assert len(audit_lines(gw.dir)) == before


def test_right_token_calls_and_the_actor_is_audited(gw):
    with McpHttp(gw.url, TOKEN_A) as a, McpHttp(gw.url, TOKEN_B) as b:
        assert a.initialize()["serverInfo"]["name"] == "mcp-gateway"
        b.initialize()
        ok = a.call("fs.readFile", {"path": "hello.txt"})
        assert ok["isError"] is False and ok["structuredContent"]["content"] == "hello world\n"
        # the token's sha256 in the config may be upper-case hex
        denied = b.call("fs.readFile", {"path": "secrets/key.txt"})
        assert denied["isError"] is True and error_of(denied)["error_code"] == "SECURITY_ERROR"
    lines = {x["request_id"]: x for x in audit_lines(gw.dir)}
    assert lines[error_of(denied)["request_id"]]["actor"] == "agent-b"
    ok_lines = [x for x in lines.values() if x["actor"] == "agent-a" and x["decision"] == "allow"]
    assert ok_lines and ok_lines[-1]["tool"] == "fs.readFile"


def test_per_actor_narrowing(gw):
    with McpHttp(gw.url, TOKEN_A) as a, McpHttp(gw.url, TOKEN_B) as b:
        a.initialize()
        b.initialize()
        assert a.tools() == ["fs.readFile"]
        assert b.tools() == ["fs.listDir", "fs.readFile"]
        narrowed = a.call("fs.listDir", {"path": "."})
        assert narrowed["isError"] is True
        assert error_of(narrowed)["error_code"] == "POLICY_DENIED"
        assert narrowed["content"][0]["text"].startswith("POLICY_DENIED")
        listing = b.call("fs.listDir", {"path": "."})
        assert listing["isError"] is False
    rid = error_of(narrowed)["request_id"]
    line = next(x for x in audit_lines(gw.dir) if x["request_id"] == rid)
    assert (line["actor"], line["decision"], line["error_code"]) == ("agent-a", "deny", "POLICY_DENIED")


def test_a_session_belongs_to_the_actor_that_opened_it(gw):
    with McpHttp(gw.url, TOKEN_A) as a, McpHttp(gw.url, TOKEN_B) as b:
        a.initialize()
        b.session_id = a.session_id  # B presents A's session id with B's token
        r = b.post({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
        assert r.status_code == 404
        assert a.tools() == ["fs.readFile"]


def test_foreign_origin_is_403_and_listed_or_loopback_origins_pass(gw):
    auth = {"authorization": f"Bearer {TOKEN_A}"}
    for origin in ("https://evil.example", "null", "http://app.example.com", "https://app.example.com.evil.io",
                   "http://127.0.0.1.nip.io:3000"):
        r = _post(gw, {**auth, "origin": origin})
        assert r.status_code == 403, (origin, r.status_code)
        assert "mcp-session-id" not in r.headers
    # the origin is checked before the token: a foreign page learns nothing about tokens
    assert _post(gw, {"origin": "https://evil.example"}).status_code == 403
    for origin in ("https://app.example.com", "https://APP.example.com/", "http://localhost:5173",
                   "http://127.0.0.1:8080", "http://[::1]:9"):
        r = _post(gw, {**auth, "origin": origin})
        assert r.status_code == 200, (origin, r.status_code, r.text)


def test_host_header_outside_the_allowed_set_is_421(gw):
    auth = {"authorization": f"Bearer {TOKEN_A}"}
    port = gw.base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "10.0.0.1"):
        r = _post(gw, {**auth, "host": host})
        assert r.status_code == 421, (host, r.status_code)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "mcp.internal.example",
                 "MCP.internal.example:443"):
        r = _post(gw, {**auth, "host": host})
        assert r.status_code == 200, (host, r.status_code, r.text)


def test_body_over_max_body_bytes_is_413(gw):
    auth = {"authorization": f"Bearer {TOKEN_A}"}
    big = {**INIT, "params": {**INIT["params"], "pad": "x" * 70000}}
    assert _post(gw, auth, big).status_code == 413

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b"x" * 8192

    r = httpx.post(gw.url, content=chunks(), headers={**JSON_HEADERS, **auth}, timeout=10)
    assert r.status_code == 413
    # A streamed body is only read after authentication...
    r = httpx.post(gw.url, content=chunks(), headers={**JSON_HEADERS, "authorization": "Bearer nope"}, timeout=10)
    assert r.status_code == 401
    # ...but a declared Content-Length over the cap is refused from the headers alone, before any
    # authentication or application code (that is what keeps 100 Continue from being sent).
    assert _post(gw, {"authorization": "Bearer nope"}, big).status_code == 413


def test_unknown_paths_and_methods(gw):
    auth = {"authorization": f"Bearer {TOKEN_A}"}
    assert httpx.get(gw.base + "/nope", headers=auth).status_code == 404
    assert httpx.get(gw.base + "/nope").status_code == 401
    assert httpx.post(gw.base + "/healthz").status_code == 405


def test_healthz_without_auth(gw):
    r = httpx.get(gw.base + "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "workers": {"fs": 2}, "audit": "writable"}


def test_metrics_move_after_calls(gw):
    key = ("mcp_gateway_calls_total", (("decision", "allow"), ("error_code", "none"),
                                       ("tool", "fs.readFile")))
    denied = ("mcp_gateway_calls_total", (("decision", "deny"), ("error_code", "POLICY_DENIED"),
                                          ("tool", "unknown")))
    hist = ("mcp_gateway_call_duration_seconds_count", (("tool", "fs.readFile"),))
    before = scrape(gw.base, TOKEN_B)
    with McpHttp(gw.url, TOKEN_B) as b:
        b.initialize()
        for _ in range(3):
            assert b.call("fs.readFile", {"path": "hello.txt"})["isError"] is False
        bogus = b.call("no.such.tool-" + "x" * 50, {})
        assert error_of(bogus)["error_code"] == "POLICY_DENIED"
    after = scrape(gw.base, TOKEN_B)
    assert after[key] - before.get(key, 0) == 3
    assert after[hist] - before.get(hist, 0) == 3
    assert after[denied] - before.get(denied, 0) == 1
    assert ("mcp_gateway_worker_restarts_total", (("connector", "fs"),)) in after
    assert after[("mcp_gateway_queue_depth", (("connector", "fs"),))] == 0
    assert after[("mcp_gateway_workers_live", (("connector", "fs"),))] == 2
    assert ("mcp_gateway_rate_limited_total", ()) in after
    assert after[("mcp_gateway_http_rejected_total", (("reason", "auth"),))] >= 1
