"""The supervisor's handle on one zygote process: its control socket, its exit; and starting a
zygote again, as a fresh interpreter, once trio runs (`exec_zygote`).

One task (`read_messages`) reads everything the zygote sends: answers to `Spawn` go to the
spawning call, `WorkerExited` reports to the pool's callback. Spawns are serialised, so the
answers come back in order.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.caps import CONTROL_CAP
from mcp_gateway.ipc.control import (
    Spawn,
    Spawned,
    SpawnRefused,
    WorkerExited,
    ZygoteFailed,
    ZygoteReady,
    control_encoder,
    from_zygote_decoder,
)

SPAWN_TIMEOUT_S = 15.0


class PoolStartError(Exception):
    """The pool could not start its workers (a required sandbox layer failed, the zygote died...)."""


class ZygoteGone(PoolStartError):
    """The zygote died or closed its control socket: no worker can be started until it is restarted."""


# A zygote's entry point, named in the new interpreter's command line (a process boundary: the
# supervisor itself imports no worker module).
_EXEC_ENTRY = "import sys; sys.path.insert(0, {root!r}); from mcp_gateway.workers.zygote import exec_main; exec_main()"


def exec_zygote(name: str, config: GatewayConfig) -> tuple[subprocess.Popen, socket.socket]:
    """Start the zygote of one connector as a fresh interpreter (safe while threads run).

    Must be called from the thread that stays alive as long as the zygote should (the trio
    thread): pdeathsig fires when the parent *thread* exits.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    memfd = os.memfd_create("mcp-gateway-config", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = memoryview(msgspec.json.encode(config.model_dump(mode="json", by_alias=True)))
        while data:
            data = data[os.write(memfd, data):]
        os.lseek(memfd, 0, os.SEEK_SET)  # the zygote reads the same open file from the start
        fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE)
        root = str(Path(__file__).resolve().parents[2])
        # -P: nothing from the current directory may shadow the gateway's own modules.
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _EXEC_ENTRY.format(root=root), name, str(theirs.fileno()), str(memfd),
             str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(), memfd))
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
        os.close(memfd)
    return proc, ours


def describe_status(exit_code: int | None, signum: int | None) -> str:
    if signum is not None:
        try:
            return f"killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    return f"exited with status {exit_code}"


class Zygote:
    def __init__(self, connector: str, pid: int, control: socket.socket, process: subprocess.Popen | None = None):
        self.connector = connector
        self.pid = pid
        self._process = process  # set when started by exec_zygote (then Popen reaps it)
        self._pidfd = os.pidfd_open(pid)
        self._control = trio.socket.from_stdlib_socket(control)
        self._spawn_lock = trio.Lock()
        self._answers_send, self._answers = trio.open_memory_channel[Spawned | SpawnRefused | None](1)
        self.status = ""  # how it ended, once reaped

    @classmethod
    def exec(cls, connector: str, config: GatewayConfig) -> Zygote:
        process, control = exec_zygote(connector, config)
        return cls(connector, process.pid, control, process)

    async def ready(self, timeout_s: float) -> None:
        """Wait for the zygote's first message; PoolStartError unless it is ZygoteReady."""
        with trio.move_on_after(timeout_s):
            first = await self._control.recv(CONTROL_CAP)
            try:
                msg = from_zygote_decoder.decode(first) if first else None
            except msgspec.DecodeError:
                msg = None
            if isinstance(msg, ZygoteReady):
                return
            detail = msg.reason if isinstance(msg, ZygoteFailed) else "it exited"
            raise PoolStartError(f"the {self.connector} connector failed to start: {detail}")
        raise PoolStartError(f"the {self.connector} connector did not start within {timeout_s:.0f} s")

    async def read_messages(self, on_exit: Callable[[WorkerExited], None]) -> None:
        """Dispatch the zygote's messages until it closes the control socket."""
        try:
            while True:
                try:
                    data = await self._control.recv(CONTROL_CAP)
                except OSError:
                    data = b""
                if not data:
                    return
                try:
                    msg = from_zygote_decoder.decode(data)
                except msgspec.DecodeError:
                    continue  # the zygote is trusted; a garbled packet is dropped, not obeyed
                if isinstance(msg, WorkerExited):
                    on_exit(msg)
                elif isinstance(msg, Spawned | SpawnRefused):
                    await self._answers_send.send(msg)
        finally:
            self._answers_send.close()  # a spawn waiting for an answer learns the zygote is gone

    async def spawn(self, worker_end: socket.socket) -> int:
        """Ask for a worker serving `worker_end`; its pid. ZygoteGone, PoolStartError."""
        async with self._spawn_lock:
            with trio.move_on_after(SPAWN_TIMEOUT_S):
                try:
                    await self._control.sendmsg(
                        [control_encoder.encode(Spawn())],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [worker_end.fileno()]))])
                    answer = await self._answers.receive()
                except (OSError, trio.EndOfChannel, trio.ClosedResourceError):
                    answer = None
                if answer is None:
                    raise ZygoteGone(f"the {self.connector} zygote (pid {self.pid}) is gone")
                if isinstance(answer, SpawnRefused):
                    raise PoolStartError(f"the {self.connector} zygote refused to fork a worker: {answer.reason}")
                return answer.pid
            raise PoolStartError(f"the {self.connector} zygote did not answer within {SPAWN_TIMEOUT_S} s")

    async def send_spawn(self, worker_end: socket.socket) -> None:
        """Send one Spawn without waiting for its answer: for an owner that reads the control
        socket itself instead of running `read_messages` (an upstream server's process handle)."""
        await self._control.sendmsg(
            [control_encoder.encode(Spawn())],
            [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [worker_end.fileno()]))])

    def control_fileno(self) -> int:
        return self._control.fileno()

    async def wait_exit(self) -> None:
        """Returns when the zygote has exited (its pidfd turns readable)."""
        await trio.lowlevel.wait_readable(self._pidfd)

    def stop(self) -> None:
        """Kill (if still running) and reap the zygote; its workers die with it (pdeathsig)."""
        if self._pidfd < 0:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self._process is not None:
            self._process.wait()
            code = self._process.returncode
            self.status = describe_status(code if code >= 0 else None, -code if code < 0 else None)
        else:
            try:
                _, raw = os.waitpid(self.pid, 0)
                self.status = describe_status(
                    os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else None,
                    os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else None)
            except ChildProcessError:
                self.status = "already reaped"
        trio.lowlevel.notify_closing(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._control.close()
