"""Non-blocking pipe ends for the stdio transport, on trio's readiness waits.

trio's FdStream adds a scheduler round trip to every read and write (a checkpoint before,
another after). On the per-call path that is measurable, so these try the syscall first
and wait for readiness only when the pipe is empty (read) or full (write). Writes keep
lines whole and in order: while anything is queued, later lines queue behind it.
"""

from __future__ import annotations

import os
from collections import deque

import trio


class PipeReader:
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def read(self, max_bytes: int) -> bytes:
        """Up to max_bytes; b"" at end of input."""
        while True:
            try:
                return os.read(self.fd, max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)


class PipeWriter:
    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._queue: deque[memoryview] = deque()
        self._drained = trio.Event()
        self._drained.set()
        self._wake = trio.Event()
        self.broken = False

    async def write(self, *parts: bytes) -> None:
        """Write the parts of one message whole and in order (one writev, no joined copy);
        returns once they are in the pipe (so memory stays bounded)."""
        if self.broken:
            raise trio.BrokenResourceError("the client closed its end of the pipe")
        views = [memoryview(p) for p in parts if p]
        if not self._queue:
            try:
                written = os.writev(self.fd, views)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, OSError) as e:
                self.broken = True
                raise trio.BrokenResourceError(str(e)) from None
            views = _after(views, written)
            if not views:
                return
        self._queue.extend(views)
        if self._drained.is_set():
            self._drained = trio.Event()
        self._wake.set()
        drained = self._drained
        await drained.wait()
        if self.broken:
            raise trio.BrokenResourceError("the client closed its end of the pipe")

    async def run(self) -> None:
        """Flush queued data whenever the pipe has room; runs until cancelled or broken."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                await trio.lowlevel.wait_writable(self.fd)
                head = self._queue[0]
                try:
                    written = os.write(self.fd, head)
                except BlockingIOError:
                    continue
                except OSError:
                    self.broken = True
                    self._queue.clear()
                    break
                if written == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[written:]
            self._drained.set()
            if self.broken:
                return


def _after(views: list[memoryview], written: int) -> list[memoryview]:
    """What is left of `views` once `written` bytes of them went out."""
    for i, view in enumerate(views):
        if written < len(view):
            return [view[written:], *views[i + 1:]]
        written -= len(view)
    return []
