"""The backend of one `mcp_servers` instance: a long-lived server, its session, its calls.

The backend keeps one server running: it starts it (through the confined start of
process.py), initializes it within `init_timeout_ms`, lists its tools and publishes them,
re-lists on `notifications/tools/list_changed`, and serves calls on the session. A server
that cannot start, does not initialize in time, crashes or breaks the protocol is killed
(its whole process tree) and started again with backoff; meanwhile its calls wait within
their deadline, then get UNAVAILABLE, and the rest of the gateway is not affected. A call
past its deadline kills the server too (its state is unknown: it may still be working on the
call) and gets TIMEOUT; the other calls in flight on it get WORKER_CRASHED. A call whose
caller cancels it is cancelled on the server (`notifications/cancelled`); the server keeps
running. The tools last published stay listed while the server restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import trio

from mcp_gateway.connectors.mcp_servers.answers import answer_of
from mcp_gateway.connectors.mcp_servers.discovery import Discovered, UpstreamTool, discover
from mcp_gateway.connectors.mcp_servers.metrics import metric_families
from mcp_gateway.connectors.mcp_servers.pins import PinCheck
from mcp_gateway.connectors.mcp_servers.session import (
    BadAnswer,
    ResultTooLarge,
    SessionEnded,
    Streams,
    UpstreamRpcError,
    UpstreamSession,
)
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.ipc.messages import CallFailed, CallOk, CallRequest

log = logging.getLogger("mcp_gateway.upstream")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_S = 60.0  # a server that served this long starts the backoff sequence over
KILL_WAIT_S = 10.0
EXIT_STATUS_WAIT_S = 0.5
# Argument checks run off the event loop (schema.py bounds each); at most this many at once.
VALIDATION_THREADS = trio.CapacityLimiter(2)

State = Literal["starting", "ready", "restarting"]


class UpstreamProcess(Streams, Protocol):
    pid: int

    async def kill_tree(self) -> None: ...

    def exit_status(self) -> str | None: ...


StartUpstream = Callable[[], Awaitable[UpstreamProcess]]
Publish = Callable[[Discovered], None]


class _Stop(Exception):
    """Why the backend stops the current server."""


@dataclass
class UpstreamStats:
    starts: int = 0
    restarts: int = 0
    timeouts: int = 0
    crashes: int = 0  # sessions that ended by themselves (exit, garbage)
    init_failures: int = 0
    relists: int = 0
    queued: int = 0
    busy: int = 0
    last_error: str | None = None
    tools: int = 0
    withheld: dict[str, str] = field(default_factory=dict)


class UpstreamBackend:
    def __init__(self, instance: str, settings: McpServerSettings, start: StartUpstream, publish: Publish,
                 pins: PinCheck | None) -> None:
        self.instance = instance
        self.settings = settings
        self._start = start
        self._publish = publish
        self.pins = pins
        self.state: State = "starting"
        self.stats = UpstreamStats()
        self._session: UpstreamSession | None = None
        self._ready = trio.Event()
        self._stop: trio.Event = trio.Event()
        self._stop_reason = ""
        self._retry_at = 0.0
        self._tools: dict[str, UpstreamTool] = {}
        self._slots = trio.Semaphore(settings.max_concurrent_calls)
        self._relist = trio.Event()
        self.pid: int | None = None
        # Set once the first server has listed its tools or failed (`mcp-gateway call` waits for it).
        self.first_try = trio.Event()

    # --- the server's life -----------------------------------------------------------------

    async def run(self) -> None:
        """Keep the server running, for ever (cancel to stop): never raises for its faults."""
        backoff = BACKOFF_MIN_S
        while True:
            born = trio.current_time()
            self.stats.starts += 1
            try:
                await self._serve_one()
            except _Stop as e:
                self.stats.last_error = str(e)
            self.first_try.set()
            if trio.current_time() - born >= HEALTHY_S:
                backoff = BACKOFF_MIN_S
            self.state = "restarting"
            self._retry_at = trio.current_time() + backoff
            log.error("upstream %s: %s; starting it again in %.1f s (its calls wait within their timeout, then get "
                      "UNAVAILABLE; the rest of the gateway is not affected)", self.instance,
                      self.stats.last_error, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.stats.restarts += 1

    async def _serve_one(self) -> None:
        """Start, initialize and serve one server until it must stop; raises _Stop (why)."""
        try:
            process = await self._start()
        except Exception as e:  # UpstreamStartError, OSError: the reason is the operator's
            raise _Stop(f"cannot start the server: {e}") from None
        self.pid = process.pid
        self._stop, self._stop_reason = trio.Event(), ""
        session = UpstreamSession(process, name=self.instance, max_message_bytes=self.settings.max_message_bytes,
                                  on_tools_changed=self._tools_changed)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, session, process)
                nursery.start_soon(self._wait_stop, nursery.cancel_scope)
                await self._open(session)
                self._session = session
                self.state = "ready"
                self._ready.set()
                nursery.start_soon(self._keep_listing, session)
        finally:
            self.stop_server(self._stop_reason or "the gateway stopped")
            session.end(ErrorCode.WORKER_CRASHED,
                        f"the server was stopped: {self._stop_reason or 'the gateway stopped'}")
            with trio.CancelScope(shield=True), trio.move_on_after(KILL_WAIT_S):
                await process.kill_tree()
            self.pid = None
        raise _Stop(self._stop_reason)

    def stop_server(self, reason: str) -> None:
        """Stop the current server: no new call is given to it from now on."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self.stats.last_error = reason
            self._stop.set()
        self._withdraw()

    def _withdraw(self) -> None:
        """Calls wait for the next server from now on."""
        self._session = None
        if self._ready.is_set():
            self._ready = trio.Event()
            self.state = "restarting"

    async def _wait_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    def _tools_changed(self) -> None:
        self._relist.set()

    async def _read(self, session: UpstreamSession, process: UpstreamProcess) -> None:
        reason = await session.read_until_end()
        self._withdraw()
        self.stats.crashes += 1
        with trio.move_on_after(EXIT_STATUS_WAIT_S):  # how it ended, when it is exiting anyway
            while process.exit_status() is None:
                await trio.sleep(0.05)
        status = process.exit_status()
        self.stop_server(reason + (f" ({status})" if status else ""))

    async def _give_up(self, reason: str) -> None:
        """Stop this server (the nursery is cancelled; this never returns)."""
        self.stop_server(reason)
        await trio.sleep_forever()

    async def _open(self, session: UpstreamSession) -> None:
        with trio.move_on_after(self.settings.init_timeout_ms / 1000) as scope:
            try:
                await session.initialize()
            except (UpstreamRpcError, BadAnswer, SessionEnded) as e:
                self.stats.init_failures += 1
                await self._give_up(f"initialize failed: {_reason(e)}")
        if scope.cancelled_caught:
            self.stats.init_failures += 1
            await self._give_up(f"the server did not answer initialize within {self.settings.init_timeout_ms} ms "
                                f"(connectors.mcp_servers.{self.instance}.init_timeout_ms)")
        log.info("upstream %s: initialized (%s %s, MCP %s)", self.instance,
                 _clip(session.server_info.name if session.server_info else "?", 80),
                 _clip(session.server_info.version if session.server_info else "?", 40), session.protocol_version)
        await self._list(session)

    async def _list(self, session: UpstreamSession) -> None:
        with trio.move_on_after(self.settings.list_timeout_ms / 1000) as scope:
            try:
                listed = await session.list_tools(self.settings.max_tools)
            except (UpstreamRpcError, BadAnswer, SessionEnded) as e:
                await self._give_up(f"tools/list failed: {_reason(e)}")
        if scope.cancelled_caught:
            await self._give_up(f"the server did not answer tools/list within {self.settings.list_timeout_ms} ms")
        for problem in listed.malformed:
            log.warning("upstream %s: a tool definition was dropped: %s", self.instance, problem)
        if listed.truncated:
            log.warning("upstream %s: the server lists more than %d tools (max_tools); the rest are ignored",
                        self.instance, self.settings.max_tools)
        # Off the event loop: checking a hostile server's schemas costs seconds of CPU.
        discovered = await trio.to_thread.run_sync(discover, self.instance, listed.tools, limiter=VALIDATION_THREADS)
        tools, withheld = discovered.tools, dict(discovered.withheld)
        if self.pins is not None:
            tools, pin_withheld = self.pins.split(tools)
            withheld.update(pin_withheld)
        self._tools = {t.name: t for t in tools}
        self.stats.tools = len(tools)
        self.stats.withheld = withheld
        self._publish(Discovered(tools, withheld))
        self.first_try.set()

    async def _keep_listing(self, session: UpstreamSession) -> None:
        """Re-list on notifications/tools/list_changed (notifications that arrive meanwhile
        make one more listing, not one each)."""
        while True:
            await self._relist.wait()
            self._relist = trio.Event()
            self.stats.relists += 1
            await self._list(session)

    # --- calls -----------------------------------------------------------------------------

    async def call(self, request: CallRequest, deadline: float) -> CallOk | CallFailed:
        """Run one call before `deadline` (trio clock). Never raises for the server's faults."""
        tool = self._tools.get(request.tool)
        if tool is None:
            return self._failed(request, ErrorCode.UNAVAILABLE,
                                f"the {self.instance} server no longer offers this tool")
        problem = await trio.to_thread.run_sync(tool.arguments.first_error, request.args, limiter=VALIDATION_THREADS)
        if problem is not None:
            return self._failed(request, ErrorCode.VALIDATION_ERROR, f"invalid arguments for {request.tool}: {problem}")
        if self.state != "ready" and self._retry_at >= deadline:
            return self._unavailable(request)
        if not await self._take_slot(deadline):
            return self._unavailable(request)
        try:
            session = self._session
            if session is None:  # the server stopped while the call took its slot
                return self._unavailable(request)
            return await self._call_on(session, tool, request, deadline)
        finally:
            self._slots.release()

    async def _take_slot(self, deadline: float) -> bool:
        """A call slot on a ready server, waiting in the bounded queue within the deadline."""
        if self._session is not None:
            try:
                self._slots.acquire_nowait()
                return True
            except trio.WouldBlock:
                pass
        if self.stats.queued >= self.settings.queue_size:
            return False
        self.stats.queued += 1
        try:
            with trio.move_on_at(deadline):
                while self._session is None:  # _ready is replaced (unset) whenever the server stops
                    await self._ready.wait()
                await self._slots.acquire()
                return True
        finally:
            self.stats.queued -= 1
        return False

    async def _call_on(self, session: UpstreamSession, tool: UpstreamTool, request: CallRequest,
                       deadline: float) -> CallOk | CallFailed:
        self.stats.busy += 1
        try:
            with trio.move_on_at(deadline):
                result = await session.call_tool(tool.upstream_name, request.args, request.max_bytes)
                return await answer_of(request, tool, result, VALIDATION_THREADS)
        except SessionEnded as e:
            return self._failed(request, e.code, f"the {self.instance} server ended during the call: {e.reason}; "
                                                 "it is being started again")
        except UpstreamRpcError as e:
            return self._failed(request, ErrorCode.UPSTREAM_ERROR, f"the {self.instance} server refused the call: "
                                                           f"{_clip(e.message, 1000)} (JSON-RPC error {e.code})")
        except BadAnswer as e:
            return self._failed(request, ErrorCode.UPSTREAM_ERROR,
                                f"the {self.instance} server's answer is malformed: {e}")
        except ResultTooLarge as e:
            return self._failed(request, ErrorCode.RESULT_TOO_LARGE,
                                f"the {self.instance} server's answer is {e.size} bytes, over the cap of "
                                f"{request.max_bytes} bytes")
        except Refusal as e:
            return self._failed(request, e.code, e.reason)
        finally:
            self.stats.busy -= 1
        self.stats.timeouts += 1
        log.warning("upstream %s: request %s passed its timeout; the server is killed", self.instance,
                    request.request_id)
        self.stop_server("a call passed its timeout")
        return self._failed(request, ErrorCode.TIMEOUT,
                            f"the call ran past its timeout; the {self.instance} server was killed and is being "
                            "started again (its in-memory state is lost)")

    def _unavailable(self, request: CallRequest) -> CallFailed:
        why = "is starting" if self.state == "starting" else "is restarting"
        if self.state == "ready":
            why = (f"is at capacity: its {self.settings.max_concurrent_calls} call slots are busy and "
                   f"{self.stats.queued} calls wait (max_concurrent_calls, queue_size)")
        last = f" (last problem: {_clip(self.stats.last_error, 300)})" if self.stats.last_error else ""
        return self._failed(request, ErrorCode.UNAVAILABLE, f"the {self.instance} server {why}{last}; retry later")

    @staticmethod
    def _failed(request: CallRequest, code: ErrorCode, reason: str) -> CallFailed:
        return CallFailed(request.request_id, code, reason)

    # --- reporting -------------------------------------------------------------------------

    metric_families = staticmethod(metric_families)  # of all upstream backends at once (/metrics)

    def health(self) -> dict[str, Any]:
        """For /healthz (unauthenticated: counts and states only; the reasons are in the log and doctor).
        "unhealthy": the server failed (did not start, initialize or list; crashed) and is retried."""
        state = {"ready": "ready", "starting": "starting", "restarting": "unhealthy"}[self.state]
        return {"state": state, "tools": self.stats.tools, "withheld": len(self.stats.withheld),
                "restarts": self.stats.restarts}


def _reason(e: Exception) -> str:
    if isinstance(e, UpstreamRpcError):
        return f"JSON-RPC error {e.code}: {_clip(e.message, 300)}"
    if isinstance(e, SessionEnded):
        return e.reason
    return str(e)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "..."

