"""HttpFetchConnector.call() in-process against real HTTP servers on 127.0.0.1 (loopback only)."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest

from mcp_gateway.connectors.http_fetch.tools import FetchArgs
from mcp_gateway.ipc.errors import Refusal
from mcp_gateway.workers.connector import CallLimits

from .conftest import LIMITS, RecordingResolver, make_connector, no_dns


def fetch(conn, url, headers=None, limits=LIMITS):
    return conn.call("fetch", FetchArgs(url=url, headers=headers or {}), limits)


def refused(conn, url, code="SECURITY_ERROR", limits=LIMITS, headers=None):
    with pytest.raises(Refusal) as e:
        fetch(conn, url, headers=headers, limits=limits)
    assert e.value.code == code, e.value.reason
    return e.value.reason


def test_simple_get_and_header_policy(server):
    conn = make_connector(server.port)
    sent = {
        "AuThOrIzAtIoN": "Bearer s3cret", "cookie": "sid=1", "X-aPi-KeY": "k", "x_auth_token": "t",
        "Proxy-Authorization": "Basic x", "User-Agent": "evil-agent", "Accept": "application/json",
        "X-Forwarded-For": "127.0.0.1", "X-Custom": "dropped", "Connection": "Upgrade", "Upgrade": "h2c",
        "X-Http-Method-Override": "DELETE", "X-Original-Host": "internal", "Client-IP": "10.0.0.1",
        "X-Remote-Addr": "10.0.0.1", "Via": "1.1 trusted-proxy", "X-Envoy-Internal": "true",
        "DPoP": "eyJ", "X-Client-Cert": "MII", "X-SSL-Client-Cert": "MII", "If-None-Match": '"abc"',
    }
    r = fetch(conn, server.url("/echo"), headers=sent)
    assert r["status"] == 200 and r["encoding"] == "text"
    assert r["url"] == server.url("/echo")
    seen = json.loads(r["body"])
    assert seen["method"] == "GET"
    names = {k.lower(): v for k, v in seen["headers"]}
    # Exactly the allowlisted caller headers arrive, plus what the gateway itself sets.
    assert set(names) == {"host", "accept", "if-none-match", "user-agent", "accept-encoding", "connection"}, names
    assert names["user-agent"] == conn.settings.user_agent
    assert names["accept"] == "application/json"
    assert names["host"] == f"127.0.0.1:{server.port}"
    assert "s3cret" not in r["body"]
    assert conn.last_backend.connects[0].address == "127.0.0.1"


@pytest.mark.parametrize("value", [" application/json", "application/json ", "\tx"])
def test_spaced_header_value_refused_before_connecting(server, value):
    conn = make_connector(server.port)
    reason = refused(conn, server.url("/echo"), code="VALIDATION_ERROR", headers={"Accept": value})
    assert "whitespace" in reason
    assert conn.last_backend is None
    assert server.stats.requests == []


def test_literal_refused_without_dns_or_connection(server):
    conn = make_connector(server.port, allowed_domains=["*"])
    for url in ("http://127.0.0.2/", "http://0x7f000002/", "http://[::1]/", "http://169.254.169.254/",
                "http://2852039166/", "http://[::ffff:7f00:2]/", "http://10.0.0.1/", "http://localhost/"):
        refused(conn, url)  # no_dns would raise AssertionError (not Refusal) if consulted
        assert conn.last_backend is None or conn.last_backend.connects == []


@pytest.mark.parametrize("to,why", [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://127.0.0.2:{port}/echo", "loopback"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:{port}/_x", "scheme"),
    ("http://[::1]:{port}/echo", "loopback"),
    ("http://localhost:{port}/echo", "loopback"),
    ("http://user@127.0.0.1:{port}/echo", "userinfo"),
    ("http://127.0.0.1:22/", "port 22"),
    ("http://metadata.google.internal/", "metadata"),
    ("http://0x7f.2:{port}/", "loopback"),
])
def test_redirect_to_forbidden_target(server, to, why):
    conn = make_connector(server.port)
    target = to.format(port=server.port)
    from urllib.parse import quote
    reason = refused(conn, server.url("/redirect?to=" + quote(target, safe="")))
    assert why in reason and "redirect" in reason
    # Only the first hop reached the server.
    assert len(server.stats.requests) == 1


def test_relative_redirect_followed(server):
    conn = make_connector(server.port)
    r = fetch(conn, server.url("/redirect?to=/chain/2&status=301"))
    assert r["status"] == 200 and r["body"] == "end of chain"
    assert r["url"] == server.url("/chain/0")


def test_redirect_chain_capped(server):
    conn = make_connector(server.port, max_redirects=3)
    assert fetch(conn, server.url("/chain/3"))["body"] == "end of chain"
    reason = refused(conn, server.url("/chain/4"))
    assert "max_redirects" in reason
    conn0 = make_connector(server.port, max_redirects=0)
    refused(conn0, server.url("/chain/1"))


def test_slow_body_times_out_near_deadline(server):
    conn = make_connector(server.port)
    t0 = time.monotonic()
    with pytest.raises(Refusal) as e:
        fetch(conn, server.url("/slow"), limits=CallLimits(timeout_ms=1000, max_bytes=1 << 20))
    elapsed = time.monotonic() - t0
    assert e.value.code == "TIMEOUT"
    assert 0.7 <= elapsed <= 1.2, elapsed


def test_big_streamed_body_cut_at_cap(server):
    conn = make_connector(server.port)
    cap = 1024 * 1024
    refused(conn, server.url("/big"), code="RESULT_TOO_LARGE", limits=CallLimits(10_000, cap))
    assert conn.last_backend.connects[0].address == "127.0.0.1"
    time.sleep(0.2)
    sent = server.stats.sent.get("/big", 0)
    # What the server got out is the cap plus what fits in the two loopback socket buffers:
    # far from the 50 MB body.
    assert sent < cap + 12 * 1024 * 1024, sent


def test_big_declared_body_refused_before_reading(server):
    conn = make_connector(server.port)
    reason = refused(conn, server.url("/big-declared"), code="RESULT_TOO_LARGE",
                     limits=CallLimits(10_000, 1024 * 1024))
    assert "declares" in reason


def test_gzip_decoded_and_bomb_capped(server):
    conn = make_connector(server.port)
    r = fetch(conn, server.url("/gzip"))
    assert r["encoding"] == "text" and r["body"] == "zipped ✓" * 10
    assert "content-encoding" not in r["headers"]
    refused(conn, server.url("/gzip-bomb"), code="RESULT_TOO_LARGE", limits=CallLimits(10_000, 1 << 20))


def test_binary_body_base64(server):
    conn = make_connector(server.port)
    r = fetch(conn, server.url("/binary"))
    assert r["encoding"] == "base64"
    assert base64.b64decode(r["body"]) == bytes(range(256)) * 4
    assert r["headers"]["content-type"] == "image/png"


def test_charset_decoding(server):
    conn = make_connector(server.port)
    r = fetch(conn, server.url("/latin1"))
    assert r["encoding"] == "text" and r["body"] == "café déjà"
    r = fetch(conn, server.url("/nocharset-json"))
    assert r["encoding"] == "text" and "ünï" in r["body"]


def test_status_passed_through(server):
    r = fetch(make_connector(server.port), server.url("/missing"))
    assert r["status"] == 404 and r["body"] == "no such page"


def test_closed_port_is_upstream_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    conn = make_connector(port)
    reason = refused(conn, f"http://127.0.0.1:{port}/", code="UPSTREAM_ERROR")
    assert "refused" in reason


def test_garbage_response_is_upstream_error(server):
    refused(make_connector(server.port), server.url("/garbage"), code="UPSTREAM_ERROR")


def test_tls_failure_is_upstream_error(server):
    # An https URL to a plain-HTTP server: the handshake fails.
    conn = make_connector(server.port)
    refused(conn, f"https://127.0.0.1:{server.port}/echo", code="UPSTREAM_ERROR")


def test_port_not_allowed(server):
    conn = make_connector(None)  # the ephemeral port is not in allowed_ports
    assert "port" in refused(conn, server.url("/echo"))


def test_name_not_found():
    res = RecordingResolver({})
    conn = make_connector(None, resolver=res, allowed_domains=["*.example.com"])
    reason = refused(conn, "http://nx.example.com/", code="NOT_FOUND")
    assert "does not exist" in reason
    assert res.calls == [("nx.example.com", 80)]


def test_mixed_answers_refused_before_connecting(server):
    res = RecordingResolver({"mixed.example.com": [["93.184.215.14", "127.0.0.1"]]})
    conn = make_connector(server.port, resolver=res, allowed_domains=["*.example.com"],
                          allow_internal_cidrs=[])
    with pytest.raises(Refusal) as e:
        fetch(conn, f"http://mixed.example.com:{server.port}/echo")
    # The agent learns the rule, never what the name resolves to (no DNS oracle); the log does.
    assert e.value.code == "SECURITY_ERROR"
    assert "loopback" in e.value.reason and "127.0.0.1" not in e.value.reason
    assert "93.184.215.14, 127.0.0.1" in e.value.log_detail and "loopback 127.0.0.0/8" in e.value.log_detail
    assert res.calls == [("mixed.example.com", server.port)]
    assert conn.last_backend.connects[0].address is None
    assert server.stats.requests == []


def test_name_resolving_to_metadata_refused_even_if_opened(server):
    res = RecordingResolver({"meta.example.com": [["169.254.169.254"]]})
    conn = make_connector(server.port, resolver=res, allowed_domains=["*.example.com"],
                          allow_internal_cidrs=["169.254.0.0/16"])
    assert "metadata" in refused(conn, f"http://meta.example.com:{server.port}/")


def test_dns_rebinding_resolves_once_and_connects_to_checked_address(server):
    # First answer is the opened 127.0.0.1 (standing in for a public address); every later
    # answer is 127.0.0.2 (not opened). The fetch must use the first answer for the whole
    # connection: exactly one lookup, and the socket goes to the checked address.
    res = RecordingResolver({"rebind.example.com": [["127.0.0.1"], ["127.0.0.2"]]})
    conn = make_connector(server.port, resolver=res, allowed_domains=["rebind.example.com"])
    r = fetch(conn, f"http://rebind.example.com:{server.port}/echo")
    assert r["status"] == 200
    assert res.calls == [("rebind.example.com", server.port)]
    [rec] = conn.last_backend.connects
    assert rec.resolved == ["127.0.0.1"] and rec.address == "127.0.0.1"
    # Host header keeps the name, not the pinned address.
    names = {k.lower(): v for k, v in json.loads(r["body"])["headers"]}
    assert names["host"] == f"rebind.example.com:{server.port}"

    # A redirect that forces a new connection to the same name: the second lookup now says
    # 127.0.0.2, which is checked (and refused) before any connect.
    res2 = RecordingResolver({"rebind.example.com": [["127.0.0.1"], ["127.0.0.2"]]})
    conn2 = make_connector(server.port, resolver=res2, allowed_domains=["rebind.example.com"])
    from urllib.parse import quote
    url = f"http://rebind.example.com:{server.port}/redirect?close=1&to=" + quote("/echo", safe="")
    with pytest.raises(Refusal) as e:
        fetch(conn2, url)
    assert e.value.code == "SECURITY_ERROR" and "127.0.0.2" in e.value.log_detail
    assert len(res2.calls) == 2
    assert [c.address for c in conn2.last_backend.connects] == ["127.0.0.1", None]


def test_keepalive_reuses_checked_connection(server):
    res = RecordingResolver({"ka.example.com": [["127.0.0.1"], ["127.0.0.2"]]})
    conn = make_connector(server.port, resolver=res, allowed_domains=["ka.example.com"])
    r = fetch(conn, f"http://ka.example.com:{server.port}/redirect?to=/echo")
    assert r["status"] == 200
    assert len(res.calls) == len(conn.last_backend.connects) == 1


def test_no_environment_proxy(server, monkeypatch):
    # A proxy in the environment must never be used (trust_env=False).
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.9:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.9:1")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.9:1")
    r = fetch(make_connector(server.port), server.url("/echo"))
    assert r["status"] == 200


def test_wrong_tool_and_bad_header_value(server):
    conn = make_connector(server.port)
    with pytest.raises(Refusal) as e:
        conn.call("readFile", FetchArgs(url=server.url("/")), LIMITS)
    assert e.value.code == "VALIDATION_ERROR"
    refused(conn, server.url("/echo"), code="VALIDATION_ERROR", headers={"Accept": "a\r\nHost: evil"})


def test_sandbox_profile():
    conn = make_connector(8080)
    p = conn.sandbox_profile()
    import certifi
    assert certifi.where() in p.read_paths
    assert "/etc/resolv.conf" in p.read_paths or not __import__("os").path.exists("/etc/resolv.conf")
    assert set(p.connect_ports) == {80, 443, 8080}
    assert set(p.socket_families) == {socket.AF_INET, socket.AF_INET6}


def test_no_dns_helper_really_fails():
    with pytest.raises(AssertionError):
        no_dns("x", 1, 1.0)


# --- the answer: body carried once, bounded by max_bytes after JSON encoding -------------


def answer_size(result: dict) -> int:
    """Bytes of the MCP answer the gateway builds from this worker result (body as the text)."""
    import msgspec

    from mcp_gateway.connectors.http_fetch.tools import FETCH as spec
    structured = spec.structured(result)
    assert "body" not in structured
    return len(msgspec.json.encode({
        "content": [{"type": "text", "text": spec.render_text(result)}], "structuredContent": structured,
        "isError": False, "_meta": {"io.mcp-gateway/request_id": "0" * 36}}))


def test_ten_megabyte_control_character_body_within_the_cap(server):
    conn = make_connector(server.port)
    n = 10_000_000
    cap = 16 * 1024 * 1024
    r = fetch(conn, server.url(f"/bytes?kind=controls&n={n}"), limits=CallLimits(20_000, cap))
    # As JSON text it would be ~6 bytes a character (60 MB); as base64, 4 per 3.
    assert r["encoding"] == "base64" and r["size"] == n
    assert base64.b64decode(r["body"]) == (bytes(range(1, 32)) * (n // 31 + 1))[:n]
    assert answer_size(r) <= cap


def test_control_character_body_over_the_encoded_cap_refused_clearly(server):
    conn = make_connector(server.port)
    n = 10_000_000
    reason = refused(conn, server.url(f"/bytes?kind=controls&n={n}"), code="RESULT_TOO_LARGE",
                     limits=CallLimits(20_000, 10 * 1024 * 1024))
    assert "bytes of JSON" in reason and "base64" in reason


def test_invalid_utf8_at_seventy_percent_of_the_cap_comes_back_as_base64(server):
    conn = make_connector(server.port)
    cap = 1 << 20
    n = int(cap * 0.7)
    r = fetch(conn, server.url(f"/bytes?kind=invalid&n={n}"), limits=CallLimits(10_000, cap))
    assert r["encoding"] == "base64" and r["size"] == n and "lossy" not in r
    assert base64.b64decode(r["body"]) == b"\xff" * n
    assert answer_size(r) <= cap


def test_text_with_a_few_invalid_bytes_stays_text_flagged_lossy(server):
    conn = make_connector(server.port)
    r = fetch(conn, server.url("/bytes?kind=mostly-text&n=4000"))
    assert r["encoding"] == "text" and r["lossy"] is True and "\ufffd" in r["body"]
    assert r["size"] == 4000


@pytest.mark.parametrize("ctype", ["text/plain; charset=hex", "text/plain; charset=rot13",
                                   "text/plain; charset=utf-16", "text/plain; charset=nonsense"])
def test_odd_charsets_never_crash(server, ctype):
    from urllib.parse import quote
    r = fetch(make_connector(server.port), server.url(f"/bytes?kind=mostly-text&n=999&ctype={quote(ctype)}"))
    assert r["encoding"] in ("text", "base64") and r["size"] == 999


@pytest.mark.parametrize("kind", ["controls", "invalid", "mostly-text"])
def test_answer_bounded_at_every_size_near_the_cap(server, kind):
    conn = make_connector(server.port)
    cap = 64 * 1024
    for n in (cap // 2, int(cap * 0.74), int(cap * 0.76), cap - 600, cap - 1, cap):
        try:
            r = fetch(conn, server.url(f"/bytes?kind={kind}&n={n}"), limits=CallLimits(5000, cap))
        except Refusal as e:
            assert e.code == "RESULT_TOO_LARGE", e.reason
            continue
        assert answer_size(r) <= cap, (kind, n)


@pytest.mark.parametrize("to", ["http://[::ffff:169.254.169.254]/latest/meta-data/", "http://[::ffff:a9fe:a9fe]/",
                                "http://[64:ff9b::a9fe:a9fe]/", "http://[::ffff:10.0.0.5]/",
                                "http://[2002:a9fe:a9fe::1]/", "http://[::ffff:100.100.100.200]/"])
def test_redirect_to_mapped_internal_refused_with_ipv6_all_open(server, to):
    from urllib.parse import quote
    conn = make_connector(server.port, allow_internal_cidrs=["127.0.0.1/32", "::/0"])
    reason = refused(conn, server.url("/redirect?to=" + quote(to, safe="")))
    assert "redirect" in reason and ("metadata" in reason or "private" in reason), reason
    assert len(server.stats.requests) == 1


def test_structured_content_is_exactly_what_the_output_schema_describes(server):
    import jsonschema

    from mcp_gateway.connectors.http_fetch.tools import FETCH as spec
    schema = {**spec.output_schema, "additionalProperties": False}  # nothing undescribed either
    conn = make_connector(server.port)
    for path in ("/echo", "/binary", "/latin1", "/bytes?kind=mostly-text&n=500", "/bytes?kind=controls&n=500",
                 "/gzip", "/missing"):
        jsonschema.validate(spec.structured(fetch(conn, server.url(path))), schema)


def test_unreadable_hosts_file_fails_closed(tmp_path):
    from mcp_gateway.connectors.http_fetch.resolver import DnsResolver, hosts_addresses

    assert hosts_addresses("x.example.com", str(tmp_path / "missing")) == []
    resolver = DnsResolver(hosts_file=str(tmp_path), resolv_conf=str(tmp_path / "missing"))  # a directory
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"])
    assert "hosts file" in refused(conn, "http://x.example.com/", code="UPSTREAM_ERROR")
