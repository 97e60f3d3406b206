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

# Error codes a worker may report. TIMEOUT and WORKER_CRASHED are decided by the supervisor
# alone; POLICY_DENIED and RATE_LIMITED never come from a worker.
WorkerErrorCode = Literal[
    "VALIDATION_ERROR",
    "SECURITY_ERROR",
    "RESULT_TOO_LARGE",
    "NOT_FOUND",
    "UPSTREAM_ERROR",
    "TIMEOUT",
    "INTERNAL_ERROR",
]


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
    result: dict[str, Any]
    retire: RetireReason | None = None


class CallFailed(msgspec.Struct, tag="failed", forbid_unknown_fields=True, frozen=True):
    request_id: str
    error_code: WorkerErrorCode
    reason: str
    retire: RetireReason | None = None


WorkerReply = CallOk | CallFailed

request_encoder = msgspec.msgpack.Encoder()
request_decoder = msgspec.msgpack.Decoder(CallRequest)
reply_encoder = msgspec.msgpack.Encoder()
reply_decoder = msgspec.msgpack.Decoder(WorkerReply)


class WorkerReady(msgspec.Struct, tag="ready", forbid_unknown_fields=True, frozen=True):
    """First frame of a worker: it is confined and serving. `layers` maps layer -> status."""

    pid: int
    layers: dict[str, str]


class WorkerAbort(msgspec.Struct, tag="abort", forbid_unknown_fields=True, frozen=True):
    """First frame of a worker that could not confine itself as required; it exits next."""

    reason: str


hello_encoder = msgspec.msgpack.Encoder()
hello_decoder = msgspec.msgpack.Decoder(WorkerReady | WorkerAbort)
