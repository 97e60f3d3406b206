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
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import msgspec
import trio
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcp_gateway.supervisor.fastpath import FastPath, Send
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


@asynccontextmanager
async def stdio_transport(wire_in: int, wire_out: int, max_message_bytes: int, fast_path: FastPath | None = None,
                          stop_reading: trio.Event | None = None):
    """Yields (read_stream, write_stream) for `Server.run`, pumping the pipes with trio.

    With a `fast_path`, the hot methods of an initialized session bypass the SDK (see fastpath.py).
    Setting `stop_reading` (SIGTERM) ends input as if stdin had closed: calls in flight finish
    and are answered, then the server returns.
    """
    read_send, read_recv = create_context_streams[SessionMessage | Exception](0)
    write_send, write_recv = create_context_streams[SessionMessage](0)
    stdin = PipeReader(wire_in)
    stdout = PipeWriter(wire_out)

    async def read_pump() -> None:
        reader = LineReader(max_message_bytes)
        async with read_send:
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
                    if fast_path is not None:
                        handler = fast_path.route(obj)
                        if handler is not None:
                            # Backpressure: past MAX_IN_FLIGHT calls, stop reading the pipe.
                            await in_flight.acquire()
                            nursery.start_soon(_answer, handler, stdout.write, in_flight)
                            continue
                        if type(obj) is dict and obj.get("method") == "initialize":
                            initialize_ids.add(_request_id(obj))
                    item = to_session_message(obj)
                    if isinstance(item, bytes):
                        await stdout.write(item)
                    else:
                        await read_send.send(item)

    async def serialize_pump() -> None:
        async with write_recv:
            async for message in write_recv:
                if initialize_ids and isinstance(message.message, types.JSONRPCResponse) \
                        and message.message.id in initialize_ids:
                    fast_path.enabled = True  # type: ignore[union-attr]
                await stdout.write(
                    (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode())
        serialized.set()

    serialized = trio.Event()
    initialize_ids: set[Any] = set()
    in_flight = trio.Semaphore(MAX_IN_FLIGHT)
    try:
        async with trio.open_nursery() as nursery:
            reading = trio.CancelScope()

            async def reader_task() -> None:
                with reading:
                    await read_pump()

            async def stop_watch() -> None:
                if stop_reading is not None:
                    await stop_reading.wait()
                    reading.cancel()

            nursery.start_soon(stdout.run)
            nursery.start_soon(reader_task)
            nursery.start_soon(stop_watch)
            nursery.start_soon(serialize_pump)
            try:
                yield read_recv, write_send
            finally:
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


async def _answer(handler: Callable[[Send], Awaitable[None]], send: Send, in_flight: trio.Semaphore) -> None:
    try:
        await handler(send)
    except trio.BrokenResourceError:
        pass  # the client closed stdout; the call itself was audited
    finally:
        in_flight.release()
