"""Hard timeouts, crashes and replacement, observed on a real gateway's real workers."""

import os
import signal
import time

import pytest

from tests.support.gateway_process import (
    audit_lines,
    children,
    error_of,
    fs_config,
    raw_gateway,
    wait_until,
    worker_pids,
)


def _one_worker_config(gw_dir, timeout_ms=1500):
    return fs_config(gw_dir, policy={"global_timeout_ms": timeout_ms},
                     connectors={"filesystem": {"workers": 1}})


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or reaped while being read
        return False


def test_stuck_worker_is_killed_at_the_deadline_and_replaced(gw_dir):
    with raw_gateway(_one_worker_config(gw_dir)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)  # the worker will never answer
        started = time.monotonic()
        result = gw.call("fs.readFile", {"path": "hello.txt"})
        elapsed = time.monotonic() - started
        assert result["isError"] and error_of(result)["error_code"] == "TIMEOUT"
        assert 1.0 < elapsed < 10  # ended by the 1.5 s deadline, not by anything else
        wait_until(lambda: not _alive(worker))
        again = gw.call("fs.readFile", {"path": "hello.txt"})
        assert not again["isError"] and again["structuredContent"]["content"] == "hello world\n"
        live = [p for p in worker_pids(gw.proc.pid) if _alive(p)]
        assert len(live) == 1 and live[0] != worker
    codes = [x["error_code"] for x in audit_lines(gw_dir)]
    assert codes == ["TIMEOUT", None]


def test_a_request_the_worker_never_read_goes_to_a_fresh_worker(gw_dir):
    with raw_gateway(_one_worker_config(gw_dir, timeout_ms=20000)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)
        gw.send_json({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                      "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})
        time.sleep(0.3)  # the request now sits unread in the stopped worker's socket
        os.kill(worker, signal.SIGKILL)
        reply = gw.read()
        assert reply["id"] == 77
        assert not reply["result"]["isError"], reply  # it never acknowledged: retried, not failed
        assert reply["result"]["structuredContent"]["content"] == "hello world\n"
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None]


def test_calls_beyond_free_workers_queue_and_the_wait_counts_against_the_timeout(gw_dir):
    with raw_gateway(_one_worker_config(gw_dir, timeout_ms=800)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)
        for i in range(3):
            gw.send_json({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                          "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})
        replies = {r["id"]: r for r in (gw.read(), gw.read(), gw.read())}
        codes = [error_of(r["result"])["error_code"] if r["result"]["isError"] else None for r in replies.values()]
        # One call held the stuck worker until its deadline; the queued ones waited for a
        # worker inside their own deadline (UNAVAILABLE if none came in time). None may hang.
        assert codes.count("TIMEOUT") == 1
        assert all(c in ("TIMEOUT", "UNAVAILABLE", None) for c in codes)
        assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]


def test_no_orphans_when_the_supervisor_is_killed(gw_dir):
    with raw_gateway(fs_config(gw_dir)) as gw:
        zygotes = wait_until(lambda: children(gw.proc.pid))
        workers = wait_until(lambda: worker_pids(gw.proc.pid) if len(worker_pids(gw.proc.pid)) == 2 else None)
        gw.proc.kill()
        gw.proc.wait(5)

        wait_until(lambda: not any(_alive(p) for p in zygotes + workers), timeout=5)


@pytest.mark.parametrize("connector_workers", [2])
def test_workers_are_confined(gw_dir, connector_workers):
    from tests.support.gateway_process import proc_status

    with raw_gateway(fs_config(gw_dir)) as gw:
        workers = wait_until(lambda: worker_pids(gw.proc.pid) if len(worker_pids(gw.proc.pid)) == 2 else None)
        for pid in workers:
            status = proc_status(pid)
            assert status["NoNewPrivs"] == "1"
            assert status["Seccomp"] == "2"
            assert status["CapEff"] == "0000000000000000"
            if os.geteuid() == 0:
                assert status["Uid"].split()[0] != "0"
            with open(f"/proc/{pid}/limits") as f:
                limits = {line[:26].strip(): line[26:].split() for line in f.read().splitlines()[1:]}
            assert limits["Max processes"][:2] == ["0", "0"]
            assert limits["Max file size"][:2] == ["0", "0"]
            assert limits["Max core file size"][:2] == ["0", "0"]
            assert limits["Max data size"][0] != "unlimited"
            if os.geteuid() != 0:
                # Not dumpable: even the same uid cannot look inside the worker's fd table.
                with pytest.raises(PermissionError):
                    os.listdir(f"/proc/{pid}/fd")
                continue
            # stdio (null/stderr), the IPC socket, the connector's own root directory fd, and
            # the lock that keeps the worker's uid its own (sandbox/identity.py).
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
            assert fds[:4] == [0, 1, 2, 3]
            assert os.readlink(f"/proc/{pid}/fd/3").startswith("socket:")
            uid_lock = f"/run/mcp-gateway/worker-uids/{status['Uid'].split()[0]}"
            rest = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds[4:])
            assert rest == sorted([str(gw_dir / "data"), uid_lock]), rest


def test_a_full_queue_refuses_at_once(gw_dir):
    config = fs_config(gw_dir, policy={"global_timeout_ms": 1500},
                       connectors={"filesystem": {"workers": 1, "queue_size": 1}})
    with raw_gateway(config) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)
        for i in range(3):
            gw.send_json({"jsonrpc": "2.0", "id": 200 + i, "method": "tools/call",
                          "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})
            time.sleep(0.1)
        first = gw.read()
        assert first["id"] == 202  # answered at once, before the other two time out
        assert error_of(first["result"])["error_code"] == "UNAVAILABLE"
        assert "capacity" in error_of(first["result"])["reason"]
        rest = {r["id"]: r["result"] for r in (gw.read(), gw.read())}
        assert error_of(rest[200])["error_code"] == "TIMEOUT"
        # The queued call waited inside its own deadline; the replacement may serve it in time.
        assert rest[201]["isError"] is False or error_of(rest[201])["error_code"] == "UNAVAILABLE"


def test_worker_killed_while_idle_costs_no_call(gw_dir):
    with raw_gateway(_one_worker_config(gw_dir, timeout_ms=5000)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not _alive(worker))
        result = gw.call("fs.readFile", {"path": "hello.txt"})
        assert not result["isError"], result
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None]


def test_sigterm_drains_calls_in_flight(gw_dir):
    with raw_gateway(_one_worker_config(gw_dir, timeout_ms=1500)) as gw:
        (worker,) = wait_until(lambda: worker_pids(gw.proc.pid))
        os.kill(worker, signal.SIGSTOP)
        gw.send_json({"jsonrpc": "2.0", "id": 300, "method": "tools/call",
                      "params": {"name": "fs.readFile", "arguments": {"path": "hello.txt"}}})
        time.sleep(0.2)
        gw.proc.send_signal(signal.SIGTERM)
        reply = gw.read()  # answered (at its deadline), not lost
        assert reply["id"] == 300
        assert error_of(reply["result"])["error_code"] == "TIMEOUT"
        assert gw.proc.wait(10) == 0
    assert [x["error_code"] for x in audit_lines(gw_dir)] == ["TIMEOUT"]
