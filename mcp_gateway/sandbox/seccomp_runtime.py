"""seccomp allowlist for a general runtime (node, CPython) serving as an upstream MCP server.

Built like the workers' filter (seccomp.py) and from its parts: default ERRNO(EPERM), only
the native architecture (bad arch: KILL_PROCESS), the same KILL_PROCESS list for calls never
legitimate (ptrace, process_vm_*, bpf, perf_event_open, userfaultfd, keyrings, mount and the
new mount API, chroot/pivot_root, unshare/setns, modules, kexec...), io_uring refused with
EPERM (what `io_uring_disabled=2` answers, so libuv and others fall back to epoll), and the
same self-only rules for every call that can act on another process.

What a runtime needs on top of a pool worker, and how each is bounded:
* threads: `clone` without any namespace flag (a namespace flag: KILL); `clone3` ENOSYS, so
  glibc falls back to `clone`, whose flags seccomp can read. Forks are allowed too (a server
  may start its own helpers); RLIMIT_NPROC bounds them, Landlock decides what they may exec;
* `execve`/`execveat`: allowed, Landlock grants execute on the command's own binaries only;
* writes (`openat` with write flags, mkdir, rename, unlink...): Landlock decides where;
* event primitives (eventfd, epoll, timerfd, signalfd, inotify, pipes), `socketpair(AF_UNIX)`
  (CPython's asyncio self-pipe), `setrlimit`/`prlimit64` on itself (node raises NOFILE's soft
  limit to the hard one), `prctl` names and queries only;
* `tgkill` towards its own thread group (any of its own threads: the kernel checks the thread
  belongs to the group);
* sockets: `network: none` -> no `socket()` at all; the egress proxy -> TCP sockets of
  AF_INET/AF_INET6 only (no UDP: no DNS, no QUIC), `connect` (Landlock TCP and the network
  namespace say where); never bind/listen/accept;
* `setpgid`/`setsid` refused: the server's process tree stays in the process group the
  gateway kills (docs/SANDBOX.md "Upstream servers").
Memory: RLIMIT_DATA counts private writable mappings only, so `mmap` of shared anonymous
memory and MAP_GROWSDOWN mappings are refused (EPERM); so are memfd_create, SysV and POSIX shm
(memory outside RLIMIT_DATA). Also not allowed: mlock, pidfd_open,
keyrings, personality changes (a query is fine), setuid and friends.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from mcp_gateway.sandbox._common import PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP, LayerUnavailable, prctl
from mcp_gateway.sandbox.seccomp import (
    BASE_ALLOW,
    ERRNO_RULES,
    IOCTL_ALLOW,
    KILL,
    add_self_only_rules,
    available,
    sc,
)

RUNTIME_ALLOW: tuple[str, ...] = (
    # files, beneath what Landlock grants
    "open", "openat", "creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
    "renameat2", "symlink", "symlinkat", "link", "linkat", "truncate", "ftruncate", "fallocate", "fsync",
    "fdatasync", "sync_file_range", "chmod", "fchmod", "fchmodat", "fchmodat2", "utimensat", "futimesat",
    "utime", "utimes", "flock", "statfs", "chdir", "fchdir", "umask", "getxattr", "lgetxattr", "fgetxattr",
    "listxattr", "llistxattr", "flistxattr", "copy_file_range", "sendfile", "splice", "tee", "pwrite64",
    "pwritev", "pwritev2", "msync", "getdents", "openat2",
    # threads, processes (RLIMIT_NPROC bounds them; Landlock decides what may be executed)
    "fork", "vfork", "execve", "execveat", "wait4", "waitid", "set_tid_address", "arch_prctl", "membarrier",
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    # event primitives
    "pipe", "pipe2", "eventfd", "eventfd2", "epoll_create", "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "signalfd", "signalfd4", "inotify_init", "inotify_init1", "inotify_add_watch",
    "inotify_rm_watch", "setrlimit", "capget",
)

# prctl options a runtime uses on itself: thread names, anonymous-mapping names (glibc), queries.
PR_SET_NAME, PR_GET_NAME, PR_SET_VMA = 15, 16, 0x53564D41
PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER, PR_CAPBSET_READ = 2, 37, 23
PRCTL_ALLOW = (PR_SET_NAME, PR_GET_NAME, PR_SET_VMA, PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER, PR_CAPBSET_READ,
               PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS, PR_GET_DUMPABLE)
PERSONALITY_QUERY = 0xFFFFFFFF

# Every clone flag that creates a namespace:
# NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME.
CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
                         | 0x40000000 | 0x00000080)

# Beyond a worker's ERRNO rules: the process-group calls the tree kill relies on.
RUNTIME_ERRNO: tuple[tuple[str, int], ...] = (("setpgid", errno.EPERM), ("setsid", errno.EPERM))

SOCK_TYPE_MASK = 0xF
MAP_SHARED, MAP_ANONYMOUS, MAP_GROWSDOWN = 0x01, 0x20, 0x0100


def _build(proxy: bool, pid: int):
    f = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    f.set_attr(sc.Attr.CTL_NNP, 1)
    allowed: set[str] = set()

    def allow(name: str, *args) -> None:
        nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if nr >= 0:
            f.add_rule(sc.ALLOW, nr, *args)
            allowed.add(name)

    for name in dict.fromkeys(BASE_ALLOW + RUNTIME_ALLOW):
        if name != "mmap":  # only with the flags below
            allow(name)
    _add_argument_rules(allow, pid, proxy)
    for name in KILL:
        if name in RUNTIME_ALLOW:  # execve, execveat: Landlock decides what
            continue
        nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if nr >= 0:
            f.add_rule(sc.KILL_PROCESS, nr)
    clone = sc.resolve_syscall(sc.Arch.NATIVE, "clone")
    for flag in _bits(CLONE_NAMESPACE_FLAGS):
        f.add_rule(sc.KILL_PROCESS, clone, sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for name, err in ERRNO_RULES + RUNTIME_ERRNO:
        nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if nr >= 0 and err != errno.EPERM:
            f.add_rule(sc.ERRNO(err), nr)
    return f, len(allowed)


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(64) if mask & (1 << i)]


def _add_argument_rules(allow: Callable[..., None], pid: int, proxy: bool) -> None:
    # mmap: never shared anonymous memory nor MAP_GROWSDOWN, the two kinds RLIMIT_DATA does not
    # count (RLIMIT_AS is not used for runtimes). Private mappings, and shared ones of a file it
    # may open (Landlock; its size bounded by RLIMIT_FSIZE), are allowed.
    allow("mmap", sc.Arg(3, sc.MASKED_EQ, MAP_SHARED | MAP_GROWSDOWN, 0))
    allow("mmap", sc.Arg(3, sc.MASKED_EQ, MAP_ANONYMOUS | MAP_GROWSDOWN, 0))
    add_self_only_rules(allow, pid)
    allow("tgkill", sc.Arg(0, sc.EQ, pid))
    allow("clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0))
    for request in IOCTL_ALLOW:
        allow("ioctl", sc.Arg(1, sc.EQ, request))
    for option in PRCTL_ALLOW:
        allow("prctl", sc.Arg(0, sc.EQ, option))
    allow("personality", sc.Arg(0, sc.EQ, PERSONALITY_QUERY))
    allow("socketpair", sc.Arg(0, sc.EQ, socket.AF_UNIX))
    if proxy:
        for family in (socket.AF_INET, socket.AF_INET6):
            allow("socket", sc.Arg(0, sc.EQ, family), sc.Arg(1, sc.MASKED_EQ, SOCK_TYPE_MASK, socket.SOCK_STREAM))
        for name in ("connect", "setsockopt"):
            allow(name)


def apply_runtime_seccomp(proxy: bool) -> str:
    """Load the runtime filter for good (it survives execve). `proxy`: TCP sockets allowed
    (the egress proxy is the only place they can reach); otherwise no socket() at all."""
    ok, why = available()
    if not ok:
        raise LayerUnavailable(why)
    f, count = _build(proxy, os.getpid())
    f.load()
    if prctl(PR_GET_SECCOMP) != 2:
        raise OSError("the seccomp filter did not take effect")
    return f"runtime allowlist {count} syscalls, sockets {'inet/inet6 stream (egress proxy)' if proxy else 'none'}"
