"""The gateway's ASGI app: one small check per concern, in the order http.py's docstring lists.

`GatewayApp` routes (Host, /healthz, Origin, OAuth discovery, bearer token, /metrics, the MCP
path); `McpEndpoint` serves the MCP path (the drain gate and in-flight count, the body within
its cap and deadline, ambiguous keys, then the hot route or the SDK, with session admission).
The authenticated actor becomes the message's caller (`fastpath.act_as`), the one source of
identity the hot route and the SDK's handlers both read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import trio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers

from mcp_gateway.config import GatewayConfig
from mcp_gateway.supervisor.fastpath import act_as
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.http_auth import OriginPolicy, TokenTable, bearer_token
from mcp_gateway.supervisor.http_batch import as_batch, batches_allowed, serve_batch
from mcp_gateway.supervisor.http_hot import HttpHotRoute
from mcp_gateway.supervisor.http_sessions import SessionBook, SessionRefused, current_reservation
from mcp_gateway.supervisor.mcp_server import REQUEST_CLOSED_KEY
from mcp_gateway.supervisor.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from mcp_gateway.supervisor.modern_protocol import refusal as key_refusal
from mcp_gateway.supervisor.pool import WorkerPool

# Lines a client can cause at will, throttled (log_throttle.py).
http_log = logging.getLogger("mcp_gateway.http")

REALM = "mcp-gateway"
RawHeaders = list[tuple[bytes, bytes]]
CLOSE: RawHeaders = [(b"connection", b"close")]


# --- small ASGI helpers --------------------------------------------------------------------


async def respond(send: Any, status: int, body: bytes, content_type: str = "application/json",
                  extra: RawHeaders | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def _closing(extra: RawHeaders | None) -> RawHeaders:
    """A refusal is sent before the request body is read. The server then closes the connection
    (the unread body cannot be told from the next request), so say so: a keep-alive client that
    is not told reuses the connection and sees it drop."""
    extra = list(extra or [])
    return extra if (b"connection", b"close") in extra else [*extra, *CLOSE]


async def error(send: Any, status: int, code: str, description: str, extra: RawHeaders | None = None) -> None:
    body = json.dumps({"error": code, "error_description": description}).encode()
    await respond(send, status, body, extra=_closing(extra))


async def rpc_error(send: Any, status: int, message: str, extra: RawHeaders | None = None) -> None:
    """A JSON-RPC error without id (what MCP clients parse on a refused POST)."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}).encode()
    await respond(send, status, body, extra=_closing(extra))


async def get_only(method: str, send: Any) -> bool:
    """True for GET/HEAD; otherwise answers 405."""
    if method in ("GET", "HEAD"):
        return True
    await error(send, 405, "method_not_allowed", "GET only", extra=[(b"allow", b"GET")])
    return False


class InFlight:
    """Counts MCP requests being served (not the long-lived GET event streams)."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = trio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    def exit(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.count:
            await self._idle.wait()


class BodyRefused(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


async def read_body(receive: Any, limit: int, timeout_s: float) -> bytes | None:
    """The whole request body, within `limit` bytes and `timeout_s` seconds; None if the client left.

    A body trickled byte by byte would otherwise hold its connection (and descriptor) forever:
    the deadline is for the whole body, not for each read."""
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(timeout_s):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyRefused(413, "payload_too_large",
                                  f"request body over {limit} bytes (server.http.max_body_bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    raise BodyRefused(408, "request_timeout", f"the request body did not arrive within {timeout_s:g}s "
                                              "(server.http.body_timeout_s)")


class _Replay:
    """An ASGI `receive` that yields the body already read, then defers to the real one
    (which reports the client's disconnect)."""

    def __init__(self, body: bytes, receive: Any) -> None:
        self._body: bytes | None = body
        self._receive = receive

    async def __call__(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()


class ClosedRequest:
    """Notices the client closing its request once the body is read (then the only message
    left is its `http.disconnect`): `watch` calls back every call the request carries
    (`on_close`, fastpath.Calls); the app's own later reads wait for it."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._closed = trio.Event()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    def on_close(self, callback: Callable[[], None]) -> None:
        if self._closed.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    async def watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._closed.set()
        for callback in self._callbacks:
            callback()

    async def receive(self) -> dict[str, Any]:
        await self._closed.wait()
        return {"type": "http.disconnect"}


# --- who is calling ------------------------------------------------------------------------


class Authenticator:
    """Bearer token -> actor, or the 401 to send."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics) -> None:
        self.tokens = TokenTable(config.server.http)
        self.default_actor = config.server.actor
        self.metrics = metrics

    async def actor(self, scope: dict[str, Any], headers: Headers, send: Any) -> str | None:
        """The caller's actor; None after answering 401."""
        if not self.tokens.enabled:
            return self.default_actor
        token = bearer_token(headers.get("authorization"))
        actor = self.tokens.actor_for(token) if token is not None else None
        if actor is not None:
            # The SDK binds each stateful session to the credential that opened it.
            scope["user"] = AuthenticatedUser(AccessToken(token="-", client_id=actor, scopes=[]))  # noqa: S106
            return actor
        self.metrics.http_rejected.labels("auth").inc()
        if token is not None:
            client = scope.get("client") or ("?", 0)
            http_log.warning("HTTP: invalid bearer token from %s", client[0])
            description = "the bearer token is not one this gateway knows"
        else:
            description = "send the token the operator gave you as Authorization: Bearer <token>"
        # A plain challenge: no resource_metadata, so OAuth-capable clients do not start an
        # OAuth flow this gateway does not offer (RFC 6750 section 3).
        challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
        await error(send, 401, "invalid_token", description, extra=[(b"www-authenticate", challenge.encode())])
        return None


# --- the MCP endpoint ----------------------------------------------------------------------


class McpEndpoint:
    """server.http.path: the drain gate, the body, then the hot route or the SDK."""

    def __init__(self, inner: Any, config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics,
                 sessions: SessionBook | None, hot: HttpHotRoute) -> None:
        s = config.server.http
        self.inner = inner
        self.gateway = gateway
        self.metrics = metrics
        self.sessions = sessions  # None when stateless
        self.hot = hot
        self.max_body = s.max_body_bytes
        self.body_timeout_s = s.body_timeout_s
        self.in_flight = InFlight()
        self.draining = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any, actor: str,
                       headers: Headers) -> None:
        if scope["method"] == "GET":  # the standalone event stream: long-lived, not a call in flight
            await self.inner(scope, receive, send)
            return
        if self.draining:
            # Not executed, so the client may safely retry elsewhere; close the keep-alive connection.
            self.metrics.http_rejected.labels("draining").inc()
            await rpc_error(send, 503, "the gateway is shutting down; retry on another connection",
                            extra=[(b"retry-after", b"1")])
            return
        self.in_flight.enter()
        try:
            body = await self._body(receive, send)
            if body is not None:
                await self._serve(scope, body, receive, send, actor, headers)
        finally:
            self.in_flight.exit()

    async def _body(self, receive: Any, send: Any) -> bytes | None:
        """The whole body, or None once refused (408/413, 400 for ambiguous keys) or abandoned."""
        try:
            body = await read_body(receive, self.max_body, self.body_timeout_s)
        except BodyRefused as e:
            self.metrics.http_rejected.labels("body_too_large" if e.status == 413 else "body_timeout").inc()
            try:
                await error(send, e.status, e.code, e.description)
            except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                # The server is closing the connection meanwhile (the client gave up, or the
                # server's own timeout fired at the same moment): there is no one to tell.
                pass
            return None
        if body is None:
            return None  # the client went away before sending its whole request
        refused = key_refusal(body)  # duplicate or case-variant keys (modern_protocol.py)
        if refused is not None:
            await respond(send, 400, refused)
            return None
        return body

    async def _serve(self, scope: dict[str, Any], body: bytes, receive: Any, send: Any, actor: str,
                     headers: Headers) -> None:
        # A client that closes its POST cancels the call it carried (fastpath.Calls).
        closing = ClosedRequest(receive)
        scope[REQUEST_CLOSED_KEY] = closing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(closing.watch)
            if not await self.hot.answer(scope["method"], headers, body, actor, closing, send):
                await self._to_sdk(scope, body, closing, send, actor, headers)
            nursery.cancel_scope.cancel()

    async def _to_sdk(self, scope: dict[str, Any], body: bytes, closing: ClosedRequest, send: Any, actor: str,
                      headers: Headers) -> None:
        batch = as_batch(body) if scope["method"] == "POST" and batches_allowed(scope["headers"]) else None
        if batch is not None:
            await serve_batch(self.inner, scope, batch, lambda member: _Replay(member, closing.receive), send)
            return
        receive = _Replay(body, closing.receive)
        if self.sessions is None or scope["method"] != "POST" or "mcp-session-id" in headers:
            await self.inner(scope, receive, send)
        else:
            await self._open_session(self.sessions, scope, receive, send, actor)

    async def _open_session(self, sessions: SessionBook, scope: dict[str, Any], receive: Any, send: Any,
                            actor: str) -> None:
        """A request that opens a session: the actor's rate, then its session quota."""
        limited = self.gateway.rate_limiter.check(actor)  # initialize counts against the actor's rate
        if limited is not None:
            sessions.refused["rate"] += 1
            http_log.warning("HTTP: refused a new session for %s: over its rate", actor)
            await rpc_error(send, 429, limited, extra=[(b"retry-after", b"1")])
            return
        reservation = sessions.reserve(actor)
        if isinstance(reservation, SessionRefused):
            http_log.warning("HTTP: refused a new session: %s", reservation.reason)
            # The actor's own quota is its business (429); a full gateway is everyone's (503).
            status = 429 if reservation.kind == "per_actor" else 503
            await rpc_error(send, status, reservation.reason, extra=[(b"retry-after", b"5")])
            return
        token = current_reservation.set(reservation)
        try:
            await self.inner(scope, receive, send)
        finally:
            current_reservation.reset(token)
            sessions.finished(reservation)


# --- the ASGI app --------------------------------------------------------------------------


class GatewayApp:
    def __init__(self, endpoint: McpEndpoint, config: GatewayConfig, gateway: Gateway,
                 metrics: GatewayMetrics) -> None:
        s = config.server.http
        self.endpoint = endpoint
        self.gateway = gateway
        self.metrics = metrics
        self.path = s.path
        self.auth = Authenticator(config, metrics)
        self.origins = OriginPolicy(s)

    @property
    def draining(self) -> bool:
        return self.endpoint.draining

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(dict(scope), receive, send)
        elif kind == "websocket":  # websockets are not part of MCP
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if not await self._host_allowed(headers, send):  # /healthz too: no rebinding oracle
            return
        if path == "/healthz":
            await self._health(scope["method"], send)
            return
        if not await self._origin_allowed(headers, send) or await self._no_oauth(path, send):
            return
        actor = await self.auth.actor(scope, headers, send)
        if actor is None:
            return
        if path == "/metrics":
            if await get_only(scope["method"], send):
                await respond(send, 200, self.metrics.render(), CONTENT_TYPE_LATEST)
            return
        if path != self.path and path != self.path.rstrip("/") + "/":
            await error(send, 404, "not_found", f"the MCP endpoint is {self.path}")
            return
        scope["path"] = self.path  # "/mcp/" and "/mcp" are the same endpoint
        act_as(actor)
        await self.endpoint(scope, receive, send, actor, headers)

    async def _host_allowed(self, headers: Headers, send: Any) -> bool:
        if self.origins.host_allowed(headers.get("host")):
            return True
        self.metrics.http_rejected.labels("host").inc()
        await error(send, 421, "misdirected_request", "Host header not allowed (server.http.allowed_hosts)")
        return False

    async def _origin_allowed(self, headers: Headers, send: Any) -> bool:
        if self.origins.origin_allowed(headers.get("origin")):
            return True
        self.metrics.http_rejected.labels("origin").inc()
        await error(send, 403, "forbidden", "Origin not allowed (server.http.allowed_origins)")
        return False

    @staticmethod
    async def _no_oauth(path: str, send: Any) -> bool:
        """Discovery by OAuth-capable clients: say plainly there is no OAuth here (not a 401,
        which would read as "protected metadata"). True when answered."""
        if not path.startswith("/.well-known/oauth-"):
            return False
        await error(send, 404, "not_found", "this gateway does not offer OAuth; send the bearer token "
                                            "the operator gave you as Authorization: Bearer <token>")
        return True

    async def _health(self, method: str, send: Any) -> None:
        if not await get_only(method, send):
            return
        pools = self.gateway.pools.items()
        workers = {name: pool.live_workers for name, pool in pools if isinstance(pool, WorkerPool)}
        # A kind's own backend (an upstream MCP server) that is not serving degrades the gateway
        # without stopping it: the other tools serve on, so this stays 200 ("degraded").
        upstreams = {name: backend.health() for name, backend in pools if not isinstance(backend, WorkerPool)}
        audit_ok = self.gateway.audit.healthy
        ok = audit_ok and all(n > 0 for n in workers.values()) and not self.draining
        status = "ok" if ok else ("draining" if self.draining else "unhealthy")
        if ok and any(u["state"] != "ready" for u in upstreams.values()):
            status = "degraded"
        body = {"status": status, "workers": workers, "audit": "writable" if audit_ok else "unwritable"}
        if upstreams:
            body["upstreams"] = upstreams
        await respond(send, 200 if ok else 503, json.dumps(body).encode())
