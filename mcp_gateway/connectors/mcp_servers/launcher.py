"""Zygote side of an upstream MCP server: the warden process and the confined server it execs.

The instance's zygote (workers/zygote.py, a fresh interpreter started by the supervisor)
builds an `UpstreamLauncher` and `warm()`s it: the runtime's rule paths are resolved there,
and whether namespaces can be made. For each `Spawn` it forks a child and calls
`run_child`, which becomes the **warden** (W) of one server process (S):

    zygote ── W (host pid namespace; holds S's uid lock; egress proxy)
                └─ I: pid 1 of a new pid namespace (init.py: reaps orphans, reports S's status)
                     └─ S: pid 2, own network namespace (loopback only) -> confined -> execve(command)
              where namespaces cannot be made: no I, S leads its own process group and W is
              its subreaper

The descriptor the supervisor passed becomes S's stdin and stdout (one stream socket). W
writes one hello frame on it before S may exec (`WorkerReady(pid, layers)` with S's pid as
the host sees it, or `WorkerAbort(reason)`), then closes its copy; after it, the stream is
the server's. W confines itself too (its own uid as root, no_new_privs, rlimits, Landlock,
seccomp), then serves the egress proxy and waits for S. When S dies, whatever is left of its
tree dies with it (I exits and the namespace dies with its init; or W kills S's process group,
which seccomp keeps every descendant in, and reaps them as their subreaper), and W exits the way S did (same exit code,
or killed by the same signal), so the zygote's WorkerExited tells how the server ended.
"""

from __future__ import annotations

import os
import select
import signal
import socket
from typing import NoReturn

import msgspec
import prctl

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Instance
from mcp_gateway.connectors.mcp_servers.egress import Egress
from mcp_gateway.connectors.mcp_servers.init import STATUS, exit_as, namespace_init
from mcp_gateway.connectors.mcp_servers.profile import RuntimeProfile, UnconfinableCommand, resolve
from mcp_gateway.connectors.mcp_servers.server import ServerChild, ServerPlan
from mcp_gateway.ipc.frames import send_frame
from mcp_gateway.ipc.messages import WorkerAbort, WorkerReady, hello_encoder
from mcp_gateway.process_title import set_process_title
from mcp_gateway.sandbox import SandboxError, run_layers
from mcp_gateway.sandbox import identity as _identity
from mcp_gateway.sandbox import landlock as _landlock
from mcp_gateway.sandbox import namespaces as _namespaces
from mcp_gateway.sandbox._common import LayerUnavailable
from mcp_gateway.sandbox.descriptors import close_all_but
from mcp_gateway.sandbox.limits import apply_rlimits
from mcp_gateway.sandbox.prctl import apply_prctl
from mcp_gateway.sandbox.seccomp import available as seccomp_available
from mcp_gateway.sandbox.seccomp import build_filter, sc
from mcp_gateway.sandbox.user import drop_privileges

STDIO_FD = 3
REPORT_TIMEOUT_S = 20.0
PR_SET_CHILD_SUBREAPER = 36
# The warden's own resolver files (the egress resolves names, web.fetch's resolver).
RESOLVER_FILES = ("/etc/hosts", "/etc/resolv.conf")
# Beyond a worker's allowlist: its egress proxy accepts, it reaps the server (and orphans).
WARDEN_SYSCALLS = ("accept4", "accept", "wait4")
report_decoder = msgspec.msgpack.Decoder(dict[str, str])


class UpstreamLauncher:
    """What the zygote of one `mcp_servers` instance holds (built and warmed before any fork)."""

    def __init__(self, config: GatewayConfig, instance: Instance) -> None:
        self.config = config
        self.instance = instance.name
        self.settings = instance.settings
        self.runtime = RuntimeProfile()
        self.no_namespaces: str | None = None

    def warm(self) -> None:
        try:
            self.runtime = resolve(self.settings)
        except (UnconfinableCommand, OSError) as e:
            raise SandboxError(f"upstream server {self.instance!r} cannot be confined: {e}") from None
        missing = [n for n in self.settings.env_from_gateway if n not in os.environ]
        if missing:
            raise SandboxError(f"upstream server {self.instance!r}: env_from_gateway names {', '.join(missing)}, "
                               "which the gateway's environment does not have")
        mode = self.settings.namespaces
        self.no_namespaces = "off (namespaces: off)" if mode == "off" else _namespaces.available()
        if self.no_namespaces is not None and mode == "required":
            raise SandboxError(f"upstream server {self.instance!r} requires namespaces, and this host cannot make "
                               f"them: {self.no_namespaces}")
        if self.settings.network != "none":
            from mcp_gateway.connectors.http_fetch.resolver import warm_resolver

            warm_resolver()
            if self.no_namespaces is not None and _landlock.abi_version() < 4:
                raise SandboxError(f"upstream server {self.instance!r}: allowed_domains without a network "
                                   "namespace needs Landlock TCP rules (ABI >= 4), which this kernel lacks")

    def run_child(self, zygote_pid: int, fd: int) -> None:
        """Become the warden of one server (in the zygote's freshly forked child). Never returns."""
        Warden(self, zygote_pid, fd).run()


class Warden:
    def __init__(self, launcher: UpstreamLauncher, zygote_pid: int, fd: int) -> None:
        self.launcher = launcher
        self.zygote_pid = zygote_pid
        self.sandbox = launcher.config.sandbox
        self.proxy = launcher.settings.network != "none"
        self.isolated = launcher.no_namespaces is None
        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != zygote_pid:
            os._exit(0)
        set_process_title(launcher.config.instance(launcher.instance), "upstream warden")
        if fd != STDIO_FD:
            os.dup2(fd, STDIO_FD)
            os.close(fd)
        close_all_but(STDIO_FD + 1, ())
        self.stdio = socket.socket(fileno=STDIO_FD)
        self.status_fd = -1  # own pid namespace: where its init reports the server's wait status

    def run(self) -> None:
        uid = self._identity()
        try:
            ns = _namespaces.enter_pid_namespace() if self.isolated else self._subreaper()
        except (LayerUnavailable, OSError) as e:
            self._abort(None, f"upstream server {self.launcher.instance!r}: could not make its pid namespace: {e}")
        listener = None
        if self.proxy and not self.isolated:
            listener = socket.create_server(("127.0.0.1", 0))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        plan = ServerPlan(self.launcher.settings, self.launcher.runtime, self.sandbox, uid, self.isolated,
                          listener.getsockname()[1] if listener else None, self.launcher.instance)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        child = os.fork()  # the server itself, or (own pid namespace) the namespace's init, which forks it
        if child == 0:
            ours.close()
            os.close(status_r)
            if listener is not None:
                listener.close()
            if self.isolated:
                namespace_init(plan, self.stdio, theirs, status_w)
            ServerChild(plan, self.stdio, theirs).run()
        theirs.close()
        os.close(status_w)
        self.status_fd = status_r
        pidfd = os.pidfd_open(child)
        try:
            listener, report = self._receive_report(ours, listener)
            server = _only_child(child) if self.isolated else child
            report["namespaces"] = ns
            report["warden"] = self._confine(uid, server)
        except (SandboxError, LayerUnavailable, OSError, EOFError, ValueError) as e:  # ValueError: a bad report
            self._abort(child, str(e))
        send_frame(self.stdio, hello_encoder.encode(WorkerReady(server, report)))
        self.stdio.close()
        try:
            ours.send(b"go")
        except OSError:
            pass  # the server was killed right after the hello (kill_tree): _serve sees it end
        ours.close()
        self._serve(child, pidfd, listener)

    def _identity(self) -> int | None:
        """As root with a uid_range: one uid for the server (and this warden), lock held here;
        the same uid at every start of the instance while it is free (files it wrote stay its own)."""
        if os.geteuid() != 0 or self.sandbox.uid_range is None or self.sandbox.layers.user == "off":
            return None
        try:
            first, count = self.sandbox.uid_range
            return _identity.allocate(first, count, _identity.preferred_offset(self.launcher.instance))
        except _identity.IdentityError as e:
            self._abort(None, str(e))

    def _subreaper(self) -> str:
        prctl.set_child_subreaper(True)
        return f"unavailable: {self.launcher.no_namespaces}; floor: own process group, the warden its subreaper"

    def _receive_report(self, chan: socket.socket, listener: socket.socket | None
                        ) -> tuple[socket.socket | None, dict[str, str]]:
        chan.settimeout(REPORT_TIMEOUT_S)
        if self.proxy and listener is None:  # S made it inside its network namespace
            msg, fds, _, _ = socket.recv_fds(chan, 16, 1)
            if not fds:
                raise EOFError("the server process died before it sent its proxy socket")
            listener = socket.socket(fileno=fds[0])
        data = chan.recv(65536)
        if not data:
            raise EOFError("the server process died while confining itself (its stderr says why)")
        if data.startswith(b"abort:"):
            raise SandboxError(data[6:].decode(errors="replace"))
        return listener, report_decoder.decode(data)

    def _confine(self, uid: int | None, server_pid: int) -> str:
        """The warden's own layers: the server's uid (as root), no_new_privs, rlimits, Landlock
        (resolver files; TCP to allowed_ports only), seccomp (a fetch worker's, plus accept and
        the kill of the server's process group)."""
        ports = self.launcher.settings.network.allowed_ports if self.proxy else ()
        anchors = _landlock.ReadAnchors(RESOLVER_FILES if self.proxy else ())
        identity = (uid, uid) if uid is not None else (self.sandbox.user, self.sandbox.group)
        steps = [
            ("user", lambda: drop_privileges(*identity)),
            ("prctl", self._prctl),
            ("rlimits", lambda: apply_rlimits(256, 86400, 4 * 64 + 16)),
            # Signals not scoped: the server's domain is not nested in the warden's, and the warden
            # must kill the server's process group; seccomp allows it that kill and nothing else.
            ("landlock", lambda: _landlock.apply_landlock(anchors, ports, scope_signals=False)),
            ("seccomp", lambda: self._seccomp(server_pid)),
        ]
        try:
            report = run_layers(steps, self.sandbox, f"the warden of upstream server {self.launcher.instance!r}")
        finally:
            anchors.close()
        return "; ".join(f"{k} {v}" for k, v in report.items())

    def _prctl(self) -> str:
        status = apply_prctl()
        prctl.set_pdeathsig(signal.SIGKILL)  # the uid change cleared it
        if os.getppid() != self.zygote_pid:
            os._exit(0)
        return status

    def _seccomp(self, server_pid: int) -> str:
        ok, why = seccomp_available()
        if not ok:
            raise LayerUnavailable(why)
        families = (socket.AF_INET, socket.AF_INET6) if self.proxy else ()
        f, count = build_filter(WARDEN_SYSCALLS, families)
        # kill(-pgid, SIGKILL) of the server's group (floor mode), matched on the int the kernel reads.
        f.add_rule(sc.ALLOW, sc.resolve_syscall(sc.Arch.NATIVE, "kill"),
                   sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, (-server_pid) & 0xFFFFFFFF),
                   sc.Arg(1, sc.EQ, signal.SIGKILL))
        f.load()
        return f"allowlist {count} syscalls (warden), kill of the server's group only"

    def _abort(self, pid: int | None, reason: str) -> NoReturn:
        try:
            send_frame(self.stdio, hello_encoder.encode(WorkerAbort(reason)))
        except OSError:
            pass
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os._exit(70)

    def _serve(self, pid: int, pidfd: int, listener: socket.socket | None) -> None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        egress = None
        if listener is not None:
            from mcp_gateway.connectors.http_fetch.resolver import DnsResolver

            egress = Egress(listener, self.launcher.settings.network.fetch_rules(), DnsResolver(), poller,
                            self.launcher.instance)
        while True:
            for fd, _ in poller.poll(1000):
                if fd == pidfd:
                    self._end(pid)
                elif egress is not None and egress.owns(fd):
                    egress.serve(fd)
            if egress is not None:
                egress.expire()
            if not self.isolated:
                self._reap_orphans(pid)

    def _reap_orphans(self, server: int) -> None:
        """Floor mode: the server's orphans come to the warden (their subreaper); reap the dead
        ones, so no zombie counts against the uid's RLIMIT_NPROC."""
        while True:
            try:
                got, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if got == 0:
                return
            if got == server:
                self._finish(server, status)

    def _end(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        self._finish(pid, status)

    def _finish(self, pid: int, status: int) -> NoReturn:
        """S (or the init that reports it) is gone: make sure its whole tree is, then exit the way S did."""
        if self.isolated:  # the init reports the server's status; nothing is left in a namespace without its init
            data = os.read(self.status_fd, STATUS.size)
            status = STATUS.unpack(data)[0] if len(data) == STATUS.size else status
        else:  # a process group must be killed
            while True:
                try:
                    os.kill(-pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    break
        exit_as(status)


def _only_child(pid: int) -> int:
    """The host pid of the one child of `pid` (the server, child of its namespace's init)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = f.read().split()
    if len(children) != 1:
        raise OSError(f"the namespace's init has {len(children)} children, not the server alone")
    return int(children[0])
