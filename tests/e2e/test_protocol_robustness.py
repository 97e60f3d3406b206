"""Hostile bytes on the wire: each gets the JSON-RPC error the spec names, then ping works."""

import pytest

from tests.support.gateway_process import error_of, fs_config, raw_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="mcp-gw-proto-"))
    d.chmod(0o755)
    with raw_gateway(fs_config(d)) as g:
        yield g


def _ping_still_answered(gw):
    assert gw.request("ping")["result"] == {}


def test_malformed_json(gw):
    gw.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    assert gw.read()["error"]["code"] == -32700
    _ping_still_answered(gw)


def test_invalid_utf8(gw):
    gw.send(b'{"jsonrpc":"2.0","id":2,"method":"ping\xff\xfe"}\n')
    assert gw.read()["error"]["code"] == -32700
    _ping_still_answered(gw)


def test_not_a_jsonrpc_message(gw):
    gw.send(b'{"id": 3, "hello": "world"}\n')
    reply = gw.read()
    assert reply["error"]["code"] == -32600
    gw.send(b"[1, 2, 3]\n")
    assert gw.read()["error"]["code"] == -32600
    _ping_still_answered(gw)


def test_unknown_method(gw):
    reply = gw.request("tools/destroy", {})
    assert reply["error"]["code"] == -32601
    _ping_still_answered(gw)


def test_wrong_param_types(gw):
    reply = gw.request("tools/call", {"name": 5, "arguments": "nope"})
    assert reply["error"]["code"] == -32602
    result = gw.request("tools/call", {"name": "fs.readFile", "arguments": {"path": ["a"]}})["result"]
    assert result["isError"] and error_of(result)["error_code"] == "VALIDATION_ERROR"
    _ping_still_answered(gw)


def test_deep_nesting(gw):
    gw.send(b'{"jsonrpc":"2.0","id":9,"method":"ping","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    assert gw.read()["error"]["code"] in (-32700, -32600)
    _ping_still_answered(gw)


def test_eight_megabyte_line(gw):
    blob = b"a" * (8 * 1024 * 1024)
    gw.send(b'{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"fs.readFile","arguments":{"path":"'
            + blob + b'"}}}\n')
    reply = gw.read()
    assert reply["error"]["code"] == -32600 and "larger than" in reply["error"]["message"]
    _ping_still_answered(gw)


def test_lone_surrogate_in_arguments(gw):
    gw.send(b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"fs.readFile",'
            b'"arguments":{"path":"\\ud800"}}}\n')
    result = gw.read()["result"]
    assert result["isError"] and error_of(result)["error_code"] == "VALIDATION_ERROR"
    _ping_still_answered(gw)
