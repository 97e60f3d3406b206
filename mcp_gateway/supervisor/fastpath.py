"""The hot methods, on one route for stdio and HTTP; the one way calls are run and cancelled.

The SDK keeps what it is good at: `initialize`, the rarer methods, the session rules the
conformance suite checks, anything malformed or unusual. Its per-request machinery (pydantic
models in and out, a task and several memory streams per request) costs more than the
gateway's own pipeline and a worker round trip together, so once the SDK has accepted a
session's `initialize`, plain `tools/call`, `tools/list` and `ping` requests (no `_meta`, no
extra params) are answered here, on either transport. Whether a session is initialized, and
which version it speaks, is read from the SDK's own session object (`SessionState`), never
guessed from the traffic.

A call's answer is the bytes results.py encoded once for every transport; `Calls` runs every
tools/call, on this route and the SDK's, so a call is cancelled, and its cancellation
audited, the same way whichever route carried it.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import trio

from mcp_gateway.supervisor.gateway import Gateway, Outcome

# Writes the parts of one message, whole and in order (PipeWriter.write, or a batch's collector).
Send = Callable[..., Awaitable[None]]

_RESULT_OPEN = b',"result":'
_CLOSE = b"}\n"
PONG = b"{}"

# What cancelled a call, as its audit line says it.
BY_NOTIFICATION = "the client cancelled the call (notifications/cancelled)"
BY_CLOSE = "the client closed the HTTP request"
BY_CLIENT_GONE = "the client went away: stdin and stdout closed"
# The SDK cancelled one of its own requests: it does not say why.
BY_SDK = "the client cancelled the call (notifications/cancelled) or ended the session"


# --- who is calling ------------------------------------------------------------------------

# The one source of the caller's identity on every route: the transport sets it (stdio: the
# configured actor; HTTP: the bearer token's) in the task that reads the message; the SDK's
# streams carry the sender's context to its handlers, so they read the same value.
_caller: contextvars.ContextVar[str] = contextvars.ContextVar("mcp_gateway_caller")


def act_as(actor: str) -> None:
    """The actor of every message this task (and what it hands on) carries from now on."""
    _caller.set(actor)


def current_actor() -> str:
    """The caller; fails closed (never a default identity) when the transport set none."""
    actor = _caller.get(None)
    if not actor:
        raise RuntimeError("no authenticated actor for this message")
    return actor


# --- the session, as the SDK sees it -------------------------------------------------------


class SdkSession(Protocol):
    """What the hot route reads of the SDK's `ServerSession` (public properties)."""

    @property
    def client_params(self) -> Any: ...

    @property
    def protocol_version(self) -> str: ...


class SessionState:
    """One MCP session's state, read from the SDK's session object once it has seen `initialize`.

    `born_ready` is a stateless HTTP exchange: the SDK serves it as initialized without a handshake."""

    __slots__ = ("_sdk", "_born_ready")

    def __init__(self, born_ready: bool = False) -> None:
        self._sdk: SdkSession | None = None
        self._born_ready = born_ready

    def attach(self, sdk_session: SdkSession) -> None:
        self._sdk = sdk_session

    @property
    def ready(self) -> bool:
        """True once the SDK accepted `initialize`: the hot methods may be answered here."""
        return self._born_ready or (self._sdk is not None and self._sdk.client_params is not None)

    @property
    def version(self) -> str | None:
        """The protocol version the SDK negotiated (None before `initialize`)."""
        return self._sdk.protocol_version if self._sdk is not None and self.ready else None


# --- which messages are hot ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HotRequest:
    request_id: int | str
    method: str  # tools/call, tools/list or ping
    name: str = ""
    arguments: dict[str, Any] | None = None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What decode_message gives for bytes that are not JSON.
NOT_JSON = object()


def decode_message(raw: bytes) -> Any:
    """The decoded JSON value of one message, or NOT_JSON; the same on both transports."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # msgspec refuses escaped lone surrogates; they are valid JSON, so the stdlib parses
        # them and the validation layer refuses them as VALIDATION_ERROR, with an audit line.
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # ValueError covers invalid UTF-8
            return NOT_JSON


def hot_request(obj: Any) -> HotRequest | None:
    """The plain hot request this decoded message is, or None to leave it to the SDK."""
    if type(obj) is not dict or obj.get("jsonrpc") != "2.0":
        return None
    rid = obj.get("id")
    if type(rid) not in (int, str) or not set(obj) <= {"jsonrpc", "id", "method", "params"}:
        return None
    if type(rid) is str and not rid.isascii() and not _encodable(rid):
        return None  # a lone surrogate: the SDK path answers with the id escaped
    method = obj.get("method")
    params = obj.get("params")
    if method == "tools/call":
        if type(params) is not dict or not set(params) <= {"name", "arguments"}:
            return None
        name, arguments = params.get("name"), params.get("arguments")
        if type(name) is not str or not (arguments is None or type(arguments) is dict):
            return None
        return HotRequest(rid, method, name, arguments)
    if method in ("tools/list", "ping") and (params is None or params == {}):
        return HotRequest(rid, method)
    return None


def cancelled_request_id(obj: Any) -> int | str | None:
    """The request a `notifications/cancelled` names, or None for anything else."""
    if type(obj) is not dict or obj.get("method") != "notifications/cancelled" or "id" in obj:
        return None
    params = obj.get("params")
    rid = params.get("requestId") if type(params) is dict else None
    return rid if type(rid) in (int, str) else None


def response_parts(request_id: int | str, result: bytes) -> tuple[bytes, bytes, bytes]:
    """A JSON-RPC response line around an already encoded result, as parts (never copied whole)."""
    return b'{"jsonrpc":"2.0","id":' + msgspec.json.encode(request_id) + _RESULT_OPEN, result, _CLOSE


# --- running and cancelling calls ----------------------------------------------------------


class CloseSignal(Protocol):
    """Something that calls back when the client closes the request carrying a call (HTTP)."""

    def on_close(self, callback: Callable[[], None]) -> None: ...

    @property
    def is_closed(self) -> bool: ...


class _Call:
    __slots__ = ("scope", "cause")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.cause: str | None = None

    def cancel(self, cause: str) -> None:
        if self.cause is None:
            self.cause = cause
        self.scope.cancel()

    def why(self) -> str:
        return self.cause or BY_SDK


class Calls:
    """Every tools/call, on either route: run through `Gateway.call`, cancelled one way.

    A call is cancelled by a `notifications/cancelled` naming it (`cancel`), by the client
    closing the HTTP request that carries it (`closed`), by the client going away (`cancel_all`),
    or from outside (the SDK cancelling its own request, the gateway stopping). Its worker is
    killed and replaced, it is audited once as CANCELLED with what cancelled it, and it is not
    answered: `run` returns None, or re-raises a cancellation that came from outside.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._in_flight: dict[Hashable, _Call] = {}

    async def run(self, name: str, arguments: dict[str, Any] | None, actor: str, key: Hashable | None = None,
                  closed: CloseSignal | None = None) -> Outcome | None:
        call = _Call()
        if key is not None:
            self._in_flight[key] = call
        if closed is not None:
            closed.on_close(lambda: call.cancel(BY_CLOSE))
        try:
            with call.scope:
                return await self.gateway.call(name, arguments, actor, call.why)
        finally:
            if key is not None and self._in_flight.get(key) is call:
                del self._in_flight[key]
        return None

    def cancel(self, key: Hashable) -> bool:
        """Cancel the call `key` (notifications/cancelled); False when none is in flight under it."""
        call = self._in_flight.get(key)
        if call is None:
            return False
        call.cancel(BY_NOTIFICATION)
        return True

    def cancel_all(self, cause: str) -> None:
        for call in self._in_flight.values():
            call.cancel(cause)


# --- the hot route -------------------------------------------------------------------------

# A hot call that was cancelled: no result (stdio sends nothing; HTTP answers as the SDK would).
CANCELLED = None


class HotRoute:
    """Answers a `HotRequest` of a ready session: the result's JSON, or CANCELLED."""

    def __init__(self, calls: Calls, tool_list: Callable[[str], bytes]) -> None:
        self.calls = calls
        self._tool_list = tool_list

    async def result(self, request: HotRequest, actor: str, key: Hashable,
                     closed: CloseSignal | None = None) -> bytes | None:
        if request.method == "ping":
            return PONG
        if request.method == "tools/list":
            return self._tool_list(actor)
        outcome = await self.calls.run(request.name, request.arguments, actor, key, closed)
        return CANCELLED if outcome is None else outcome.answer
