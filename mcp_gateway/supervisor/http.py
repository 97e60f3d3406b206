"""MCP over Streamable HTTP: hypercorn on trio, in the supervisor's one event loop.

Request path, outermost first (`GatewayApp`):

    /healthz                       -> health JSON (no auth; says nothing secret)
    Host check                     -> 421 Misdirected Request   (DNS rebinding)
    Origin check                   -> 403 Forbidden             (cross-site browsers)
    /.well-known/oauth-*           -> 404 (no OAuth here: the bearer token is the only way in)
    bearer token                   -> 401 + WWW-Authenticate: Bearer, error_description, no resource_metadata
    /metrics                       -> Prometheus text (same auth as MCP)
    server.http.path (/mcp)        -> 413 on an oversized body; a 2025-03-26 batch -> http_batch.py;
                                      else the SDK's Streamable HTTP app
    anything else                  -> 404

The authenticated actor is put in the ASGI scope; the MCP handlers read it back from the
starlette Request the SDK attaches to every message (`ServerRequestContext.request`), so the
per-actor policy, rate limits and audit lines use the identity of the HTTP request that carried
the call. With tokens configured the SDK also binds each stateful session to the actor that
opened it (another token gets 404 for that session id).

SIGTERM/SIGINT drain: stop accepting, let every in-flight MCP request finish (bounded by
`server.http.shutdown_grace_s`), then close the pools and the audit log, exit 0.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers

from mcp_gateway.config import GatewayConfig
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.http_auth import (
    OriginPolicy,
    TokenTable,
    bearer_token,
    is_loopback_host,
    is_wildcard_host,
)
from mcp_gateway.supervisor.http_batch import as_batch, batches_allowed, read_body, replay, serve_batch
from mcp_gateway.supervisor.mcp_server import REQUEST_CLOSED_KEY, build_server
from mcp_gateway.supervisor.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from mcp_gateway.supervisor.service import Zygotes, open_gateway

log = logging.getLogger("mcp_gateway")

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


async def _respond(send: Any, status: int, body: bytes, content_type: str = "application/json",
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, status: int, error: str, description: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    await _respond(send, status, body, extra=extra)


class ClosedRequest:
    """Notices a client closing its request: `closed` is set on the ASGI `http.disconnect`.

    Once the body is read, nothing but the disconnect can arrive, and nobody else reads it
    (JSON responses do not listen), so `watch` waits for it; the app's own later reads get it too.
    """

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.closed = trio.Event()
        self._body_read = trio.Event()

    async def receive(self) -> dict[str, Any]:
        if self._body_read.is_set():
            await self.closed.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.closed.set()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self._body_read.set()
        return message

    async def watch(self) -> None:
        await self._body_read.wait()
        if not self.closed.is_set() and (await self._receive())["type"] == "http.disconnect":
            self.closed.set()


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


# --- the ASGI app --------------------------------------------------------------------------


class GatewayApp:
    def __init__(self, inner: Any, config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics) -> None:
        s = config.server.http
        self.inner = inner
        self.gateway = gateway
        self.metrics = metrics
        self.path = s.path
        self.max_body = s.max_body_bytes
        self.tokens = TokenTable(s)
        self.origins = OriginPolicy(s)
        self.default_actor = config.server.actor
        self.in_flight = InFlight()
        self.draining = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.inner(scope, receive, send)
            return
        if kind != "http":  # websockets are not part of MCP
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = Headers(scope=scope)

        if path == "/healthz":
            await self._health(method, send)
            return
        if not self.origins.host_allowed(headers.get("host")):
            self.metrics.http_rejected.labels("host").inc()
            await _error(send, 421, "misdirected_request",
                         "Host header not allowed (server.http.allowed_hosts)")
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
        if self.tokens.enabled:
            token = bearer_token(headers.get("authorization"))
            actor = self.tokens.actor_for(token) if token is not None else None
            if actor is None:
                self.metrics.http_rejected.labels("auth").inc()
                if token is not None:
                    client = scope.get("client") or ("?", 0)
                    log.warning("HTTP: invalid bearer token from %s", client[0])
                    description = "the bearer token is not one this gateway knows"
                else:
                    description = "send the token the operator gave you as Authorization: Bearer <token>"
                # A plain challenge: no resource_metadata, so OAuth-capable clients do not start
                # an OAuth flow this gateway does not offer (RFC 6750 section 3).
                challenge = f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
                await _error(send, 401, "invalid_token", description,
                             extra=[(b"www-authenticate", challenge.encode())])
                return
        else:
            actor = self.default_actor

        if path == "/metrics":
            if method not in ("GET", "HEAD"):
                await _error(send, 405, "method_not_allowed", "GET only", extra=[(b"allow", b"GET")])
                return
            await _respond(send, 200, self.metrics.render(), CONTENT_TYPE_LATEST)
            return
        if path != self.path and path != self.path.rstrip("/") + "/":
            await _error(send, 404, "not_found", f"the MCP endpoint is {self.path}")
            return

        length = headers.get("content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body
            except ValueError:
                await _error(send, 400, "bad_request", "invalid Content-Length")
                return
            if too_large:
                self.metrics.http_rejected.labels("body_too_large").inc()
                await _error(send, 413, "payload_too_large",
                             f"request body over {self.max_body} bytes (server.http.max_body_bytes)")
                return

        scope = dict(scope)
        scope["path"] = self.path  # "/mcp/" and "/mcp" are the same endpoint
        scope[ACTOR_KEY] = actor
        if self.tokens.enabled:
            # Lets the SDK bind each stateful session to the actor that opened it.
            scope["user"] = AuthenticatedUser(AccessToken(token="-", client_id=actor, scopes=[]))  # noqa: S106
        if method == "GET":  # the standalone event stream: long-lived, not a call in flight
            await self.inner(scope, receive, send)
            return
        self.in_flight.enter()
        try:
            # A client that closes its POST cancels the call it carried (mcp_server.py).
            closing = ClosedRequest(receive)
            scope[REQUEST_CLOSED_KEY] = closing.closed
            async with trio.open_nursery() as nursery:
                nursery.start_soon(closing.watch)
                if method == "POST" and batches_allowed(scope["headers"]):
                    await self._maybe_batch(scope, closing.receive, send)
                else:
                    await self.inner(scope, closing.receive, send)
                nursery.cancel_scope.cancel()
        finally:
            self.in_flight.exit()

    async def _maybe_batch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A 2025-03-26 client's POST: a batch is served by http_batch, anything else by the SDK."""
        body = await read_body(receive, self.max_body)
        if body is None:  # over the cap without a Content-Length, or the client left
            await _error(send, 413, "payload_too_large",
                         f"request body over {self.max_body} bytes (server.http.max_body_bytes)")
            return
        items = as_batch(body)
        if items is None:
            await self.inner(scope, replay(body, receive), send)
        else:
            await serve_batch(self.inner, scope, items, receive, send)

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
    """Why the HTTP transport must not start with this config, or None."""
    s = config.server.http
    if not s.auth.bearer_tokens and not is_loopback_host(s.host) and not s.allow_unauthenticated:
        where = "every interface" if is_wildcard_host(s.host) else s.host
        return (f"server.http.host {s.host!r} exposes the gateway on {where} but "
                "server.http.auth.bearer_tokens is empty: anyone who can reach the port could call "
                "tools. Add bearer tokens, bind to 127.0.0.1, or set "
                "server.http.allow_unauthenticated: true if another layer authenticates")
    if s.certfile is not None:
        for p in (s.certfile, s.keyfile):
            if p is None or not p.is_file():
                return f"TLS file {p} does not exist"
    try:
        OriginPolicy(s)
    except ValueError as e:
        return str(e)
    if not s.path.startswith("/") or s.path in ("/healthz", "/metrics"):
        return f"server.http.path {s.path!r} must start with '/' and not be /healthz or /metrics"
    return None


def _bind_string(host: str, port: int) -> str:
    h = host.strip()
    if ":" in h and not h.startswith("["):
        h = f"[{h}]"
    if h in ("", "*"):
        h = "0.0.0.0"
    return f"{h}:{port}"


def hypercorn_config(config: GatewayConfig) -> HypercornConfig:
    s = config.server.http
    hc = HypercornConfig()
    hc.bind = [_bind_string(s.host, s.port)]
    if s.certfile is not None and s.keyfile is not None:
        hc.certfile = str(s.certfile)
        hc.keyfile = str(s.keyfile)
    hc.graceful_timeout = s.shutdown_grace_s
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.include_server_header = False
    return hc


def build_app(config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics) -> GatewayApp:
    s = config.server.http
    server = build_server(gateway, http_actor)
    inner = server.streamable_http_app(
        streamable_http_path=s.path,
        # Plain JSON bodies: the gateway sends no progress or server-initiated requests,
        # and a JSON answer is cheaper than an SSE stream for every call.
        json_response=True,
        stateless_http=s.stateless,
        max_request_body_size=s.max_body_bytes,
        # Host/Origin are checked (with the gateway's own rules) before the SDK sees anything.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=s.host,
    )
    return GatewayApp(inner, config, gateway, metrics)


async def serve_http(config: GatewayConfig, zygotes: Zygotes) -> int:
    problem = startup_problem(config)
    if problem is not None:
        print(f"mcp-gateway: cannot start: {problem}", file=sys.stderr)
        return 1
    s = config.server.http
    hc = hypercorn_config(config)
    try:
        sockets = hc.create_sockets()
    except OSError as e:
        print(f"mcp-gateway: cannot start: cannot listen on {hc.bind[0]}: {e.strerror or e}", file=sys.stderr)
        return 1
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(hc.backlog)
    scheme = "https" if sockets.secure_sockets else "http"
    bound = [sock.getsockname() for sock in (*sockets.secure_sockets, *sockets.insecure_sockets)]

    metrics = GatewayMetrics()
    async with open_gateway(config, zygotes, observer=metrics.observe) as gateway:
        metrics.attach_pools(gateway.pools)
        app = build_app(config, gateway, metrics)
        if not app.tokens.enabled:
            log.warning("HTTP: no bearer tokens configured: every caller acts as %r%s", config.server.actor,
                        "" if is_loopback_host(s.host) else " (server.http.allow_unauthenticated is on)")
        stop = trio.Event()
        failed: list[BaseException] = []
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                serving = trio.CancelScope()
                done = trio.Event()

                async def run_server() -> None:
                    try:
                        with serving:
                            await worker_serve(wrap_app(app, hc.wsgi_max_body_size, "asgi"), hc,
                                               sockets=sockets, shutdown_trigger=stop.wait)
                    except Exception as e:
                        log.exception("HTTP server failed")
                        failed.append(e)
                    finally:
                        done.set()
                        stop.set()

                drain = trio.CancelScope()

                async def wait_signal() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if not stop.is_set():
                            log.info("%s: draining (%d MCP request(s) in flight, up to %gs; send it again "
                                     "to stop at once)", name, app.in_flight.count, s.shutdown_grace_s)
                            app.draining = True
                            gateway.stopping = True
                            stop.set()
                        else:
                            log.warning("%s again: stopping without waiting for %d MCP request(s)",
                                        name, app.in_flight.count)
                            drain.cancel()
                            return

                nursery.start_soon(run_server)
                nursery.start_soon(wait_signal)
                for addr in bound:
                    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
                    log.info("serving MCP on %s://%s:%d%s", scheme, host, addr[1], s.path)
                await stop.wait()
                with drain:
                    # Hypercorn has stopped accepting; let the calls already inside finish.
                    with trio.move_on_after(s.shutdown_grace_s) as grace:
                        await app.in_flight.wait_idle()
                    if grace.cancelled_caught:
                        log.warning("shutdown grace of %gs over: %d MCP request(s) abandoned",
                                    s.shutdown_grace_s, app.in_flight.count)
                    # Idle keep-alive connections close by themselves; open event streams do not.
                    with trio.move_on_after(0.5):
                        await done.wait()
                serving.cancel()
                nursery.cancel_scope.cancel()
        log.info("HTTP server stopped; closing the worker pools and the audit log")
    if failed:
        return 1
    return 0
