"""The supervisor's end of a worker socket: length-prefixed frames on a non-blocking socket.

Written against trio's low-level readiness waits instead of trio's socket wrapper: a call
is one small frame out and one frame back, and trying the syscall first (waiting only on
EAGAIN) saves the scheduler round trips the wrapper adds around every send and receive.
Cancellation still lands only in `wait_readable`/`wait_writable`.
"""

from __future__ import annotations

import socket

import trio

from mcp_gateway.ipc.frames import HEADER, check_length, encode_frame

RECV_CHUNK = 256 * 1024


class WorkerSocket:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buf = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    async def send_frame(self, payload: bytes) -> None:
        data = memoryview(encode_frame(payload))
        while data:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
                continue
            data = data[sent:]

    async def recv_frame(self, cap: int) -> bytes:
        """One frame of at most `cap` bytes; EOFError when the worker closed, FrameError over the cap."""
        buf = self._buf
        need = HEADER.size
        length = -1
        while True:
            if length < 0 and len(buf) >= HEADER.size:
                length = check_length(bytes(buf[: HEADER.size]), cap)
                need = HEADER.size + length
            if length >= 0 and len(buf) >= need:
                frame = bytes(buf[HEADER.size:need])
                del buf[:need]
                return frame
            try:
                chunk = self.sock.recv(max(RECV_CHUNK, need - len(buf)))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not chunk:
                raise EOFError("worker closed its socket")
            buf += chunk
