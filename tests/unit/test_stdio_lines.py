import json

from hypothesis import given
from hypothesis import strategies as st
from mcp.shared.message import SessionMessage

from mcp_gateway.supervisor.stdio import LineReader, parse_line, to_session_message


def decode_line(line: bytes):
    return to_session_message(parse_line(line))


def test_line_reader_splits_and_refuses_oversized_lines_once():
    r = LineReader(cap=10)
    assert r.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert r.feed(b":2}\n") == [b'{"b":2}']
    assert r.feed(b"x" * 25) == [None]  # over the cap: refused once, then skipped
    assert r.feed(b"y" * 25) == []
    assert r.feed(b'zz\n{"c":3}\n') == [b'{"c":3}']
    assert r.feed(b"\n   \n") == []


def _error(line: bytes) -> dict:
    out = decode_line(line)
    assert isinstance(out, bytes)
    return json.loads(out)


def test_parse_and_invalid_request_errors():
    assert _error(b"{not json")["error"]["code"] == -32700
    assert _error(b"\xff\xfe garbage")["error"]["code"] == -32700
    assert _error(b'{"jsonrpc":"2.0","id":2,"method":"ping\xff\xfe"}')["error"]["code"] == -32700
    assert _error(b"[" * 100_000 + b"]" * 100_000)["error"]["code"] in (-32700, -32600)
    bad = _error(b'{"jsonrpc":"2.0","id":7,"method":5}')
    assert bad["error"]["code"] == -32600 and bad["id"] == 7
    assert _error(b'"just a string"')["error"]["code"] == -32600


def test_valid_request_becomes_a_session_message():
    assert isinstance(decode_line(b'{"jsonrpc":"2.0","id":1,"method":"ping"}'), SessionMessage)


@given(st.binary(max_size=300))
def test_decode_line_never_raises(data):
    decode_line(data)
