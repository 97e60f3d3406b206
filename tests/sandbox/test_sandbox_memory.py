"""The memory cap counts every kind of mapping: a confined child maps and touches three times
its cap through each one; every attempt must fail (ENOMEM from the address-space limit, or
EPERM where seccomp refuses the mapping kind), and the child must survive to say so."""

from __future__ import annotations

import ctypes
import mmap
import os

import pyseccomp
import pytest

from mcp_gateway.sandbox import apply
from tests.support.sandbox_probe import TEST_MEMORY_MB, attempt, filesystem_profile, raw_syscall, run_child, settings

MiB = 1024 * 1024
ATTACK = 3 * TEST_MEMORY_MB * MiB
IPC_CREAT, SHM_RMID = 0o1000, 0
MAP_GROWSDOWN = 0x0100  # x86_64 and aarch64

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
MAP_FAILED = ctypes.c_void_p(-1).value


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def map_and_touch(flags: int, fd: int = -1, size: int = ATTACK) -> None:
    addr = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
    if addr in (None, MAP_FAILED):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    ctypes.memset(addr, 1, size)  # every page touched: really resident


def shared_anonymous() -> None:
    map_and_touch(mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)


def grows_down() -> None:
    map_and_touch(mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_GROWSDOWN)


def private_anonymous() -> None:
    map_and_touch(mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def memfd() -> None:
    fd = raw_syscall(nr("memfd_create"), ctypes.addressof(ctypes.create_string_buffer(b"x")), 0)
    os.ftruncate(fd, ATTACK)
    map_and_touch(mmap.MAP_SHARED, fd)


def sysv_shm() -> None:
    shmid = raw_syscall(nr("shmget"), 0, ATTACK, IPC_CREAT | 0o600)
    try:
        addr = raw_syscall(nr("shmat"), shmid, 0, 0)
        ctypes.memset(addr, 1, ATTACK)
    finally:
        raw_syscall(nr("shmctl"), shmid, SHM_RMID, 0)


def posix_shm() -> None:
    name = f"/dev/shm/mcp-probe-{os.getpid()}"  # noqa: S108 - shm_open's own namespace, the attack
    fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
    os.unlink(name)
    os.ftruncate(fd, ATTACK)
    map_and_touch(mmap.MAP_SHARED, fd)


def python_heap() -> None:
    bytearray(ATTACK)


KINDS = [shared_anonymous, grows_down, private_anonymous, memfd, sysv_shm, posix_shm, python_heap]


@pytest.mark.parametrize("kind", KINDS, ids=lambda f: f.__name__)
def test_three_times_the_cap_through_each_mapping_kind_fails(tree: str, kind) -> None:
    def probe():
        apply(filesystem_profile(tree), settings())
        got = attempt(kind)
        # The worker still works afterwards: a modest allocation succeeds.
        after = attempt(lambda: bytearray(8 * MiB))
        return {"attack": got, "after": after}

    o = run_child(probe, timeout=30)
    assert o.signal is None and o.error is None, o
    assert o.result["attack"] in ("ENOMEM", "EPERM", "MemoryError"), o.result
    assert o.result["after"] == "ok"


def test_the_cap_leaves_room_for_the_worker_to_run(tree: str) -> None:
    """Half the cap, through an ordinary Python allocation, still works (the cap is the
    worker's baseline plus memory_mb, not memory_mb of address space in all)."""

    def probe():
        apply(filesystem_profile(tree), settings())
        return attempt(lambda: bytearray(TEST_MEMORY_MB // 2 * MiB))

    assert run_child(probe).result == "ok"
