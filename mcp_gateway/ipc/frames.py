"""Length-prefixed frames: a 4-byte big-endian length, then that many payload bytes.

The reader refuses a frame whose announced length passes its cap before reading the body,
so a hostile peer cannot make the other side allocate more than the cap.
"""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 2**31 - 1


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


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("peer closed the socket")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket, cap: int) -> bytes:
    """Blocking read of one frame (worker side). EOFError on a clean close between frames."""
    header = _recv_exactly(sock, HEADER.size)
    length = check_length(header, cap)
    try:
        return _recv_exactly(sock, length)
    except EOFError:
        raise FrameError("peer closed the socket in the middle of a frame") from None


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(encode_frame(payload))
