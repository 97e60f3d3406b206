"""Probe suite: each connector's real profile with every layer required, then forbidden and
allowed actions, each with its precise outcome (errno, or death by SIGSYS)."""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401 - lazily imported by socket.getaddrinfo; pre-import like the zygote
import fcntl
import os
import platform
import signal
import socket
import ssl
import termios
import time

import certifi
import pyseccomp
import pytest

from mcp_gateway.config import DEFAULT_UID_RANGE
from mcp_gateway.sandbox import apply
from mcp_gateway.sandbox._common import PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS, PR_GET_SECCOMP, prctl
from tests.support.sandbox_probe import (
    IS_ROOT,
    TEST_MEMORY_MB,
    TEST_NOFILE,
    Sleeper,
    attempt,
    filesystem_profile,
    http_fetch_profile,
    loopback_listener,
    pending_connection,
    postgres_profile,
    raw_syscall,
    run_child,
    settings,
)

MiB = 1024 * 1024
AT_FDCWD = -100


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(path: str, flags: int) -> int:
    how = OpenHow(flags, 0o644 if flags & os.O_CREAT else 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(437),
        ctypes.c_long(AT_FDCWD),
        path.encode(),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    os.close(fd)
    return fd


def try_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def exhaust_fds(path: str) -> str:
    fds = []
    try:
        for _ in range(TEST_NOFILE + 8):
            fds.append(os.open(path, os.O_RDONLY))
    except OSError as e:
        import errno as _errno

        return _errno.errorcode[e.errno]
    finally:
        for fd in fds:
            os.close(fd)
    return "ok"


# --- filesystem worker ------------------------------------------------------------------


def test_filesystem_worker_probes(tree: str, sleeper: Sleeper) -> None:
    base = os.path.dirname(tree)
    hello = os.path.join(tree, "hello.txt")

    def probe():
        etc_fd = os.open("/etc", os.O_PATH | os.O_DIRECTORY)  # held from before the sandbox
        ipc_a, ipc_b = socket.socketpair()  # stands for the inherited IPC socket
        layers = apply(filesystem_profile(tree), settings())
        out: dict = {"layers": layers}
        out["read_allowed"] = open(hello).read()
        out["read_nested"] = open(os.path.join(tree, "sub", "inner.txt")).read()
        out["listdir"] = sorted(os.listdir(tree))
        out["openat2_read"] = attempt(lambda: openat2(hello, os.O_RDONLY))
        out["read_outside"] = attempt(lambda: open(os.path.join(base, "secret.txt")).read())
        out["read_dotdot"] = attempt(lambda: open(os.path.join(tree, "..", "secret.txt")).read())
        out["read_etc_passwd"] = attempt(lambda: open("/etc/passwd").read())
        out["via_proc_self_fd"] = attempt(lambda: open(f"/proc/self/fd/{etc_fd}/passwd").read())
        out["via_proc_self_root"] = attempt(lambda: open("/proc/self/root/etc/passwd").read())
        out["via_o_path_fd"] = attempt(lambda: os.close(os.open("passwd", os.O_RDONLY, dir_fd=etc_fd)))
        out["listdir_outside"] = attempt(lambda: os.listdir("/etc"))
        out["write_new_inside"] = attempt(lambda: open(os.path.join(tree, "new.txt"), "w").close())
        out["write_existing_inside"] = attempt(lambda: open(hello, "r+").close())
        out["openat2_write_inside"] = attempt(
            lambda: openat2(os.path.join(tree, "new.txt"), os.O_WRONLY | os.O_CREAT)
        )
        out["openat2_write_existing"] = attempt(lambda: openat2(hello, os.O_WRONLY))
        out["openat2_outside"] = attempt(lambda: openat2("/etc/passwd", os.O_RDONLY))
        out["mkdir"] = attempt(lambda: os.mkdir(os.path.join(tree, "d")))
        out["unlink"] = attempt(lambda: os.unlink(hello))
        out["symlink"] = attempt(lambda: os.symlink("/etc/passwd", os.path.join(tree, "l")))
        out["rename"] = attempt(lambda: os.rename(hello, hello + ".x"))
        out["truncate"] = attempt(lambda: os.truncate(hello, 0))
        out["socket_inet"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        out["socket_unix"] = attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        out["fork"] = attempt(try_fork)
        out["clone3"] = attempt(lambda: raw_syscall(nr("clone3"), 0, 0))
        out["io_uring_setup"] = attempt(lambda: raw_syscall(nr("io_uring_setup"), 1, 0))
        out["kill_other"] = attempt(lambda: os.kill(sleeper.pid, signal.SIGTERM))
        out["parent_environ"] = attempt(lambda: open(f"/proc/{os.getppid()}/environ").read())
        out["setuid_0"] = attempt(lambda: os.setuid(0))
        out["tiocsti"] = attempt(lambda: fcntl.ioctl(ipc_a.fileno(), termios.TIOCSTI, b"x"))
        out["chdir_root"] = attempt(lambda: os.chdir("/"))
        ipc_a.sendall(b"ping")
        out["ipc"] = ipc_b.recv(4).decode()
        out["nofile"] = exhaust_fds(hello)
        out["memory"] = attempt(lambda: bytearray(2 * TEST_MEMORY_MB * MiB))
        out["kill_self_signal0"] = attempt(lambda: os.kill(os.getpid(), 0))
        return out

    o = run_child(probe)
    assert o.error is None and o.signal is None, o
    r = o.result
    assert set(r["layers"]) == {"user", "prctl", "rlimits", "landlock", "seccomp"}
    assert not any(v.startswith(("unavailable", "off")) for v in r["layers"].values()), r["layers"]
    assert r["read_allowed"] == "hello\n" and r["read_nested"] == "inner\n"
    assert r["listdir"] == ["hello.txt", "sub"]
    assert r["openat2_read"] == "ok"
    for key in (
        "read_outside",
        "read_dotdot",
        "read_etc_passwd",
        "via_proc_self_fd",
        "via_proc_self_root",
        "via_o_path_fd",
        "listdir_outside",
        "openat2_write_inside",
        "openat2_write_existing",
        "openat2_outside",
        "parent_environ",
    ):
        assert r[key] == "EACCES", (key, r[key])  # Landlock
    for key in (
        "write_new_inside",
        "write_existing_inside",
        "mkdir",
        "unlink",
        "symlink",
        "rename",
        "truncate",
        "socket_inet",
        "socket_unix",
        "fork",
        "io_uring_setup",
        "kill_other",
        "setuid_0",
        "tiocsti",
        "chdir_root",
    ):
        assert r[key] == "EPERM", (key, r[key])  # seccomp default action (and Landlock beneath)
    assert r["clone3"] == "ENOSYS"
    assert r["ipc"] == "ping"
    assert r["nofile"] == "EMFILE"
    assert r["memory"] == "MemoryError"
    assert r["kill_self_signal0"] == "ok"
    assert sleeper.alive()
    assert os.path.exists(os.path.join(tree, "hello.txt")) and not os.path.exists(
        os.path.join(tree, "new.txt")
    )


KILLED = {
    "ptrace_attach": lambda pid: raw_syscall(nr("ptrace"), 16, pid, 0, 0),  # PTRACE_ATTACH
    "process_vm_readv": lambda pid: raw_syscall(nr("process_vm_readv"), pid, 0, 0, 0, 0, 0),
    "execve": lambda pid: os.execv("/bin/true", ["true"]),  # noqa: S606
    "bpf": lambda pid: raw_syscall(nr("bpf"), 0, 0, 0),
    "unshare_user": lambda pid: (
        os.unshare(os.CLONE_NEWUSER) if hasattr(os, "unshare") else raw_syscall(nr("unshare"), 0x10000000)
    ),
    "mount": lambda pid: raw_syscall(nr("mount"), 0, 0, 0, 0, 0),
    "keyctl": lambda pid: raw_syscall(nr("keyctl"), 0, 0, 0, 0, 0),
    "userfaultfd": lambda pid: raw_syscall(nr("userfaultfd"), 0),
    "perf_event_open": lambda pid: raw_syscall(nr("perf_event_open"), 0, 0, 0, 0, 0),
    "personality": lambda pid: raw_syscall(nr("personality"), 0xFFFFFFFF),
    "open_by_handle_at": lambda pid: raw_syscall(nr("open_by_handle_at"), 0, 0, 0),
    "x32_getpid": lambda pid: raw_syscall(0x40000000 | 39),
}


@pytest.mark.parametrize("connector", ["filesystem", "http_fetch", "postgres"])
@pytest.mark.parametrize("action", sorted(KILLED))
def test_never_legitimate_calls_kill_the_worker(
    tree: str, sleeper: Sleeper, connector: str, action: str
) -> None:
    if action == "x32_getpid" and platform.machine() != "x86_64":
        pytest.skip("x32 exists on x86_64 only")
    profile = {
        "filesystem": filesystem_profile(tree),
        "http_fetch": http_fetch_profile(),
        "postgres": postgres_profile(),
    }[connector]

    def probe():
        apply(profile, settings())
        KILLED[action](sleeper.pid)
        return "survived"

    o = run_child(probe)
    assert o.killed_by_sigsys, f"{action} in the {connector} worker: {o}"
    assert sleeper.alive()


# --- http_fetch worker ------------------------------------------------------------------


def test_http_fetch_worker_probes() -> None:
    allowed, forbidden = loopback_listener(), loopback_listener()
    allowed_port, forbidden_port = allowed.getsockname()[1], forbidden.getsockname()[1]
    try:

        def probe():
            # As the zygote does: the CA bundle is loaded before any layer and before the uid
            # drop, so the worker never reads it (a venv under a 0700 directory is fine).
            trust = ssl.create_default_context(cafile=certifi.where())
            apply(http_fetch_profile(allowed_port), settings())
            out: dict = {}

            def connect(port: int) -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(("127.0.0.1", port))

            out["connect_allowed"] = attempt(lambda: connect(allowed_port))
            out["connect_forbidden"] = attempt(lambda: connect(forbidden_port))
            out["connect_ssh"] = attempt(lambda: connect(22))
            out["socket_inet6"] = attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
            out["socket_udp"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
            out["socket_unix"] = attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            out["socket_netlink"] = attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
            out["socket_packet"] = attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
            out["socket_raw_inet"] = attempt(
                lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            )

            def bind() -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", 0))
                    s.listen()

            out["bind_listen"] = attempt(bind)

            out["trusted_cas"] = trust.cert_store_stats()["x509_ca"]
            out["verifies_peers"] = trust.verify_mode == ssl.CERT_REQUIRED and trust.check_hostname
            out["read_etc_passwd"] = attempt(lambda: open("/etc/passwd").read())
            out["fork"] = attempt(try_fork)
            out["resolve_localhost"] = attempt(
                lambda: socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
            )
            return out

        o = run_child(probe)
        assert o.error is None and o.signal is None, o
        r = o.result
        assert r["connect_allowed"] == "ok"
        assert r["connect_forbidden"] == "EACCES" and r["connect_ssh"] == "EACCES"  # Landlock TCP
        assert pending_connection(allowed)
        assert not pending_connection(forbidden), "a packet reached the forbidden port"
        assert r["socket_inet6"] == "ok" and r["socket_udp"] == "ok"
        for key in ("socket_unix", "socket_netlink", "socket_packet", "socket_raw_inet", "fork"):
            assert r[key] == "EPERM", (key, r[key])
        assert r["bind_listen"] in ("EPERM", "EACCES")
        assert r["trusted_cas"] > 50 and r["verifies_peers"]  # the trust store survived confinement
        assert r["read_etc_passwd"] == "EACCES"  # noqa: S105
        assert r["resolve_localhost"] == "ok"
    finally:
        allowed.close()
        forbidden.close()


# --- postgres worker --------------------------------------------------------------------


def test_postgres_worker_probes() -> None:
    db = loopback_listener()
    db_port = db.getsockname()[1]
    other = loopback_listener()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0mcp-gateway-test-{os.getpid()}"
    abstract.bind(name)
    abstract.listen()
    try:

        def probe():
            apply(postgres_profile(db_port), settings())
            out: dict = {}

            def connect(family, addr) -> None:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(addr)

            out["connect_db"] = attempt(lambda: connect(socket.AF_INET, ("127.0.0.1", db_port)))
            out["connect_other"] = attempt(
                lambda: connect(socket.AF_INET, ("127.0.0.1", other.getsockname()[1]))
            )
            out["socket_unix"] = attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
            out["connect_abstract"] = attempt(lambda: connect(socket.AF_UNIX, name))
            out["socket_netlink"] = attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))
            out["read_etc_shadow"] = attempt(lambda: open("/etc/shadow").read())
            out["fork"] = attempt(try_fork)
            return out

        o = run_child(probe)
        assert o.error is None and o.signal is None, o
        r = o.result
        assert r["connect_db"] == "ok" and pending_connection(db)
        assert r["connect_other"] == "EACCES" and not pending_connection(other)
        assert r["socket_unix"] == "ok"
        assert r["connect_abstract"] == "EPERM"  # Landlock scope (ABI 6)
        assert r["socket_netlink"] == "EPERM"
        assert r["read_etc_shadow"] == "EACCES"
        assert r["fork"] == "EPERM"
    finally:
        db.close()
        other.close()
        abstract.close()


# --- what /proc says about a confined worker -------------------------------------------


@pytest.mark.parametrize("connector", ["filesystem", "http_fetch", "postgres"])
def test_proc_status_of_a_confined_worker(tree: str, connector: str) -> None:
    profile = {
        "filesystem": filesystem_profile(tree),
        "http_fetch": http_fetch_profile(),
        "postgres": postgres_profile(),
    }[connector]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            apply(profile, settings())
            got = f"{prctl(PR_GET_NO_NEW_PRIVS)} {prctl(PR_GET_SECCOMP)} {prctl(PR_GET_DUMPABLE)}"
            os.write(ready_w, got.encode())
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        import select

        assert select.select([ready_r], [], [], 15)[0], "the child did not confine itself in time"
        assert os.read(ready_r, 100).decode() == "1 2 0"
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        assert status["NoNewPrivs"].strip() == "1"
        assert status["Seccomp"].strip() == "2"
        assert status["CapEff"].strip() == "0000000000000000"
        assert status["CapPrm"].strip() == "0000000000000000"
        assert status["CapAmb"].strip() == "0000000000000000"
        if IS_ROOT:
            assert status["CapBnd"].strip() == "0000000000000000"
            uids = status["Uid"].split()
            first, count = DEFAULT_UID_RANGE
            assert len(set(uids)) == 1 and first <= int(uids[0]) < first + count, uids
            assert status["Gid"].split() == uids
            assert status["Groups"].strip() in ("", uids[0])
    finally:
        os.close(go_w)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        os.close(ready_r)
