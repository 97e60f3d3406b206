"""Landlock through raw syscalls (ctypes): read-only paths, TCP connect ports, IPC scoping.

A deliberately small module instead of a PyPI binding: three syscalls and three structs, every
access right named here, nothing loaded at run time, and full control over ABI handling.

Best effort the way the kernel documentation recommends: the ABI is queried first and only the
access rights that ABI knows are handled (a right an older kernel does not know cannot be
denied there, and asking for it would fail with EINVAL). What was enforced is reported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from collections.abc import Iterable

from mcp_gateway.sandbox._common import LayerUnavailable, libc, set_no_new_privs

# Syscall numbers are the same on every architecture (asm-generic numbering since 5.13).
SYS_landlock_create_ruleset = 444
SYS_landlock_add_rule = 445
SYS_landlock_restrict_self = 446

LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

# Filesystem access rights, with the ABI that introduced them.
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5

ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_ABI1 = (1 << 13) - 1


def fs_rights(abi: int) -> int:
    """Every filesystem access right the given ABI knows (all of them get handled = denied)."""
    rights = _FS_ABI1
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= ACCESS_FS_IOCTL_DEV
    return rights


# What a read path grants: read files, list directories. No execute, nothing else.
READ_DIR_ACCESS = ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
READ_FILE_ACCESS = ACCESS_FS_READ_FILE


class RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _syscall(nr: int, *args) -> int:
    res = libc.syscall(ctypes.c_long(nr), *args)
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return res


def abi_version() -> int:
    """The kernel's Landlock ABI, or 0 when Landlock is missing or disabled."""
    if platform.system() != "Linux":
        return 0
    try:
        return _syscall(
            SYS_landlock_create_ruleset,
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError:
        # ENOSYS: kernel without Landlock; EOPNOTSUPP: built in but not enabled (lsm=).
        return 0


def why_unavailable() -> str:
    try:
        _syscall(
            SYS_landlock_create_ruleset,
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION),
        )
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return "the kernel has no Landlock (needs Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK)"
        if e.errno == errno.EOPNOTSUPP:
            return "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)"
        return f"landlock_create_ruleset failed: {e.strerror}"
    return "available"


class ReadAnchors:
    """O_PATH fds of the read paths, opened while the worker is still privileged (before the
    uid drop), so a path under a directory the worker's uid cannot search still gets its rule;
    only the data itself must be readable by the worker. Paths that cannot be opened are named."""

    def __init__(self, read_paths: Iterable[str]) -> None:
        self.fds: list[int] = []
        self.skipped: list[str] = []
        for path in read_paths:
            try:
                self.fds.append(os.open(path, os.O_PATH | os.O_CLOEXEC))
            except OSError as e:
                self.skipped.append(f"{path} ({e.strerror})")

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def enforce(path_rules: Iterable[tuple[int, int]], connect_ports: Iterable[int], scope_signals: bool = True) -> int:
    """Create a ruleset handling every right the ABI knows, grant `path_rules` ((O_PATH fd,
    access) pairs, access masked to the ABI) and TCP connect to `connect_ports` (ABI >= 4),
    scope abstract sockets and (unless `scope_signals` is False) signals (ABI >= 6), and
    restrict the calling thread for good. Returns the ABI. Raises LayerUnavailable without
    Landlock, OSError on unexpected failures."""
    abi = abi_version()
    if abi < 1:
        raise LayerUnavailable(why_unavailable())
    attr = RulesetAttr(handled_access_fs=fs_rights(abi))
    size = 8
    if abi >= 4:
        attr.handled_access_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | (SCOPE_SIGNAL if scope_signals else 0)
        size = 24
    ruleset = _syscall(
        SYS_landlock_create_ruleset, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    try:
        for fd, access in path_rules:
            rule = PathBeneathAttr(access & fs_rights(abi), fd)
            _syscall(
                SYS_landlock_add_rule,
                ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
        if abi >= 4:
            for port in sorted(set(connect_ports)):
                rule_net = NetPortAttr(ACCESS_NET_CONNECT_TCP, port)
                _syscall(
                    SYS_landlock_add_rule,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(LANDLOCK_RULE_NET_PORT),
                    ctypes.byref(rule_net),
                    ctypes.c_uint32(0),
                )
        set_no_new_privs()
        _syscall(SYS_landlock_restrict_self, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return abi


def describe_net(abi: int, connect_ports: Iterable[int], scope_signals: bool = True) -> list[str]:
    """The TCP and scoping part of a Landlock status string."""
    ports = sorted(set(connect_ports))
    parts = []
    if abi >= 4:
        parts.append(f"tcp connect {','.join(map(str, ports)) if ports else 'none'}, bind none")
    else:
        parts.append("tcp not enforced (ABI < 4)")
    if abi < 6:
        parts.append("signals/abstract sockets not scoped (ABI < 6)")
    else:
        parts.append("scoped" if scope_signals else "abstract sockets scoped, signals left to seccomp")
    return parts


def apply_landlock(anchors: ReadAnchors, connect_ports: Iterable[int], scope_signals: bool = True) -> str:
    """Restrict the calling thread (and future children) for good. Returns a status string.

    Raises LayerUnavailable when the kernel has no Landlock, OSError on unexpected failures.
    """
    rules = [(fd, READ_DIR_ACCESS if stat.S_ISDIR(os.fstat(fd).st_mode) else READ_FILE_ACCESS)
             for fd in anchors.fds]
    ports = tuple(connect_ports)
    abi = enforce(rules, ports, scope_signals)
    granted = len(rules)
    parts = [f"ABI {abi}: fs read-only {granted} path{'s' if granted != 1 else ''}"]
    if anchors.skipped:
        parts.append(f"skipped missing {', '.join(anchors.skipped)}")
    return ", ".join(parts + describe_net(abi, ports, scope_signals))
