"""What one instance's workers may touch: the input every sandbox layer is built from.

Each kind's worker builds its instance's profile (`Connector.sandbox_profile`); the sandbox
layers know no kind.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SandboxProfile:
    instance: str  # whose workers these are (logs, layer reports)
    # Landlock: paths (files or directories) the worker may read, nothing else.
    read_paths: tuple[str, ...] = ()
    # Landlock TCP (ABI >= 4): destination ports the worker may connect to; () = no connect.
    connect_ports: tuple[int, ...] = ()
    # seccomp: socket() families the worker may create; () = no socket at all.
    socket_families: tuple[int, ...] = ()
    # seccomp: system calls these workers need beyond the allowlist every worker gets
    # (the filesystem kind's openat2).
    extra_syscalls: tuple[str, ...] = ()
    # rlimits
    memory_mb: int = 512
    cpu_s: int = 300
    nofile: int = 64


INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)
