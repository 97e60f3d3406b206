"""A worker's request loop: one frame in, one frame out, until the supervisor closes the socket."""

from __future__ import annotations

import os
import socket
import sys
import traceback

import msgspec

from mcp_gateway.ipc.frames import FrameError, FrameReader, send_frame
from mcp_gateway.ipc.messages import CallFailed, CallOk, CallRequest, reply_encoder, request_decoder
from mcp_gateway.tools import TOOLS
from mcp_gateway.workers.connector import CallLimits, Connector, ToolError

# Requests are validated arguments of bounded size; 8 MiB leaves room for the largest.
REQUEST_CAP = 8 * 1024 * 1024
# Room for the envelope and JSON structure around a result of max_bytes.
REPLY_OVERHEAD = 64 * 1024


def reply_cap(max_bytes: int) -> int:
    """Largest reply frame the supervisor accepts for a call capped at max_bytes.

    Text results travel once as UTF-8; base64 and JSON escaping can grow a result of
    max_bytes raw bytes to at most about twice that.
    """
    return 2 * max_bytes + REPLY_OVERHEAD


def handle(connector: Connector, req: CallRequest) -> CallOk | CallFailed:
    spec = TOOLS.get(req.tool)
    if spec is None or spec.connector != connector.name:
        return CallFailed(req.request_id, "VALIDATION_ERROR", f"tool {req.tool!r} is not served by this worker")
    try:
        args = msgspec.convert(req.args, spec.args_type, strict=True)
    except msgspec.ValidationError as e:
        return CallFailed(req.request_id, "VALIDATION_ERROR", f"arguments rejected by the worker: {e}")
    try:
        result = connector.call(req.tool, args, CallLimits(req.timeout_ms, req.max_bytes))
    except ToolError as e:
        if e.log_detail:
            print(f"mcp-gateway worker {os.getpid()} request {req.request_id}: {e.log_detail}",
                  file=sys.stderr, flush=True)
        return CallFailed(req.request_id, e.code, e.reason)
    except MemoryError:
        return CallFailed(req.request_id, "INTERNAL_ERROR", "the worker ran out of memory (sandbox memory limit)")
    except Exception:
        # Details go to the operator's log, keyed by request id; the agent gets no internals.
        print(f"mcp-gateway worker {os.getpid()} request {req.request_id}: unhandled error\n"
              f"{traceback.format_exc()}", file=sys.stderr, flush=True)
        return CallFailed(req.request_id, "INTERNAL_ERROR",
                          f"unexpected worker error; the gateway log has details under request {req.request_id}")
    return CallOk(req.request_id, result)


def serve(sock: socket.socket, connector: Connector) -> None:
    """Answer requests until the supervisor closes the socket; never returns."""
    reader = FrameReader(sock)
    while True:
        try:
            req = request_decoder.decode(reader.recv_frame(REQUEST_CAP))
        except (EOFError, FrameError, OSError, msgspec.DecodeError):
            # The supervisor went away or spoke garbage: a worker has nothing to save.
            os._exit(0)
        reply = handle(connector, req)
        payload = reply_encoder.encode(reply)
        if isinstance(reply, CallOk) and len(payload) > reply_cap(req.max_bytes):
            payload = reply_encoder.encode(CallFailed(
                req.request_id, "RESULT_TOO_LARGE",
                f"the encoded result ({len(payload)} bytes) passes the cap of {req.max_bytes} bytes"))
        try:
            send_frame(sock, payload)
        except OSError:
            os._exit(0)
