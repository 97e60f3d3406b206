"""The supervisor's handle on one confined upstream MCP server process (PLAN.md's UpstreamProcess).

`start_upstream(instance, config)` starts the instance's zygote (a fresh interpreter:
forking the supervisor once trio runs is unsafe), which forks the server's warden, which
forks the server; the server confines itself and execs its command (launcher.py, server.py).
The server's stdin and stdout are one end of a stream socketpair; its stderr goes through the
zygote's bounded relay into the gateway's log, each line prefixed `[worker <pid>]`.

The first frame on that stream is the warden's hello (WorkerReady with the server's pid as
this process sees it and each layer's status, or WorkerAbort): read here, before the stream
is handed over, so the server cannot forge it. `kill_tree()` SIGKILLs the server: in its own
pid namespace that kills every process it started (the kernel kills a namespace with its
init), otherwise its process group (which seccomp keeps every descendant in) is killed too
and the warden, their subreaper, reaps them. The warden then exits the way the server did and
the zygote reports it (`WorkerExited`): that is `exit_status()`.
"""

from __future__ import annotations

import os
import select
import signal
import socket
from typing import Protocol

import msgspec
import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.ipc.control import CONTROL_CAP, Spawned, SpawnRefused, WorkerExited, from_zygote_decoder
from mcp_gateway.ipc.frames import HEADER, check_length
from mcp_gateway.ipc.messages import WorkerAbort, hello_decoder
from mcp_gateway.supervisor.zygotes import PoolStartError, Zygote, describe_status

START_TIMEOUT_S = 30.0  # zygote warm-up (runtime resolution, namespace probe) and the confinement
KILL_TIMEOUT_S = 10.0
HELLO_CAP = 64 * 1024


class UpstreamStartError(Exception):
    """The server could not be started confined as configured; `reason` is operator text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamInstance(Protocol):
    name: str
    settings: McpServerSettings


class UpstreamProcess(Protocol):
    send_stream: trio.abc.SendStream
    receive_stream: trio.abc.ReceiveStream
    pid: int

    async def kill_tree(self) -> None: ...

    def exit_status(self) -> str | None: ...


class _Control:
    """The zygote's control socket, read here directly (no read_messages task): a non-blocking
    duplicate of it, waited on with trio."""

    def __init__(self, zygote: Zygote) -> None:
        self.sock = socket.socket(fileno=os.dup(zygote.control_fileno()))
        self.sock.setblocking(False)

    def poll(self) -> object | None:
        """The next message if one is there; EOFError when the zygote is gone."""
        try:
            data = self.sock.recv(CONTROL_CAP)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            raise EOFError("the zygote closed its control socket")
        try:
            return from_zygote_decoder.decode(data)
        except msgspec.DecodeError:
            return None  # the zygote is trusted; a garbled packet is dropped

    async def receive(self) -> object:
        while (msg := self.poll()) is None:
            await trio.lowlevel.wait_readable(self.sock)
        return msg

    def close(self) -> None:
        self.sock.close()


class ConfinedUpstream:
    """One running server. `layers`: what confines it (layer -> status), for /healthz and doctor."""

    def __init__(self, instance: str, zygote: Zygote, control: _Control, stream: trio.SocketStream,
                 warden_pid: int, pid: int, layers: dict[str, str]) -> None:
        self.instance = instance
        self.send_stream: trio.abc.SendStream = stream
        self.receive_stream: trio.abc.ReceiveStream = stream
        self.pid = pid
        self.warden_pid = warden_pid
        self.layers = layers
        self._zygote, self._control, self._stream = zygote, control, stream
        self._status: str | None = None
        self._pidfd = os.pidfd_open(pid)

    def exit_status(self) -> str | None:
        """How the server ended ("exited with status 0", "killed by SIGKILL"), None while running."""
        if self._status is None:
            try:
                while (msg := self._control.poll()) is not None:
                    self._note(msg)
            except EOFError:
                self._status = self._status or "its zygote is gone"
        return self._status

    async def wait(self) -> str:
        """Wait until the server and everything it started are gone; how it ended."""
        while self.exit_status() is None:
            await trio.lowlevel.wait_readable(self._control.sock)
        return self._status or ""

    async def kill_tree(self) -> None:
        """SIGKILL the server and every process it started, wait until all are reaped."""
        if self.exit_status() is None:
            self._signal_tree()
            with trio.move_on_after(KILL_TIMEOUT_S):
                await self.wait()
        self._close()

    def _signal_tree(self) -> None:
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # floor mode; in a pid namespace there is no such group here
        except (ProcessLookupError, PermissionError):
            pass

    def _note(self, msg: object) -> None:
        if isinstance(msg, WorkerExited) and msg.pid == self.warden_pid:
            self._status = describe_status(msg.exit_code, msg.signal)

    def _close(self) -> None:
        """Stop the zygote (its warden and server die with it, pdeathsig) and close everything."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._zygote.stop()
        self._status = self._status or "killed with its zygote"
        self._control.close()
        self._stream.socket.close()


async def _read_hello(stream: trio.SocketStream) -> object:
    """Exactly the hello frame: not one byte of what the server writes after it."""
    async def exactly(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = await stream.receive_some(n - len(buf))
            if not chunk:
                raise EOFError("the server's warden closed the stream before its hello")
            buf += chunk
        return bytes(buf)

    length = check_length(await exactly(HEADER.size), HELLO_CAP)
    return hello_decoder.decode(await exactly(length))


async def start_upstream(instance: UpstreamInstance, config: GatewayConfig) -> ConfinedUpstream:
    """Start one instance's server, confined. UpstreamStartError when it cannot be."""
    zygote = Zygote.exec(instance.name, config)
    control: _Control | None = None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await zygote.ready(START_TIMEOUT_S)
        control = _Control(zygote)
        await zygote.send_spawn(theirs)
        theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        with trio.fail_after(START_TIMEOUT_S):
            answer = await control.receive()
            if not isinstance(answer, Spawned):
                raise UpstreamStartError(f"the zygote refused to start the server: "
                                         f"{answer.reason if isinstance(answer, SpawnRefused) else answer}")
            hello = await _read_hello(stream)
        if isinstance(hello, WorkerAbort):
            raise UpstreamStartError(hello.reason)
        return ConfinedUpstream(instance.name, zygote, control, stream, answer.pid, hello.pid, hello.layers)
    except (PoolStartError, EOFError, OSError, msgspec.DecodeError, trio.TooSlowError) as e:
        _cleanup(zygote, control, ours, theirs)
        raise UpstreamStartError(f"upstream server {instance.name!r} did not start: {e}") from None
    except BaseException:
        _cleanup(zygote, control, ours, theirs)
        raise


def _cleanup(zygote: Zygote, control: _Control | None, *socks: socket.socket) -> None:
    zygote.stop()
    if control is not None:
        control.close()
    for s in socks:
        s.close()


def poll_readable(fd: int) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))
