"""Cancellation, end of input and batches on stdio, on both the fast path and the SDK path.

A plain `tools/call` is answered by the fast path; the same call with `_meta` in its params goes
through the SDK's dispatcher. Each behaviour is held on both.
"""

import os
import signal
import time

import pytest

from tests.e2e.test_worker_pool import _alive
from tests.support.gateway_process import (
    RawGateway,
    audit_lines,
    error_of,
    fs_config,
    raw_gateway,
    wait_until,
    worker_pids,
)

PATHS = {"fast": {}, "sdk": {"_meta": {}}}


def _config(gw_dir):
    return fs_config(gw_dir, policy={"global_timeout_ms": 20000}, connectors={"filesystem": {"workers": 1}})


def _read_call(rid, path):
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
            "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}, **PATHS[path]}}


@pytest.mark.parametrize("path", PATHS)
def test_a_cancelled_call_stops_its_worker_gets_no_answer_and_is_audited_once(gw_dir, path):
    with raw_gateway(_config(gw_dir)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the call can only end by its 20 s deadline or a cancel
        try:
            gw.send_json(_read_call(5, path))
            time.sleep(0.3)  # the request is now inside the stopped worker's socket
            gw.send_json({"jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": {"requestId": 5, "reason": "the user pressed stop"}})
            # The next line is the ping's answer: the cancelled call is never answered.
            assert gw.request("ping", timeout=5)["result"] == {}
            wait_until(lambda: not _alive(worker))  # killed, not left to run to its deadline
            again = gw.call("fs.readFile", {"path": "hello.txt"}, timeout=10)
            assert not again["isError"]
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
    lines = audit_lines(gw_dir)
    assert [x["error_code"] for x in lines] == ["CANCELLED", None]
    assert lines[0]["decision"] == "allow" and "notifications/cancelled" in lines[0]["reason"]


def test_a_cancel_for_an_unknown_or_finished_request_changes_nothing(gw_dir):
    with raw_gateway(_config(gw_dir)) as gw:
        assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]
        for rid in (gw._next_id, 123456, "nope"):  # the finished call's id, then ids never sent
            gw.send_json({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid}})
        assert gw.request("ping")["result"] == {}  # nothing was answered for the cancels
        assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None, None]


@pytest.mark.parametrize("path", PATHS)
def test_a_request_followed_by_end_of_input_is_answered_then_the_gateway_exits(gw_dir, path):
    gw = RawGateway(_config(gw_dir))
    try:
        gw.initialize()
        gw.wait_ready()
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)
        try:
            gw.send_json(_read_call(9, path))
            gw.proc.stdin.close()  # EOF while the call is in flight
            time.sleep(0.3)
        finally:
            os.kill(worker, signal.SIGCONT)
        reply = gw.read()
        assert reply["id"] == 9 and reply["result"]["isError"] is False, reply
        assert gw.proc.wait(15) == 0
    finally:
        gw.close()
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None]


@pytest.mark.parametrize("path", PATHS)
def test_a_client_gone_altogether_cancels_its_calls_and_the_gateway_exits(gw_dir, path):
    gw = RawGateway(_config(gw_dir))
    try:
        gw.initialize()
        gw.wait_ready()
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the call could only end by its 20 s deadline
        try:
            gw.send_json(_read_call(9, path))
            time.sleep(0.3)
            gw.proc.stdin.close()  # the client exits: both its ends of the wire close
            gw.proc.stdout.close()
            assert gw.proc.wait(10) == 0  # not after the call's 20 s deadline: there is no one to answer
        finally:
            if _alive(worker):
                os.kill(worker, signal.SIGCONT)
    finally:
        gw.close()
    (line,) = audit_lines(gw_dir)
    assert line["error_code"] == "CANCELLED" and "cancelled (the client" in line["reason"], line


def _init(gw, version):
    reply = gw.request("initialize", {"protocolVersion": version, "capabilities": {},
                                      "clientInfo": {"name": "batch-test", "version": "0"}})
    assert reply["result"]["protocolVersion"] == version
    gw.send_json({"jsonrpc": "2.0", "method": "notifications/initialized"})
    gw.wait_ready()


def test_batches_are_served_on_a_2025_03_26_session(gw_dir):
    gw = RawGateway(fs_config(gw_dir))
    try:
        _init(gw, "2025-03-26")
        gw.send_json([
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            _read_call(2, "fast"),
            _read_call(3, "sdk"),
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
             "params": {"name": "fs.readFile", "arguments": {"path": "/etc/passwd"}}},
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
            {"jsonrpc": "2.0", "id": 6, "hello": "not a request"},
            {"jsonrpc": "2.0", "id": 7, "method": "no/such/method"},
        ])
        answers = gw.read()
        assert isinstance(answers, list)
        by_id = {a["id"]: a for a in answers}
        assert sorted(by_id) == [1, 2, 3, 4, 6, 7]  # one answer per request, none for the notification
        assert by_id[1]["result"] == {}
        fast, sdk = by_id[2]["result"], by_id[3]["result"]
        assert fast["structuredContent"]["content"] == sdk["structuredContent"]["content"] == "hello world\n"
        assert error_of(by_id[4]["result"])["error_code"] == "SECURITY_ERROR"
        assert by_id[6]["error"]["code"] == -32600 and by_id[7]["error"]["code"] == -32601
        # An empty batch is one Invalid Request; a batch of notifications gets no answer at all.
        gw.send_json([])
        assert gw.read()["error"]["code"] == -32600
        gw.send_json([{"jsonrpc": "2.0", "method": "notifications/progress",
                       "params": {"progressToken": 1, "progress": 2}}])
        assert gw.request("ping")["result"] == {}
    finally:
        gw.close()
    assert sorted(str(x["error_code"]) for x in audit_lines(gw_dir)) == ["None", "None", "SECURITY_ERROR"]


def test_batches_are_refused_on_later_protocol_versions(gw_dir):
    gw = RawGateway(fs_config(gw_dir))
    try:
        _init(gw, "2025-11-25")
        gw.send_json([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
        error = gw.read()["error"]
        assert error["code"] == -32600 and "2025-03-26" in error["message"]
        assert gw.request("ping")["result"] == {}
    finally:
        gw.close()
