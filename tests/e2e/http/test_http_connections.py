"""Connections and framing: slow bodies, descriptor exhaustion, caps, CL+TE, 100 Continue, h2c, Host."""

import resource
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.http_gateway import ACCEPT, HttpGateway, McpHttp, http_config, scrape

PRLIMIT = shutil.which("prlimit")
needs_prlimit = pytest.mark.skipif(PRLIMIT is None, reason="prlimit (util-linux) is not installed")


@pytest.fixture(autouse=True)
def _room_for_many_sockets():
    """This test process itself holds ~1,100 client sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _hostport(gw: HttpGateway) -> tuple[str, int]:
    host, port = gw.base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _raw(gw: HttpGateway, data: bytes, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(_hostport(gw), timeout=10, source_address=(source, 0))
    s.sendall(data)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:  # a timeout propagates: the server held the connection
            break
        if not chunk:
            break
        out += chunk
    return out


def _slow_post(gw: HttpGateway, source: str) -> socket.socket | None:
    """Complete headers, one byte of a 1,000-byte body, then nothing. None if refused at connect."""
    host, port = _hostport(gw)
    head = (f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: {ACCEPT}\r\nContent-Length: 1000\r\n\r\n{{").encode()
    try:
        return _raw(gw, head, source)
    except OSError:
        return None


def _healthy(gw: HttpGateway) -> bool:
    try:
        return httpx.get(gw.base + "/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@needs_prlimit
def test_slow_bodies_from_one_address_never_stop_the_listener(gw_dir):
    """1,000 trickled bodies at 1,024 open files: capped per address, timed out, /healthz stays up."""
    config = http_config(gw_dir, http={"body_timeout_s": 5})
    with HttpGateway(config, prefix=[PRLIMIT, "--nofile=1024:1024"]) as gw:
        slow = [_slow_post(gw, "127.0.0.2") for _ in range(1000)]
        try:
            # Served from another address while the flood holds its share.
            assert _healthy(gw)
            with McpHttp(gw.url) as c:
                c.initialize()
                assert not c.call("fs.readFile", {"path": "hello.txt"})["isError"]
            m = scrape(gw.base)
            assert m[("mcp_gateway_http_connections_refused_total", (("reason", "per_client"),))] > 0
            # The flood's cap, plus at most this test's three other connections (closed, but maybe
            # not yet seen closed by the server) and this scrape.
            assert m[("mcp_gateway_http_connections", ())] <= 256 + 4
            # A held slow body is answered 408 once the body timeout is over, and closed.
            held = next(s for s in slow if s is not None)
            held.settimeout(30)
            assert _read_all(held).startswith(b"HTTP/1.1 408")
        finally:
            for s in slow:
                if s is not None:
                    s.close()
    err = gw.stderr()
    assert "the open-file limit is 1024" in err  # warned at start: 1,024 connections do not fit
    assert "Traceback" not in err
    assert err.count("refused a connection from") <= 6  # throttled, not one line per connection


@needs_prlimit
def test_the_listener_survives_descriptor_exhaustion(gw_dir):
    """With caps above the open-file limit, accept hits EMFILE: shed, log once, recover."""
    config = http_config(gw_dir, http={"body_timeout_s": 60, "max_connections": 5000,
                                       "max_connections_per_client": 5000})
    with HttpGateway(config, prefix=[PRLIMIT, "--nofile=1024:1024"]) as gw:
        slow = [_slow_post(gw, "127.0.0.2") for _ in range(1100)]
        try:
            _wait(lambda: "EMFILE" in gw.stderr(), "accept never ran out of descriptors")
            for s in slow[:300]:  # the clients give up: descriptors come back
                if s is not None:
                    s.close()
            _wait(lambda: _healthy(gw), "/healthz never came back once descriptors were free")
            m = scrape(gw.base)
            assert m[("mcp_gateway_http_connections_refused_total", (("reason", "descriptors"),))] > 0
            with McpHttp(gw.url) as c:
                c.initialize()
                assert not c.call("fs.readFile", {"path": "hello.txt"})["isError"]
        finally:
            for s in slow:
                if s is not None:
                    s.close()
    err = gw.stderr()
    assert err.count("accept failed with EMFILE") == 1, err[-3000:]
    assert "accepting again" in err
    assert "Traceback" not in err


def test_connections_over_the_total_cap_are_closed_at_accept(gw_dir):
    config = http_config(gw_dir, http={"max_connections": 4, "body_timeout_s": 30})
    with HttpGateway(config) as gw:
        held = [_slow_post(gw, "127.0.0.3") for _ in range(4)]
        try:
            _wait(lambda: not _healthy(gw), "a fifth connection was served", timeout=5)
            extra = _slow_post(gw, "127.0.0.4")
            assert extra is None or _read_all(extra) == b""  # closed without an answer
        finally:
            for s in held:
                if s is not None:
                    s.close()
        _wait(lambda: _healthy(gw), "never served again after the held connections closed")
        m = scrape(gw.base)
        assert m[("mcp_gateway_http_connections_refused_total", (("reason", "max_connections"),))] >= 1


def test_headers_that_never_complete_are_cut_off(gw):
    """Slow headers: the connection is closed by the keep-alive timeout, never held."""
    host, port = _hostport(gw)
    s = _raw(gw, f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: appl".encode())
    s.settimeout(30)  # a TimeoutError here fails the test: the server held the connection
    try:
        assert s.recv(4096) == b""  # closed without an answer
    except ConnectionResetError:
        pass  # closed too
    finally:
        s.close()


def test_content_length_with_transfer_encoding_is_refused(gw):
    host, port = _hostport(gw)
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    s = _raw(gw, (f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  f"Accept: {ACCEPT}\r\nContent-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
                  f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n")
    answer = _read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Transfer-Encoding" in answer and answer.count(b"HTTP/1.1") == 1


def test_no_100_continue_before_413(gw):
    host, port = _hostport(gw)
    s = _raw(gw, (f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  f"Accept: {ACCEPT}\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n").encode())
    answer = _read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer


def test_h2c_is_not_served_unless_configured(gw):
    host, port = _hostport(gw)
    upgrade = (f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n").encode()
    s = _raw(gw, upgrade)
    s.settimeout(5)
    first = s.recv(4096)
    s.close()
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    s = _raw(gw, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s.settimeout(5)
    answer = _read_all(s)
    s.close()
    assert not answer or answer.startswith(b"HTTP/1.1 4"), answer[:200]  # never an HTTP/2 SETTINGS frame


def test_h2c_when_configured(gw_dir):
    with HttpGateway(http_config(gw_dir, http={"http2": True})) as gw:
        host, port = _hostport(gw)
        s = _raw(gw, (f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n").encode())
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
        s.close()


def test_healthz_checks_the_host_header(gw):
    assert httpx.get(gw.base + "/healthz", headers={"host": "rebind.attacker.example"}).status_code == 421
    assert httpx.get(gw.base + "/healthz").status_code == 200


def test_bad_tokens_log_a_bounded_number_of_lines(gw_dir):
    from tests.support.http_gateway import sha256_hex

    config = http_config(gw_dir, http={"auth": {"bearer_tokens": [{"actor": "a", "sha256": sha256_hex("good")}]}})
    with HttpGateway(config) as gw, httpx.Client() as client:
        for i in range(60):
            r = client.post(gw.url, headers={"authorization": f"Bearer wrong-{i}"}, json={})
            assert r.status_code == 401
            # Refused before its body was read: the connection is closed, and the client told so.
            assert r.headers["connection"] == "close"
    assert 1 <= gw.stderr().count("invalid bearer token") <= 5


@pytest.fixture(scope="module")
def gw(module_gw_dir):
    with HttpGateway(http_config(module_gw_dir)) as g:
        yield g


@needs_prlimit
def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(gw_dir):
    with HttpGateway(http_config(gw_dir), prefix=[PRLIMIT, "--nofile=1024:4096"]) as gw:
        limits = Path(f"/proc/{gw.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == ["4096", "4096"], line
    assert "open-file limit is" not in gw.stderr()  # 1024 connections and the headroom fit in 4096
