"""The egress proxy of one upstream server: HTTP CONNECT and plain forward, under web.fetch's rules.

An instance with `network: {allowed_domains: [...]}` reaches the outside only through this
proxy (its HTTP_PROXY/HTTPS_PROXY). It runs in the server's warden process (launcher.py),
confined like a fetch worker, never in the supervisor. Per connection:

* the request head is read (at most HEAD_CAP bytes, within HEAD_TIMEOUT_S);
* `CONNECT host:port` (a TLS tunnel; TLS itself runs end to end, so the certificate is
  checked by the server against the name it asked for) or an absolute `http://` URL (plain
  forward; `Proxy-*` headers dropped, Host set to the checked target, `Connection: close`);
* the target goes through web.fetch's own code: `connectors.http_fetch.urls.check_url` (schemes, every
  address form, allowed_domains, allowed_ports, blocked names), then the fetch worker's
  `PinnedBackend.connect_tcp` (the same host check, one lookup, every address checked with
  `guards.addresses`, metadata always blocked, the connection made to a checked address);
* refused: `403` with the rule (never an address the server did not send), and the operator
  log gets the detail; then bytes are copied both ways until either side closes.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from dataclasses import dataclass, field

import httpcore

from mcp_gateway.connectors.http_fetch.pinned_transport import FetchBudget, PinnedBackend, Resolver
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.urls import check_url
from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import ErrorCode, Refusal

HEAD_CAP = 16 * 1024
HEAD_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 15.0
CHUNK = 64 * 1024
MAX_CONNECTIONS = 64
_POLL_IN = select.POLLIN | select.POLLHUP | select.POLLERR


@dataclass
class _Conn:
    client: socket.socket
    opened: float
    head: bytearray = field(default_factory=bytearray)
    upstream: socket.socket | None = None

    def sockets(self) -> list[socket.socket]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]


class Refused(Exception):
    def __init__(self, status: int, reason: str, log_detail: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.log_detail = status, reason, log_detail


class Egress:
    """Serves the listener and its connections from the warden's poll loop (single-threaded)."""

    def __init__(self, listener: socket.socket, rules: HttpFetchSettings, resolver: Resolver, poller: select.poll,
                 instance: str) -> None:
        self.listener, self.rules, self.resolver, self.poller = listener, rules, resolver, poller
        self.instance = instance
        self.by_fd: dict[int, _Conn] = {}
        listener.setblocking(False)
        poller.register(listener, select.POLLIN)

    def owns(self, fd: int) -> bool:
        return fd == self.listener.fileno() or fd in self.by_fd

    def serve(self, fd: int) -> None:
        """Handle one readable descriptor; a failure costs that connection only, never the warden
        (whose death would take the server with it)."""
        try:
            self._handle(fd)
        except Exception as e:  # noqa: BLE001 - logged with its type; the proxy keeps serving
            _log(f"[egress {self.instance}] connection dropped after an unexpected {type(e).__name__}: {e}")
            conn = self.by_fd.get(fd)
            if conn is not None:
                self._close(conn)

    def _handle(self, fd: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
            return
        conn = self.by_fd[fd]
        if conn.upstream is None:
            self._read_head(conn)
        else:
            self._relay(conn, conn.client if fd == conn.client.fileno() else conn.upstream)

    def expire(self) -> None:
        """Close connections whose head did not arrive in time."""
        now = time.monotonic()
        for conn in {id(c): c for c in self.by_fd.values()}.values():
            if conn.upstream is None and now - conn.opened > HEAD_TIMEOUT_S:
                self._close(conn)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        if len(self.by_fd) >= 2 * MAX_CONNECTIONS:
            client.close()
            return
        client.setblocking(False)
        conn = _Conn(client, time.monotonic())
        self.by_fd[client.fileno()] = conn
        self.poller.register(client, _POLL_IN)

    def _read_head(self, conn: _Conn) -> None:
        data = _recv(conn.client)
        if data is None:
            return
        if not data:
            self._close(conn)
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end == -1:
            if len(conn.head) > HEAD_CAP:
                self._refuse(conn, Refused(431, f"request head over {HEAD_CAP} bytes"))
            return
        head, rest = bytes(conn.head[: end + 4]), bytes(conn.head[end + 4:])
        try:
            self._open(conn, head, rest)
        except Refused as e:
            self._refuse(conn, e)

    def _open(self, conn: _Conn, head: bytes, rest: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise Refused(400, "not an HTTP/1.x proxy request")
        method, target, version = parts
        if method == "CONNECT":
            parsed = self._check(f"https://{target}/", target)
            upstream = self._connect(parsed.host, parsed.port)
            conn.client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            first = rest
        else:
            if not target.lower().startswith("http://"):
                raise Refused(400, "a plain proxy request needs an absolute http:// URL (https goes through CONNECT)")
            parsed = self._check(target, target)
            upstream = self._connect(parsed.host, parsed.port)
            # Host is the checked target's (a different Host would reach another virtual host there).
            kept = [h for h in lines[1:] if h and not h.lower().startswith(("proxy-", "connection:", "host:"))]
            first = "\r\n".join([f"{method} {parsed.target} {version}", f"Host: {parsed.netloc}", *kept,
                                   "Connection: close", "", ""]).encode("latin-1") + rest
        upstream.setblocking(False)
        conn.upstream = upstream
        self.by_fd[upstream.fileno()] = conn
        self.poller.register(upstream, _POLL_IN)
        if first:
            upstream.setblocking(True)
            upstream.sendall(first)
            upstream.setblocking(False)

    def _check(self, url: str, shown: str):
        try:
            return check_url(url, self.rules)
        except GuardDenied as e:
            raise Refused(403, e.reason, f"{shown!r}: {e.reason}") from None

    def _connect(self, host: str, port: int) -> socket.socket:
        backend = PinnedBackend(self.rules, self.resolver, FetchBudget(time.monotonic() + CONNECT_TIMEOUT_S))
        try:
            stream = backend.connect_tcp(host, port)
        except Refusal as e:  # the host check, the lookup, an address check
            status = 403 if e.code == ErrorCode.SECURITY_ERROR else 502
            raise Refused(status, e.reason, e.log_detail) from None
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
            raise Refused(502, f"could not connect to {host} port {port}: {e}") from None
        sock = stream.get_extra_info("socket")
        sock.settimeout(None)
        return sock

    def _relay(self, conn: _Conn, source: socket.socket) -> None:
        data = _recv(source)
        if data is None:
            return
        sink = conn.upstream if source is conn.client else conn.client
        if not data or sink is None:
            self._close(conn)
            return
        try:
            # Blocking send: a slow reader holds this instance's egress only, not the gateway.
            sink.setblocking(True)
            sink.settimeout(CONNECT_TIMEOUT_S)
            sink.sendall(data)
            sink.setblocking(False)
        except OSError:
            self._close(conn)

    def _refuse(self, conn: _Conn, e: Refused) -> None:
        _log(f"[egress {self.instance}] refused ({e.status}): {e.log_detail or e.reason}")
        body = f"mcp-gateway egress refused this request: {e.reason}\n".encode()
        reply = (f"HTTP/1.1 {e.status} {'Forbidden' if e.status == 403 else 'Refused'}\r\n"
                 f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n").encode() + body
        try:
            conn.client.setblocking(True)
            conn.client.settimeout(1.0)
            conn.client.sendall(reply)
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        for s in conn.sockets():
            fd = s.fileno()
            if fd >= 0:
                self.by_fd.pop(fd, None)
                try:
                    self.poller.unregister(fd)
                except KeyError:
                    pass
                s.close()


def _recv(sock: socket.socket) -> bytes | None:
    """Up to CHUNK bytes; b"" at the end of the stream (or an error), None when nothing is there yet."""
    try:
        return sock.recv(CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _log(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass
