"""Protocol 2026-07-28 on the real gateway, stdio and HTTP, with raw messages as a client sends them.

`server/discover`, `resultType`, caching hints private to the actor, `Mcp-Method`/`Mcp-Name`
checked against the body (HTTP), and messages with duplicate or case-variant keys refused (both
transports) before any of them is read: the attack is a body whose copies disagree, so that a
proxy or header check reads one tool and the gateway would run another.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import RawGateway, audit_lines, fs_config
from tests.support.http_gateway import ACCEPT, HttpGateway, http_config

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "0"}}
META = '"_meta": ' + json.dumps(ENVELOPE)

# Each: (what, raw message). A reader that keeps the first copy (or matches keys without case)
# sees fs.listDir or hello.txt; Python's json keeps the last copy and would run fs.readFile on
# what the routing headers (which agree with the last copy) let through.
AMBIGUOUS = [
    ("duplicate tool name", '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "fs.listDir", '
                            '"name": "fs.readFile", "arguments": {"path": "hello.txt"}, ' + META + "}}"),
    ("duplicate method", '{"jsonrpc": "2.0", "id": 7, "method": "tools/list", "method": "tools/call", '
                         '"params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}, ' + META + "}}"),
    ("case-variant argument", '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "fs.readFile", '
                              '"arguments": {"path": "hello.txt", "Path": "secrets/key.txt"}, ' + META + "}}"),
    ("duplicate deep in the envelope", '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": '
                                       '{"name": "fs.readFile", "arguments": {"path": "hello.txt"}, "_meta": '
                                       '{"io.modelcontextprotocol/protocolVersion": "2026-07-28", '
                                       '"io.modelcontextprotocol/protocolVersion": "2025-11-25", '
                                       '"io.modelcontextprotocol/clientCapabilities": {}}}}'),
]


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    h = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN, "mcp-method": method}
    if name is not None:
        h["mcp-name"] = name
    return h


def request(rid: int, method: str, params: dict | None = None) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**(params or {}), "_meta": ENVELOPE}}


def assert_ambiguity_refused(reply: dict, gw_dir, audited_before: int) -> None:
    assert "result" not in reply, f"an ambiguous message was run: {reply}"
    assert reply["error"]["code"] == -32600, reply
    assert "differ only in case" in reply["error"]["message"] or "duplicate key" in reply["error"]["message"], reply
    assert len(audit_lines(gw_dir)) == audited_before, "an ambiguous message reached the tools"


@pytest.fixture(scope="module")
def http_gw():
    directory = Path(tempfile.mkdtemp(prefix="mcp-gw-modern-"))
    directory.chmod(0o755)  # the workers' uid reads the data beneath it
    try:
        with HttpGateway(http_config(directory)) as gw:
            yield gw
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def post(gw: HttpGateway, body: str | dict, headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(gw.url, content=content.encode(), headers=headers, timeout=30)


def test_http_discover_lists_and_calls_carry_the_revision_fields(http_gw):
    discover = post(http_gw, request(1, "server/discover"), modern_headers("server/discover")).json()["result"]
    assert MODERN in discover["supportedVersions"] and "tools" in discover["capabilities"], discover
    assert discover["resultType"] == "complete"
    assert (discover["ttlMs"], discover["cacheScope"]) == (0, "private")
    listed = post(http_gw, request(2, "tools/list"), modern_headers("tools/list")).json()["result"]
    assert (listed["ttlMs"], listed["cacheScope"], listed["resultType"]) == (0, "private", "complete"), listed
    assert {t["name"] for t in listed["tools"]} == {"fs.readFile", "fs.listDir"}
    called = post(http_gw, request(3, "tools/call", {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}),
                  modern_headers("tools/call", "fs.readFile")).json()["result"]
    assert called["resultType"] == "complete" and called["content"][0]["text"] == "hello world\n", called


@pytest.mark.parametrize(("header_method", "header_name"), [("tools/list", "fs.readFile"),
                                                            ("tools/call", "fs.listDir"), ("tools/call", None)])
def test_http_routing_headers_must_match_the_body(http_gw, header_method, header_name):
    r = post(http_gw, request(4, "tools/call", {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}),
             modern_headers(header_method, header_name))
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020, (r.status_code, r.text)


@pytest.mark.parametrize(("what", "raw"), AMBIGUOUS, ids=[a[0] for a in AMBIGUOUS])
def test_http_ambiguous_keys_are_refused(http_gw, what, raw):
    before = len(audit_lines(http_gw.config.parent))
    r = post(http_gw, raw, modern_headers("tools/call", "fs.readFile"))
    reply = r.json()
    assert_ambiguity_refused(reply, http_gw.config.parent, before)
    assert r.status_code == 400 and reply["id"] == 7, (r.status_code, reply)
    ok = post(http_gw, request(8, "tools/list"), modern_headers("tools/list"))  # and it keeps serving
    assert ok.status_code == 200 and ok.json()["result"]["tools"], ok.text


def test_stdio_discover_and_lists_are_private_and_ambiguous_keys_refused(client_dir):
    gw = RawGateway(fs_config(client_dir))  # no initialize: the first request opens the 2026-07-28 era
    try:
        gw.wait_ready()
        gw.send_json(request(1, "server/discover"))
        discover = gw.read()["result"]
        assert MODERN in discover["supportedVersions"] and (discover["ttlMs"], discover["cacheScope"]) == (0, "private")
        gw.send_json(request(2, "tools/list"))
        listed = gw.read()["result"]
        assert (listed["ttlMs"], listed["cacheScope"], listed["resultType"]) == (0, "private", "complete"), listed
        for _what, raw in AMBIGUOUS:
            gw.send(raw.encode() + b"\n")
            reply = gw.read()
            assert_ambiguity_refused(reply, client_dir, 0)
            assert reply["id"] == 7, reply
        gw.send(b'[{"jsonrpc": "2.0", "id": 1, "id": 2, "method": "ping"}]\n')
        batch = gw.read()
        assert batch["id"] is None and batch["error"]["code"] == -32600, batch
        gw.send_json(request(9, "tools/call", {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}))
        reply = gw.read()
        assert reply["id"] == 9 and reply["result"]["content"][0]["text"] == "hello world\n", reply
    finally:
        gw.close()
