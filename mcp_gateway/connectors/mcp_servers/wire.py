"""JSON-RPC over an upstream server's stdio: newline-delimited messages, capped and strictly decoded.

Everything the server writes is hostile until decoded: a line longer than the cap is never
buffered past the cap, the envelope is decoded by msgspec into a small struct (a result stays
raw bytes until the one call waiting for it decodes it), and nothing here grows with what the
server sends beyond one capped line.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import trio

RequestId = int | str

_READ_CHUNK = 64 * 1024


class WireError(Exception):
    """The server broke the framing or the protocol: its session cannot go on."""


# A member that was not sent (msgspec.Raw cannot be part of a union with None).
ABSENT = msgspec.Raw()


class RpcError(msgspec.Struct, frozen=True):
    code: int
    message: str
    data: msgspec.Raw = ABSENT


class Message(msgspec.Struct, frozen=True):
    """Any JSON-RPC message from the server: a response (id + result|error), a request
    (id + method) or a notification (method only). Unknown members are ignored, as JSON-RPC allows."""

    jsonrpc: Literal["2.0"]
    id: RequestId | None = None
    method: str | None = None
    params: msgspec.Raw = ABSENT
    result: msgspec.Raw = ABSENT
    error: RpcError | None = None

    @property
    def is_response(self) -> bool:
        return self.method is None and self.id is not None

    @property
    def is_request(self) -> bool:
        return self.method is not None and self.id is not None


_decoder = msgspec.json.Decoder(Message)
_encoder = msgspec.json.Encoder()


def decode_message(line: bytes) -> Message:
    try:
        message = _decoder.decode(line)
    except (msgspec.DecodeError, RecursionError) as e:
        raise WireError(f"the server wrote something that is not a JSON-RPC message ({_short(e)})") from None
    if message.method is None and message.id is None:
        raise WireError("the server wrote a JSON-RPC message with neither id nor method")
    if message.is_response and (len(message.result) == 0) == (message.error is None):
        raise WireError("the server wrote a response with both or neither of result and error")
    return message


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def encode_request(request_id: int, method: str, params: dict[str, Any] | None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return _encoder.encode(body) + b"\n"


def encode_notification(method: str, params: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        body["params"] = params
    return _encoder.encode(body) + b"\n"


def encode_response(request_id: RequestId, result: dict[str, Any] | None = None,
                    error: tuple[int, str] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
    if error is not None:
        body["error"] = {"code": error[0], "message": error[1]}
    else:
        body["result"] = result if result is not None else {}
    return _encoder.encode(body) + b"\n"


class LineReader:
    """Lines from a byte stream, each at most `cap` bytes (the newline not counted): a longer one
    is an error as soon as `cap` + 1 bytes without a newline are buffered."""

    def __init__(self, stream: trio.abc.ReceiveStream, cap: int) -> None:
        self._stream = stream
        self._cap = cap
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no newline

    async def next_line(self) -> bytes:
        """The next non-blank line; raises EOFError at the end of the stream, WireError past the cap."""
        while True:
            newline = self._buffer.find(b"\n", self._scanned)
            if newline > self._cap:
                raise self._too_long()
            if newline >= 0:
                line = bytes(self._buffer[:newline]).rstrip(b"\r")
                del self._buffer[: newline + 1]
                self._scanned = 0
                if line.strip():
                    return line
                continue
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._cap:
                raise self._too_long()
            chunk = await self._stream.receive_some(min(_READ_CHUNK, self._cap + 1 - len(self._buffer) + 1))
            if not chunk:
                raise EOFError
            self._buffer += chunk

    def _too_long(self) -> WireError:
        return WireError(f"the server wrote a message longer than {self._cap} bytes "
                         "(connectors.mcp_servers.<instance>.max_message_bytes)")
