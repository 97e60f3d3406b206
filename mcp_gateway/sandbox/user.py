"""Privilege drop: supplementary groups, gid, uid, then every capability set emptied.

Done with prctl(2)/capset(2) through ctypes rather than python-prctl's tables, so capabilities
newer than the library (the kernel reports the last one in /proc/sys/kernel/cap_last_cap) are
dropped too. Order matters: the bounding set can only be shrunk while CAP_SETPCAP is held, so
it is emptied before the uid changes; the uid change itself clears the permitted and effective
sets (no SECBIT_KEEP_CAPS); capset() then clears what could be left (inheritable).
"""

from __future__ import annotations

import ctypes
import grp
import os
import platform
import pwd

from mcp_gateway.sandbox._common import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    LayerUnavailable,
    libc,
    prctl,
    proc_status,
)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_capset = {"x86_64": 126, "aarch64": 91, "riscv64": 91}.get(platform.machine(), 126)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def resolve_uid(user: int | str) -> int:
    if isinstance(user, int) or str(user).isdigit():
        return int(user)
    try:
        return pwd.getpwnam(str(user)).pw_uid
    except KeyError:
        raise LayerUnavailable(f"sandbox.user {user!r} is not a known user name") from None


def resolve_gid(group: int | str) -> int:
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise LayerUnavailable(f"sandbox.group {group!r} is not a known group name") from None


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def clear_bounding_set() -> bool:
    """Drop every capability from the bounding set; False when not permitted (no CAP_SETPCAP)."""
    for cap in range(last_cap() + 1):
        try:
            if prctl(PR_CAPBSET_READ, cap) == 1:
                prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            return False
    return True


def clear_ambient() -> None:
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass  # kernel < 4.3 has no ambient set: nothing to clear


def clear_capsets() -> None:
    """capset(2) with all-zero effective, permitted and inheritable sets (always allowed)."""
    nr = _SYS_capset
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.syscall(ctypes.c_long(nr), ctypes.byref(header), ctypes.byref(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def _caps_empty(status: dict[str, str]) -> bool:
    return all(int(status.get(k, "0"), 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"))


def drop_privileges(user: int | str = 65534, group: int | str = 65534) -> str:
    """Become `user`/`group` with no capabilities when root; report. Raises on failure."""
    if os.geteuid() != 0 and os.getuid() != 0:
        # Nothing to switch to; still make sure no capability survives (a container user can
        # hold file or ambient capabilities). Shrinking the bounding set needs CAP_SETPCAP.
        before = proc_status()
        clear_ambient()
        clear_capsets()
        bounding = clear_bounding_set()
        after = proc_status()
        if not _caps_empty(after):
            raise LayerUnavailable(f"capabilities remain after clearing: CapEff {after.get('CapEff')}")
        held = not _caps_empty(before)
        return (
            "not needed (not root): "
            + ("capabilities cleared" if held else "no capabilities")
            + ("" if bounding else ", bounding set left (no CAP_SETPCAP)")
        )

    uid, gid = resolve_uid(user), resolve_gid(group)
    if uid == 0 or gid == 0:
        raise LayerUnavailable("sandbox.user/sandbox.group must not be root (uid/gid 0)")
    os.setgroups([])
    if not clear_bounding_set():
        raise OSError("could not empty the capability bounding set")
    clear_ambient()
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    clear_capsets()

    # Verify: the kernel is the judge, not our intentions.
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(f"uid/gid drop did not hold: {os.getresuid()} {os.getresgid()}")
    if os.getgroups() not in ([], [gid]):
        raise OSError(f"supplementary groups remain: {os.getgroups()}")
    status = proc_status()
    if not _caps_empty(status) or int(status.get("CapBnd", "0"), 16) != 0:
        raise OSError(f"capabilities remain: CapEff {status.get('CapEff')} CapBnd {status.get('CapBnd')}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise OSError("setuid(0) succeeded after the drop")
    return f"uid {uid} gid {gid}, no capabilities"
