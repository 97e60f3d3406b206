"""Process titles that say what each gateway process is, in `ps` and `top`.

`mcp-gateway: supervisor`, `mcp-gateway: fs zygote (filesystem)`, `mcp-gateway: fs worker
(filesystem)`: the full title replaces the command line (/proc/PID/cmdline) and names the
instance and its kind; the short name (/proc/PID/comm, 15 bytes at most) is what `top` and
the kernel's OOM and seccomp messages show: `gw-fs-worker`, the role shortened to one letter
when a long instance name would not leave room for it (`gw-analytics-w`).
"""

from __future__ import annotations

import prctl

from mcp_gateway.connectors.base import Instance

PREFIX = "mcp-gateway: "
COMM_BYTES = 15


def set_process_title(instance: Instance | None, role: str) -> None:
    """`instance` None: the supervisor itself (`role` "supervisor"); else "zygote" or "worker"."""
    if instance is None:
        prctl.set_proctitle(PREFIX + role)
        prctl.set_name(f"gw-{role}"[:COMM_BYTES])
        return
    prctl.set_proctitle(f"{PREFIX}{instance.name} {role} ({instance.kind})")
    comm = f"gw-{instance.name}-{role}"
    if len(comm) > COMM_BYTES:
        comm = f"gw-{instance.name}"[: COMM_BYTES - 2] + f"-{role[0]}"
    prctl.set_name(comm)
