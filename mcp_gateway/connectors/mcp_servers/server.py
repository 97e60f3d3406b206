"""The server process of an upstream MCP server, from the warden's fork to execve(command).

Order (each layer under its `sandbox.layers` mode, like a worker's):

    [own network namespace, loopback up, the proxy's listening socket made in it and handed
     to the warden]  or  [own process group]
    -> stdin/stdout = the supervisor's stream; every other descriptor closed
    -> Landlock anchors opened (still privileged)
    -> user (the uid the warden took, as root; no capabilities) -> prctl (no_new_privs,
       dumpable 0, pdeathsig SIGKILL) -> runtime rlimits -> runtime Landlock -> runtime seccomp
    -> the layer report to the warden, wait for its go (it writes the hello frame first)
    -> execve(command, env): env exactly `env` + the named `env_from_gateway` variables
       (+ the proxy variables with an egress).

execve resets the dumpable flag to 1 (the kernel's rule for a program that is not setuid):
what dumpable 0 gives a worker (no core, no same-uid ptrace, root-owned /proc files) holds
here through RLIMIT_CORE 0, the server's own uid, Landlock's ptrace scoping and seccomp's
KILL on ptrace. no_new_privs, rlimits, Landlock and seccomp survive execve.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import NoReturn

import msgspec
import prctl

from mcp_gateway.config import SandboxSettings
from mcp_gateway.connectors.mcp_servers.profile import RuntimeProfile
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.sandbox import SandboxError, run_layers
from mcp_gateway.sandbox import namespaces as _namespaces
from mcp_gateway.sandbox.landlock_runtime import RuntimeRules, apply_runtime_landlock
from mcp_gateway.sandbox.limits import apply_runtime_rlimits
from mcp_gateway.sandbox.prctl import apply_prctl
from mcp_gateway.sandbox.seccomp_runtime import apply_runtime_seccomp
from mcp_gateway.sandbox.user import drop_privileges

# Inside its own network namespace the proxy can listen on a fixed port: nothing else is there.
NAMESPACE_PROXY_PORT = 3128
report_encoder = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class ServerPlan:
    settings: McpServerSettings
    runtime: RuntimeProfile
    sandbox: SandboxSettings
    uid: int | None  # as root: the uid the warden took for it
    isolated: bool  # own pid + network namespaces
    host_proxy_port: int | None  # floor mode with an egress: the warden's loopback port
    instance: str


def server_env(settings: McpServerSettings, gateway_env: dict[str, str], proxy_port: int | None) -> dict[str, str]:
    """Exactly `env`, the named gateway variables, and the proxy variables when there is an egress."""
    env = dict(settings.env)
    for name in settings.env_from_gateway:
        if name in gateway_env:
            env[name] = gateway_env[name]
    if proxy_port is not None:
        url = f"http://127.0.0.1:{proxy_port}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env[name] = url
        env["NO_PROXY"] = env["no_proxy"] = ""  # nothing bypasses it (there is no direct route anyway)
    return env


class ServerChild:
    def __init__(self, plan: ServerPlan, stdio: socket.socket, chan: socket.socket) -> None:
        self.plan = plan
        self.stdio = stdio
        self.chan = chan

    def run(self) -> NoReturn:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - whatever happened, tell the warden and die
            traceback.print_exc()
            self._send(b"abort:" + f"{type(e).__name__}: {e}".encode()[:4000])
        os._exit(70)

    def _run(self) -> None:
        prctl.set_pdeathsig(signal.SIGKILL)
        plan = self.plan
        proxy = plan.settings.network != "none"
        port = plan.host_proxy_port
        self.network = "host network (Landlock TCP and seccomp bound it)"
        if plan.isolated:
            self.network = _namespaces.enter_network_namespace()
            if proxy:
                port = NAMESPACE_PROXY_PORT
                with socket.create_server(("127.0.0.1", port)) as listener:
                    socket.send_fds(self.chan, [b"proxy"], [listener.fileno()])
        else:
            os.setpgid(0, 0)  # the group the tree kill targets; seccomp keeps descendants in it
        os.dup2(self.stdio.fileno(), 0)
        os.dup2(self.stdio.fileno(), 1)
        self.stdio.close()
        os.set_inheritable(0, True)
        os.set_inheritable(1, True)
        env = server_env(plan.settings, dict(os.environ), port if proxy else None)
        rt = plan.runtime
        rules = RuntimeRules(rt.read, rt.write, rt.execute) if plan.sandbox.layers.landlock != "off" else None
        try:
            report = run_layers(self._steps(rules, proxy, port), plan.sandbox, f"upstream server {plan.instance!r}")
        except SandboxError as e:
            self._send(b"abort:" + str(e).encode()[:4000])
            os._exit(70)
        finally:
            if rules is not None:
                rules.close()
        report["network"] = self.network
        self._send(report_encoder.encode(report))
        if self.chan.recv(16) != b"go":
            os._exit(70)  # the warden is gone (pdeathsig would follow)
        self._exec(env)

    def _steps(self, rules: RuntimeRules | None, proxy: bool, port: int | None):
        plan, limits = self.plan, self.plan.settings.limits
        file_mb = limits.max_file_mb if plan.settings.filesystem.write else 0
        identity = (plan.uid, plan.uid) if plan.uid is not None else (plan.sandbox.user, plan.sandbox.group)
        # In a user namespace of its own only its tasks count: the warden and itself, so far.
        counted = 2 if plan.isolated and os.geteuid() != 0 else None
        return [
            ("user", lambda: drop_privileges(*identity) + (" (own uid, sandbox.uid_range)" if plan.uid else "")),
            ("prctl", self._prctl),
            ("rlimits", lambda: apply_runtime_rlimits(limits.memory_mb, limits.cpu_s, limits.nofile,
                                                      limits.max_processes, file_mb, counted)),
            ("landlock", lambda: apply_runtime_landlock(rules, [port] if proxy and port else [])),
            ("seccomp", lambda: apply_runtime_seccomp(proxy)),
        ]

    @staticmethod
    def _prctl() -> str:
        status = apply_prctl()
        prctl.set_pdeathsig(signal.SIGKILL)  # a uid change clears it; it survives execve
        return status + ", pdeathsig SIGKILL"

    def _send(self, data: bytes) -> None:
        try:
            self.chan.send(data)
        except OSError:
            pass

    def _exec(self, env: dict[str, str]) -> NoReturn:
        command = self.plan.settings.command
        try:
            os.execve(command[0], command, env)  # noqa: S606 - the configured command, argv as given
        except OSError as e:
            sys.stderr.write(f"cannot execute {command[0]}: {e.strerror}\n")
            sys.stderr.flush()
        os._exit(127)
