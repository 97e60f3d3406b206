"""Worker pools: pre-forked, confined workers per connector, with hard deadlines.

A pool owns its workers through a nursery. A call borrows an idle worker (waiting, within
the call's deadline, in a bounded queue when none is free), sends one request frame and
reads one reply frame before the deadline. A worker that misses the deadline, dies, breaks
the framing or sends anything but a well-formed reply to *this* request is SIGKILLed through
its pidfd and replaced from the zygote; the call ends with TIMEOUT, WORKER_CRASHED or
INTERNAL_ERROR. Nothing a worker sends is trusted beyond the strict decoder.
"""

from __future__ import annotations

import array
import logging
import math
import os
import select
import signal
import socket
from dataclasses import dataclass, field

import msgspec
import trio

from mcp_gateway.ipc.frames import FrameError
from mcp_gateway.ipc.messages import (
    CallFailed,
    CallOk,
    CallRequest,
    WorkerAbort,
    hello_decoder,
    reply_decoder,
    request_encoder,
)
from mcp_gateway.supervisor.worker_socket import WorkerSocket
from mcp_gateway.workers.runtime import reply_cap
from mcp_gateway.workers.zygote import PID, READY, SPAWN

log = logging.getLogger("mcp_gateway.pool")

HELLO_CAP = 64 * 1024
SPAWN_TIMEOUT_S = 15.0
ZYGOTE_START_TIMEOUT_S = 60.0
RESPAWN_BACKOFF_S = 1.0


class QueueFull(Exception):
    """Too many calls wait for this connector's workers; the call is refused at once."""


class PoolStartError(Exception):
    """The pool could not start its workers (a required sandbox layer failed, the zygote died...)."""


class ZygoteGone(PoolStartError):
    """The zygote died: the pool can never replace a worker again, so the gateway stops."""


@dataclass(eq=False)
class Worker:
    pid: int
    pidfd: int
    sock: WorkerSocket
    layers: dict[str, str]
    calls: int = 0
    _poll: select.poll | None = None

    def idle_and_alive(self) -> bool:
        """An idle worker has nothing to say: any event on its socket (EOF, hang-up, stray
        bytes) means it died or misbehaved while idle, and it must not get a call."""
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.sock.fileno(), select.POLLIN | select.POLLPRI)
        return not self._poll.poll(0)

    def kill(self) -> None:
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        self.sock.close()


@dataclass
class PoolStats:
    restarts: int = 0
    timeouts: int = 0
    crashes: int = 0
    queued: int = 0
    busy: int = 0
    layers: dict[str, str] = field(default_factory=dict)


class WorkerPool:
    def __init__(self, connector: str, zygote_pid: int, control: socket.socket, size: int, queue_size: int):
        self.connector = connector
        self.zygote_pid = zygote_pid
        self._control = trio.socket.from_stdlib_socket(control)
        self._control_lock = trio.Lock()
        self.size = size
        self.queue_size = queue_size
        self._idle_send, self._idle_recv = trio.open_memory_channel[Worker](math.inf)
        self._live = 0
        self.stats = PoolStats()
        self._nursery: trio.Nursery | None = None
        self.broken: str | None = None

    @property
    def live_workers(self) -> int:
        return self._live

    async def _spawn(self) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            async with self._control_lock:
                with trio.fail_after(SPAWN_TIMEOUT_S):
                    await self._control.sendmsg(
                        [SPAWN], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [theirs.fileno()]))]
                    )
                    answer = await self._control.recv(16)
            theirs.close()
            if len(answer) != PID.size:
                raise ZygoteGone(f"the {self.connector} zygote is gone: no new {self.connector} worker can be "
                                 "started; restart the gateway (and check the log and dmesg for why it died)")
            (pid,) = PID.unpack(answer)
            if pid <= 0:
                raise PoolStartError(f"the {self.connector} zygote refused to fork a worker")
            pidfd = os.pidfd_open(pid)
            sock = WorkerSocket(ours)
            try:
                with trio.fail_after(SPAWN_TIMEOUT_S):
                    hello = hello_decoder.decode(await sock.recv_frame(HELLO_CAP))
            except (trio.TooSlowError, EOFError, FrameError, OSError, msgspec.DecodeError) as e:
                Worker(pid, pidfd, sock, {}).kill()
                raise PoolStartError(f"a new {self.connector} worker (pid {pid}) failed to start: {e!r}") from None
            if isinstance(hello, WorkerAbort):
                Worker(pid, pidfd, sock, {}).kill()
                raise PoolStartError(f"a new {self.connector} worker refused to run unconfined: {hello.reason}")
            if hello.pid != pid:
                Worker(pid, pidfd, sock, {}).kill()
                raise PoolStartError(f"a new {self.connector} worker announced pid {hello.pid}, expected {pid}")
            return Worker(pid, pidfd, sock, hello.layers)
        except trio.TooSlowError:
            theirs.close()
            ours.close()
            raise PoolStartError(f"the {self.connector} zygote did not answer within {SPAWN_TIMEOUT_S} s") from None
        except BaseException:
            theirs.close()
            raise

    async def _add_worker(self) -> None:
        worker = await self._spawn()
        self.stats.layers = worker.layers
        self._live += 1
        self._idle_send.send_nowait(worker)

    async def _replace(self) -> None:
        """Spawn a replacement; retry with backoff while the zygote cannot deliver one."""
        self.stats.restarts += 1
        while True:
            try:
                await self._add_worker()
                self.broken = None
                return
            except ZygoteGone:
                raise  # fail loudly (the process exits 1) rather than time out every call from now on
            except (PoolStartError, OSError) as e:
                self.broken = str(e)
                log.error("%s pool: cannot replace a worker: %s; retrying in %.0f s",
                          self.connector, e, RESPAWN_BACKOFF_S)
                await trio.sleep(RESPAWN_BACKOFF_S)

    def _discard(self, worker: Worker) -> None:
        worker.kill()
        self._live -= 1
        assert self._nursery is not None
        self._nursery.start_soon(self._replace)

    async def _zygote_ready(self) -> None:
        with trio.move_on_after(ZYGOTE_START_TIMEOUT_S):
            first = await self._control.recv(4096)
            if first == READY:
                return
            detail = first.removeprefix(b"error:").decode(errors="replace") or "it exited"
            raise PoolStartError(f"the {self.connector} connector failed to start: {detail}")
        raise PoolStartError(f"the {self.connector} connector did not start within {ZYGOTE_START_TIMEOUT_S:.0f} s")

    async def _zygote_exit(self) -> None:
        """Returns when the zygote has exited (its pidfd turns readable)."""
        pidfd = os.pidfd_open(self.zygote_pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the workers, report ready, then own replacements until cancelled.

        Calls that arrive before the first worker is up simply queue for it.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._zygote_ready()
                for _ in range(self.size):
                    await self._add_worker()
                log.info("%s: %d workers ready; sandbox: %s", self.connector, self.live_workers,
                         ", ".join(f"{k}={v}" for k, v in self.stats.layers.items()) or "none")
                task_status.started()
                await self._zygote_exit()
                raise ZygoteGone(f"the {self.connector} zygote (pid {self.zygote_pid}) exited: no new "
                                 f"{self.connector} worker could ever be started; restart the gateway "
                                 "(and check the log and dmesg for why it died)")
            finally:
                self.close()

    def close(self) -> None:
        while True:
            try:
                self._idle_recv.receive_nowait().kill()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
        try:
            os.kill(self.zygote_pid, signal.SIGKILL)
            os.waitpid(self.zygote_pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    async def call(self, request: CallRequest, deadline: float) -> CallOk | CallFailed:
        """Run one request on a worker before `deadline` (trio clock). Never raises for worker faults.

        Raises QueueFull when `queue_size` calls already wait for a worker.
        """
        if self.stats.queued >= self.queue_size:
            raise QueueFull(f"{self.stats.queued} calls already wait for a {self.connector} worker "
                            f"(connectors.{self.connector}.queue_size = {self.queue_size})")
        worker: Worker | None = None
        clean = False
        try:
            with trio.move_on_at(deadline):  # one deadline for the queue wait and the exchange
                try:
                    # Succeeds only when nobody is queued: the channel hands a returned worker
                    # straight to the longest waiter, so this does not jump the queue.
                    worker = self._idle_recv.receive_nowait()
                except trio.WouldBlock:
                    self.stats.queued += 1
                    try:
                        worker = await self._idle_recv.receive()
                    finally:
                        self.stats.queued -= 1
                while not worker.idle_and_alive():
                    # Died while idle (killed from outside, OOM...): replace it and take the
                    # next one, so the failure costs no call.
                    self.stats.crashes += 1
                    self._discard(worker)
                    worker = None
                    worker = await self._idle_recv.receive()
                self.stats.busy += 1
                reply = await self._exchange(worker, request)
                clean = True
                return reply
            self.stats.timeouts += 1
            if worker is None:
                return CallFailed(request.request_id, "TIMEOUT",
                                  f"no {self.connector} worker became free within the call's timeout")
            return CallFailed(request.request_id, "TIMEOUT",
                              "the call ran past its timeout; the worker was killed and replaced")
        except _WorkerFault as fault:
            return CallFailed(request.request_id, fault.code, fault.reason)  # type: ignore[arg-type]
        finally:
            if worker is not None:
                self.stats.busy -= 1
                if clean:
                    worker.calls += 1
                    self._idle_send.send_nowait(worker)
                else:
                    # Timed out, crashed, lied, or the call was cancelled mid-exchange: the
                    # worker's state is unknown, so it is killed and replaced.
                    self._discard(worker)

    async def _exchange(self, worker: Worker, request: CallRequest) -> CallOk | CallFailed:
        """One request/reply; raises _WorkerFault when the worker must not be used again."""
        try:
            await worker.sock.send_frame(request_encoder.encode(request))
            payload = await worker.sock.recv_frame(reply_cap(request.max_bytes), reply=True)
        except (EOFError, OSError):
            self.stats.crashes += 1
            raise _WorkerFault("WORKER_CRASHED", "the worker died during the call; it has been replaced") from None
        except FrameError:
            raise _WorkerFault("RESULT_TOO_LARGE",
                               "the worker's reply passed the size cap; the worker was replaced") from None
        try:
            reply = reply_decoder.decode(payload)
        except msgspec.DecodeError:
            reply = None
        if reply is None or reply.request_id != request.request_id:
            raise _WorkerFault("INTERNAL_ERROR", "the worker sent a malformed reply; it was killed and replaced")
        return reply


class _WorkerFault(Exception):
    """The worker timed out, died, broke the framing or lied; the code is the supervisor's verdict."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
