"""The per-connector zygote: a warm, single-threaded process that forks workers on request.

Forking a process that has already imported and initialised everything costs about a
millisecond; starting an interpreter costs tens. The supervisor forks one zygote per
enabled connector before trio starts any thread, then asks it for workers over a
SOCK_SEQPACKET control socket: each request carries (SCM_RIGHTS) the worker's end of a
fresh socketpair, each answer is the new worker's pid. The zygote is trusted (it never runs
agent input); its workers confine themselves right after the fork.
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import struct
import sys
import traceback

import prctl

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.frames import send_frame
from mcp_gateway.ipc.messages import WorkerAbort, WorkerReady, hello_encoder
from mcp_gateway.sandbox import SandboxError, apply, check_identities
from mcp_gateway.sandbox.descriptors import close_all_but
from mcp_gateway.workers.registry import connector_class
from mcp_gateway.workers.runtime import serve

PID = struct.Struct(">i")
SPAWN = b"spawn"
READY = b"ready"
WORKER_FD = 3


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


def _become_worker(zygote_pid: int, fd: int, connector, config: GatewayConfig) -> None:
    die_with_parent(zygote_pid)
    if fd != WORKER_FD:
        os.dup2(fd, WORKER_FD)
        os.close(fd)
    close_all_but(WORKER_FD + 1, connector.inherited_fds())
    sock = socket.socket(fileno=WORKER_FD)
    try:
        layers = apply(connector.sandbox_profile(), config.sandbox)
    except SandboxError as e:
        send_frame(sock, hello_encoder.encode(WorkerAbort(str(e))))
        os._exit(70)
    connector.start()
    send_frame(sock, hello_encoder.encode(WorkerReady(os.getpid(), layers)))
    serve(sock, connector)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class _StderrRelay:
    """Workers write diagnostics into a pipe that the zygote copies to its own stderr.

    A worker runs with RLIMIT_FSIZE 0, which would make every write to a stderr that is a
    regular file fail (EFBIG); the zygote has no such limit.
    """

    def __init__(self, poller: select.poll) -> None:
        self.poller = poller
        self.pipes: dict[int, int] = {}  # read fd -> worker pid

    def new_pipe(self) -> tuple[int, int]:
        return os.pipe2(os.O_CLOEXEC)

    def adopt(self, read_fd: int, pid: int) -> None:
        self.pipes[read_fd] = pid
        self.poller.register(read_fd, select.POLLIN)

    def drain(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            self.poller.unregister(fd)
            os.close(fd)
            del self.pipes[fd]
            return
        prefix = f"[worker {self.pipes[fd]}] ".encode()
        lines = data.splitlines(keepends=True)
        try:
            os.write(2, b"".join(prefix + line for line in lines))
        except OSError:
            pass


def _serve_spawns(control: socket.socket, connector, config: GatewayConfig) -> None:
    me = os.getpid()
    poller = select.poll()
    poller.register(control, select.POLLIN)
    relay = _StderrRelay(poller)
    while True:
        _reap()
        ready = poller.poll(1000)
        if not ready:
            continue
        for fd, _ in ready:
            if fd in relay.pipes:
                relay.drain(fd)
        if not any(fd == control.fileno() for fd, _ in ready):
            continue
        fds = array.array("i")
        msg, ancdata, _, _ = control.recvmsg(64, socket.CMSG_SPACE(fds.itemsize))
        if not msg:
            os._exit(0)  # the supervisor is gone
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if msg != SPAWN or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            control.send(PID.pack(-1))
            continue
        err_read, err_write = relay.new_pipe()
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                os.dup2(err_write, 2)
                _become_worker(me, fds[0], connector, config)
            except BaseException:
                traceback.print_exc()
            os._exit(70)
        os.close(fds[0])
        os.close(err_write)
        relay.adopt(err_read, pid)
        control.send(PID.pack(pid))


def zygote_main(name: str, config: GatewayConfig, control: socket.socket, supervisor_pid: int) -> None:
    die_with_parent(supervisor_pid)
    _detach_stdio()
    # Terminal signals go to the whole process group; the supervisor decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        check_identities(config.sandbox)
        connector = connector_class(name)(config)
        connector.warm()
    except Exception as e:
        control.send(b"error:" + f"{type(e).__name__}: {e}".encode()[:4000])
        raise
    control.send(READY)
    _serve_spawns(control, connector, config)


def fork_zygote(name: str, config: GatewayConfig) -> tuple[int, socket.socket]:
    """Fork the zygote of one connector (call before any thread exists). Returns (pid, control)
    at once; the zygote then sends READY, or "error:<why>", on the control socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            ours.close()
            zygote_main(name, config, theirs, parent)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    # The zygote warms up (imports, CA bundles...) while the supervisor goes on starting;
    # its first message, READY or "error:...", is read by the worker pool.
    return pid, ours
