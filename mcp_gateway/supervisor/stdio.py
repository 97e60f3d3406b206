"""MCP over stdio, native to trio.

The SDK's `stdio_server` hops to a worker thread for every line; this transport reads and
writes the pipes with trio's own non-blocking fd streams instead, and answers what the SDK
would silently drop: a line that is not JSON gets -32700, one that is JSON but not a
JSON-RPC message gets -32600, a line over the size cap gets -32600 without being parsed.
The wire descriptors are moved off fds 0/1 first, so a stray print can never corrupt it.
Hot requests of an initialized session take the hot route shared with HTTP (fastpath.py).
"""

from __future__ import annotations

import json
import os
import select
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import trio
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from mcp_gateway.supervisor.fastpath import (
    BY_CLIENT_GONE,
    CANCELLED,
    NOT_JSON,
    Calls,
    HotRequest,
    HotRoute,
    Send,
    SessionState,
    act_as,
    cancelled_request_id,
    current_actor,
    hot_request,
    response_parts,
)
from mcp_gateway.supervisor.fastpath import decode_message as parse_line
from mcp_gateway.supervisor.gateway import Gateway
from mcp_gateway.supervisor.mcp_server import ToolDefinitions, build_server
from mcp_gateway.supervisor.modern_protocol import refusal as key_refusal
from mcp_gateway.supervisor.pipes import PipeReader, PipeWriter

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
READ_CHUNK = 256 * 1024
DRAIN_LIMIT_S = 3600
# Hot-route calls in flight per session; beyond it the transport stops reading stdin.
MAX_IN_FLIGHT = 1024


def claim_stdio() -> tuple[int, int]:
    """Take the wire off fds 0/1: returns private (in, out) fds; 0 becomes /dev/null, 1 stderr."""
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return wire_in, wire_out


def _error_line(code: int, message: str, request_id: Any = None) -> bytes:
    return (json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})
            + "\n").encode()


def _request_id(obj: Any) -> Any:
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, str | int) and not isinstance(rid, bool):
            return rid
    return None


class LineReader:
    """Splits a byte stream into lines, refusing (and skipping) any line over `cap` bytes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | None]:
        """Complete lines in order; None marks an oversized line that was dropped."""
        out: list[bytes | None] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.cap:
                    if not self._skipping:
                        out.append(None)
                    self._skipping = True
                    self._buf.clear()
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if len(line) > self.cap:
                out.append(None)
            elif line.strip():
                out.append(line)




def to_session_message(obj: Any) -> SessionMessage | bytes:
    """A SessionMessage for the SDK, or the error line to send back."""
    if obj is NOT_JSON:
        return _error_line(PARSE_ERROR, "Parse error: the line is not valid JSON (UTF-8, one message per line)")
    try:
        message = types.jsonrpc_message_adapter.validate_python(obj, by_name=False)
    except (ValidationError, ValueError, RecursionError):
        return _error_line(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message", _request_id(obj))
    return SessionMessage(message)


BATCH_VERSION = "2025-03-26"  # the only protocol revision with JSON-RPC batches


class _Owed:
    """The requests handed to the SDK and not yet answered, and the batches their answers belong to."""

    def __init__(self) -> None:
        self.owed: set[Any] = set()
        self.settled = trio.Event()  # set whenever `owed` is empty
        self.settled.set()
        self.batches: dict[Any, _Batch] = {}  # request id -> the batch its answer belongs to

    def owe(self, request_id: Any) -> None:
        self.owed.add(request_id)
        if self.settled.is_set():
            self.settled = trio.Event()

    def paid(self, request_id: Any) -> None:
        self.owed.discard(request_id)
        if not self.owed:
            self.settled.set()

    async def forget(self, request_id: Any) -> None:
        """A cancelled SDK request gets no answer: nothing is owed for it any more."""
        if request_id in self.owed:
            self.paid(request_id)
            batch = self.batches.pop(request_id, None)
            if batch is not None:
                await batch.done()

    async def wait_settled(self) -> None:
        while self.owed:
            await self.settled.wait()


class _Batch:
    """The answers to one JSON-RPC batch, sent as one array once every request is answered."""

    def __init__(self, owed: _Owed, flush: Send) -> None:
        self._owed = owed
        self._flush = flush
        self._answers: list[bytes] = []
        self._waiting = 1  # held by the reader until every member is dispatched

    def expect(self) -> None:
        self._waiting += 1

    async def add(self, *parts: bytes) -> None:
        self._answers.append(b"".join(parts).rstrip(b"\n"))

    async def done(self) -> None:
        self._waiting -= 1
        if self._waiting == 0 and self._answers:  # a batch of notifications only gets no answer
            await self._flush(b"[" + b",".join(self._answers) + b"]\n")

    def expect_sdk(self, request_id: Any) -> None:
        self.expect()
        self._owed.batches[request_id] = self


class StdioTransport:
    """One stdio session: the pipes pumped with trio; hot requests of a ready session take the
    hot route (fastpath.py), everything else goes to the SDK through `streams()`.

    At end of input (stdin closed, or `stop_reading` set by SIGTERM) no more requests are read;
    every request already read is answered (the SDK's ones before its input ends, since the SDK
    answers those still running at end of input with "Connection closed"), then the server returns.
    """

    def __init__(self, wire_in: int, wire_out: int, max_message_bytes: int, hot: HotRoute | None,
                 session: SessionState, stop_reading: trio.Event | None = None) -> None:
        self.stdin = PipeReader(wire_in)
        self.stdout = PipeWriter(wire_out)
        self.wire_out = wire_out
        self.max_message_bytes = max_message_bytes
        self.hot = hot
        self.session = session
        self.stop_reading = stop_reading
        self.owed = _Owed()
        self.in_flight = trio.Semaphore(MAX_IN_FLIGHT)  # hot calls; past it, stdin is not read
        self.reading = trio.CancelScope()
        self.serialized = trio.Event()
        self.client_gone = trio.Event()
        self._read_send, self._read_recv = create_context_streams[SessionMessage | Exception](0)
        self._write_send, self._write_recv = create_context_streams[SessionMessage](0)
        self._nursery: trio.Nursery | None = None

    @asynccontextmanager
    async def streams(self):
        """Yields (read_stream, write_stream) for `Server.run`, pumping the pipes meanwhile."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for task in (self.stdout.run, self._read_pump, self._stop_watch, self._serialize_pump):
                    nursery.start_soon(task)
                try:
                    yield self._read_recv, self._write_send
                except BaseException:
                    # Interrupted (Ctrl-C) or failed: the calls in flight are cancelled (and audited
                    # on the way out), not waited for.
                    nursery.cancel_scope.cancel()
                    raise
                else:
                    await self._drain()
                    nursery.cancel_scope.cancel()
        except* trio.BrokenResourceError:
            pass  # the client went away: nothing left to answer

    async def _drain(self) -> None:
        """Every response the server produced reaches the pipe; hot calls end by their own deadlines."""
        await self._write_send.aclose()
        with trio.move_on_after(5):
            await self.serialized.wait()
        self.reading.cancel()
        with trio.move_on_after(DRAIN_LIMIT_S):
            for _ in range(MAX_IN_FLIGHT):
                await self.in_flight.acquire()

    async def _stop_watch(self) -> None:
        if self.stop_reading is not None:
            await self.stop_reading.wait()
            self.reading.cancel()

    async def _read_pump(self) -> None:
        reader = LineReader(self.max_message_bytes)
        async with self._read_send:
            with self.reading:
                while data := await self.stdin.read(READ_CHUNK):
                    for line in reader.feed(data):
                        await self._line(line)
            # End of input: the SDK must answer what it was given before its input ends,
            # unless the client is gone altogether (then its input ends now and it cancels those).
            assert self._nursery is not None
            self._nursery.start_soon(self._watch_client)
            with trio.move_on_after(DRAIN_LIMIT_S):
                await _first(self.owed.wait_settled, self.client_gone.wait)

    async def _line(self, line: bytes | None) -> None:
        if line is None:
            await self.stdout.write(_error_line(
                INVALID_REQUEST, f"Invalid Request: message larger than {self.max_message_bytes} bytes"))
            return
        refused = key_refusal(line)
        if refused is not None:
            await self.stdout.write(refused + b"\n")
            return
        obj = parse_line(line)
        if type(obj) is list:
            await self._batch(obj)
        else:
            await self._dispatch(obj, self.stdout.write)

    async def _batch(self, items: list[Any]) -> None:
        version = self.session.version
        if not items or version != BATCH_VERSION:
            await self.stdout.write(_error_line(INVALID_REQUEST, _batch_refusal(items, version)))
            return
        batch = _Batch(self.owed, self.stdout.write)
        try:
            for obj in items:
                await self._dispatch(obj, batch.add, batch)
        finally:
            await batch.done()

    async def _dispatch(self, obj: Any, send: Send, batch: _Batch | None = None) -> None:
        """One decoded message: a cancel, the hot route, or the SDK."""
        cancelled = cancelled_request_id(obj)
        if cancelled is not None:
            await self.owed.forget(cancelled)
            if self.hot is not None and self.hot.calls.cancel(cancelled):
                return
        request = hot_request(obj) if self.hot is not None and self.session.ready else None
        if request is None:
            await self._to_sdk(obj, send, batch)
            return
        await self.in_flight.acquire()  # backpressure: past MAX_IN_FLIGHT calls, stop reading the pipe
        if batch is not None:
            batch.expect()
        assert self._nursery is not None
        self._nursery.start_soon(self._answer_hot, request, send, batch)

    async def _to_sdk(self, obj: Any, send: Send, batch: _Batch | None) -> None:
        item = to_session_message(obj)
        if isinstance(item, bytes):
            await send(item)
            return
        if isinstance(item.message, types.JSONRPCRequest):
            self.owed.owe(item.message.id)
            if batch is not None:
                batch.expect_sdk(item.message.id)
        await self._read_send.send(item)

    async def _answer_hot(self, request: HotRequest, send: Send, batch: _Batch | None) -> None:
        assert self.hot is not None
        try:
            result = await self.hot.result(request, current_actor(), request.request_id)
            if result is not CANCELLED:  # a cancelled request is not answered (the spec's SHOULD NOT)
                await send(*response_parts(request.request_id, result))
        except trio.BrokenResourceError:
            pass  # the client closed stdout; the call itself was audited
        finally:
            try:
                if batch is not None:
                    await batch.done()  # the last answer of a batch sends the batch
            except trio.BrokenResourceError:
                pass
            finally:
                self.in_flight.release()

    async def _watch_client(self) -> None:
        await _reader_closed(self.wire_out)
        self.client_gone.set()
        if self.hot is not None:
            self.hot.calls.cancel_all(BY_CLIENT_GONE)

    async def _serialize_pump(self) -> None:
        async with self._write_recv:
            async for message in self._write_recv:
                await self._write_sdk_message(message.message)
        self.serialized.set()

    async def _write_sdk_message(self, msg: types.JSONRPCMessage) -> None:
        if isinstance(msg, types.JSONRPCResponse | types.JSONRPCError):
            batch = self.owed.batches.pop(msg.id, None)
            if batch is not None:
                await batch.add(_encode_message(msg))
                self.owed.paid(msg.id)
                await batch.done()
                return
            self.owed.paid(msg.id)
        await self.stdout.write(_encode_message(msg), b"\n")


async def serve_stdio_session(gateway: Gateway, wire_in: int, wire_out: int,
                              stop_reading: trio.Event | None = None) -> None:
    """Serve one MCP session on the wire fds until its input ends (or `stop_reading`)."""
    act_as(gateway.config.server.actor)  # stdio callers are the configured actor
    calls = Calls(gateway)
    definitions = ToolDefinitions(gateway)
    session = SessionState()
    server = build_server(gateway, calls, definitions, on_initialize=lambda ctx: session.attach(ctx.session))
    transport = StdioTransport(wire_in, wire_out, gateway.config.server.max_message_bytes,
                               HotRoute(calls, definitions.encoded), session, stop_reading)
    async with transport.streams() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


CLIENT_POLL_S = 0.1


async def _reader_closed(fd: int) -> None:
    """Returns once the client has closed its end of our stdout (a pipe's write end reports
    POLLERR then; a socket, POLLHUP). Polled: there is no readiness wait for it."""
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    while not poller.poll(0):
        await trio.sleep(CLIENT_POLL_S)


async def _first(*waits: Callable[[], Awaitable[None]]) -> None:
    """Returns when the first of `waits` returns."""
    async with trio.open_nursery() as nursery:
        async def one(wait: Callable[[], Awaitable[None]]) -> None:
            await wait()
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)


def _batch_refusal(items: list[Any], version: str | None) -> str:
    if not items:
        return "Invalid Request: an empty batch"
    return (f"Invalid Request: JSON-RPC batches exist only in protocol {BATCH_VERSION}; this session "
            f"negotiated {version or 'nothing yet (initialize first, never in a batch)'}")


def _encode_message(message: types.JSONRPCMessage) -> bytes:
    try:
        return types.jsonrpc_message_adapter.dump_json(message, by_alias=True, exclude_unset=True)
    except PydanticSerializationError:
        # A lone surrogate (in an id the client sent): escape it rather than lose the answer.
        return json.dumps(message.model_dump(by_alias=True, exclude_unset=True), ensure_ascii=True).encode()
