"""Length-prefixed frames: a 4-byte big-endian length, then that many payload bytes.

The reader refuses a frame whose announced length passes its cap before reading the body,
so a hostile peer cannot make the other side allocate more than the cap.
"""

from __future__ import annotations

import socket
import struct

from mcp_gateway.ipc.caps import MAX_FRAME

HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer broke the framing (too large, or closed mid-frame)."""


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the protocol maximum")
    return HEADER.pack(len(payload)) + payload


def check_length(header: bytes, cap: int) -> int:
    (length,) = HEADER.unpack(header)
    if length > cap:
        raise FrameError(f"peer announced a frame of {length} bytes, over the cap of {cap}")
    return length


class FrameBuffer:
    """Bytes received so far, cut into frames; shared by the blocking and the trio readers."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self, cap: int) -> bytes | None:
        """A complete frame, or None until more bytes arrive. FrameError over the cap."""
        buf = self._buf
        if len(buf) < HEADER.size:
            return None
        length = check_length(bytes(buf[: HEADER.size]), cap)
        end = HEADER.size + length
        if len(buf) < end:
            return None
        frame = bytes(buf[HEADER.size:end])
        del buf[:end]
        return frame


RECV_CHUNK = 256 * 1024


class FrameReader:
    """Blocking frame reader (the worker side): usually one recv per frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = FrameBuffer()

    def recv_frame(self, cap: int) -> bytes:
        """One frame; EOFError on a clean close between frames, FrameError on a bad one."""
        while (frame := self.buffer.next_frame(cap)) is None:
            chunk = self.sock.recv(RECV_CHUNK)
            if not chunk:
                if len(self.buffer):
                    raise FrameError("peer closed the socket in the middle of a frame")
                raise EOFError("peer closed the socket")
            self.buffer.feed(chunk)
        return frame


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(encode_frame(payload))
