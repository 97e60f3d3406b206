"""An httpx transport whose connections go only to addresses that were checked.

Pinning happens in the httpcore *network backend*: httpcore asks it for a TCP stream to
(host, port) and then does TLS (SNI and certificate check against `host`) and HTTP (Host
header from the URL) itself. Our backend re-checks the host and port against the settings,
resolves the name exactly once, checks every address with `guards.addresses`, and connects
to one of those checked addresses. There is no second lookup an attacker's DNS server could
answer differently (DNS rebinding), and no code path that connects to a name.

Every stream is wrapped so that each connect, TLS handshake, read and write waits at most
until the call's deadline.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import httpcore
import httpx
from httpcore._backends.sync import SyncStream  # httpcore is pinned; SyncStream is its socket stream

from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.urls import check_host, parse_host
from mcp_gateway.guards.addresses import parse_ip, refusal
from mcp_gateway.ipc.errors import ErrorCode, Refusal

# (ASCII host name, port, seconds left) -> address strings; raises Refusal. Called once per connection.
Resolver = Callable[[str, int, float], list[str]]


@dataclass
class ConnectRecord:
    host: str
    port: int
    resolved: list[str]
    address: str | None = None  # the address actually connected to


@dataclass
class FetchBudget:
    """The call's absolute deadline (time.monotonic), shared by every stream of one call."""

    deadline: float

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def clamp(self, timeout: float | None, exc: type[Exception]) -> float:
        left = self.remaining()
        if left <= 0:
            raise exc("the call's deadline has passed")
        return left if timeout is None else max(0.0, min(timeout, left))


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, budget: FetchBudget) -> None:
        self._inner = inner
        self._budget = budget
        self.bytes_read = 0

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, self._budget.clamp(timeout, httpcore.ReadTimeout))
        self.bytes_read += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._budget.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname,
                                      self._budget.clamp(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(inner, self._budget)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


@dataclass
class PinnedBackend(httpcore.NetworkBackend):
    settings: HttpFetchSettings
    resolver: Resolver
    budget: FetchBudget
    connects: list[ConnectRecord] = field(default_factory=list)

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        # Same host rules as the URL guard, on the host httpcore is really connecting to.
        name, literal = parse_host(f"[{host}]" if ":" in host else host)
        check_host(name, literal, port, self.settings)
        record = ConnectRecord(host=name, port=port, resolved=[])
        self.connects.append(record)
        if literal is not None:
            addresses = [str(literal)]
        else:
            left = self.budget.clamp(None, httpcore.ConnectTimeout)
            addresses = list(self.resolver(name, port, left))  # exactly once per connection
            if not addresses:
                raise Refusal(ErrorCode.NOT_FOUND, f"host {name!r} has no IPv4 or IPv6 address")
        record.resolved = addresses
        for a in addresses:  # every answer must pass, not just the one we would use
            verdict = refusal(a, self.settings.allow_internal_cidrs)
            if verdict is None:
                continue
            if literal is not None:
                raise Refusal(ErrorCode.SECURITY_ERROR, f"address {a} is blocked: {verdict.detail}")
            # The agent learns the rule, not what an internal name resolves to (no DNS
            # oracle); the operator's log gets the addresses.
            raise Refusal(ErrorCode.SECURITY_ERROR,
                          f"host {name!r} resolves to a blocked address (rule: {verdict.rule}); the gateway "
                          "log has the address",
                          log_detail=f"web.fetch host {name!r} resolved to {', '.join(addresses)}; "
                                     f"refused: {a} is {verdict.detail}")
        last: OSError | None = None
        for a in addresses:
            ip = parse_ip(a)
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.settimeout(self.budget.clamp(timeout, httpcore.ConnectTimeout))
                sock.connect((str(ip), port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except TimeoutError:
                sock.close()
                raise httpcore.ConnectTimeout(f"connecting to {a} port {port} timed out") from None
            except OSError as e:
                sock.close()
                last = e
                continue
            record.address = str(ip)
            return DeadlineStream(SyncStream(sock), self.budget)
        if last is not None and last.errno == errno.ECONNREFUSED:
            raise httpcore.ConnectError(f"connection refused by {name} port {port}")
        raise httpcore.ConnectError(f"could not connect to {name} port {port}: {last}")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[typing.Any] | None = None
                            ) -> httpcore.NetworkStream:
        raise Refusal(ErrorCode.SECURITY_ERROR, "unix sockets are never used by web.fetch")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (exception mapping, streaming) over a pool that uses our backend."""

    def __init__(self, backend: PinnedBackend, ssl_context: ssl.SSLContext) -> None:
        # Not calling super().__init__: it would build a pool with the default backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=4,
            max_keepalive_connections=4,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )
