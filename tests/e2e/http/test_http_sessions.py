"""Stateful sessions: one actor's flood never locks another out; initialize pays the actor's rate."""

import time

import httpx

from tests.support.http_gateway import ACCEPT, PROTOCOL, HttpGateway, McpHttp, http_config, scrape, sha256_hex

FLOODER, OTHER = "flooder-token", "other-agent-token"  # noqa: S105
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


def _tokens(*pairs: tuple[str, str]) -> dict:
    return {"bearer_tokens": [{"actor": actor, "sha256": sha256_hex(tok)} for actor, tok in pairs]}


def _open(client: httpx.Client, url: str, token: str) -> httpx.Response:
    return client.post(url, json=INIT, headers={"accept": ACCEPT, "content-type": "application/json",
                                                "authorization": f"Bearer {token}"})


def test_a_session_flood_by_one_actor_never_refuses_another_actors_initialize(gw_dir):
    config = http_config(gw_dir, http={"auth": _tokens(("flooder", FLOODER), ("other", OTHER)),
                                       "max_sessions": 12, "max_sessions_per_actor": 5})
    with HttpGateway(config) as gw, httpx.Client(timeout=10) as client:
        # The flooder opens sessions without end: five, then 429 every time.
        flood = [_open(client, gw.url, FLOODER) for _ in range(40)]
        assert [r.status_code for r in flood] == [200] * 5 + [429] * 35
        assert "max_sessions_per_actor" in flood[-1].json()["error"]["message"]
        # ...and the other actor still initializes and calls.
        with McpHttp(gw.url, OTHER) as other:
            other.initialize()
            result = other.call("fs.readFile", {"path": "hello.txt"})
            assert not result["isError"] and result["structuredContent"]["content"] == "hello world\n"
        m = scrape(gw.base, OTHER)
        assert m[("mcp_gateway_http_sessions", ())] == 6
        assert m[("mcp_gateway_http_sessions_refused_total", (("reason", "per_actor"),))] == 35
        # A session the flooder ends (DELETE) gives its place back.
        d = client.delete(gw.url, headers={"authorization": f"Bearer {FLOODER}", "mcp-protocol-version": PROTOCOL,
                                           "mcp-session-id": flood[0].headers["mcp-session-id"]})
        assert d.status_code == 200, d.text
        assert _open(client, gw.url, FLOODER).status_code == 200
        assert _open(client, gw.url, FLOODER).status_code == 429
    # Per-session and per-refusal log lines are bounded: 42 openings, a handful of lines.
    assert gw.stderr().count("Created new transport") <= 6
    assert gw.stderr().count("refused a new session") <= 6


def test_idle_sessions_expire_and_free_the_quota(gw_dir):
    config = http_config(gw_dir, http={"max_sessions_per_actor": 2, "session_idle_timeout_s": 0.5})
    with HttpGateway(config) as gw, httpx.Client(timeout=10) as client:
        assert [_open(client, gw.url, "-").status_code for _ in range(3)] == [200, 200, 429]
        deadline = time.monotonic() + 15
        while scrape(gw.base)[("mcp_gateway_http_sessions", ())] != 0:
            assert time.monotonic() < deadline, "idle sessions never expired"
            time.sleep(0.1)
        assert _open(client, gw.url, "-").status_code == 200


def test_initialize_counts_against_the_actors_rate(gw_dir):
    config = http_config(gw_dir, http={"auth": _tokens(("flooder", FLOODER), ("other", OTHER))},
                         policy={"rate_limit": {"per_actor": {"rate_per_s": 0.01, "burst": 3}}})
    with HttpGateway(config) as gw, httpx.Client(timeout=10) as client:
        statuses = [_open(client, gw.url, FLOODER).status_code for _ in range(6)]
        assert statuses == [200] * 3 + [429] * 3
        assert "rate" in _open(client, gw.url, FLOODER).json()["error"]["message"]
        assert _open(client, gw.url, OTHER).status_code == 200  # the other actor's bucket is its own
        m = scrape(gw.base, OTHER)
        assert m[("mcp_gateway_http_sessions_refused_total", (("reason", "rate"),))] == 4
        assert m[("mcp_gateway_http_sessions", ())] == 4


def test_a_full_session_table_is_503_for_everyone(gw_dir):
    config = http_config(gw_dir, http={"auth": _tokens(("flooder", FLOODER), ("other", OTHER)),
                                       "max_sessions": 3, "max_sessions_per_actor": 3})
    with HttpGateway(config) as gw, httpx.Client(timeout=10) as client:
        assert [_open(client, gw.url, FLOODER).status_code for _ in range(2)] == [200, 200]
        assert _open(client, gw.url, OTHER).status_code == 200
        full = _open(client, gw.url, OTHER)
        assert full.status_code == 503 and "max_sessions" in full.json()["error"]["message"]
        assert full.headers.get("retry-after")
        m = scrape(gw.base, OTHER)
        assert m[("mcp_gateway_http_sessions_refused_total", (("reason", "max_sessions"),))] == 1
    assert "actors x max_sessions_per_actor" in gw.stderr()  # 2 actors x 3 > 3: warned at start
