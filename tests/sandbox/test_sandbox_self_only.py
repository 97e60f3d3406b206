"""Attacks of a subverted worker on other processes: a confined child tries to change the limits
of, signal (directly and through F_SETOWN/F_SETSIG + O_ASYNC), reschedule and re-prioritise a
confined sibling and its supervisor (here: the test process, its parent).

Run in both passes: as root the sibling shares nothing with the attacker but the profile; as
`nobody` (the container case) attacker, sibling and supervisor all share one uid, so only the
seccomp argument filters stand between them. The `no landlock` variant proves that seccomp
alone holds where Landlock lacks signal scoping (ABI < 6).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

import pyseccomp
import pytest

from mcp_gateway.sandbox import apply
from tests.support.sandbox_probe import ConfinedSibling, attempt, filesystem_profile, raw_syscall, run_child, settings

F_SETOWN, F_SETSIG, F_SETOWN_EX, F_GETFL, F_SETFL = 8, 10, 15, 3, 4
F_OWNER_PID = 1
FIOSETOWN, SIOCSPGRP, TIOCSPGRP, TIOCSTI = 0x8901, 0x8902, 0x5410, 0x5412
IOPRIO_WHO_PROCESS = 1
SI_QUEUE = -1

VARIANTS = {"full profile": {}, "no landlock": {"landlock": "off"}}


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


class RLimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


def prlimit(pid: int, kind: int, new: tuple[int, int] | None) -> None:
    old = RLimit()
    new_s = RLimit(*new) if new is not None else None
    raw_syscall(nr("prlimit64"), pid, kind, ctypes.addressof(new_s) if new_s else 0, ctypes.addressof(old))


def nofile_of(pid: int) -> str:
    """The target's RLIMIT_NOFILE as /proc shows it (prlimit from outside may need
    CAP_SYS_RESOURCE, which a container's root can lack)."""
    with open(f"/proc/{pid}/limits") as f:
        return next(line for line in f if line.startswith("Max open files"))


def attacks(target: int, harmless: bool) -> dict[str, str]:
    """Every way to act on `target`; `harmless` keeps the changes no-ops should they succeed
    (the target is then the test process itself)."""
    out: dict[str, str] = {}
    new_nofile = HARMLESS_LIMITS[target] if harmless else (0, 0)
    out["prlimit_set"] = attempt(lambda: prlimit(target, resource.RLIMIT_NOFILE, new_nofile))
    out["prlimit_get"] = attempt(lambda: prlimit(target, resource.RLIMIT_NOFILE, None))
    out["kill"] = attempt(lambda: raw_syscall(nr("kill"), target, 0))
    out["tgkill"] = attempt(lambda: raw_syscall(nr("tgkill"), target, target, 0))
    out["tkill"] = attempt(lambda: raw_syscall(nr("tkill"), target, 0))
    info = (ctypes.c_int * 32)()
    info[2] = SI_QUEUE
    out["rt_sigqueueinfo"] = attempt(lambda: raw_syscall(nr("rt_sigqueueinfo"), target, 0, ctypes.addressof(info)))
    out["rt_tgsigqueueinfo"] = attempt(
        lambda: raw_syscall(nr("rt_tgsigqueueinfo"), target, target, 0, ctypes.addressof(info)))
    out["pidfd_send_signal"] = attempt(lambda: raw_syscall(nr("pidfd_send_signal"), PIDFDS[target], 0, 0, 0))
    mask = (ctypes.c_ulong * 16)(1)
    out["sched_setaffinity"] = attempt(
        lambda: raw_syscall(nr("sched_setaffinity"), target, ctypes.sizeof(mask), ctypes.addressof(mask)))
    param = ctypes.c_int(0)
    out["sched_setscheduler"] = attempt(
        lambda: raw_syscall(nr("sched_setscheduler"), target, 0, ctypes.addressof(param)))
    out["sched_setparam"] = attempt(lambda: raw_syscall(nr("sched_setparam"), target, ctypes.addressof(param)))
    out["setpriority"] = attempt(lambda: raw_syscall(nr("setpriority"), os.PRIO_PROCESS, target, NICE))
    out["setpriority_pgrp"] = attempt(lambda: raw_syscall(nr("setpriority"), os.PRIO_PGRP, 0, NICE))
    out["setpriority_user"] = attempt(lambda: raw_syscall(nr("setpriority"), os.PRIO_USER, 0, NICE))
    out["ioprio_set"] = attempt(lambda: raw_syscall(nr("ioprio_set"), IOPRIO_WHO_PROCESS, target, (2 << 13) | 4))
    # SIGIO ownership: with F_SETOWN + F_SETSIG(SIGKILL) + O_ASYNC, a write to the pipe
    # would SIGKILL the owner. Only the sibling gets the whole chain.
    r, w = PIPES[target]
    out["f_setown"] = attempt(lambda: raw_syscall(nr("fcntl"), r, F_SETOWN, target))
    owner = (ctypes.c_int * 2)(F_OWNER_PID, target)
    out["f_setown_ex"] = attempt(lambda: raw_syscall(nr("fcntl"), r, F_SETOWN_EX, ctypes.addressof(owner)))
    out["f_setsig"] = attempt(lambda: raw_syscall(nr("fcntl"), r, F_SETSIG, 0 if harmless else signal.SIGKILL))
    flags = raw_syscall(nr("fcntl"), r, F_GETFL, 0)
    if not harmless:
        out["o_async"] = attempt(lambda: raw_syscall(nr("fcntl"), r, F_SETFL, flags | os.O_ASYNC))
        os.write(w, b"x")
    pid_arg = ctypes.c_int(target)
    for name, request in (("fiosetown", FIOSETOWN), ("siocspgrp", SIOCSPGRP), ("tiocspgrp", TIOCSPGRP)):
        out[name] = attempt(lambda req=request: raw_syscall(nr("ioctl"), r, req, ctypes.addressof(pid_arg)))
    out["tiocsti"] = attempt(lambda: raw_syscall(nr("ioctl"), 0, TIOCSTI, ctypes.addressof(ctypes.c_char(b"x"))))
    os.close(r)
    os.close(w)
    return out


# Opened by the attacker before it confines itself (pipe2 and pidfd_open are refused after).
HARMLESS_LIMITS: dict[int, tuple[int, int]] = {}
PIDFDS: dict[int, int] = {}
PIPES: dict[int, tuple[int, int]] = {}
NICE = 0


def self_calls() -> dict[str, str]:
    """What the worker may still do to itself."""
    me = os.getpid()
    return {
        "getrlimit": attempt(lambda: resource.getrlimit(resource.RLIMIT_NOFILE)),
        "prlimit_self_0": attempt(lambda: prlimit(0, resource.RLIMIT_NOFILE, None)),
        "prlimit_self_pid": attempt(lambda: prlimit(me, resource.RLIMIT_NOFILE, None)),
        "setrlimit_self": attempt(lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0))),
        "kill_self": attempt(lambda: os.kill(me, 0)),
        "getpriority_self": attempt(lambda: os.getpriority(os.PRIO_PROCESS, 0)),
        "fcntl_getfl": attempt(lambda: raw_syscall(nr("fcntl"), 1, F_GETFL, 0)),
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_worker_acts_on_itself_only(tree: str, variant: str) -> None:
    global NICE
    profile = filesystem_profile(tree)
    sandbox = settings(**VARIANTS[variant])
    sibling = ConfinedSibling(profile, sandbox)
    supervisor = os.getpid()
    try:
        before = nofile_of(sibling.pid)
        HARMLESS_LIMITS[supervisor] = resource.getrlimit(resource.RLIMIT_NOFILE)
        NICE = os.getpriority(os.PRIO_PROCESS, 0)

        def probe():
            PIDFDS[sibling.pid] = os.pidfd_open(sibling.pid)
            PIDFDS[supervisor] = os.pidfd_open(supervisor)
            PIPES[sibling.pid] = os.pipe()
            PIPES[supervisor] = os.pipe()
            layers = apply(profile, sandbox)
            return {
                "layers": layers,
                "sibling": attacks(sibling.pid, harmless=False),
                "supervisor": attacks(supervisor, harmless=True),
                "self": self_calls(),
            }

        o = run_child(probe)
        assert o.error is None and o.signal is None, o
        refused = {"EPERM"}
        for who in ("sibling", "supervisor"):
            leaks = {k: v for k, v in o.result[who].items() if v not in refused}
            assert not leaks, f"{variant}: the worker acted on its {who}: {leaks}"
        assert set(o.result["self"].values()) == {"ok"}, o.result["self"]
        assert sibling.alive(), "the sibling was killed"
        assert nofile_of(sibling.pid) == before
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == HARMLESS_LIMITS[supervisor]
    finally:
        sibling.stop()


def test_seccomp_arguments_beyond_32_bits_do_not_alias(tree: str) -> None:
    """A pid or fcntl command with high bits set: the kernel truncates it to an int, so the
    filter must compare all 64 bits and allow exact values only."""
    sibling = ConfinedSibling(filesystem_profile(tree), settings(landlock="off"))
    try:
        before = nofile_of(sibling.pid)

        def probe():
            r, _w = os.pipe()
            apply(filesystem_profile(tree), settings(landlock="off"))
            return {
                "prlimit": attempt(lambda: prlimit((1 << 32) | sibling.pid, resource.RLIMIT_NOFILE, (0, 0))),
                "kill": attempt(lambda: raw_syscall(nr("kill"), (1 << 32) | os.getpid(), 0)),
                "f_setown": attempt(lambda: raw_syscall(nr("fcntl"), r, (1 << 32) | F_SETOWN, sibling.pid)),
            }

        o = run_child(probe)
        assert o.result == {"prlimit": "EPERM", "kill": "EPERM", "f_setown": "EPERM"}, o
        assert nofile_of(sibling.pid) == before
    finally:
        sibling.stop()
