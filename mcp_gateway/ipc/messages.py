"""Typed messages shared by both ends of a worker socket.

The supervisor sends one `CallRequest`; the worker answers with an empty frame as soon as it
has read the request (the acknowledgement: before it, the worker has done nothing with the
request, so a worker that dies unacknowledged can have the request retried on another one),
then with exactly one `CallOk` or `CallFailed`.
Decoding is strict (unknown fields, wrong types and unknown tags are errors) because the
supervisor must trust nothing a possibly compromised worker sends.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from mcp_gateway.ipc.errors import WORKER_CODES, ErrorCode

# Why a worker asks to be replaced after answering: it used most of its RLIMIT_CPU budget, or
# its local state is broken (no descriptor left, a connection that keeps failing).
RetireReason = Literal["cpu_budget", "broken_state"]

ACK = b""  # the acknowledgement frame's payload


class CallRequest(msgspec.Struct, tag="call", forbid_unknown_fields=True, frozen=True):
    request_id: str
    tool: str
    args: dict[str, Any]
    timeout_ms: int  # what is LEFT of the call's timeout when the request is sent
    max_bytes: int


class CallOk(msgspec.Struct, tag="ok", forbid_unknown_fields=True, frozen=True):
    request_id: str
    # The tool's result, encoded by the worker; the supervisor decodes it strictly with the
    # tool's own result struct (ToolSpec.decode_result), never as free-form data.
    result: msgspec.Raw
    retire: RetireReason | None = None


class CallFailed(msgspec.Struct, tag="failed", forbid_unknown_fields=True, frozen=True):
    request_id: str
    error_code: ErrorCode  # from a worker: one of WORKER_CODES (ReplyDecoder)
    reason: str
    retire: RetireReason | None = None


WorkerReply = CallOk | CallFailed

request_encoder = msgspec.msgpack.Encoder()
request_decoder = msgspec.msgpack.Decoder(CallRequest)
reply_encoder = msgspec.msgpack.Encoder()


class ReplyDecoder:
    """Strict decoding of a worker's reply, its error code included: a worker may report only
    WORKER_CODES (the pool's own verdicts, WORKER_CRASHED and UNAVAILABLE, use the same struct)."""

    def __init__(self) -> None:
        self._decoder = msgspec.msgpack.Decoder(WorkerReply)

    def decode(self, payload: bytes) -> WorkerReply:
        reply = self._decoder.decode(payload)
        if isinstance(reply, CallFailed) and reply.error_code not in WORKER_CODES:
            raise msgspec.ValidationError(f"a worker may not report {reply.error_code}")
        return reply


reply_decoder = ReplyDecoder()


class WorkerReady(msgspec.Struct, tag="ready", forbid_unknown_fields=True, frozen=True):
    """First frame of a worker: it is confined and serving. `layers` maps layer -> status."""

    pid: int
    layers: dict[str, str]


class WorkerAbort(msgspec.Struct, tag="abort", forbid_unknown_fields=True, frozen=True):
    """First frame of a worker that could not confine itself as required; it exits next."""

    reason: str


hello_encoder = msgspec.msgpack.Encoder()
hello_decoder = msgspec.msgpack.Decoder(WorkerReady | WorkerAbort)
