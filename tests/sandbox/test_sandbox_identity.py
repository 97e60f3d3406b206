"""One uid per worker (root only: switching uids needs root; the non-root pass has no uid to hand
out and relies on the seccomp self-only filters, tested in test_sandbox_self_only.py).

The allocation protocol is exercised the way two gateways on one host would: separate
processes taking uids from one range, a foreign process squatting on a uid, a worker dying
with its lock. The live gateway's workers are then read from the outside through /proc.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time

import pytest

from mcp_gateway.config import DEFAULT_UID_RANGE, SandboxSettings
from mcp_gateway.sandbox import SandboxError, check_identities
from mcp_gateway.sandbox.identity import IdentityError, allocate, check_range
from tests.support.gateway_process import fs_config, raw_gateway, worker_pids
from tests.support.sandbox_probe import IS_ROOT, ConfinedSibling, filesystem_profile, run_child, settings

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="handing out uids needs root (non-root: one shared uid)")


def private_range(count: int) -> tuple[int, int]:
    """A small range of the default block no other test (or helper) is likely to pick."""
    first, total = DEFAULT_UID_RANGE
    return first + random.randrange(total // 2, total - count), count


def uid_of(pid: int) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        return next(line for line in f if line.startswith("Uid:")).split()[1:]


def holder(first: int, count: int) -> tuple[subprocess.Popen, int]:
    """Another gateway's worker, in another process: takes a uid of the range and keeps it."""
    code = (
        "import sys, os\n"
        "from mcp_gateway.sandbox.identity import allocate\n"
        f"uid = allocate({first}, {count})\n"
        "os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)\n"
        "print(uid, flush=True); sys.stdin.read()\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert select.select([p.stdout], [], [], 20)[0], "the other gateway's worker did not start"
    return p, int(p.stdout.readline())


def stop(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(10)


def test_workers_confined_together_get_distinct_uids_nobody_else_uses(tree: str) -> None:
    siblings = [ConfinedSibling(filesystem_profile(tree), settings()) for _ in range(4)]
    try:
        uids = [uid_of(s.pid) for s in siblings]
        assert all(len(set(u)) == 1 for u in uids), uids  # real, effective, saved, fs
        mine = {int(u[0]) for u in uids}
        assert len(mine) == 4, uids
        first, count = DEFAULT_UID_RANGE
        assert all(first <= u < first + count for u in mine)
        ours = {s.pid for s in siblings}
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in ours:
                try:
                    other = {int(x) for x in uid_of(int(name))}
                except (OSError, StopIteration):
                    continue
                assert not other & mine, f"process {name} shares a worker's uid"
    finally:
        for s in siblings:
            s.stop()


def test_another_gateways_worker_keeps_its_uid() -> None:
    first, count = private_range(2)
    other, taken = holder(first, count)
    try:
        got = run_child(lambda: allocate(first, count))
        assert got.error is None and got.result == ({first, first + 1} - {taken}).pop(), got
        # The other gateway's uid alone is a full range for anyone else.
        full = run_child(lambda: allocate(taken, 1))
        assert full.error and "every uid" in full.error, full
    finally:
        stop(other)


def test_a_dead_workers_uid_is_free_again_with_nothing_to_clean() -> None:
    first, _ = private_range(1)
    other, taken = holder(first, 1)
    assert taken == first
    assert "every uid" in run_child(lambda: allocate(first, 1)).error
    other.stdin.close()
    other.kill()  # the hardest death: no cleanup code runs
    other.wait(10)
    assert run_child(lambda: allocate(first, 1)).result == first


def test_a_foreign_process_in_the_range_is_refused_at_start_and_skipped() -> None:
    # Just above the default block: a squatter inside it would stop every gateway started on
    # this host meanwhile (which is the point of the check, but not of this test).
    default_first, default_count = DEFAULT_UID_RANGE
    first, count = default_first + default_count + random.randrange(1000, 60000), 2
    pid = os.fork()
    if pid == 0:  # a process that runs under the range's first uid without the protocol
        try:
            os.setresgid(first, first, first)
            os.setresuid(first, first, first)
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while uid_of(pid)[0] != str(first):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(IdentityError, match=f"uid {first}, used by process {pid}, which is not a gateway worker"):
            check_range(first, count)
        got = {run_child(lambda: allocate(first, count)).result for _ in range(6)}
        assert got == {first + 1}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_range_with_accounts_or_delegations_stops_the_gateway() -> None:
    s = SandboxSettings.model_validate({"uid_range": [65000, 1000]})
    with pytest.raises(SandboxError, match="the gateway cannot start: .*account 'nobody'"):
        check_identities(s)
    assert "free of accounts" in check_identities(SandboxSettings.model_validate({"uid_range": list(private_range(8))}))
    assert check_identities(SandboxSettings.model_validate({"uid_range": None})) is None


def test_a_lock_directory_others_can_write_is_refused(monkeypatch, tmp_path) -> None:
    from mcp_gateway.sandbox import identity

    parent = tmp_path / "run"
    parent.mkdir(mode=0o700)
    (parent / "uids").mkdir(mode=0o777)
    os.chmod(parent / "uids", 0o777)  # noqa: S103
    monkeypatch.setattr(identity, "LOCK_DIR", str(parent / "uids"))
    with pytest.raises(IdentityError, match="writable by root only"):
        allocate(*private_range(1))


def test_the_live_gateways_workers_have_uids_of_their_own(gw_dir) -> None:
    cfg = fs_config(gw_dir, connectors={"filesystem": {"workers": 3}})
    with raw_gateway(cfg) as gw:
        deadline = time.monotonic() + 20
        while len(workers := worker_pids(gw.proc.pid)) < 3:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.05)
        uids = {pid: uid_of(pid) for pid in workers}
        assert all(len(set(u)) == 1 for u in uids.values()), uids
        assert len({u[0] for u in uids.values()}) == 3, uids
        for pid in workers:
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
        mine = {int(u[0]) for u in uids.values()}
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in uids:
                try:
                    assert not {int(x) for x in uid_of(int(name))} & mine, f"process {name} shares a uid"
                except (OSError, StopIteration):
                    continue
        reply = gw.call("fs.readFile", {"path": "hello.txt"})
        assert reply["structuredContent"]["content"] == "hello world\n", (reply, gw.stderr_tail())
