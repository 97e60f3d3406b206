"""The gateway's MCP client session with one running upstream server.

One reader task owns the server's stdout: it decodes each capped line (wire.py), hands a
response to the one call waiting for its id, answers the server's own requests (ping; every
other method is refused: the gateway offers the server no sampling, roots or elicitation),
and reports `notifications/tools/list_changed`. Calls are multiplexed by JSON-RPC id; a call
whose caller is cancelled sends `notifications/cancelled` for its id. When the server
breaks the protocol or its stdout ends, every call waiting on it fails with the reason and
the session is over (the backend starts a new server).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import mcp_types as types
import msgspec
import pydantic
import trio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from mcp_gateway import __version__
from mcp_gateway.connectors.mcp_servers.wire import (
    LineReader,
    Message,
    WireError,
    decode_message,
    encode_notification,
    encode_request,
    encode_response,
)
from mcp_gateway.ipc.errors import ErrorCode, Refusal

log = logging.getLogger("mcp_gateway.upstream")

METHOD_NOT_FOUND = -32601
# How long a cancellation notice or an answer to the server's request may take to write:
# a server that does not read its stdin must not hold the caller or the reader.
NOTICE_WRITE_S = 1.0
# Upper bound on tools/list pages, whatever cursors the server keeps sending.
MAX_LIST_PAGES = 64


class Streams(Protocol):
    send_stream: trio.abc.SendStream
    receive_stream: trio.abc.ReceiveStream


class SessionEnded(Refusal):
    """The server's session is over: WORKER_CRASHED when the server died or was stopped,
    UPSTREAM_ERROR when it broke the protocol."""


class UpstreamRpcError(Exception):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadAnswer(Exception):
    """The server answered, but not with the shape the method requires."""


class ResultTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _ToolsPage(msgspec.Struct, frozen=True):
    tools: list[msgspec.Raw]
    nextCursor: str | None = None  # noqa: N815 - the wire's name


_page_decoder = msgspec.json.Decoder(_ToolsPage)


@dataclass
class ListedTools:
    tools: list[types.Tool] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # why each undecodable definition was dropped
    truncated: bool = False  # more than max_tools (or pages) were offered


@dataclass(eq=False)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    answer: Message | None = None


class UpstreamSession:
    def __init__(self, streams: Streams, *, name: str, max_message_bytes: int,
                 on_tools_changed: Callable[[], None]) -> None:
        self.name = name
        self._send = streams.send_stream
        self._reader = LineReader(streams.receive_stream, max_message_bytes)
        self._on_tools_changed = on_tools_changed
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._write_lock = trio.Lock()
        self.ended: tuple[ErrorCode, str] | None = None  # (code, reason) once over
        self.server_info: types.Implementation | None = None
        self.protocol_version: str | None = None
        self.lists_changes = False

    # --- the reader ------------------------------------------------------------------------

    async def read_until_end(self) -> str:
        """Read the server's messages until it ends or breaks the protocol; returns why it ended.

        Every call still waiting then fails with that reason."""
        code = ErrorCode.WORKER_CRASHED
        try:
            while True:
                await self._dispatch(decode_message(await self._reader.next_line()))
        except EOFError:
            reason = "the server closed its output (it exited or crashed)"
        except WireError as e:
            code, reason = ErrorCode.UPSTREAM_ERROR, str(e)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            reason = f"the server's pipes broke ({type(e).__name__})"
        self.end(code, reason)
        return reason

    def end(self, code: ErrorCode, reason: str) -> None:
        """No more answers will come: every waiting call fails with this (the first) reason."""
        if self.ended is None:
            self.ended = (code, reason)
        for pending in self._pending.values():
            pending.done.set()
        self._pending.clear()

    async def _dispatch(self, message: Message) -> None:
        if message.is_response:
            pending = self._pending.pop(message.id, None) if isinstance(message.id, int) else None
            if pending is not None:  # else: a late answer to a call given up on
                pending.answer = message
                pending.done.set()
        elif message.is_request:
            await self._answer_server_request(message)
        elif message.method == "notifications/tools/list_changed":
            self._on_tools_changed()
        # Other notifications (progress, log messages, resource changes) are not used.

    async def _answer_server_request(self, message: Message) -> None:
        assert message.id is not None
        if message.method == "ping":
            reply = encode_response(message.id, {})
        else:
            reply = encode_response(message.id, error=(METHOD_NOT_FOUND, "the gateway does not offer this method"))
        with trio.move_on_after(NOTICE_WRITE_S) as scope:
            await self._write(reply)
        if scope.cancelled_caught:
            raise WireError("the server sends requests but does not read its input")

    # --- requests --------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            await self._send.send_all(data)

    async def request(self, method: str, params: dict[str, Any] | None) -> Message:
        """Send one request and wait for its answer; cancellation sends notifications/cancelled."""
        if self.ended is not None:
            raise SessionEnded(*self.ended)
        request_id = next(self._ids)
        pending = _Pending()
        self._pending[request_id] = pending
        try:
            try:
                await self._write(encode_request(request_id, method, params))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self.end(ErrorCode.WORKER_CRASHED, f"the server's input is closed ({type(e).__name__})")
            await pending.done.wait()
        except trio.Cancelled:
            if self._pending.pop(request_id, None) is not None and self.ended is None:
                with trio.CancelScope(shield=True), trio.move_on_after(NOTICE_WRITE_S):
                    await self._notify_cancelled(request_id)
            raise
        if pending.answer is None:
            raise SessionEnded(*(self.ended or (ErrorCode.WORKER_CRASHED, "the session ended")))
        if pending.answer.error is not None:
            raise UpstreamRpcError(pending.answer.error.code, pending.answer.error.message)
        return pending.answer

    async def _notify_cancelled(self, request_id: int) -> None:
        try:
            await self._write(encode_notification("notifications/cancelled", {
                "requestId": request_id, "reason": "the gateway's caller cancelled the call"}))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    @staticmethod
    def _decode(message: Message, model: type[pydantic.BaseModel]) -> Any:
        try:
            return model.model_validate_json(bytes(message.result) or b"{}")
        except pydantic.ValidationError as e:
            raise BadAnswer(f"the server's answer is not a valid {model.__name__} "
                            f"({e.error_count()} problems, first: {e.errors()[0]['msg']})") from None

    # --- MCP methods -----------------------------------------------------------------------

    async def initialize(self) -> types.InitializeResult:
        params = types.InitializeRequestParams(
            protocol_version=LATEST_HANDSHAKE_VERSION,
            capabilities=types.ClientCapabilities(),
            client_info=types.Implementation(name="mcp-gateway", version=__version__),
        )
        answer = await self.request("initialize", params.model_dump(mode="json", by_alias=True, exclude_none=True))
        result: types.InitializeResult = self._decode(answer, types.InitializeResult)
        if result.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            raise BadAnswer(f"the server speaks MCP {result.protocol_version[:40]!r}, which the gateway does not")
        if result.capabilities.tools is None:
            raise BadAnswer("the server offers no tools (no `tools` capability)")
        self.server_info = result.server_info
        self.protocol_version = result.protocol_version
        self.lists_changes = bool(result.capabilities.tools.list_changed)
        await self._write(encode_notification("notifications/initialized"))
        return result

    async def list_tools(self, max_tools: int) -> ListedTools:
        """Every page of tools/list, at most `max_tools` tools. Each tool is decoded on its own:
        one malformed definition costs that tool, not the server."""
        listed = ListedTools()
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            answer = await self.request("tools/list", {"cursor": cursor} if cursor else None)
            try:
                page = _page_decoder.decode(bytes(answer.result) or b"{}")
            except (msgspec.DecodeError, RecursionError) as e:
                raise BadAnswer(f"the server's tools/list answer is malformed ({str(e)[:200]})") from None
            for raw in page.tools:
                if len(listed.tools) >= max_tools:
                    listed.truncated = True
                    break
                try:
                    listed.tools.append(types.Tool.model_validate_json(bytes(raw)))
                except pydantic.ValidationError as e:
                    listed.malformed.append(f"{e.error_count()} problems, first: {e.errors()[0]['msg']}")
            cursor = page.nextCursor
            if listed.truncated or not cursor:
                break
        listed.truncated = listed.truncated or bool(cursor)
        return listed

    async def call_tool(self, name: str, arguments: dict[str, Any], max_bytes: int) -> types.CallToolResult:
        """The server's result; raises BadAnswer for a malformed one, ResultTooLarge past max_bytes
        (checked on the raw bytes, before anything decodes them)."""
        answer = await self.request("tools/call", {"name": name, "arguments": arguments})
        if len(answer.result) > max_bytes:
            raise ResultTooLarge(len(answer.result))
        return self._decode(answer, types.CallToolResult)
