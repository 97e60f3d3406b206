"""The supervisor's handle on one confined upstream MCP server process (PLAN.md's UpstreamProcess).

`start_upstream(instance, config)` starts the instance's zygote (a fresh interpreter:
forking the supervisor once trio runs is unsafe), which forks the server's warden, which
forks the server (under the init of its own pid namespace, init.py, when the host can make
one); the server confines itself and execs its command (launcher.py, server.py).
The server's stdin and stdout are one end of a stream socketpair; its stderr goes through the
zygote's bounded relay into the gateway's log, each line prefixed `[worker <pid>]`.

An `UpstreamStarter` keeps the instance's zygote between restarts (a restart is then a fork of
the warm zygote); `start_upstream` is the one-shot form whose `kill_tree()` also stops it.

The first frame on that stream is the warden's hello (WorkerReady with the server's pid as
this process sees it and each layer's status, or WorkerAbort): read here, before the stream
is handed over, so the server cannot forge it. `kill_tree()` SIGKILLs the server: in its own
pid namespace that kills every process it started (the namespace's init then exits, and the
kernel kills a namespace with its init), otherwise its process group (which seccomp keeps
every descendant in) is killed too and the warden, their subreaper, reaps them. The warden
then exits the way the server did and the zygote reports it (`WorkerExited`): that is
`exit_status()`.
"""

from __future__ import annotations

import os
import signal
import socket
from contextlib import suppress
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


class UpstreamStarter:
    """One instance's zygote, kept across restarts: each `start()` forks a new warden and server
    from the warm zygote (a restart after a timeout costs a fork, not an interpreter). It reads
    the zygote's control socket itself, on demand (no background task): answers to its spawns,
    and every warden's exit, kept by pid for the handles that ask."""

    def __init__(self, instance: UpstreamInstance, config: GatewayConfig) -> None:
        self.instance = instance
        self.config = config
        self._zygote: Zygote | None = None
        self._control: socket.socket | None = None
        self._exits: dict[int, str] = {}
        self._lock = trio.Lock()

    async def start(self, owns_starter: bool = False) -> ConfinedUpstream:
        """A new confined server process (`owns_starter`: its kill_tree also stops the zygote).
        UpstreamStartError when it cannot be started."""
        async with self._lock:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with trio.fail_after(START_TIMEOUT_S):
                    if self._zygote is None:
                        await self._start_zygote()
                    assert self._zygote is not None
                    await self._zygote.send_spawn(theirs)
                    theirs.close()
                    warden_pid = await self._spawned()
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
                    hello = await _read_hello(stream)
            except (PoolStartError, EOFError, OSError, msgspec.DecodeError, trio.TooSlowError) as e:
                ours.close()
                theirs.close()
                self.close()
                raise UpstreamStartError(f"upstream server {self.instance.name!r} did not start: {e}") from None
            except BaseException:
                ours.close()
                theirs.close()
                raise
            if isinstance(hello, WorkerAbort):
                stream.socket.close()
                raise UpstreamStartError(hello.reason)
            return ConfinedUpstream(self, stream, warden_pid, hello.pid, hello.layers, owns_starter)

    async def _start_zygote(self) -> None:
        self._zygote = Zygote.exec(self.instance.name, self.config)
        await self._zygote.ready(START_TIMEOUT_S)
        self._control = socket.socket(fileno=os.dup(self._zygote.control_fileno()))
        self._control.setblocking(False)

    async def _spawned(self) -> int:
        while True:
            msg = self._poll()
            if isinstance(msg, Spawned):
                return msg.pid
            if isinstance(msg, SpawnRefused):
                raise PoolStartError(f"the zygote refused to start the server: {msg.reason}")
            if msg is None:
                await trio.lowlevel.wait_readable(self._control)

    def _poll(self) -> object | None:
        """One control message if one is there (a warden's exit is kept); EOFError once the zygote is gone."""
        if self._control is None:
            raise EOFError("the zygote is gone")
        try:
            data = self._control.recv(CONTROL_CAP)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.close()
            raise EOFError("the zygote closed its control socket")
        try:
            msg = from_zygote_decoder.decode(data)
        except msgspec.DecodeError:
            return None  # the zygote is trusted; a garbled packet is dropped
        if isinstance(msg, WorkerExited):
            self._exits[msg.pid] = describe_status(msg.exit_code, msg.signal)
            return None
        return msg

    def exit_of(self, warden_pid: int) -> str | None:
        """How that warden's server ended, None while it runs."""
        try:
            while self._poll() is not None:
                pass
        except EOFError:
            pass
        if warden_pid in self._exits:
            return self._exits.pop(warden_pid)
        return "killed with its zygote" if self._control is None else None

    async def changed(self) -> None:
        """Returns when the zygote has said something (or is gone)."""
        if self._control is not None:
            await trio.lowlevel.wait_readable(self._control)

    def close(self) -> None:
        """Stop the zygote: its wardens and their servers die with it (pdeathsig)."""
        if self._zygote is not None:
            self._zygote.stop()
            self._zygote = None
        if self._control is not None:
            trio.lowlevel.notify_closing(self._control)
            self._control.close()
            self._control = None


class ConfinedUpstream:
    """One running server. `layers`: what confines it (layer -> status), for /healthz and doctor."""

    def __init__(self, starter: UpstreamStarter, stream: trio.SocketStream, warden_pid: int, pid: int,
                 layers: dict[str, str], owns_starter: bool) -> None:
        self.instance = starter.instance.name
        self.send_stream: trio.abc.SendStream = stream
        self.receive_stream: trio.abc.ReceiveStream = stream
        self.pid = pid
        self.warden_pid = warden_pid
        self.layers = layers
        self._starter, self._stream = starter, stream
        self._status: str | None = None
        self._owns_starter = owns_starter
        self._pidfd = os.pidfd_open(pid)
        self._warden_pidfd = os.pidfd_open(warden_pid)

    def exit_status(self) -> str | None:
        """How the server ended ("exited with status 0", "killed by SIGKILL"), None while running."""
        if self._status is None:
            self._status = self._starter.exit_of(self.warden_pid)
        return self._status

    async def wait(self) -> str:
        """Wait until the server and everything it started are gone; how it ended."""
        while self.exit_status() is None:
            await self._starter.changed()
        return self._status or ""

    async def kill_tree(self) -> None:
        """SIGKILL the server and every process it started, wait until all are reaped.

        Cancelled (or past KILL_TIMEOUT_S) before the warden reported, the warden is killed as
        well (the server dies with it: pdeathsig) and everything is closed all the same."""
        try:
            if self.exit_status() is None:
                self._signal(self._pidfd)
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)  # floor mode; in a pid namespace there is no such group
                with trio.move_on_after(KILL_TIMEOUT_S):
                    await self.wait()
        finally:
            if self._status is None:
                self._signal(self._warden_pidfd)
                self._status = "killed (its warden did not report in time)"
            self._close()

    @staticmethod
    def _signal(pidfd: int) -> None:
        if pidfd >= 0:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def _close(self) -> None:
        for attr in ("_pidfd", "_warden_pidfd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self._stream.socket.close()
        if self._owns_starter:
            self._starter.close()


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
    """Start one instance's server, confined, with a zygote of its own that `kill_tree()` stops.
    UpstreamStartError when it cannot be started. To restart often, keep an UpstreamStarter."""
    starter = UpstreamStarter(instance, config)
    try:
        return await starter.start(owns_starter=True)
    except BaseException:
        starter.close()
        raise
