"""Worker pools: pre-forked, confined workers per connector instance, with hard deadlines, that heal.

A pool owns its zygote and its workers. A call borrows an idle worker (waiting, within the
call's deadline, in a bounded queue when none is free), sends one request frame carrying the
time LEFT of its deadline, and reads the worker's acknowledgement and one reply frame before
the deadline. A worker that misses the deadline, dies, breaks the framing or sends anything
but a well-formed reply to *this* request is SIGKILLed through its pidfd and replaced; the
call ends with TIMEOUT, WORKER_CRASHED or INTERNAL_ERROR. A worker that dies before it
acknowledged the request never read it: the request goes to another worker, so a death while
idle costs no call, even when every worker died at once. Nothing a worker sends is trusted
beyond the strict decoder.

The zygote reports every worker's wait status: a worker killed by SIGSYS (the seccomp
filter's verdict) is a security event, logged at ERROR and counted. A zygote that dies is
started again, with backoff, as a fresh interpreter; meanwhile that connector's calls wait
within their deadline and then get UNAVAILABLE. Workers are retired between calls after
`recycle_after_calls` calls, or when they report wear (CPU budget, broken local state).
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import socket
from dataclasses import dataclass, field

import msgspec
import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.caps import HELLO_CAP, reply_cap
from mcp_gateway.ipc.control import WorkerExited
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.ipc.frames import FrameError
from mcp_gateway.ipc.messages import (
    ACK,
    CallFailed,
    CallOk,
    CallRequest,
    WorkerAbort,
    hello_decoder,
    reply_decoder,
    request_encoder,
)
from mcp_gateway.supervisor.worker_socket import WorkerSocket
from mcp_gateway.supervisor.zygotes import SPAWN_TIMEOUT_S, PoolStartError, Zygote, ZygoteGone, describe_status

__all__ = ["PoolStartError", "QueueFull", "WorkerPool", "ZygoteGone"]

log = logging.getLogger("mcp_gateway.pool")

ZYGOTE_START_TIMEOUT_S = 60.0
RESPAWN_BACKOFF_S = 1.0
# A dead zygote is restarted after 0.1 s, then 0.2, 0.4 ... at most 10 s while it keeps dying;
# a zygote that served a minute starts the sequence over.
ZYGOTE_BACKOFF_MIN_S = 0.1
ZYGOTE_BACKOFF_MAX_S = 10.0
ZYGOTE_HEALTHY_S = 60.0
# How long a call whose worker died waits for the zygote's report of why (for its reason).
EXIT_REPORT_WAIT_S = 1.0


class QueueFull(Exception):
    """Too many calls wait for this connector's workers; the call is refused at once."""


@dataclass(eq=False)
class Worker:
    pid: int
    pidfd: int
    sock: WorkerSocket
    layers: dict[str, str]
    calls: int = 0
    request_id: str | None = None  # the call it serves; kept after a fault, for the death report
    stopped_by: str | None = None  # why the pool killed it, if it did
    exit: WorkerExited | None = None
    exit_seen: trio.Event = field(default_factory=trio.Event)
    _poll: select.poll | None = None

    def idle_and_alive(self) -> bool:
        """An idle worker has nothing to say: any event on its socket (EOF, hang-up, stray
        bytes) means it died or misbehaved while idle, and it must not get a call."""
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.sock.fileno(), select.POLLIN | select.POLLPRI)
        return not self._poll.poll(0)

    def hung_up(self) -> bool:
        """Whether the peer closed its end (rather than sending something)."""
        try:
            return self.sock.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def kill(self) -> None:
        """SIGKILL through the pidfd (never a reused pid); the socket stays open."""
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1

    def close(self) -> None:
        self.kill()
        self.sock.close()


class _Unread(Exception):
    """The worker died before acknowledging the request: it never read it."""


@dataclass
class PoolStats:
    restarts: int = 0  # workers started to replace one
    timeouts: int = 0
    crashes: int = 0  # workers that died during a call
    sandbox_kills: int = 0  # workers killed by SIGSYS (seccomp)
    zygote_restarts: int = 0
    recycled: dict[str, int] = field(default_factory=dict)  # reason -> workers retired between calls
    queued: int = 0
    busy: int = 0
    layers: dict[str, str] = field(default_factory=dict)


class WorkerPool:
    def __init__(self, connector: str, config: GatewayConfig, zygote_pid: int, control: socket.socket):
        """`connector`: the name of the instance this pool serves."""
        self.instance = config.instance(connector)
        settings = self.instance.settings
        self.connector = connector
        self.config = config
        self.size: int = settings.workers
        self.queue_size: int = settings.queue_size
        self.recycle_after_calls: int = settings.recycle_after_calls
        self._zygote = Zygote(connector, zygote_pid, control)
        self._idle_send, self._idle_recv = trio.open_memory_channel[Worker](math.inf)
        self._workers: dict[int, Worker] = {}  # live: greeted, not known to be dead
        self._starting: dict[int, Worker] = {}  # spawned, not yet greeted
        self._dying: dict[int, Worker] = {}  # killed by the pool, exit not yet reported
        self._early_exits: dict[int, WorkerExited] = {}
        self._need_workers = trio.Event()
        self._started = False
        self.restarting = False  # the zygote died and is being started again
        self._retry_at = 0.0  # when the next zygote start is attempted (trio clock)
        self.stats = PoolStats()

    @property
    def live_workers(self) -> int:
        return len(self._workers)

    # --- workers ---------------------------------------------------------------------------

    async def _spawn(self, zygote: Zygote) -> Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._early_exits.clear()  # only reports that race this spawn's answer matter
        try:
            pid = await zygote.spawn(theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = Worker(pid, -1, WorkerSocket(ours), {})
        self._starting[pid] = worker
        early = self._early_exits.pop(pid, None)
        if early is not None:  # it died before this task saw the zygote's answer
            self._worker_exited(early)
        try:
            worker.pidfd = os.pidfd_open(pid)
        except OSError as e:
            self._discard(worker, None)
            raise PoolStartError(f"a new {self.connector} worker (pid {pid}) died at once: {e}") from None
        try:
            with trio.fail_after(SPAWN_TIMEOUT_S):
                hello = hello_decoder.decode(await worker.sock.recv_frame(HELLO_CAP))
        except (trio.TooSlowError, EOFError, FrameError, OSError, msgspec.DecodeError) as e:
            self._discard(worker, None if isinstance(e, EOFError | OSError) else "failed to start")
            raise PoolStartError(f"a new {self.connector} worker (pid {pid}) failed to start: {e!r}") from None
        except BaseException:
            self._discard(worker, "startup cancelled")
            raise
        if isinstance(hello, WorkerAbort):
            self._discard(worker, "refused to run unconfined")
            raise PoolStartError(f"a new {self.connector} worker refused to run unconfined: {hello.reason}")
        if hello.pid != pid:
            self._discard(worker, "announced a wrong pid")
            raise PoolStartError(f"a new {self.connector} worker announced pid {hello.pid}, expected {pid}")
        del self._starting[pid]
        worker.layers = hello.layers
        self.stats.layers = hello.layers
        self._workers[pid] = worker
        return worker

    def _discard(self, worker: Worker, why: str | None) -> None:
        """Kill a worker and have the keeper replace it. `why`: the pool's reason to stop it,
        None when it died by itself."""
        for table in (self._workers, self._starting):
            if table.get(worker.pid) is worker:
                del table[worker.pid]
                if worker.exit is None:
                    worker.stopped_by = why
                    self._dying[worker.pid] = worker
        worker.close()
        self._need_workers.set()

    def _worker_exited(self, report: WorkerExited) -> None:
        """The zygote reaped a worker: log why it died, and have it replaced."""
        for table in (self._workers, self._starting, self._dying):
            worker = table.pop(report.pid, None)
            if worker is not None:
                break
        else:
            # A worker whose Spawned answer its spawning task has not seen yet; bounded.
            if len(self._early_exits) < 64:
                self._early_exits[report.pid] = report
            return
        worker.exit = report
        worker.exit_seen.set()
        self._need_workers.set()
        how = describe_status(report.exit_code, report.signal)
        during = f"while serving request {worker.request_id}" if worker.request_id else "while idle"
        if report.signal == signal.SIGSYS:
            self.stats.sandbox_kills += 1
            log.error("SECURITY: %s worker pid %d was killed by the sandbox (SIGSYS: a system call its "
                      "seccomp profile forbids) %s; it has been replaced. Treat it as an attack on the worker "
                      "or a gateway bug: the kernel log (dmesg, auditd) names the system call",
                      self.connector, report.pid, during)
        elif worker.stopped_by is not None:
            log.info("%s worker pid %d stopped by the gateway (%s) %s", self.connector, report.pid,
                     worker.stopped_by, during)
        else:
            log.warning("%s worker pid %d %s %s (a kill from outside, the OOM killer, or a bug); it has been "
                        "replaced", self.connector, report.pid, how, during)

    async def _keep_workers(self, zygote: Zygote) -> None:
        """Keep `size` live workers. Before the pool has started, a worker that cannot start
        stops the gateway; later, it is retried with backoff."""
        failures = 0
        while True:
            self._need_workers = trio.Event()
            while len(self._workers) < self.size:
                try:
                    worker = await self._spawn(zygote)
                except ZygoteGone:
                    raise
                except (PoolStartError, OSError) as e:
                    if not self._started:
                        raise
                    # Once at once (a worker killed while it started), then with backoff.
                    failures += 1
                    backoff = RESPAWN_BACKOFF_S if failures > 1 else 0.0
                    log.error("%s pool: cannot start a worker: %s; retrying in %.0f s", self.connector, e, backoff)
                    await trio.sleep(backoff)
                    continue
                failures = 0
                if self._started and not self.restarting:
                    self.stats.restarts += 1
                self._idle_send.send_nowait(worker)
            if self.restarting or not self._started:
                self.restarting = False
                log.info("%s: %d workers ready; sandbox: %s%s", self.connector, self.live_workers,
                         ", ".join(f"{k}={v}" for k, v in self.stats.layers.items()) or "none",
                         " (zygote restarted)" if self._started else "")
                self._started = True
            await self._need_workers.wait()

    def _zygote_gone(self, zygote: Zygote) -> None:
        """Every worker of a dead zygote is dead too (pdeathsig): forget them all."""
        zygote.stop()
        tables = (self._workers, self._starting, self._dying)
        for worker in [w for table in tables for w in table.values()]:
            worker.kill()  # sockets stay open for the calls that still read them
            worker.exit_seen.set()
        for table in tables:
            table.clear()

    # --- the pool's life -------------------------------------------------------------------

    async def run(self) -> None:
        """Start the zygote's workers, then keep them, restarting the zygote when it dies.

        Calls that arrive before the first worker is up simply queue for it. Failing to
        start the first time raises PoolStartError (the gateway refuses to start).
        """
        zygote: Zygote | None = self._zygote
        backoff = ZYGOTE_BACKOFF_MIN_S
        try:
            while True:
                born = trio.current_time()
                if zygote is not None:
                    self._zygote = zygote
                    try:
                        await self._run_zygote(zygote)
                    except PoolStartError as e:
                        if not self._started:
                            raise
                        log.error("%s: %s", self.connector, e)
                    finally:
                        self._zygote_gone(zygote)
                if trio.current_time() - born >= ZYGOTE_HEALTHY_S:
                    backoff = ZYGOTE_BACKOFF_MIN_S
                self.restarting = True
                self._retry_at = trio.current_time() + backoff
                log.error("the %s zygote (pid %d) %s; starting a new one in %.1f s. Until then %s calls wait "
                          "within their timeout, then get UNAVAILABLE; other connectors are not affected",
                          self.connector, self._zygote.pid, self._zygote.status or "died", backoff, self.connector)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, ZYGOTE_BACKOFF_MAX_S)
                try:
                    zygote = Zygote.exec(self.connector, self.config)
                    self.stats.zygote_restarts += 1
                except OSError as e:
                    log.error("%s: cannot start a new zygote: %s", self.connector, e)
                    zygote = None
        finally:
            self.close()

    async def _run_zygote(self, zygote: Zygote) -> None:
        """Serve with this zygote until it exits. PoolStartError when it cannot serve."""
        await zygote.ready(ZYGOTE_START_TIMEOUT_S)
        failure: PoolStartError | None = None

        async def keep() -> None:
            nonlocal failure
            try:
                await self._keep_workers(zygote)
            except PoolStartError as e:
                failure = e
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await zygote.wait_exit()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(zygote.read_messages, self._worker_exited)
            nursery.start_soon(watch)
            nursery.start_soon(keep)
        if failure is not None and (not self._started or not isinstance(failure, ZygoteGone)):
            raise failure

    def close(self) -> None:
        for worker in [w for table in (self._workers, self._starting, self._dying) for w in table.values()]:
            worker.kill()
        while True:
            try:
                self._idle_recv.receive_nowait().close()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
        self._zygote.stop()

    # --- calls -----------------------------------------------------------------------------

    async def call(self, request: CallRequest, deadline: float) -> CallOk | CallFailed:
        """Run one request on a worker before `deadline` (trio clock). Never raises for worker faults.

        Raises QueueFull when `queue_size` calls already wait for a worker.
        """
        if self.stats.queued >= self.queue_size:
            raise QueueFull(f"{self.stats.queued} calls already wait for a {self.connector} worker "
                            f"({self.instance.key}.queue_size = {self.queue_size})")
        if self.restarting and not self._workers and self._retry_at >= deadline:
            return self._unavailable(request)
        unread = 0
        holding = False
        with trio.move_on_at(deadline):  # one deadline for the queue wait and the exchange
            while True:
                holding = False
                worker = await self._take()
                holding = True
                try:
                    return await self._run_on(worker, request, deadline)
                except _Unread:
                    # Never read, so never started: another worker may serve it. Bounded, so a
                    # pool whose workers all die at once cannot loop.
                    unread += 1
                    if unread > self.size + 2:
                        self.stats.crashes += 1
                        return CallFailed(request.request_id, ErrorCode.WORKER_CRASHED,
                                          f"{unread} {self.connector} workers in a row died before reading the "
                                          "request; they have been replaced")
        if not holding:
            return self._unavailable(request)
        self.stats.timeouts += 1
        return CallFailed(request.request_id, ErrorCode.TIMEOUT,
                          "the call ran past its timeout; the worker was killed and replaced")

    def _unavailable(self, request: CallRequest) -> CallFailed:
        """No worker could take the call within its deadline: not the call's fault, retry later."""
        if self.restarting:
            why = "is restarting (its zygote died)"
        elif not self._workers:
            why = "has no live worker (they are being replaced)"
        else:
            why = f"is at capacity: its {self.size} workers stayed busy for the call's whole timeout"
        return CallFailed(request.request_id, ErrorCode.UNAVAILABLE,
                          f"the {self.connector} connector {why}; retry later")

    async def _take(self) -> Worker:
        """The next idle, live worker (waiting in the queue when none is free)."""
        while True:
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
            if self._workers.get(worker.pid) is not worker:
                worker.close()  # its death was reported while it waited in the idle queue
            elif not worker.idle_and_alive():
                # Died while idle (the zygote's report says how), or spoke out of turn.
                self._discard(worker, None if worker.hung_up() else "it sent bytes while idle")
            else:
                return worker

    async def _run_on(self, worker: Worker, request: CallRequest, deadline: float) -> CallOk | CallFailed:
        """One exchange on a borrowed worker, which goes back idle or is replaced."""
        # Why the worker must go when this ends: None = it goes back idle; "" = it died by
        # itself; otherwise the pool's reason to kill it (the default: the deadline passed or
        # the call was cancelled mid-exchange, so its state is unknown).
        verdict: str | None = "the call's deadline passed or it was cancelled"
        self.stats.busy += 1
        worker.request_id = request.request_id
        try:
            reply = await self._exchange(worker, request, deadline)
            retire = reply.retire
            if retire is None and worker.calls + 1 >= self.recycle_after_calls:
                retire = "max_calls"
            if retire is None:
                verdict = None
            else:
                self.stats.recycled[retire] = self.stats.recycled.get(retire, 0) + 1
                verdict = f"retired after {worker.calls + 1} calls: {retire}"
                worker.request_id = None  # the call is over; its exit is not the call's
            return reply
        except _Unread:
            verdict = ""
            worker.request_id = None  # it never read the request: its death is not that call's
            raise
        except Refusal as fault:  # the worker must not be used again; the code is the pool's verdict
            verdict = "" if fault.code is ErrorCode.WORKER_CRASHED else f"{fault.code}: {fault.reason}"
            return CallFailed(request.request_id, fault.code, fault.reason)
        finally:
            self.stats.busy -= 1
            worker.calls += 1
            if verdict is None:
                worker.request_id = None
                self._idle_send.send_nowait(worker)
            else:
                self._discard(worker, verdict or None)

    async def _exchange(self, worker: Worker, request: CallRequest, deadline: float) -> CallOk | CallFailed:
        """One request/reply; raises _Unread, or Refusal when the worker must not be used again."""
        left_ms = max(1, math.floor((deadline - trio.current_time()) * 1000))
        request = msgspec.structs.replace(request, timeout_ms=left_ms)
        try:
            await worker.sock.send_frame(request_encoder.encode(request))
            ack = await worker.sock.recv_frame(len(ACK), reply=True)
        except (EOFError, OSError):
            raise _Unread() from None
        except FrameError:
            ack = None
        if ack != ACK:
            raise Refusal(ErrorCode.INTERNAL_ERROR, "the worker broke the protocol; it was killed and replaced")
        try:
            payload = await worker.sock.recv_frame(reply_cap(request.max_bytes))
        except (EOFError, OSError):
            self.stats.crashes += 1
            raise Refusal(ErrorCode.WORKER_CRASHED, await self._death_reason(worker)) from None
        except FrameError:
            raise Refusal(ErrorCode.RESULT_TOO_LARGE,
                          "the worker's reply passed the size cap; the worker was replaced") from None
        try:
            reply = reply_decoder.decode(payload)
        except msgspec.DecodeError:
            reply = None
        if reply is None or reply.request_id != request.request_id:
            raise Refusal(ErrorCode.INTERNAL_ERROR, "the worker sent a malformed reply; it was killed and replaced")
        return reply

    async def _death_reason(self, worker: Worker) -> str:
        """The audit reason for a worker that died mid-call, from the zygote's report."""
        with trio.move_on_after(EXIT_REPORT_WAIT_S):
            await worker.exit_seen.wait()
        report = worker.exit
        if report is not None and report.signal == signal.SIGSYS:
            return ("the sandbox stopped the worker: it made a system call its seccomp profile forbids "
                    f"(SIGSYS); the gateway log has details under request {worker.request_id}")
        if report is not None:
            return (f"the worker died during the call ({describe_status(report.exit_code, report.signal)}); "
                    "it has been replaced")
        if worker.exit_seen.is_set():
            return f"the worker died during the call (the {self.connector} zygote died); it is being replaced"
        return "the worker died during the call; it has been replaced"
