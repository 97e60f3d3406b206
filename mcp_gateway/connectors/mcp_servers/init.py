"""pid 1 of an upstream server's pid namespace: it starts the server and reaps every orphan.

A runtime run as pid 1 (node, CPython) does not reap the orphans reparented to it: their
zombies would pile up and count against RLIMIT_NPROC. So the warden's first child in the new
namespace is this small init (the zygote's code, already in memory): it forks the server
(pid 2), confines itself (the server's uid, no_new_privs, no fork, no file, seccomp: wait and
exit), reaps whatever dies in the namespace, and when the server dies it hands the server's
wait status to the warden and exits. Its death ends the namespace: the kernel kills whatever
is left in it.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from typing import NoReturn

import prctl

from mcp_gateway.config import SandboxSettings
from mcp_gateway.connectors.mcp_servers.server import ServerChild, ServerPlan
from mcp_gateway.sandbox import SandboxError, run_layers
from mcp_gateway.sandbox import landlock as _landlock
from mcp_gateway.sandbox.limits import apply_rlimits
from mcp_gateway.sandbox.prctl import apply_prctl
from mcp_gateway.sandbox.seccomp import apply_seccomp
from mcp_gateway.sandbox.user import drop_privileges

STATUS = struct.Struct("=i")  # a wait status, from the init to the warden


def exit_as(status: int) -> NoReturn:
    """End this process the way the one with wait status `status` ended (code or signal)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def namespace_init(plan: ServerPlan, stdio: socket.socket, chan: socket.socket, report_fd: int) -> NoReturn:
    """Run as the warden's child right after it entered the new pid namespace (so as pid 1).
    The server's wait status goes to `report_fd` (4 bytes) before this exits: pid 1 cannot kill
    itself with a signal (init ignores its own), so it cannot simply die the way the server did."""
    prctl.set_pdeathsig(signal.SIGKILL)
    server = os.fork()
    if server == 0:
        ServerChild(plan, stdio, chan).run()
    stdio.close()
    chan.close()
    try:
        _confine(plan.sandbox, plan.uid)
    except SandboxError:
        os.kill(server, signal.SIGKILL)
        os._exit(70)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(70)
        if pid == server:
            os.write(report_fd, STATUS.pack(status))
            os._exit(0)


def _confine(sandbox: SandboxSettings, uid: int | None) -> None:
    identity = (uid, uid) if uid is not None else (sandbox.user, sandbox.group)
    anchors = _landlock.ReadAnchors(())
    steps = [
        ("user", lambda: drop_privileges(*identity)),
        ("prctl", _prctl),
        ("rlimits", lambda: apply_rlimits(64, 86400, 16)),
        ("landlock", lambda: _landlock.apply_landlock(anchors, ())),
        ("seccomp", lambda: apply_seccomp("upstream init", ("wait4",), ())),
    ]
    run_layers(steps, sandbox, "the init of an upstream server's pid namespace")


def _prctl() -> str:
    status = apply_prctl()
    prctl.set_pdeathsig(signal.SIGKILL)  # the uid change cleared it
    return status
