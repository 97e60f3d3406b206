import socket
import threading

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.ipc.frames import FrameError, FrameReader, encode_frame
from mcp_gateway.ipc.messages import (
    CallFailed,
    CallOk,
    CallRequest,
    reply_decoder,
    reply_encoder,
    request_decoder,
    request_encoder,
)


def recv_frame(sock, cap):
    return FrameReader(sock).recv_frame(cap)


def test_request_and_reply_round_trip():
    req = CallRequest("id-1", "fs.readFile", {"path": "a"}, 1000, 10)
    assert request_decoder.decode(request_encoder.encode(req)) == req
    ok = CallOk("id-1", msgspec.Raw(msgspec.msgpack.encode({"content": "x"})))
    assert bytes(reply_decoder.decode(reply_encoder.encode(ok)).result) == bytes(ok.result)  # kept encoded
    failed = CallFailed("id-1", ErrorCode.NOT_FOUND, "gone")
    assert reply_decoder.decode(reply_encoder.encode(failed)) == failed


def test_reply_decoder_refuses_codes_a_worker_may_not_send():
    forged = msgspec.msgpack.encode({"type": "failed", "request_id": "x", "error_code": "POLICY_DENIED",
                                     "reason": "r"})
    with pytest.raises(msgspec.ValidationError):
        reply_decoder.decode(forged)
    extra = msgspec.msgpack.encode({"type": "ok", "request_id": "x", "result": {}, "pwned": 1})
    with pytest.raises(msgspec.ValidationError):
        reply_decoder.decode(extra)


@given(st.binary(max_size=512))
def test_reply_decoder_on_arbitrary_bytes_only_raises_decode_errors(data):
    try:
        reply_decoder.decode(data)
    except msgspec.DecodeError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.text() | st.binary(),
                    lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))
def test_reply_decoder_on_arbitrary_msgpack_values(value):
    try:
        reply = reply_decoder.decode(msgspec.msgpack.encode(value))
    except msgspec.DecodeError:
        return
    assert isinstance(reply, CallOk | CallFailed)


def test_frame_over_cap_is_refused_before_the_body_is_read():
    a, b = socket.socketpair()
    with a, b:
        a.sendall((10**9).to_bytes(4, "big"))  # announces 1 GB, sends nothing
        with pytest.raises(FrameError, match="over the cap"):
            recv_frame(b, 1024)


def test_frames_survive_fragmentation_and_eof_mid_frame():
    a, b = socket.socketpair()
    payload = b"x" * 100_000
    data = encode_frame(payload)

    def dribble():
        for i in range(0, len(data), 777):
            a.sendall(data[i:i + 777])
        a.sendall(encode_frame(b"abc")[:5])
        a.close()

    t = threading.Thread(target=dribble)
    t.start()
    reader = FrameReader(b)
    assert reader.recv_frame(1 << 20) == payload
    with pytest.raises(FrameError, match="middle of a frame"):
        reader.recv_frame(1 << 20)
    t.join()
    b.close()
