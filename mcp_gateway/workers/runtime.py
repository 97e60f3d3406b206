"""A worker's request loop: one frame in, an acknowledgement and one frame out, until the
supervisor closes the socket. Also the one deadline policy every connector follows, and the
worker's own health check after each call (asking to be retired before it wears out)."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
import traceback

import msgspec

from mcp_gateway.connectors.base import ToolSpec
from mcp_gateway.ipc.caps import REQUEST_CAP, reply_cap
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.ipc.frames import FrameError, FrameReader, send_frame
from mcp_gateway.ipc.messages import (
    ACK,
    CallFailed,
    CallOk,
    CallRequest,
    RetireReason,
    reply_encoder,
    request_decoder,
)
from mcp_gateway.workers.connector import CallLimits, Connector


def call_limits(req: CallRequest, received: float) -> CallLimits:
    """The worker's budget: what the supervisor had left, minus time to send the reply back.

    The margin (10 %, at least 50 ms, at most 1 s) lets a connector that stops at its
    deadline (cancelling a query, rolling back) answer with its own TIMEOUT before the
    supervisor's hard deadline kills it. Connectors add no margin of their own.
    """
    left_s = req.timeout_ms / 1000
    margin_s = min(max(left_s * 0.1, 0.05), 1.0)
    budget_s = max(left_s - margin_s, 0.001)
    return CallLimits(max(1, int(budget_s * 1000)), req.max_bytes, received + budget_s)


def handle(connector: Connector, req: CallRequest, limits: CallLimits) -> CallOk | CallFailed:
    spec = connector.tools.get(req.tool)
    if spec is None:
        return CallFailed(req.request_id, ErrorCode.VALIDATION_ERROR, f"tool {req.tool!r} is not served by this worker")
    try:
        args = msgspec.convert(req.args, spec.args_type, strict=True)
    except msgspec.ValidationError as e:
        return CallFailed(req.request_id, ErrorCode.VALIDATION_ERROR, f"arguments rejected by the worker: {e}")
    try:
        result = connector.call(spec.tool, args, limits)
    except Refusal as e:
        if e.log_detail:
            print(f"mcp-gateway worker {os.getpid()} request {req.request_id}: {e.log_detail}",
                  file=sys.stderr, flush=True)
        return CallFailed(req.request_id, e.code, e.reason)
    except MemoryError:
        return CallFailed(req.request_id, ErrorCode.INTERNAL_ERROR,
                          "the worker ran out of memory (sandbox memory limit)")
    except Exception:
        # Details go to the operator's log, keyed by request id; the agent gets no internals.
        print(f"mcp-gateway worker {os.getpid()} request {req.request_id}: unhandled error\n"
              f"{traceback.format_exc()}", file=sys.stderr, flush=True)
        return CallFailed(req.request_id, ErrorCode.INTERNAL_ERROR,
                          f"unexpected worker error; the gateway log has details under request {req.request_id}")
    return _typed(spec, req, result)


def _typed(spec: ToolSpec, req: CallRequest, result: object) -> CallOk | CallFailed:
    """The result encoded as the tool's result struct; a bug that made another shape fails the call."""
    try:
        return CallOk(req.request_id, msgspec.Raw(spec.encode_result(result)))
    except msgspec.ValidationError as e:
        print(f"mcp-gateway worker {os.getpid()} request {req.request_id}: the result does not match "
              f"{spec.name}'s result type: {e}", file=sys.stderr, flush=True)
        return CallFailed(req.request_id, ErrorCode.INTERNAL_ERROR,
                          f"the worker's result did not match the tool's result type; the gateway log has "
                          f"details under request {req.request_id}")


def _out_of_descriptors() -> bool:
    try:
        os.close(os.dup(0))
    except OSError as e:
        # dup is fcntl(F_DUPFD_CLOEXEC, 0), which says EINVAL when RLIMIT_NOFILE is 0.
        return e.errno in (errno.EMFILE, errno.ENFILE, errno.EINVAL)
    return False


class Wear:
    """When this worker should be retired between calls: past `cpu_share` of its RLIMIT_CPU
    budget (so the next innocent call cannot die of CPU its predecessors used), or when its
    local state is broken."""

    def __init__(self, connector: Connector, cpu_budget_s: float, cpu_share: float) -> None:
        self.connector = connector
        self.cpu_limit_s = cpu_budget_s * cpu_share

    def retire_reason(self) -> RetireReason | None:
        if time.process_time() >= self.cpu_limit_s:
            return "cpu_budget"
        if _out_of_descriptors() or self.connector.broken() is not None:
            return "broken_state"
        return None


def serve(sock: socket.socket, connector: Connector, wear: Wear) -> None:
    """Answer requests until the supervisor closes the socket; never returns."""
    reader = FrameReader(sock)
    while True:
        try:
            frame = reader.recv_frame(REQUEST_CAP)
            received = time.monotonic()
            send_frame(sock, ACK)  # from here on the request counts as read (never retried)
            req = request_decoder.decode(frame)
        except (EOFError, FrameError, OSError, msgspec.DecodeError):
            # The supervisor went away or spoke garbage: a worker has nothing to save.
            os._exit(0)
        reply = handle(connector, req, call_limits(req, received))
        retire = wear.retire_reason()
        if retire is not None:
            reply = msgspec.structs.replace(reply, retire=retire)
        payload = reply_encoder.encode(reply)
        if isinstance(reply, CallOk) and len(payload) > reply_cap(req.max_bytes):
            payload = reply_encoder.encode(CallFailed(
                req.request_id, ErrorCode.RESULT_TOO_LARGE,
                f"the encoded result ({len(payload)} bytes) passes the cap of {req.max_bytes} bytes", retire))
        try:
            send_frame(sock, payload)
        except OSError:
            os._exit(0)
