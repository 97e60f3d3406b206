"""seccomp-bpf allowlist of a worker, built with libseccomp (pyseccomp bindings).

Shape of the filter:
  * default action ERRNO(EPERM): a call nobody thought of fails politely;
  * an allowlist of what a warm, single-threaded Python worker really calls (traced with
    `strace -f` on real workers), plus what the profile adds: its extra system calls (openat2
    for the filesystem kind), sockets of its families for the network workers;
  * KILL_PROCESS for calls that are never legitimate in a worker and are the usual first step
    of an escape or a kernel exploit (ptrace, bpf, keyctl, mount, namespaces, modules, ...);
  * execve/execveat KILL_PROCESS as well: fork is refused before exec could ever be reached
    legitimately (subprocess forks first), so an exec attempt means code is trying to replace
    the worker in place;
  * clone3 ERRNO(ENOSYS) so libc falls back to clone, which is refused (EPERM): workers are
    single-threaded and never fork (RLIMIT_NPROC 0 says the same);
  * only the native architecture: i386 and x32 system calls hit the bad-arch action, which is
    KILL_PROCESS (libseccomp also sends x86_64 syscall numbers with the x32 bit to it).

The filter is built inside the worker right before loading, so it can use the worker's own pid:
every call that can act on another process is either refused outright (setpriority,
sched_set*, ioprio_set, rt_(tg)sigqueueinfo, pidfd_send_signal, F_SETOWN/F_SETSIG, owner
ioctls) or allowed with its target argument equal to the worker itself (kill, tgkill, tkill,
prlimit64, sched_getaffinity, getpriority). This is what separates a worker from its
supervisor and siblings when they share one uid (a non-root gateway), whatever Landlock's ABI.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable

from mcp_gateway.sandbox._common import (
    PR_GET_DUMPABLE,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_SECCOMP,
    LayerUnavailable,
    prctl,
)

try:  # libseccomp itself is loaded when pyseccomp is imported
    import pyseccomp as sc
except (ImportError, OSError) as _e:  # pragma: no cover - depends on the host
    sc = None
    _IMPORT_ERROR = f"libseccomp/pyseccomp cannot be loaded: {_e}"
else:
    _IMPORT_ERROR = ""

# What any worker may call. Grouped by purpose; names unknown on this architecture are skipped.
BASE_ALLOW: tuple[str, ...] = (
    # reading files and directories (Landlock decides which)
    "read",
    "readv",
    "pread64",
    "preadv",
    "preadv2",
    "lseek",
    "close",
    "close_range",
    "fstat",
    "newfstatat",
    "stat",
    "lstat",
    "statx",
    "getdents64",
    "readlink",
    "readlinkat",
    "access",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "dup",
    "dup2",
    "dup3",
    "getcwd",
    "fstatfs",
    # writing to already open descriptors (the IPC socket, stderr)
    "write",
    "writev",
    # the IPC socket (fd 3) and any socket the worker legitimately holds
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "shutdown",
    "getsockname",
    "getpeername",
    "getsockopt",
    # waiting
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    # memory
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "mincore",
    # threads primitives used by a single thread (locks, rseq) and signals to itself
    "futex",
    "futex_waitv",
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "sched_yield",
    "getcpu",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "sigaltstack",
    "restart_syscall",
    "pause",
    # time
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getitimer",
    "setitimer",
    "alarm",
    "times",
    "getrusage",
    # identity and limits (read only)
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getpgid",
    "getsid",
    "uname",
    "sysinfo",
    "getrlimit",
    # randomness
    "getrandom",
    # the end
    "exit",
    "exit_group",
)

# Never legitimate in a worker: the process dies on the spot (SIGSYS), the supervisor notices.
KILL: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount2",
    "umount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "personality",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    "uselib",
    "lookup_dcookie",
    "quotactl",
    "quotactl_fd",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "syslog",
    "vmsplice",
    "kcmp",
    "execve",
    "execveat",
)

# Refused with a specific errno (anything not listed gets EPERM).
ERRNO_RULES: tuple[tuple[str, int], ...] = (
    ("clone3", errno.ENOSYS),  # glibc then falls back to clone(2), refused with EPERM
    ("io_uring_setup", errno.EPERM),  # same errno as io_uring_disabled=2
    ("io_uring_enter", errno.EPERM),
    ("io_uring_register", errno.EPERM),
)

# ioctl requests Python itself issues: isatty (TCGETS), FIONBIO/FIOCLEX/FIONCLEX (CPython's
# setblocking / set_inheritable), FIONREAD and TIOCGWINSZ. Everything else (TIOCSTI...) EPERM.
IOCTL_ALLOW = (0x5401, 0x5421, 0x5451, 0x5450, 0x541B, 0x5413)

# fcntl commands a worker uses (CPython, glibc, OpenSSL, libpq): descriptor flags, status
# flags, duplication, record locks. Not F_SETOWN/F_SETOWN_EX/F_SETSIG (SIGIO/SIGURG to any
# process the worker names: a SIGKILL by proxy), not leases or dnotify (signals too).
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_GETLK, F_SETLK, F_SETLKW = range(8)
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_DUPFD_CLOEXEC, F_GETPIPE_SZ = 1030, 1032
FCNTL_ALLOW = (F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_GETLK, F_SETLK, F_SETLKW,
               F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_DUPFD_CLOEXEC, F_GETPIPE_SZ)

# Calls that act on a process named by their first argument: allowed towards the worker
# itself only, 0 meaning "the caller" for these (never for kill, where 0 is the process group).
SELF_ONLY_ZERO_OK = ("prlimit64", "sched_getaffinity")
# which = PRIO_PROCESS (0) and who = 0 or own pid; PRIO_PGRP/PRIO_USER name other processes.
PRIO_PROCESS = 0

# openat(2)/open(2) are allowed for reading only; Landlock says where.
# (O_TMPFILE includes O_DIRECTORY: only its own bit counts as a write flag.)
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_RDWR
    | os.O_CREAT
    | os.O_TRUNC
    | os.O_APPEND
    | (getattr(os, "O_TMPFILE", 0) & ~os.O_DIRECTORY)
)

# socket-related calls a connector that creates sockets needs on top of BASE_ALLOW.
NET_ALLOW: tuple[str, ...] = ("connect", "setsockopt")

_SOCK_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM)


def available() -> tuple[bool, str]:
    if sc is None:
        return False, _IMPORT_ERROR
    try:
        prctl(PR_GET_SECCOMP)  # EINVAL: kernel built without CONFIG_SECCOMP
    except OSError as e:
        return False, f"the kernel has no seccomp (prctl(PR_GET_SECCOMP): {e.strerror})"
    return True, f"available (libseccomp API level {sc.get_api()})"


def _nr(name: str) -> int | None:
    nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
    return nr if nr >= 0 else None


def build_filter(extra_syscalls: Iterable[str], socket_families: Iterable[int], pid: int | None = None):
    """The filter of one profile's workers (not loaded): BASE_ALLOW plus `extra_syscalls`, and
    NET_ALLOW with sockets of `socket_families`. Returns (filter, allowed count)."""
    if sc is None:
        raise LayerUnavailable(_IMPORT_ERROR)
    pid = os.getpid() if pid is None else pid
    f = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    f.set_attr(sc.Attr.CTL_NNP, 1)
    allowed: set[str] = set()

    def allow(name: str, *args) -> None:
        nr = _nr(name)
        if nr is not None:
            f.add_rule(sc.ALLOW, nr, *args)
            allowed.add(name)

    families = tuple(dict.fromkeys(socket_families))
    names = list(BASE_ALLOW) + list(extra_syscalls)
    if families:
        names += NET_ALLOW
    for name in dict.fromkeys(names):
        allow(name)

    for name, arg in (("openat", 2), ("open", 1)):
        allow(name, sc.Arg(arg, sc.MASKED_EQ, _WRITE_FLAGS, 0))
    for request in IOCTL_ALLOW:
        allow("ioctl", sc.Arg(1, sc.EQ, request))
    # prctl: read-only queries (used to verify the filter took effect); every PR_SET_* EPERM.
    for option in (PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS, PR_GET_DUMPABLE):
        allow("prctl", sc.Arg(0, sc.EQ, option))
    allow("tgkill", sc.Arg(0, sc.EQ, pid), sc.Arg(1, sc.EQ, pid))
    add_self_only_rules(allow, pid)
    for family in families:
        for kind in _SOCK_TYPES:
            allow("socket", sc.Arg(0, sc.EQ, family), sc.Arg(1, sc.MASKED_EQ, 0xF, kind))

    for name in KILL:
        nr = _nr(name)
        if nr is not None:
            f.add_rule(sc.KILL_PROCESS, nr)
    for name, err in ERRNO_RULES:
        nr = _nr(name)
        # libseccomp refuses a rule whose action is the default one (EPERM): nothing to add.
        if nr is not None and err != errno.EPERM:
            f.add_rule(sc.ERRNO(err), nr)
    return f, len(allowed)


def add_self_only_rules(allow: Callable[..., None], pid: int) -> None:
    """The process-acting calls, each allowed towards `pid` (the caller) only, and the fcntl
    allowlist (no F_SETOWN/F_SETSIG). `tgkill` is left to the caller: a single-threaded worker
    names itself as thread too, a threaded runtime its own threads.

    Exact 64-bit matches only, so a value with high bits set (which the kernel truncates to an
    int pid or command) never aliases an allowed one."""
    allow("kill", sc.Arg(0, sc.EQ, pid))
    allow("tkill", sc.Arg(0, sc.EQ, pid))
    for name in SELF_ONLY_ZERO_OK:
        for who in (0, pid):
            allow(name, sc.Arg(0, sc.EQ, who))
    for who in (0, pid):
        allow("getpriority", sc.Arg(0, sc.EQ, PRIO_PROCESS), sc.Arg(1, sc.EQ, who))
    for cmd in FCNTL_ALLOW:
        allow("fcntl", sc.Arg(1, sc.EQ, cmd))
    # F_SETFL, but never O_ASYNC (SIGIO delivery; the owner cannot be set anyway).
    allow("fcntl", sc.Arg(1, sc.EQ, F_SETFL), sc.Arg(2, sc.MASKED_EQ, os.O_ASYNC, 0))


def apply_seccomp(instance: str, extra_syscalls: Iterable[str], socket_families: Iterable[int]) -> str:
    """Load the filter of `instance`'s workers into the calling thread for good. Returns a status string."""
    ok, why = available()
    if not ok:
        raise LayerUnavailable(why)
    families = tuple(socket_families)
    f, count = build_filter(extra_syscalls, families)
    f.load()
    # /proc may already be out of reach (Landlock): ask the kernel directly.
    if prctl(PR_GET_SECCOMP) != 2:
        raise OSError("the seccomp filter did not take effect")
    fam = "/".join(_family_name(x) for x in families) or "none"
    return f"allowlist {count} syscalls ({instance}), sockets {fam}"


def _family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name.removeprefix("AF_").lower()
    except ValueError:
        return str(family)
