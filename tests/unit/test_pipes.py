import os
import threading

import pytest
import trio

from mcp_gateway.supervisor.pipes import PipeReader, PipeWriter


def test_lines_stay_whole_and_ordered_when_the_pipe_is_full():
    r, w = os.pipe()
    lines = [(f"{i:05d}:" + "x" * (1000 + i * 37 % 5000) + "\n").encode() for i in range(300)]
    received = bytearray()

    def slow_reader():
        while chunk := os.read(r, 4096):
            received.extend(chunk)

    t = threading.Thread(target=slow_reader)
    t.start()

    async def main():
        writer = PipeWriter(w)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            for line in lines:  # far more than the 64 KiB a pipe holds
                await writer.write(line)
            nursery.cancel_scope.cancel()

    trio.run(main)
    os.close(w)
    t.join(10)
    os.close(r)
    assert bytes(received) == b"".join(lines)


def test_concurrent_writers_never_interleave_inside_a_line():
    r, w = os.pipe()
    received = bytearray()
    t = threading.Thread(target=lambda: [received.extend(c) for c in iter(lambda: os.read(r, 1000), b"")])
    t.start()

    async def main():
        writer = PipeWriter(w)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            async with trio.open_nursery() as writers:
                for k in range(20):
                    writers.start_soon(writer.write, (str(k) * 20_000 + "\n").encode())
            nursery.cancel_scope.cancel()

    trio.run(main)
    os.close(w)
    t.join(10)
    os.close(r)
    out = bytes(received).split(b"\n")[:-1]
    assert sorted(out) == sorted((str(k) * 20_000).encode() for k in range(20))


def test_reader_eof_and_broken_writer():
    r, w = os.pipe()

    async def main():
        reader = PipeReader(r)
        os.write(w, b"abc")
        os.close(w)
        assert await reader.read(10) == b"abc"
        assert await reader.read(10) == b""
        r2, w2 = os.pipe()
        os.close(r2)
        writer = PipeWriter(w2)
        with pytest.raises(trio.BrokenResourceError):
            await writer.write(b"x")
        os.close(w2)

    trio.run(main)
    os.close(r)
