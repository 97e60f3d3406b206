"""MCP over Streamable HTTP: hypercorn's protocol code on trio, in the supervisor's one event loop.

Layers, outermost first:

    http_listener.Listener         accept within server.http.max_connections(_per_client);
                                   survive EMFILE; HTTP/1.1 framing (CL+TE 400, declared body 413)
    Host check                     -> 421 Misdirected Request   (DNS rebinding; /healthz too)
    /healthz                       -> health JSON (no auth; says nothing secret)
    Origin check                   -> 403 Forbidden             (cross-site browsers)
    /.well-known/oauth-*           -> 404 (no OAuth here: the bearer token is the only way in)
    bearer token (Authenticator)   -> 401 + WWW-Authenticate: Bearer, error_description, no resource_metadata
    /metrics                       -> Prometheus text (same auth as MCP)
    server.http.path (McpEndpoint) -> 503 while draining; the whole body within body_timeout_s
                                      (408) and max_body_bytes (413); a request that opens a
                                      session passes the actor's rate and session quota (429);
                                      a 2025-03-26 batch is split (http_batch.py); then the SDK's
                                      Streamable HTTP session manager. Closing the POST cancels
                                      the call it carried (ClosedRequest, mcp_server.py).
    anything else                  -> 404

The authenticated actor is put in the ASGI scope; the MCP handlers read it back from the
starlette Request the SDK attaches to every message (`ServerRequestContext.request`), so the
per-actor policy, rate limits and audit lines use the identity of the HTTP request that carried
the call. With tokens configured the SDK also binds each stateful session to the actor that
opened it (another token gets 404 for that session id).

SIGTERM/SIGINT drain: stop accepting, answer requests that still arrive on open connections
with 503 (not executed), let every MCP request already inside finish (bounded by
`server.http.shutdown_grace_s`), then close the pools and the audit log, exit 0.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import trio
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers

from mcp_gateway.config import GatewayConfig
from mcp_gateway.preflight import http_problem
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.http_auth import (
    OriginPolicy,
    TokenTable,
    bearer_token,
    is_loopback_host,
)
from mcp_gateway.supervisor.http_batch import as_batch, batches_allowed, serve_batch
from mcp_gateway.supervisor.http_listener import (
    DESCRIPTOR_HEADROOM,
    ConnectionLimits,
    GatewayHypercornConfig,
    Listener,
    ReserveDescriptor,
    raise_nofile_limit,
)
from mcp_gateway.supervisor.http_sessions import (
    GatewaySessionManager,
    SessionBook,
    SessionRefused,
    current_reservation,
)
from mcp_gateway.supervisor.log_throttle import throttle
from mcp_gateway.supervisor.mcp_server import REQUEST_CLOSED_KEY, build_server
from mcp_gateway.supervisor.metrics import CONTENT_TYPE_LATEST, GatewayMetrics, HttpStats
from mcp_gateway.supervisor.modern_protocol import refusal as key_refusal
from mcp_gateway.supervisor.service import Zygotes, open_gateway

log = logging.getLogger("mcp_gateway")
# Lines a client can cause at will, throttled (log_throttle.py).
http_log = logging.getLogger("mcp_gateway.http")

ACTOR_KEY = "mcp_gateway.actor"
REALM = "mcp-gateway"


# --- the actor, as the MCP handlers see it -------------------------------------------------


def http_actor(ctx: ServerRequestContext[Any]) -> str:
    """The actor the auth layer put on the HTTP request that carried this message.

    Fails closed: a message without one (which the ASGI layer never lets through) is an error,
    never a call under some default identity."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    actor = scope.get(ACTOR_KEY) if isinstance(scope, dict) else None
    if not isinstance(actor, str) or not actor:
        raise RuntimeError("no authenticated actor on this request")
    return actor


# --- small ASGI helpers --------------------------------------------------------------------

RawHeaders = list[tuple[bytes, bytes]]
CLOSE: RawHeaders = [(b"connection", b"close")]


async def _respond(send: Any, status: int, body: bytes, content_type: str = "application/json",
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


async def _error(send: Any, status: int, error: str, description: str, extra: RawHeaders | None = None) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    await _respond(send, status, body, extra=_closing(extra))


async def _rpc_error(send: Any, status: int, message: str, extra: RawHeaders | None = None) -> None:
    """A JSON-RPC error without id (what MCP clients parse on a refused POST)."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}).encode()
    await _respond(send, status, body, extra=_closing(extra))


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
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


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


def replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` that yields the body already read, then defers to the real one
    (which reports the client's disconnect)."""
    sent = False

    async def receive_again() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


class ClosedRequest:
    """Notices the client closing its request once the body is read (then the only message
    left is its `http.disconnect`): `watch` sets `closed`; the app's own later reads wait for it.
    """

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.closed = trio.Event()

    async def watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.closed.set()

    async def receive(self) -> dict[str, Any]:
        await self.closed.wait()
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
        await _error(send, 401, "invalid_token", description, extra=[(b"www-authenticate", challenge.encode())])
        return None


# --- the MCP endpoint ----------------------------------------------------------------------


class McpEndpoint:
    """server.http.path: the drain gate, the body deadline, session admission, then the SDK."""

    def __init__(self, inner: Any, config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics,
                 sessions: SessionBook | None) -> None:
        s = config.server.http
        self.inner = inner
        self.gateway = gateway
        self.metrics = metrics
        self.sessions = sessions  # None when stateless
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
            await _rpc_error(send, 503, "the gateway is shutting down; retry on another connection",
                             extra=[(b"retry-after", b"1")])
            return
        self.in_flight.enter()
        try:
            await self._serve(scope, receive, send, actor, headers)
        finally:
            self.in_flight.exit()

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any, actor: str, headers: Headers) -> None:
        try:
            body = await read_body(receive, self.max_body, self.body_timeout_s)
        except BodyRefused as e:
            self.metrics.http_rejected.labels("body_too_large" if e.status == 413 else "body_timeout").inc()
            try:
                await _error(send, e.status, e.error, e.description)
            except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                # The server is closing the connection meanwhile (the client gave up, or the
                # server's own timeout fired at the same moment): there is no one to tell.
                pass
            return
        if body is None:
            return  # the client went away before sending its whole request
        refused = key_refusal(body)  # duplicate or case-variant keys (modern_protocol.py)
        if refused is not None:
            await _respond(send, 400, refused)
            return
        # A client that closes its POST cancels the call it carried (mcp_server.py).
        closing = ClosedRequest(receive)
        scope[REQUEST_CLOSED_KEY] = closing.closed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(closing.watch)
            batch = as_batch(body) if scope["method"] == "POST" and batches_allowed(scope["headers"]) else None
            if batch is not None:
                await serve_batch(self.inner, scope, batch, lambda member: replay(member, closing.receive), send)
            else:
                await self._admit(scope, replay(body, closing.receive), send, actor, headers)
            nursery.cancel_scope.cancel()

    async def _admit(self, scope: dict[str, Any], receive: Any, send: Any, actor: str, headers: Headers) -> None:
        opening = self.sessions is not None and scope["method"] == "POST" and "mcp-session-id" not in headers
        if not opening:
            await self.inner(scope, receive, send)
            return
        assert self.sessions is not None
        limited = self.gateway.rate_limiter.check(actor)  # initialize counts against the actor's rate
        if limited is not None:
            self.sessions.refused["rate"] += 1
            http_log.warning("HTTP: refused a new session for %s: over its rate", actor)
            await _rpc_error(send, 429, limited, extra=[(b"retry-after", b"1")])
            return
        reservation = self.sessions.reserve(actor)
        if isinstance(reservation, SessionRefused):
            http_log.warning("HTTP: refused a new session: %s", reservation.reason)
            # The actor's own quota is its business (429); a full gateway is everyone's (503).
            status = 429 if reservation.kind == "per_actor" else 503
            await _rpc_error(send, status, reservation.reason, extra=[(b"retry-after", b"5")])
            return
        token = current_reservation.set(reservation)
        try:
            await self.inner(scope, receive, send)
        finally:
            current_reservation.reset(token)
            self.sessions.finished(reservation)


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
        method: str = scope["method"]
        headers = Headers(scope=scope)
        if not self.origins.host_allowed(headers.get("host")):  # /healthz too: no rebinding oracle
            self.metrics.http_rejected.labels("host").inc()
            await _error(send, 421, "misdirected_request", "Host header not allowed (server.http.allowed_hosts)")
            return
        if path == "/healthz":
            await self._health(method, send)
            return
        if not self.origins.origin_allowed(headers.get("origin")):
            self.metrics.http_rejected.labels("origin").inc()
            await _error(send, 403, "forbidden", "Origin not allowed (server.http.allowed_origins)")
            return
        if path.startswith("/.well-known/oauth-"):
            # Discovery by OAuth-capable clients: say plainly there is no OAuth here (not a 401,
            # which would read as "protected metadata").
            await _error(send, 404, "not_found", "this gateway does not offer OAuth; send the bearer token "
                                                 "the operator gave you as Authorization: Bearer <token>")
            return
        actor = await self.auth.actor(scope, headers, send)
        if actor is None:
            return
        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                await _error(send, 405, "method_not_allowed", "GET only", extra=[(b"allow", b"GET")])
                return
            await _respond(send, 200, self.metrics.render(), CONTENT_TYPE_LATEST)
            return
        if path != self.path and path != self.path.rstrip("/") + "/":
            await _error(send, 404, "not_found", f"the MCP endpoint is {self.path}")
            return
        scope["path"] = self.path  # "/mcp/" and "/mcp" are the same endpoint
        scope[ACTOR_KEY] = actor
        await self.endpoint(scope, receive, send, actor, headers)

    async def _health(self, method: str, send: Any) -> None:
        if method not in ("GET", "HEAD"):
            await _error(send, 405, "method_not_allowed", "GET only", extra=[(b"allow", b"GET")])
            return
        workers = {name: pool.live_workers for name, pool in self.gateway.pools.items()}
        audit_ok = self.gateway.audit.healthy
        ok = audit_ok and all(n > 0 for n in workers.values()) and not self.draining
        status = "ok" if ok else ("draining" if self.draining else "unhealthy")
        body = {"status": status, "workers": workers, "audit": "writable" if audit_ok else "unwritable"}
        await _respond(send, 200 if ok else 503, json.dumps(body).encode())


# --- startup checks and serving ------------------------------------------------------------


def startup_problem(config: GatewayConfig) -> str | None:
    """Why the HTTP transport must not start with this config, or None (the preflight's rules)."""
    return http_problem(config)


def _bind_string(host: str, port: int) -> str:
    h = host.strip()
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    if h in ("", "*"):
        h = "0.0.0.0"
    return f"{h}:{port}"


def hypercorn_config(config: GatewayConfig) -> GatewayHypercornConfig:
    s = config.server.http
    hc = GatewayHypercornConfig()
    hc.bind = [_bind_string(s.host, s.port)]
    if s.certfile is not None and s.keyfile is not None:
        hc.certfile = str(s.certfile)
        hc.keyfile = str(s.keyfile)
    hc.alpn_protocols = ["h2", "http/1.1"] if s.http2 else ["http/1.1"]
    hc.http2 = s.http2
    hc.max_body_bytes = s.max_body_bytes
    hc.graceful_timeout = s.shutdown_grace_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.include_server_header = False
    return hc


def build_app(config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics) -> tuple[GatewayApp, Any]:
    """The ASGI app and the SDK session manager it serves through (run it around serving)."""
    s = config.server.http
    server = build_server(gateway, http_actor)
    sessions = None if s.stateless else SessionBook.from_settings(s)
    manager = GatewaySessionManager(
        app=server,
        # Plain JSON bodies: the gateway sends no progress or server-initiated requests,
        # and a JSON answer is cheaper than an SSE stream for every call.
        json_response=True,
        stateless=s.stateless,
        # Host/Origin are checked (with the gateway's own rules) before the SDK sees anything.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=s.max_body_bytes,
        session_idle_timeout=s.session_idle_timeout_s,
        max_sessions=s.max_sessions,  # a backstop: SessionBook admits first
        book=sessions or SessionBook.from_settings(s),
    )
    endpoint = McpEndpoint(StreamableHTTPASGIApp(manager), config, gateway, metrics, sessions)
    return GatewayApp(endpoint, config, gateway, metrics), manager


def _throttle_client_driven_logs() -> None:
    # Lines any client can cause at will: a few per minute each, the rest counted.
    throttle(http_log, "mcp.server.streamable_http_manager", "mcp.server.streamable_http", "hypercorn.error")


async def serve_http(config: GatewayConfig, zygotes: Zygotes) -> int:
    problem = startup_problem(config)
    if problem is not None:
        print(f"mcp-gateway: cannot start: {problem}", file=sys.stderr)
        return 1
    s = config.server.http
    _throttle_client_driven_logs()
    nofile = raise_nofile_limit()
    if s.max_connections + DESCRIPTOR_HEADROOM > nofile:
        log.warning("HTTP: the open-file limit is %d: server.http.max_connections = %d leaves fewer than %d "
                    "descriptors for everything else; raise the limit (ulimit -n, LimitNOFILE=) or lower "
                    "max_connections", nofile, s.max_connections, DESCRIPTOR_HEADROOM)
    hc = hypercorn_config(config)
    try:
        sockets = hc.create_sockets()
    except OSError as e:
        print(f"mcp-gateway: cannot start: cannot listen on {hc.bind[0]}: {e.strerror or e}", file=sys.stderr)
        return 1
    socks = [*sockets.secure_sockets, *sockets.insecure_sockets]
    for sock in socks:
        sock.listen(hc.backlog)
    scheme = "https" if sockets.secure_sockets else "http"

    metrics = GatewayMetrics()
    limits = ConnectionLimits(s.max_connections, s.max_connections_per_client)
    async with open_gateway(config, zygotes, observer=metrics.observe) as gateway:
        metrics.attach_pools(gateway.pools)
        metrics.attach_catalogue(gateway.catalogue)
        app, manager = build_app(config, gateway, metrics)
        metrics.attach_http(HttpStats(app.endpoint.sessions, limits, hc.framing_refused))
        if not app.auth.tokens.enabled:
            log.warning("HTTP: no bearer tokens configured: every caller acts as %r%s", config.server.actor,
                        "" if is_loopback_host(s.host) else " (server.http.allow_unauthenticated is on)")
        elif app.endpoint.sessions is not None:
            actors = {t.actor for t in s.auth.bearer_tokens}
            if len(actors) * app.endpoint.sessions.per_actor > s.max_sessions:
                log.warning("HTTP: %d actors x max_sessions_per_actor %d exceed max_sessions %d: actors that "
                            "all fill their quota can still crowd each other out", len(actors),
                            app.endpoint.sessions.per_actor, s.max_sessions)
        async with manager.run():
            server = HttpServer(app, hc, socks, limits, bool(sockets.secure_sockets))
            for sock in socks:
                addr = sock.getsockname()
                host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
                log.info("serving MCP on %s://%s:%d%s", scheme, host, addr[1], s.path)
            failed = await server.run_until_signalled(s.shutdown_grace_s)
        log.info("HTTP server stopped; closing the worker pools and the audit log")
    return 1 if failed else 0


class HttpServer:
    """The listeners and their connections, and the SIGTERM/SIGINT drain."""

    def __init__(self, app: GatewayApp, hc: GatewayHypercornConfig, socks: list[Any], limits: ConnectionLimits,
                 tls: bool) -> None:
        self.app = app
        self.context = WorkerContext(None)
        reserve = ReserveDescriptor()
        ssl_context = hc.create_ssl_context() if tls else None
        wrapped = wrap_app(app, hc.wsgi_max_body_size, "asgi")
        self.listeners = [Listener(sock, wrapped, hc, self.context, limits, reserve, ssl_context)
                          for sock in socks]

    async def run_until_signalled(self, grace_s: float) -> bool:
        """Serve until a signal (then drain) or a listener failure; True on failure."""
        endpoint = self.app.endpoint
        failed = False
        stop = trio.Event()
        drain = trio.CancelScope()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as connections:
                accepting = trio.CancelScope()

                async def accept_all() -> None:
                    nonlocal failed
                    try:
                        with accepting:
                            async with trio.open_nursery() as n:
                                for listener in self.listeners:
                                    n.start_soon(listener.serve, connections)
                    except Exception:
                        log.exception("HTTP listener failed")
                        failed = True
                    finally:
                        stop.set()

                async def wait_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not stop.is_set():
                            log.info("%s: draining (%d MCP request(s) in flight, up to %gs; send it again "
                                     "to stop at once)", name, endpoint.in_flight.count, grace_s)
                            stop.set()
                        else:
                            log.warning("%s again: stopping without waiting for %d MCP request(s)",
                                        name, endpoint.in_flight.count)
                            drain.cancel()
                            return

                connections.start_soon(accept_all)
                connections.start_soon(wait_signal)
                await stop.wait()
                # From here on a request that reaches the endpoint is answered 503 without being
                # executed, so every call that runs is one whose answer is awaited below.
                endpoint.draining = True
                endpoint.gateway.stopping = True  # calls cut from here on are the gateway's, not the client's
                accepting.cancel()
                for listener in self.listeners:
                    listener.trio_sock.close()
                await self.context.terminated.set()  # idle keep-alive connections close now
                with drain:
                    with trio.move_on_after(grace_s) as grace:
                        await endpoint.in_flight.wait_idle()
                    if grace.cancelled_caught:
                        log.warning("shutdown grace of %gs over: %d MCP request(s) abandoned",
                                    grace_s, endpoint.in_flight.count)
                connections.cancel_scope.cancel()  # event streams and whatever the grace cut
        return failed
