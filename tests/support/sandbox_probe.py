"""Probe harness: run a function in a forked child after confining it, report what happened.

In the style of bubblewrap's try-syscall and Chromium's baseline policy tests: the child applies
a sandbox, attempts actions, and reports each precise outcome (errno name, or "ok") through a
pipe; a death by signal (SIGSYS from seccomp KILL_PROCESS) is seen by the parent in the
waitpid status. Every wait has a deadline: a hung child fails its test, never the suite.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp_gateway.config import SandboxSettings
from mcp_gateway.sandbox.profile import INET_FAMILIES, SandboxProfile

IS_ROOT = os.geteuid() == 0
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# Test limits: small enough to hit, large enough for a forked pytest process to keep running.
TEST_MEMORY_MB = 256
TEST_NOFILE = 64


@dataclass
class Outcome:
    result: Any = None
    error: str | None = None
    exit_code: int | None = None
    signal: int | None = None

    @property
    def killed_by_sigsys(self) -> bool:
        return self.signal == signal.SIGSYS


def attempt(fn: Callable[[], Any]) -> str:
    """'ok' or the errno name (or exception type) of a failed attempt."""
    try:
        fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    except MemoryError:
        return "MemoryError"
    return "ok"


def raw_syscall(nr: int, *args: int) -> int:
    """A raw syscall; raises OSError with the errno on failure."""
    res = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if res < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return res


def run_child(fn: Callable[[], Any], timeout: float = 15.0) -> Outcome:
    """fork; the child runs fn() and reports its JSON result; the parent waits at most timeout."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            try:
                data = json.dumps({"result": fn()})
            except BaseException as e:  # noqa: BLE001 - everything goes to the parent
                data = json.dumps({"error": f"{type(e).__name__}: {e}"})
            payload = data.encode()
            while payload:
                payload = payload[os.write(w, payload) :]
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        poller = select.poll()
        poller.register(r, select.POLLIN | select.POLLHUP)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(int(left * 1000)):
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    status = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"sandboxed child {pid} did not finish within {timeout} s")
        time.sleep(0.01)
    out = Outcome()
    if os.WIFSIGNALED(status):
        out.signal = os.WTERMSIG(status)
    else:
        out.exit_code = os.WEXITSTATUS(status)
    if chunks:
        msg = json.loads(b"".join(chunks))
        out.result = msg.get("result")
        out.error = msg.get("error")
    return out


# The profiles' rlimits (a connector puts its instance's sandbox.limits in its profile).
TEST_LIMITS = {"memory_mb": TEST_MEMORY_MB, "cpu_s": 30, "nofile": TEST_NOFILE}


def settings(**layers: str) -> SandboxSettings:
    """Sandbox settings; layers not named stay `required`."""
    return SandboxSettings.model_validate({"layers": layers})


def only(layer: str) -> SandboxSettings:
    """Settings with one layer required and every other one off."""
    names = ("user", "prctl", "rlimits", "landlock", "seccomp")
    return settings(**{n: ("required" if n == layer else "off") for n in names})


def world_readable_tree() -> str:
    """A directory (with a file and a subdirectory) that uid 65534 can read, plus a sibling
    secret outside it. Returns the allowed root."""
    base = tempfile.mkdtemp(prefix="mcp-sbx-")
    os.chmod(base, 0o755)  # noqa: S103
    root = os.path.join(base, "data")
    os.mkdir(root, 0o755)
    os.mkdir(os.path.join(root, "sub"), 0o755)
    for path, text in (
        (os.path.join(root, "hello.txt"), "hello\n"),
        (os.path.join(root, "sub", "inner.txt"), "inner\n"),
        (os.path.join(base, "secret.txt"), "secret\n"),
    ):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    os.chmod(root, 0o755)  # noqa: S103
    return root


# Profiles equal to what the connectors build (see mcp_gateway/connectors/*/worker.py).
def filesystem_profile(root: str) -> SandboxProfile:
    return SandboxProfile("fs", read_paths=(root,), connect_ports=(), socket_families=(), extra_syscalls=("openat2",),
                          **TEST_LIMITS)


def fetch_read_paths() -> tuple[str, ...]:
    import certifi

    return (certifi.where(), "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")


def http_fetch_profile(*extra_ports: int) -> SandboxProfile:
    return SandboxProfile(
        "web",
        read_paths=fetch_read_paths(),
        connect_ports=(80, 443, *extra_ports),
        socket_families=INET_FAMILIES,
        **TEST_LIMITS,
    )


def postgres_profile(port: int = 5432) -> SandboxProfile:
    return SandboxProfile(
        "db",
        read_paths=fetch_read_paths(),
        connect_ports=(port,),
        socket_families=(*INET_FAMILIES, socket.AF_UNIX),
        **TEST_LIMITS,
    )


class Sleeper:
    """A process that is neither the test runner nor the probe: a target for kill/ptrace."""

    def __init__(self) -> None:
        self.pid = os.fork()
        if self.pid == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                time.sleep(60)
            finally:
                os._exit(0)

    def alive(self) -> bool:
        done, _ = os.waitpid(self.pid, os.WNOHANG)
        return done == 0

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def loopback_listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def pending_connection(listener: socket.socket) -> bool:
    """True when something connected to the listener (a SYN reached it)."""
    r, _, _ = select.select([listener], [], [], 0.2)
    return bool(r)


class ConfinedSibling:
    """A second process confined under the same profile (a sibling worker): a target for
    prlimit/signal attacks. It waits until stopped; every wait has a deadline."""

    _open_go: set[int] = set()  # other siblings' stop pipes: a new sibling must not hold them

    def __init__(self, profile: SandboxProfile, sandbox: SandboxSettings, timeout: float = 15.0) -> None:
        from mcp_gateway.sandbox import apply

        ready_r, ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(ready_r)
                os.close(self._go_w)
                for fd in ConfinedSibling._open_go:
                    os.close(fd)
                apply(profile, sandbox)
                os.write(ready_w, b"1")
                select.select([self._go_r], [], [], 60)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(self._go_r)
        ConfinedSibling._open_go.add(self._go_w)
        try:
            if not select.select([ready_r], [], [], timeout)[0] or os.read(ready_r, 1) != b"1":
                self.stop()
                raise AssertionError("the sibling did not confine itself in time")
        finally:
            os.close(ready_r)

    def alive(self) -> bool:
        done, _ = os.waitpid(self.pid, os.WNOHANG)
        return done == 0

    def stop(self) -> None:
        if self._go_w in ConfinedSibling._open_go:
            ConfinedSibling._open_go.discard(self._go_w)
            os.close(self._go_w)
        deadline = time.monotonic() + 10
        try:
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    return
                time.sleep(0.01)
        except ChildProcessError:
            pass
