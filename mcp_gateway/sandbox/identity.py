"""One uid/gid of its own per worker, from `sandbox.uid_range`, unique across every gateway on
the host (docs/SANDBOX.md "One identity per worker").

Allocation, in the freshly forked worker while it is still root (the user layer):

1. open `<LOCK_DIR>/<uid>` (a root-owned directory no one else can write) and take an
   exclusive `flock` without waiting; a lock held means another worker, of this gateway or
   another one, has the uid;
2. with the lock held, look through /proc: a process (a zombie included) already running
   under the uid means it is not ours to take;
3. keep the lock descriptor open for the worker's whole life: the kernel drops the lock when
   the worker dies, however it dies, so no stale state can outlive it and nothing needs
   cleaning up.

Every worker takes its lock before it becomes the uid and holds it until it is gone, so two
lock holders can never share a uid, and a uid without a holder has no gateway process.

`check_range` runs once at start, in each zygote: the range must be mapped in this user
namespace, clear of every passwd/group entry and /etc/subuid /etc/subgid delegation, and no
process outside the protocol (one whose uid lock is free) may run in it.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import random
import stat
import zlib
from collections.abc import Iterator

from mcp_gateway.sandbox._common import LayerUnavailable

LOCK_DIR = "/run/mcp-gateway/worker-uids"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The lock descriptor of this process's uid, held open until the process exits.
_held: list[int] = []


class IdentityError(LayerUnavailable):
    """The uid range cannot be used, or every uid in it is taken; the message says why."""


def _lock_dir() -> int:
    """fd of LOCK_DIR, created if needed, refused unless root-owned and writable by root only."""
    parent = os.path.dirname(LOCK_DIR)
    for path in (parent, LOCK_DIR):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    fd = os.open(LOCK_DIR, _DIR_FLAGS)
    st = os.fstat(fd)
    pst = os.stat(parent, follow_symlinks=False)
    for what, s in ((LOCK_DIR, st), (parent, pst)):
        if s.st_uid != 0 or s.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or not stat.S_ISDIR(s.st_mode):
            os.close(fd)
            raise IdentityError(
                f"{what} must be a directory owned by root and writable by root only "
                f"(uid {s.st_uid}, mode {stat.filemode(s.st_mode)}): someone else could hold "
                "or forge the workers' uid locks. Remove it; the gateway recreates it.")
    return fd


def _process_uids() -> dict[int, int]:
    """uid -> one pid running under it (real, effective, saved or fs uid), zombies included."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        for uid in line.split()[1:]:
                            out.setdefault(int(uid), int(name))
                        break
        except (OSError, ValueError):
            continue  # gone while we looked
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            state = next((line.split()[1] for line in f if line.startswith("State:")), "X")
    except OSError:
        return False
    return state not in ("Z", "X")


def _lock(dir_fd: int, uid: int) -> int | None:
    fd = os.open(str(uid), os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _candidates(first: int, count: int, start: int | None) -> Iterator[int]:
    # A random starting point keeps concurrent spawns (and gateways) from queuing on one uid.
    start = random.randrange(count) if start is None else start % count
    for i in range(count):
        yield first + (start + i) % count


def preferred_offset(name: str) -> int:
    """A stable starting point for `name` (an upstream server keeps its uid across restarts,
    so the files it wrote stay its own, whenever that uid is free)."""
    return zlib.crc32(name.encode())


def allocate(first: int, count: int, start: int | None = None) -> int:
    """Take a free uid of [first, first + count) for this process's life; returns it. `start`:
    the offset tried first (preferred_offset), else a random one."""
    if _held:
        raise IdentityError("this process already holds a worker uid")
    dir_fd = _lock_dir()
    try:
        in_use: dict[int, int] | None = None
        for uid in _candidates(first, count, start):
            if in_use is not None and uid in in_use:
                continue
            fd = _lock(dir_fd, uid)
            if fd is None:
                continue
            if in_use is None:  # scanned once, after the first lock (see the module doc)
                in_use = _process_uids()
            if uid in in_use:
                os.close(fd)
                continue
            _held.append(fd)
            return uid
    finally:
        os.close(dir_fd)
    raise IdentityError(
        f"every uid of sandbox.uid_range [{first}, {count}] is taken by a running worker or "
        "process; widen the range or run fewer workers")


def _mapped(first: int, count: int) -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            spans = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        return True  # no user namespaces: every uid exists
    return any(inside <= first and first + count <= inside + length for inside, _, length in spans)


def _delegations(path: str) -> Iterator[tuple[str, int, int]]:
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    yield parts[0], int(parts[1]), int(parts[2])
    except OSError:
        return


def check_range(first: int, count: int) -> str:
    """Refuse (IdentityError) a range that is not entirely ours to hand out; else describe it."""
    last = first + count - 1
    where = f"sandbox.uid_range [{first}, {count}] (uids {first}-{last})"
    if not _mapped(first, count):
        raise IdentityError(f"{where} is not mapped in this user namespace (/proc/self/uid_map); "
                            "choose a range inside it")
    for entry in pwd.getpwall():
        if first <= entry.pw_uid <= last:
            raise IdentityError(f"{where} contains uid {entry.pw_uid} of the account {entry.pw_name!r}; "
                                "choose a range no account uses")
    for group in grp.getgrall():
        if first <= group.gr_gid <= last:
            raise IdentityError(f"{where} contains gid {group.gr_gid} of the group {group.gr_name!r}; "
                                "choose a range no group uses")
    for path in ("/etc/subuid", "/etc/subgid"):
        for owner, start, length in _delegations(path):
            if start <= last and first < start + length:
                raise IdentityError(f"{where} overlaps {path}'s delegation to {owner!r} "
                                    f"({start}-{start + length - 1}); choose a range outside it")
    dir_fd = _lock_dir()
    try:
        for uid, pid in sorted(_process_uids().items()):
            if not first <= uid <= last:
                continue
            fd = _lock(dir_fd, uid)
            if fd is None:
                continue  # a worker (of some gateway) holds it: ours by protocol
            os.close(fd)
            if not _running(pid):
                continue  # a worker that just died (its lock went first) or a zombie
            raise IdentityError(f"{where} contains uid {uid}, used by process {pid}, which is not a "
                                "gateway worker; choose a range no process uses")
    finally:
        os.close(dir_fd)
    return f"{where}: free of accounts, delegations and foreign processes"
