"""The per-instance zygote: a warm, single-threaded process that forks workers on request.

Forking a process that has already imported and initialised everything costs about a
millisecond; starting an interpreter costs tens. `serve` forks one zygote per enabled
connector before trio starts any thread (`start_zygotes`). A zygote that dies later is
started again by the supervisor as a fresh interpreter (`supervisor.zygotes.exec_zygote`,
entering `exec_main` here): forking the supervisor once trio runs is unsafe, and the new
zygote gets the config the supervisor already parsed (as JSON in a sealed memfd), never the
config file, which may have changed since.

The supervisor asks for workers over a SOCK_SEQPACKET control socket with the typed messages
of `ipc.control`: each `Spawn` carries (SCM_RIGHTS) the worker's end of a fresh socketpair,
each answer is the new worker's pid. The zygote reaps its workers and reports each one's
wait status (`WorkerExited`). The zygote is trusted (it never runs agent input); its
workers confine themselves right after the fork.
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import sys
import time
import traceback

import msgspec
import prctl

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.ipc.caps import SPAWN_CAP
from mcp_gateway.ipc.control import (
    Spawned,
    SpawnRefused,
    WorkerExited,
    ZygoteFailed,
    ZygoteReady,
    control_encoder,
    encode_reason,
    to_zygote_decoder,
)
from mcp_gateway.ipc.frames import send_frame
from mcp_gateway.ipc.messages import WorkerAbort, WorkerReady, hello_encoder
from mcp_gateway.process_title import set_process_title
from mcp_gateway.sandbox import SandboxError, apply, check_identities
from mcp_gateway.sandbox.descriptors import close_all_but
from mcp_gateway.workers.connector import Connector, build_connector
from mcp_gateway.workers.runtime import Wear, serve

WORKER_FD = 3
# Per worker, what the zygote copies of its stderr to the gateway's: a burst, a steady rate,
# and a total over the worker's life; the excess is read and dropped, with one note.
STDERR_BURST = 64 * 1024
STDERR_RATE = 16 * 1024  # bytes per second
STDERR_TOTAL = 1024 * 1024


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent exits (and now, if that already happened)."""
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != expected_parent:
        os._exit(0)


def _detach_stdio() -> None:
    """stdin/stdout may be the MCP wire: a stray read or print must never touch it."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _become_worker(zygote_pid: int, fd: int, connector: Connector, config: GatewayConfig) -> None:
    die_with_parent(zygote_pid)
    set_process_title(connector.instance, "worker")
    if fd != WORKER_FD:
        os.dup2(fd, WORKER_FD)
        os.close(fd)
    close_all_but(WORKER_FD + 1, connector.inherited_fds())
    sock = socket.socket(fileno=WORKER_FD)
    profile = connector.sandbox_profile()
    try:
        layers = apply(profile, config.sandbox)
    except SandboxError as e:
        send_frame(sock, hello_encoder.encode(WorkerAbort(str(e))))
        os._exit(70)
    connector.start()
    send_frame(sock, hello_encoder.encode(WorkerReady(os.getpid(), layers)))
    serve(sock, connector, Wear(connector, profile.cpu_s, connector.settings.recycle_cpu_share))


class _StderrRelay:
    """Workers write diagnostics into a pipe that the zygote copies to its own stderr.

    A worker runs with RLIMIT_FSIZE 0, which would make every write to a stderr that is a
    regular file fail (EFBIG); the zygote has no such limit. Each worker's share is bounded
    (burst, rate, total): a worker flooding its stderr must not flood the gateway's log. The
    pipe is always drained, so a flooding worker never blocks on it.
    """

    class _Pipe:
        def __init__(self, pid: int) -> None:
            self.pid = pid
            self.prefix = f"[worker {pid}] ".encode()
            self.tokens = float(STDERR_BURST)
            self.refilled = time.monotonic()
            self.total = 0
            self.dropped = 0
            self.line_start = True

    def __init__(self, poller: select.poll) -> None:
        self.poller = poller
        self.pipes: dict[int, _StderrRelay._Pipe] = {}  # read fd -> its worker

    def adopt(self, read_fd: int, pid: int) -> None:
        self.pipes[read_fd] = self._Pipe(pid)
        self.poller.register(read_fd, select.POLLIN)

    def drain(self, fd: int) -> None:
        pipe = self.pipes[fd]
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.poller.unregister(fd)
            os.close(fd)
            del self.pipes[fd]
            if pipe.dropped:
                self._write(pipe.prefix + f"(exited; {pipe.dropped} more bytes of its stderr were dropped)\n"
                            .encode())
            return
        now = time.monotonic()
        pipe.tokens = min(STDERR_BURST, pipe.tokens + (now - pipe.refilled) * STDERR_RATE)
        pipe.refilled = now
        allowed = max(0, int(min(len(data), pipe.tokens, STDERR_TOTAL - pipe.total)))
        self._copy(pipe, data[:allowed])
        pipe.tokens -= allowed
        pipe.total += allowed
        if allowed < len(data):
            if not pipe.dropped:
                self._write(("" if pipe.line_start else "\n").encode() + pipe.prefix
                            + f"(stderr over its limit of {STDERR_BURST} bytes at once, {STDERR_RATE} bytes/s, "
                              f"{STDERR_TOTAL} bytes in all: dropping the excess)\n".encode())
                pipe.line_start = True
            pipe.dropped += len(data) - allowed

    def _copy(self, pipe: _StderrRelay._Pipe, data: bytes) -> None:
        if not data:
            return
        out = bytearray()
        for line in data.splitlines(keepends=True):
            if pipe.line_start:
                out += pipe.prefix
            out += line
            pipe.line_start = line.endswith(b"\n")
        self._write(bytes(out))

    @staticmethod
    def _write(data: bytes) -> None:
        try:
            os.write(2, data)
        except OSError:
            pass


def _wait_status(pid: int) -> WorkerExited:
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return WorkerExited(pid, signal=os.WTERMSIG(status))
    return WorkerExited(pid, exit_code=os.waitstatus_to_exitcode(status))


def _serve_spawns(control: socket.socket, connector, config: GatewayConfig) -> None:
    me = os.getpid()
    poller = select.poll()
    poller.register(control, select.POLLIN)
    relay = _StderrRelay(poller)
    exits: dict[int, int] = {}  # worker pidfd -> pid
    while True:
        for fd, _ in poller.poll():
            if fd in relay.pipes:
                relay.drain(fd)
            elif fd in exits:
                pid = exits.pop(fd)
                poller.unregister(fd)
                os.close(fd)
                control.send(control_encoder.encode(_wait_status(pid)))
            elif fd == control.fileno():
                _answer_spawn(control, me, connector, config, relay, exits, poller)


def _answer_spawn(control: socket.socket, me: int, connector, config: GatewayConfig, relay: _StderrRelay,
                  exits: dict[int, int], poller: select.poll) -> None:
    fds = array.array("i")
    msg, ancdata, _, _ = control.recvmsg(SPAWN_CAP, socket.CMSG_SPACE(fds.itemsize))
    if not msg:
        os._exit(0)  # the supervisor is gone
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    try:
        to_zygote_decoder.decode(msg)
        valid = len(fds) == 1
    except msgspec.DecodeError:
        valid = False
    if not valid:
        for fd in fds:
            os.close(fd)
        control.send(encode_reason(SpawnRefused, "malformed spawn request"))
        return
    err_read, err_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            control.close()
            os.dup2(err_write, 2)
            if hasattr(connector, "run_child"):  # a kind whose child is not a pool worker (an upstream server)
                connector.run_child(me, fds[0])
            else:
                _become_worker(me, fds[0], connector, config)
        except BaseException:
            traceback.print_exc()
        os._exit(70)
    os.close(fds[0])
    os.close(err_write)
    relay.adopt(err_read, pid)
    pidfd = os.pidfd_open(pid)
    exits[pidfd] = pid
    poller.register(pidfd, select.POLLIN)
    control.send(control_encoder.encode(Spawned(pid)))


def zygote_main(name: str, config: GatewayConfig, control: socket.socket, supervisor_pid: int) -> None:
    """`name`: the instance this zygote serves."""
    die_with_parent(supervisor_pid)
    set_process_title(config.instance(name), "zygote")
    _detach_stdio()
    # Terminal signals go to the whole process group; the supervisor decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        check_identities(config.sandbox)
        connector = build_connector(name, config)
        connector.warm()
    except Exception as e:
        control.send(encode_reason(ZygoteFailed, f"{type(e).__name__}: {e}"))
        raise
    try:
        control.send(control_encoder.encode(ZygoteReady()))
        _serve_spawns(control, connector, config)
    except ConnectionError:
        os._exit(0)  # the supervisor is gone (it stopped while we started or served): nothing to report


def start_zygotes(config: GatewayConfig) -> dict[str, tuple[int, socket.socket]]:
    """Fork one zygote per enabled pool instance: its name -> (pid, control socket). Must run
    before trio (or anything) starts a thread. (An upstream server's zygote is started by its
    backend.)"""
    return {instance.name: _fork_zygote(instance.name, config) for instance in config.instances()
            if KINDS[instance.kind].backend == "pool"}


def _fork_zygote(name: str, config: GatewayConfig) -> tuple[int, socket.socket]:
    """Fork the zygote of one instance (call before any thread exists). Returns (pid, control)
    at once; the zygote then sends ZygoteReady, or ZygoteFailed, on the control socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            zygote_main(name, config, theirs, parent)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(70)
    theirs.close()
    # The zygote warms up (imports, CA bundles...) while the supervisor goes on starting;
    # its first message is read by the worker pool.
    return pid, ours


def exec_main() -> None:
    """Entry point of a zygote started by `supervisor.zygotes.exec_zygote`: argv is name, control fd,
    config fd, parent."""
    name, control_fd, config_fd, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    die_with_parent(parent)
    control = socket.socket(fileno=control_fd)
    try:
        with os.fdopen(config_fd, "rb") as f:
            config = GatewayConfig.model_validate(msgspec.json.decode(f.read()))
        zygote_main(name, config, control, parent)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(70)
