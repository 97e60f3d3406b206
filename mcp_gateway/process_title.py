"""Process titles that say what each gateway process is, in `ps` and `top`.

`mcp-gateway: supervisor`, `mcp-gateway: filesystem zygote`, `mcp-gateway: filesystem worker`:
the full title replaces the command line (/proc/PID/cmdline); the short name (/proc/PID/comm,
15 bytes at most) is what `top` and the kernel's OOM and seccomp messages show.
"""

from __future__ import annotations

import prctl

PREFIX = "mcp-gateway: "
# comm is cut at 15 bytes: abbreviate the connector so the role survives.
_SHORT = {"filesystem": "fs", "http_fetch": "fetch", "postgres": "pg"}


def set_process_title(role: str) -> None:
    """`role`: "supervisor", or "<connector> zygote" / "<connector> worker"."""
    prctl.set_proctitle(PREFIX + role)
    words = role.split()
    short = "-".join([_SHORT.get(words[0], words[0]), *words[1:]])
    prctl.set_name(f"gw-{short}"[:15])
