"""Linux namespaces for an upstream MCP server: its own pid and network namespaces.

* pid namespace: the server is its init (pid 1). When it dies, the kernel kills every process
  left in the namespace, and no process can leave one: killing the server kills its whole
  tree, however it forked, double-forked or tried to detach.
* network namespace: only a loopback interface. With `network: none` nothing is reachable;
  with `allowed_domains` the egress proxy listens on that loopback (its socket was created in
  the namespace and is served from outside it), so the proxy is the only way out.

Creating them needs CAP_SYS_ADMIN: root has it; a non-root gateway gets it inside a user
namespace of its own (its uid mapped to itself, setgroups denied), where the kernel allows
it (`user.max_user_namespaces` > 0, no LSM refusing it). Where neither holds, `available()`
says why and the floor applies (docs/SANDBOX.md "Upstream servers").
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

from mcp_gateway.sandbox._common import LayerUnavailable, libc

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _unshare(flags: int) -> None:
    if libc.unshare(ctypes.c_int(flags)) != 0:
        e = ctypes.get_errno()
        raise LayerUnavailable(f"unshare({_names(flags)}) failed: {os.strerror(e)}")


def _names(flags: int) -> str:
    names = {CLONE_NEWUSER: "user", CLONE_NEWPID: "pid", CLONE_NEWNET: "net"}
    return "|".join(n for bit, n in names.items() if flags & bit)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_pid_namespace() -> str:
    """Make this process's next child the init of a new pid namespace (in a user namespace of
    its own first when not root: this process's uid and gid mapped to themselves)."""
    if os.geteuid() == 0:
        _unshare(CLONE_NEWPID)
        return "own pid namespace"
    uid, gid = os.geteuid(), os.getegid()
    _unshare(CLONE_NEWUSER | CLONE_NEWPID)
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    return "own user and pid namespaces"


def enter_network_namespace() -> str:
    """Move this process into a new network namespace and bring its loopback up."""
    _unshare(CLONE_NEWNET)
    loopback_up()
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise OSError(f"the new network namespace has interfaces {names}, not loopback only")
    return "own network namespace (loopback only)"


def loopback_up() -> None:
    """Bring this network namespace's loopback interface up (needs CAP_NET_ADMIN in it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def available() -> str | None:
    """None when this process could create the namespaces above, else why not (a forked
    probe tries; nothing in this process changes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            enter_pid_namespace()
            enter_network_namespace()
            os.write(w, b"ok")
        except (LayerUnavailable, OSError) as e:
            os.write(w, str(e).encode()[:500])
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode(errors="replace")
    os.waitpid(pid, 0)
    return None if answer == "ok" else answer or "the probe died"
