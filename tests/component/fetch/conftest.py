"""Loopback-only fixtures for the web.fetch tests: a threaded HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from mcp_gateway.config import ConnectorsSettings, GatewayConfig
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.worker import HttpFetchConnector
from mcp_gateway.workers.connector import CallLimits

# Collected only inside the namespaces test_fetch_netns.py creates (it sets MCPGW_IN_NETNS).
collect_ignore = [] if os.environ.get("MCPGW_IN_NETNS") == "1" else ["test_fetch_in_netns.py"]


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def add(self, key: str, n: int) -> None:
        with self.lock:
            self.sent[key] = self.sent.get(key, 0) + n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TestServer

    def log_message(self, *a) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - a test router
        stats = self.server.stats
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        stats.requests.append((self.path, {k: v for k, v in self.headers.items()}))
        if path == "/echo":
            body = json.dumps({"method": self.command, "headers": [[k, v] for k, v in self.headers.items()]})
            self._send(200, body.encode(), "application/json")
        elif path == "/redirect":
            status = int(q.get("status", "302"))
            extra = {"Location": q["to"]}
            if q.get("close"):
                extra["Connection"] = "close"
                self.close_connection = True
            self._send(status, b"", extra=extra)
        elif path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n == 0:
                self._send(200, b"end of chain")
            else:
                self._send(302, b"", extra={"Location": f"/chain/{n - 1}"})
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        elif path in ("/big", "/big-declared"):
            total = 50 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if path == "/big-declared":
                self.send_header("Content-Length", str(total))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.flush()
            chunk = b"\xab" * 16384
            sent = 0
            try:
                while sent < total:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    sent += len(chunk)
                    stats.add(path, len(chunk))
            except OSError:
                pass
        elif path == "/binary":
            self._send(200, bytes(range(256)) * 4, "image/png")
        elif path == "/latin1":
            self._send(200, "café déjà".encode("latin-1"), "text/html; charset=ISO-8859-1")
        elif path == "/nocharset-json":
            self._send(200, '{"k": "ünï"}'.encode(), "application/vnd.api+json")
        elif path == "/gzip":
            self._send(200, gzip.compress("zipped ✓".encode() * 10), "text/plain; charset=utf-8",
                       {"Content-Encoding": "gzip"})
        elif path == "/gzip-bomb":
            self._send(200, gzip.compress(b"\0" * (20 * 1024 * 1024)), "application/octet-stream",
                       {"Content-Encoding": "gzip"})
        elif path == "/bytes":
            # ?kind=controls|invalid|mostly-text&n=<bytes>&ctype=<Content-Type>
            n = int(q.get("n", "1000"))
            kind = q.get("kind", "controls")
            if kind == "controls":
                body = (bytes(range(1, 32)) * (n // 31 + 1))[:n]
            elif kind == "invalid":
                body = b"\xff" * n
            else:
                body = (b"plain text with one bad byte \xe9 here. " * (n // 30 + 1))[:n]
            self._send(200, body, q.get("ctype", "text/plain; charset=utf-8"))
        elif path == "/garbage":
            self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
            self.close_connection = True
        else:
            self._send(404, b"no such page")


class TestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.stats = Stats()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server():
    srv = TestServer()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def no_dns(host: str, port: int, timeout_s: float) -> list[str]:
    raise AssertionError(f"unexpected DNS lookup of {host!r}")


class RecordingResolver:
    """A fake DNS: a dict name -> list of answers (one per call; the last repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, timeout_s: float) -> list[str]:
        assert 0 < timeout_s <= 60, timeout_s
        self.calls.append((host, port))
        seq = self.answers.get(host)
        if seq is None:
            from mcp_gateway.ipc.errors import ErrorCode, Refusal

            raise Refusal(ErrorCode.NOT_FOUND, f"host {host!r} does not exist (test resolver)")
        n = sum(1 for h, _ in self.calls if h == host)
        return list(seq[min(n, len(seq)) - 1])


def make_settings(port: int | None = None, **kw) -> HttpFetchSettings:
    base = dict(enabled=True, allowed_domains=["127.0.0.1"], allow_internal_cidrs=["127.0.0.1/32"],
                allowed_ports=[80, 443] + ([port] if port else []))
    base.update(kw)
    return HttpFetchSettings(**base)


def make_connector(port: int | None = None, resolver=no_dns, **kw) -> HttpFetchConnector:
    cfg = GatewayConfig(connectors=ConnectorsSettings(http_fetch=make_settings(port, **kw)))
    return HttpFetchConnector(cfg, resolver=resolver)


LIMITS = CallLimits(timeout_ms=5000, max_bytes=1024 * 1024)
