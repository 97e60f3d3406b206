import os
import threading

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gateway.supervisor.pipes import PipeReader, PipeWriter, _after


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


_part = st.one_of(st.binary(max_size=64), st.integers(0, 200_000).map(lambda n: bytes([n % 251]) * n))


@settings(max_examples=30)
@given(st.lists(st.lists(_part, max_size=4), min_size=1, max_size=6))
def test_parts_arrive_whole_and_in_order(messages):
    expected = b"".join(b"".join(parts) for parts in messages)

    async def main() -> bytes:
        r, w = os.pipe()
        writer, reader = PipeWriter(w), PipeReader(r)
        got = bytearray()

        async def write_all() -> None:
            async with trio.open_nursery() as inner:
                inner.start_soon(writer.run)
                for parts in messages:  # each returns once its parts are all in the pipe
                    await writer.write(*parts)
                inner.cancel_scope.cancel()
            os.close(w)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_all)
            while chunk := await reader.read(65536):
                got += chunk
        os.close(r)
        return bytes(got)

    assert trio.run(main) == expected


def test_after_skips_exactly_what_was_written():
    views = [memoryview(b"abc"), memoryview(b""), memoryview(b"defg")]
    for written in range(8):
        assert b"".join(_after(views, written)) == b"abcdefg"[written:]
