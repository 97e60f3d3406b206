"""MCP over stdio, native to trio.

The SDK's `stdio_server` hops to a worker thread for every line; this transport reads and
writes the pipes with trio's own non-blocking fd streams instead, and answers what the SDK
would silently drop: a line that is not JSON gets -32700, one that is JSON but not a
JSON-RPC message gets -32600, a line over the size cap gets -32600 without being parsed.
The wire descriptors are moved off fds 0/1 first, so a stray print can never corrupt it.
"""

from __future__ import annotations

import json
import os
import select
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import msgspec
import trio
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from mcp_gateway.supervisor.fastpath import FastPath, Send, cancelled_request_id
from mcp_gateway.supervisor.modern_protocol import refusal as key_refusal
from mcp_gateway.supervisor.pipes import PipeReader, PipeWriter

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
READ_CHUNK = 256 * 1024
DRAIN_LIMIT_S = 3600
# Fast-path calls in flight per session; beyond it the transport stops reading stdin.
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


def parse_line(line: bytes) -> Any:
    """The decoded JSON value, or _ParseError."""
    try:
        return msgspec.json.decode(line)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # msgspec refuses escaped lone surrogates; they are valid JSON, so the stdlib parses
        # them and the validation layer refuses them as VALIDATION_ERROR, with an audit line.
        try:
            return json.loads(line)
        except (ValueError, RecursionError):  # ValueError covers invalid UTF-8
            return _PARSE_ERROR


_PARSE_ERROR = object()


def to_session_message(obj: Any) -> SessionMessage | bytes:
    """A SessionMessage for the SDK, or the error line to send back."""
    if obj is _PARSE_ERROR:
        return _error_line(PARSE_ERROR, "Parse error: the line is not valid JSON (UTF-8, one message per line)")
    try:
        message = types.jsonrpc_message_adapter.validate_python(obj, by_name=False)
    except (ValidationError, ValueError, RecursionError):
        return _error_line(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message", _request_id(obj))
    return SessionMessage(message)


BATCH_VERSION = "2025-03-26"  # the only protocol revision with JSON-RPC batches


class _Session:
    """What the transport must know of the session the SDK runs: its version, and what it owes."""

    def __init__(self) -> None:
        self.version: str | None = None  # negotiated by `initialize`
        self.initialize_ids: set[Any] = set()
        self.owed: set[Any] = set()  # requests handed to the SDK and not yet answered
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

    async def wait_settled(self) -> None:
        while self.owed:
            await self.settled.wait()


class _Batch:
    """The answers to one JSON-RPC batch, sent as one array once every request is answered."""

    def __init__(self, session: _Session, flush: Send) -> None:
        self._session = session
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
        self._session.batches[request_id] = self


@asynccontextmanager
async def stdio_transport(wire_in: int, wire_out: int, max_message_bytes: int, fast_path: FastPath | None = None,
                          stop_reading: trio.Event | None = None):
    """Yields (read_stream, write_stream) for `Server.run`, pumping the pipes with trio.

    With a `fast_path`, the hot methods of an initialized session bypass the SDK (see fastpath.py).
    At end of input (stdin closed, or `stop_reading` set by SIGTERM) no more requests are read;
    every request already read is answered (the SDK's ones before its input ends, since the SDK
    answers those still running at end of input with "Connection closed"), then the server returns.
    """
    read_send, read_recv = create_context_streams[SessionMessage | Exception](0)
    write_send, write_recv = create_context_streams[SessionMessage](0)
    stdin = PipeReader(wire_in)
    stdout = PipeWriter(wire_out)
    session = _Session()

    async def dispatch(obj: Any, send: Send, batch: _Batch | None = None) -> None:
        """One decoded message: cancel, fast path, SDK, or the JSON-RPC error it deserves."""
        cancelled = cancelled_request_id(obj)
        if cancelled is not None:
            await forget(cancelled)
            if fast_path is not None and fast_path.cancel(cancelled):
                return
        if fast_path is not None:
            handler = fast_path.route(obj)
            if handler is not None:
                # Backpressure: past MAX_IN_FLIGHT calls, stop reading the pipe.
                await in_flight.acquire()
                if batch is not None:
                    batch.expect()
                nursery.start_soon(_answer, handler, send, in_flight, batch)
                return
            if type(obj) is dict and obj.get("method") == "initialize":
                session.initialize_ids.add(_request_id(obj))
        item = to_session_message(obj)
        if isinstance(item, bytes):
            await send(item)
            return
        if isinstance(item.message, types.JSONRPCRequest):
            session.owe(item.message.id)
            if batch is not None:
                batch.expect_sdk(item.message.id)
        await read_send.send(item)

    async def forget(request_id: Any) -> None:
        """A cancelled SDK request gets no answer: nothing is owed for it any more."""
        if request_id in session.owed:
            session.paid(request_id)
            batch = session.batches.pop(request_id, None)
            if batch is not None:
                await batch.done()

    async def dispatch_batch(items: list[Any]) -> None:
        batch = _Batch(session, stdout.write)
        try:
            for obj in items:
                await dispatch(obj, batch.add, batch)
        finally:
            await batch.done()

    async def read_pump() -> None:
        reader = LineReader(max_message_bytes)
        async with read_send:
            with reading:
                while data := await stdin.read(READ_CHUNK):
                    for line in reader.feed(data):
                        if line is None:
                            await stdout.write(_error_line(
                                INVALID_REQUEST, f"Invalid Request: message larger than {max_message_bytes} bytes"))
                            continue
                        refused = key_refusal(line)
                        if refused is not None:
                            await stdout.write(refused + b"\n")
                            continue
                        obj = parse_line(line)
                        if type(obj) is list:
                            if obj and session.version == BATCH_VERSION:
                                await dispatch_batch(obj)
                            else:
                                await stdout.write(_error_line(INVALID_REQUEST, _batch_refusal(obj, session.version)))
                            continue
                        await dispatch(obj, stdout.write)
            # End of input: the SDK must answer what it was given before its input ends,
            # unless the client is gone altogether (then its input ends now and it cancels those).
            nursery.start_soon(watch_client)
            with trio.move_on_after(DRAIN_LIMIT_S):
                await _first(session.wait_settled, client_gone.wait)

    async def watch_client() -> None:
        await _reader_closed(wire_out)
        client_gone.set()
        if fast_path is not None:
            fast_path.cancel_all()

    async def serialize_pump() -> None:
        async with write_recv:
            async for message in write_recv:
                msg = message.message
                if isinstance(msg, types.JSONRPCResponse | types.JSONRPCError):
                    if msg.id in session.initialize_ids and isinstance(msg, types.JSONRPCResponse):
                        session.version = str(msg.result.get("protocolVersion"))
                        if fast_path is not None:
                            fast_path.enabled = True
                    batch = session.batches.pop(msg.id, None)
                    if batch is not None:
                        await batch.add(_encode_message(msg))
                        session.paid(msg.id)
                        await batch.done()
                        continue
                    session.paid(msg.id)
                await stdout.write(_encode_message(msg), b"\n")
        serialized.set()

    serialized = trio.Event()
    client_gone = trio.Event()
    in_flight = trio.Semaphore(MAX_IN_FLIGHT)
    reading = trio.CancelScope()
    try:
        async with trio.open_nursery() as nursery:

            async def stop_watch() -> None:
                if stop_reading is not None:
                    await stop_reading.wait()
                    reading.cancel()

            nursery.start_soon(stdout.run)
            nursery.start_soon(read_pump)
            nursery.start_soon(stop_watch)
            nursery.start_soon(serialize_pump)
            try:
                yield read_recv, write_send
            except BaseException:
                # Interrupted (Ctrl-C) or failed: the calls in flight are cancelled (and audited
                # on the way out), not waited for.
                nursery.cancel_scope.cancel()
                raise
            else:
                # Drain: every response the server produced reaches the pipe before we exit.
                await write_send.aclose()
                with trio.move_on_after(5):
                    await serialized.wait()
                reading.cancel()
                with trio.move_on_after(DRAIN_LIMIT_S):  # in-flight calls end by their own deadlines
                    for _ in range(MAX_IN_FLIGHT):
                        await in_flight.acquire()
                nursery.cancel_scope.cancel()
    except* trio.BrokenResourceError:
        pass  # the client went away: nothing left to answer


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


async def _answer(handler: Callable[[Send], Awaitable[None]], send: Send, in_flight: trio.Semaphore,
                  batch: _Batch | None) -> None:
    try:
        await handler(send)
    except trio.BrokenResourceError:
        pass  # the client closed stdout; the call itself was audited
    finally:
        try:
            if batch is not None:
                await batch.done()  # the last answer of a batch sends the batch
        except trio.BrokenResourceError:
            pass
        finally:
            in_flight.release()
