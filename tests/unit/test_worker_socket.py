import socket
import threading

import pytest
import trio

from mcp_gateway.ipc.frames import FrameError, encode_frame
from mcp_gateway.supervisor.worker_socket import WorkerSocket


def _run(coro_fn):
    return trio.run(coro_fn)


def test_fragmented_and_back_to_back_frames():
    a, b = socket.socketpair()
    big = b"y" * 300_000
    data = encode_frame(big) + encode_frame(b"second")

    def dribble():
        for i in range(0, len(data), 4099):
            a.sendall(data[i:i + 4099])

    t = threading.Thread(target=dribble)
    t.start()

    async def main():
        ws = WorkerSocket(b)
        assert await ws.recv_frame(1 << 20) == big
        assert await ws.recv_frame(1 << 20) == b"second"

    _run(main)
    t.join()
    a.close()
    b.close()


def test_cap_eof_and_send():
    a, b = socket.socketpair()

    async def main():
        ws = WorkerSocket(b)
        await ws.send_frame(b"ping")
        assert a.recv(100) == encode_frame(b"ping")
        a.sendall((5000).to_bytes(4, "big"))
        with pytest.raises(FrameError):
            await ws.recv_frame(1000)
        a.close()

    _run(main)
    b.close()


def test_eof_mid_frame_and_deadline():
    a, b = socket.socketpair()

    async def main():
        ws = WorkerSocket(b)
        with trio.move_on_after(0.1) as scope:
            await ws.recv_frame(100)  # nothing arrives: the wait is cancellable
        assert scope.cancelled_caught
        a.sendall(encode_frame(b"abc")[:5])
        a.close()
        with pytest.raises(EOFError):
            await ws.recv_frame(100)

    _run(main)
    b.close()
