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
                                      (408) and max_body_bytes (413); ambiguous keys (400);
                                      the hot route (http_hot.py: tools/call, tools/list, ping
                                      of a ready session, as on stdio); else a request that
                                      opens a session passes the actor's rate and session quota
                                      (429); a 2025-03-26 batch is split (http_batch.py); then
                                      the SDK's Streamable HTTP session manager. Closing the
                                      POST cancels the call it carried (ClosedRequest).
    anything else                  -> 404

The app (http_app.py) makes the authenticated actor the caller of the messages the request
carries (`fastpath.act_as`); the hot route and the SDK's handlers (which run in the context
the SDK's streams carry from the request's task) read that one value, so the per-actor
policy, rate limits and audit lines use the identity of the HTTP request that carried the
call. With tokens configured the SDK also binds each stateful session to the actor that
opened it (another token gets 404 for that session id).

SIGTERM/SIGINT drain: stop accepting, answer requests that still arrive on open connections
with 503 (not executed), let every MCP request already inside finish (bounded by
`server.http.shutdown_grace_s`), then close the pools and the audit log, exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Any

import trio
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import wrap_app
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings

from mcp_gateway.config import GatewayConfig
from mcp_gateway.preflight import http_problem
from mcp_gateway.supervisor.fastpath import Calls, HotRoute
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.http_app import GatewayApp, McpEndpoint
from mcp_gateway.supervisor.http_auth import is_loopback_host
from mcp_gateway.supervisor.http_hot import HttpHotRoute
from mcp_gateway.supervisor.http_listener import (
    DESCRIPTOR_HEADROOM,
    ConnectionLimits,
    GatewayHypercornConfig,
    Listener,
    ReserveDescriptor,
    raise_nofile_limit,
)
from mcp_gateway.supervisor.http_sessions import GatewaySessionManager, SessionBook, current_reservation
from mcp_gateway.supervisor.log_throttle import throttle
from mcp_gateway.supervisor.mcp_server import ToolDefinitions, build_server
from mcp_gateway.supervisor.metrics import GatewayMetrics, HttpStats
from mcp_gateway.supervisor.service import Zygotes, open_gateway

log = logging.getLogger("mcp_gateway")
http_log = logging.getLogger("mcp_gateway.http")


# --- startup checks and the app --------------------------------------------------------------


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


def _attach_to_session(sessions: SessionBook | None) -> Any:
    """The server middleware's hook: the SDK session of an opening request, once initialized,
    becomes that open session's state (the reservation names it; see http_sessions.py)."""
    def attach(ctx: ServerRequestContext[Any]) -> None:
        reservation = current_reservation.get()
        open_session = sessions.by_session.get(reservation.session_id or "") if sessions and reservation else None
        if open_session is not None:
            open_session.state.attach(ctx.session)

    return attach


def build_app(config: GatewayConfig, gateway: Gateway, metrics: GatewayMetrics) -> tuple[GatewayApp, Any]:
    """The ASGI app and the SDK session manager it serves through (run it around serving)."""
    s = config.server.http
    sessions = None if s.stateless else SessionBook.from_settings(s)
    calls = Calls(gateway)
    definitions = ToolDefinitions(gateway)
    server = build_server(gateway, calls, definitions, on_initialize=_attach_to_session(sessions))
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
    hot = HttpHotRoute(HotRoute(calls, definitions.encoded), sessions)
    endpoint = McpEndpoint(StreamableHTTPASGIApp(manager), config, gateway, metrics, sessions, hot)
    return GatewayApp(endpoint, config, gateway, metrics), manager


# --- serving ---------------------------------------------------------------------------------


def _throttle_client_driven_logs() -> None:
    # Lines any client can cause at will: a few per minute each, the rest counted.
    throttle(http_log, "mcp.server.streamable_http_manager", "mcp.server.streamable_http", "hypercorn.error")


def _warn_descriptor_limit(config: GatewayConfig) -> None:
    s = config.server.http
    nofile = raise_nofile_limit()
    if s.max_connections + DESCRIPTOR_HEADROOM > nofile:
        log.warning("HTTP: the open-file limit is %d: server.http.max_connections = %d leaves fewer than %d "
                    "descriptors for everything else; raise the limit (ulimit -n, LimitNOFILE=) or lower "
                    "max_connections", nofile, s.max_connections, DESCRIPTOR_HEADROOM)


def _warn_auth_shape(config: GatewayConfig, app: GatewayApp) -> None:
    s = config.server.http
    sessions = app.endpoint.sessions
    if not app.auth.tokens.enabled:
        log.warning("HTTP: no bearer tokens configured: every caller acts as %r%s", config.server.actor,
                    "" if is_loopback_host(s.host) else " (server.http.allow_unauthenticated is on)")
    elif sessions is not None:
        actors = {t.actor for t in s.auth.bearer_tokens}
        if len(actors) * sessions.per_actor > s.max_sessions:
            log.warning("HTTP: %d actors x max_sessions_per_actor %d exceed max_sessions %d: actors that "
                        "all fill their quota can still crowd each other out", len(actors),
                        sessions.per_actor, s.max_sessions)


class Listening:
    """The bound, listening sockets (before anything else starts, so a busy port fails fast)."""

    def __init__(self, hc: GatewayHypercornConfig) -> None:
        sockets = hc.create_sockets()  # OSError: the caller reports it
        self.tls = bool(sockets.secure_sockets)
        self.socks: list[socket.socket] = [*sockets.secure_sockets, *sockets.insecure_sockets]
        for sock in self.socks:
            sock.listen(hc.backlog)

    def log_addresses(self, path: str) -> None:
        scheme = "https" if self.tls else "http"
        for sock in self.socks:
            addr = sock.getsockname()
            host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
            log.info("serving MCP on %s://%s:%d%s", scheme, host, addr[1], path)


async def serve_http(config: GatewayConfig, zygotes: Zygotes) -> int:
    problem = startup_problem(config)
    if problem is not None:
        print(f"mcp-gateway: cannot start: {problem}", file=sys.stderr)
        return 1
    _throttle_client_driven_logs()
    _warn_descriptor_limit(config)
    hc = hypercorn_config(config)
    try:
        listening = Listening(hc)
    except OSError as e:
        print(f"mcp-gateway: cannot start: cannot listen on {hc.bind[0]}: {e.strerror or e}", file=sys.stderr)
        return 1
    s = config.server.http
    metrics = GatewayMetrics()
    limits = ConnectionLimits(s.max_connections, s.max_connections_per_client)
    async with open_gateway(config, zygotes, observer=metrics.observe) as gateway:
        metrics.attach_pools(gateway.pools)
        metrics.attach_catalogue(gateway.catalogue)
        app, manager = build_app(config, gateway, metrics)
        metrics.attach_http(HttpStats(app.endpoint.sessions, limits, hc.framing_refused))
        _warn_auth_shape(config, app)
        async with manager.run():
            server = HttpServer(app, hc, listening.socks, limits, listening.tls)
            listening.log_addresses(s.path)
            failed = await server.run_until_signalled(s.shutdown_grace_s)
        log.info("HTTP server stopped; closing the worker pools and the audit log")
    return 1 if failed else 0


class HttpServer:
    """The listeners and their connections, and the SIGTERM/SIGINT drain."""

    def __init__(self, app: GatewayApp, hc: GatewayHypercornConfig, socks: list[Any], limits: ConnectionLimits,
                 tls: bool) -> None:
        self.app = app
        self.endpoint = app.endpoint
        self.context = WorkerContext(None)
        reserve = ReserveDescriptor()
        ssl_context = hc.create_ssl_context() if tls else None
        wrapped = wrap_app(app, hc.wsgi_max_body_size, "asgi")
        self.listeners = [Listener(sock, wrapped, hc, self.context, limits, reserve, ssl_context)
                          for sock in socks]
        self.failed = False
        self.stop = trio.Event()
        self.accepting = trio.CancelScope()
        self.drain = trio.CancelScope()

    async def run_until_signalled(self, grace_s: float) -> bool:
        """Serve until a signal (then drain) or a listener failure; True on failure."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as connections:
                connections.start_soon(self._accept_all, connections)
                connections.start_soon(self._on_signals, signals, grace_s)
                await self.stop.wait()
                await self._drain(grace_s)
                connections.cancel_scope.cancel()  # event streams and whatever the grace cut
        return self.failed

    async def _accept_all(self, connections: trio.Nursery) -> None:
        try:
            with self.accepting:
                async with trio.open_nursery() as n:
                    for listener in self.listeners:
                        n.start_soon(listener.serve, connections)
        except Exception:
            log.exception("HTTP listener failed")
            self.failed = True
        finally:
            self.stop.set()

    async def _on_signals(self, signals: Any, grace_s: float) -> None:
        """The first signal drains; a second one stops without waiting."""
        async for signum in signals:
            name = signal.Signals(signum).name
            if not self.stop.is_set():
                log.info("%s: draining (%d MCP request(s) in flight, up to %gs; send it again "
                         "to stop at once)", name, self.endpoint.in_flight.count, grace_s)
                self.stop.set()
            else:
                log.warning("%s again: stopping without waiting for %d MCP request(s)",
                            name, self.endpoint.in_flight.count)
                self.drain.cancel()
                return

    async def _drain(self, grace_s: float) -> None:
        # From here on a request that reaches the endpoint is answered 503 without being
        # executed, so every call that runs is one whose answer is awaited below.
        self.endpoint.draining = True
        self.endpoint.gateway.stopping = True  # calls cut from here on are the gateway's, not the client's
        self.accepting.cancel()
        for listener in self.listeners:
            listener.trio_sock.close()
        await self.context.terminated.set()  # idle keep-alive connections close now
        with self.drain:
            with trio.move_on_after(grace_s) as grace:
                await self.endpoint.in_flight.wait_idle()
            if grace.cancelled_caught:
                log.warning("shutdown grace of %gs over: %d MCP request(s) abandoned",
                            grace_s, self.endpoint.in_flight.count)
