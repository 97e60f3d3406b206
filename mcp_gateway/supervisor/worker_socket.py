"""The supervisor's end of a worker socket: length-prefixed frames on a non-blocking socket.

Written against trio's low-level readiness waits instead of trio's socket wrapper: a call
is one small frame out and one frame back, and trying the syscall first (waiting only on
EAGAIN) saves the scheduler round trips the wrapper adds around every send and receive.
Cancellation still lands only in `wait_readable`/`wait_writable`.
"""

from __future__ import annotations

import socket

import trio

from mcp_gateway.ipc.frames import RECV_CHUNK, FrameBuffer, encode_frame


class WorkerSocket:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buffer = FrameBuffer()

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

    async def recv_frame(self, cap: int, *, reply: bool = False) -> bytes:
        """One frame of at most `cap` bytes; EOFError when the worker closed, FrameError over the cap.

        `reply`: a request was just sent, so nothing can have arrived yet; wait for readiness
        first instead of spending a recv that can only say EAGAIN.
        """
        if reply and not len(self._buffer):
            await trio.lowlevel.wait_readable(self.sock)
        while (frame := self._buffer.next_frame(cap)) is None:
            try:
                chunk = self.sock.recv(RECV_CHUNK)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            if not chunk:
                raise EOFError("worker closed its socket")
            self._buffer.feed(chunk)
        return frame
