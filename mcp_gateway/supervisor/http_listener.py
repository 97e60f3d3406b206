"""The HTTP listener: accepting connections within caps, surviving descriptor exhaustion.

Hypercorn's own serve loop accepts without limit and, when `accept` fails with EMFILE, logs a
traceback ten times a second while the backlog fills. This module replaces that loop (it
still hands each connection to hypercorn's `TCPServer`):

- `ConnectionLimits`: connections open overall and per client address (IPv6: per /64); one
  over either cap is closed at once (counted in `mcp_gateway_http_connections_refused_total`).
- Descriptor exhaustion: the listener keeps one reserve descriptor. On EMFILE/ENFILE it
  frees it, accepts and closes the waiting connection (the client gets a clean close, not a
  hang), takes the reserve back and backs off; one line is logged per episode.
- `GatewayH11Protocol`: HTTP/1.1 framing checks hypercorn does not make, decided from the
  headers alone, before the application runs and before `100 Continue` could be sent:
  Content-Length together with Transfer-Encoding (request smuggling) is 400, a declared
  body over the cap is 413; an h2c upgrade is honoured only when `server.http.http2` is on.
- `raise_nofile_limit`: the soft descriptor limit is raised to the hard one at start.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import resource
import socket
import ssl
from collections import Counter
from typing import Any

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState
from hypercorn.utils import parse_socket_addr

# Client-driven lines (refused connections) go through a throttled logger (see http.py).
log = logging.getLogger("mcp_gateway.http")

CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
# Exhaustion within this long of the last one is the same episode (logged once).
EPISODE_QUIET_S = 30.0
# Descriptors the supervisor needs besides HTTP connections (pools, audit, zygote sockets,
# the event loop, sessions' internal streams use none): the listener warns when
# max_connections would not leave this many.
DESCRIPTOR_HEADROOM = 128


class GatewayHypercornConfig(HypercornConfig):
    """Hypercorn's config plus what `GatewayH11Protocol` checks."""

    max_body_bytes: int = 4 * 1024 * 1024
    http2: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.framing_refused: Counter[str] = Counter()  # reason -> count (metrics)


# --- descriptors ---------------------------------------------------------------------------


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, e)
    return soft


class ReserveDescriptor:
    """One descriptor held back so that a full descriptor table can still shed a connection."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take()

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None  # still exhausted; the next episode tries again

    def free(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# --- connection caps -----------------------------------------------------------------------


class ConnectionLimits:
    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # reason -> count (metrics)
        self.shed = 0  # connections closed at once because descriptors ran out

    def admit(self, client: str) -> str | None:
        """None when a connection from `client` may be served (and is counted), else why not."""
        if self.open >= self.total:
            self.refused["max_connections"] += 1
            return f"{self.open} connections are open (server.http.max_connections = {self.total})"
        if self._by_client[client] >= self.per_client:
            self.refused["per_client"] += 1
            return (f"{self._by_client[client]} connections are open from this address "
                    f"(server.http.max_connections_per_client = {self.per_client})")
        self.open += 1
        self._by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


# --- HTTP/1.1 framing, before the application ----------------------------------------------


def framing_refusal(headers: list[tuple[bytes, bytes]], max_body: int) -> tuple[int, str] | None:
    """(status, description) for a request whose headers alone condemn it, else None."""
    lengths = [v for k, v in headers if k.lower() == b"content-length"]
    chunked = any(k.lower() == b"transfer-encoding" for k, _ in headers)
    if lengths and chunked:
        return 400, "Content-Length together with Transfer-Encoding is refused (ambiguous framing)"
    if lengths:
        try:
            declared = int(lengths[0])  # h11 has already refused malformed or conflicting values
        except ValueError:
            return 400, "invalid Content-Length"
        if declared > max_body:
            return 413, f"request body over {max_body} bytes (server.http.max_body_bytes)"
    return None


class GatewayH11Protocol(H11Protocol):
    config: GatewayHypercornConfig
    _held: bytes = b""

    async def _send_h11_event(self, event: Any) -> None:
        """The head of a response with a Content-Length goes out with its body, in one write
        (hypercorn writes each part on its own: one more syscall, and one more wake-up of the
        client, per answer). A streamed response (an SSE stream, no length) is sent as it comes."""
        if not (self._held or isinstance(event, h11.Response)
                and any(k.lower() == b"content-length" for k, _ in event.headers)):
            await super()._send_h11_event(event)
            return
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""
        if isinstance(event, h11.Response):
            self._held = data
            return
        held, self._held = self._held, b""
        await self.send(RawData(data=held + data))

    async def _check_protocol(self, event: h11.Request) -> None:
        if self.config.http2:  # h2c upgrade / prior knowledge only when configured
            await super()._check_protocol(event)

    async def _create_stream(self, request: h11.Request) -> None:
        refusal = framing_refusal(list(request.headers), self.config.max_body_bytes)
        if refusal is None:
            await super()._create_stream(request)
            return
        status, description = refusal
        self.config.framing_refused["framing" if status == 400 else "body_too_large"] += 1
        # Answering now also withdraws the 100 Continue the client may be waiting for.
        body = json.dumps({"error": "bad_request" if status == 400 else "payload_too_large",
                           "error_description": description}).encode()
        await self._send_h11_event(h11.Response(status_code=status, headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), *self.config.response_headers("h11")]))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())
        await self.send(Closed())


class GatewayProtocols(ProtocolWrapper):
    """Hypercorn's protocol switch, with `GatewayH11Protocol` for HTTP/1.1.

    Takes ProtocolWrapper's arguments positionally; the first nine are H11Protocol's."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if type(self.protocol) is H11Protocol:  # same arguments, the gateway's checks
            self.protocol = GatewayH11Protocol(*args[:9])


class GatewayConnection(TCPServer):
    """Hypercorn's connection handler with `GatewayProtocols` (its `run`, but that one name)."""

    async def run(self) -> None:
        try:
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                return
            alpn_protocol = self.stream.selected_alpn_protocol()
            sock = self.stream.transport_stream.socket
            tls = True
        except AttributeError:  # not TLS
            alpn_protocol = "http/1.1"
            sock = self.stream.socket
            tls = False
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = GatewayProtocols(self.app, self.config, self.context, task_group,
                                                 ConnectionState(self.state), tls, client, server,
                                                 self.protocol_send, alpn_protocol)
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()


# --- the accept loop -----------------------------------------------------------------------


def client_key(address: Any) -> str:
    """What the per-client cap counts: the IPv4 address, or the IPv6 /64 (one subscriber's
    usual allocation: an attacker with a /64 has 2**64 addresses, not one)."""
    host = str(address[0]) if isinstance(address, tuple) and address else "?"
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Listener:
    """Accepts on one listening socket and serves each admitted connection in `nursery`."""

    def __init__(self, sock: socket.socket, app: AppWrapper, config: GatewayHypercornConfig,
                 context: WorkerContext, limits: ConnectionLimits, reserve: ReserveDescriptor,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.sock = sock
        self.trio_sock = trio.socket.from_stdlib_socket(sock)
        self.app = app
        self.config = config
        self.context = context
        self.limits = limits
        self.reserve = reserve
        self.ssl_context = ssl_context
        self._last_exhaustion = -EPISODE_QUIET_S
        self._episode_logged = False

    async def serve(self, nursery: trio.Nursery) -> None:
        backoff = 0.0
        while True:
            try:
                conn, address = await self.trio_sock.accept()
            except OSError as e:
                if e.errno not in CAPACITY_ERRNOS:
                    raise
                now = trio.current_time()
                if now - self._last_exhaustion >= EPISODE_QUIET_S:  # a new episode, not a flap
                    self._episode_logged = True
                    log.error("HTTP: accept failed with %s (%s): shedding new connections until descriptors "
                              "free up (%d connection(s) open; raise the open-file limit or lower "
                              "server.http.max_connections)", errno.errorcode[e.errno], os.strerror(e.errno),
                              self.limits.open)
                self._last_exhaustion = now
                self._shed_one()
                backoff = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, backoff * 2))
                await trio.sleep(backoff)
                continue
            if backoff:
                backoff = 0.0
                if self._episode_logged:
                    self._episode_logged = False
                    log.warning("HTTP: accepting again after descriptor exhaustion (%d connection(s) shed "
                                "so far)", self.limits.shed)
            client = client_key(address)
            refusal = self.limits.admit(client)
            if refusal is not None:
                log.warning("HTTP: refused a connection from %s: %s", client, refusal)
                conn.close()
                continue
            nursery.start_soon(self._serve_one, conn, client)

    def _shed_one(self) -> None:
        """Close the connection waiting at the head of the backlog, using the reserve descriptor."""
        self.reserve.free()
        try:
            conn, _ = self.sock.accept()  # the listening socket is non-blocking (trio set it so)
            conn.close()
            self.limits.shed += 1
        except OSError:
            pass  # nothing waiting, or still no descriptor
        finally:
            self.reserve.take()

    async def _serve_one(self, conn: trio.socket.SocketType, client: str) -> None:
        try:
            stream: Any = trio.SocketStream(conn)
            if self.ssl_context is not None:
                stream = trio.SSLStream(stream, self.ssl_context, server_side=True, https_compatible=True)
            try:
                await GatewayConnection(self.app, self.config, self.context, {}, stream)
            except Exception as e:  # one connection's failure never stops the listener
                if not _is_teardown(e):
                    log.exception("HTTP: the connection from %s failed", client)
            finally:
                await trio.aclose_forcefully(stream)
        finally:
            self.limits.release(client)


# A connection torn down while a reply was being written (by the client, or by the server's own
# timeout at the same moment): nothing is wrong, and there is no one left to answer.
_TEARDOWN = (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, OSError)


def _is_teardown(e: BaseException) -> bool:
    if isinstance(e, BaseExceptionGroup):
        return all(_is_teardown(x) for x in e.exceptions)
    return isinstance(e, _TEARDOWN)

