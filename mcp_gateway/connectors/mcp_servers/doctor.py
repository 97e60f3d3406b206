"""doctor rows for upstream MCP servers: what confines each instance on this host.

Cheap and side-effect free (the server is not started): the runtime's rule paths are resolved
as its zygote would, and the host is asked whether it can make the namespaces.
"""

from __future__ import annotations

import os

from mcp_gateway.connectors.mcp_servers.profile import UnconfinableCommand, resolve
from mcp_gateway.connectors.mcp_servers.settings import McpServerSettings
from mcp_gateway.sandbox.landlock import abi_version

Row = tuple[str, str]  # (PASS | WARN | FAIL, text)


def instance_rows(name: str, settings: McpServerSettings, no_namespaces: str | None) -> list[Row]:
    rows: list[Row] = []
    try:
        runtime = resolve(settings)
        rows.append(("PASS", f"{name}: executes only {', '.join(runtime.execute)}; reads {len(runtime.read)} runtime "
                             f"and configured paths; writes {', '.join(runtime.write)}"))
    except (UnconfinableCommand, OSError) as e:
        rows.append(("FAIL", f"{name}: its command cannot be confined: {e}"))
    missing = [v for v in settings.env_from_gateway if v not in os.environ]
    if missing:
        rows.append(("FAIL", f"{name}: env_from_gateway names {', '.join(missing)}, not in the gateway's environment"))
    mode = settings.namespaces
    if mode != "off" and no_namespaces is None:
        rows.append(("PASS", f"{name}: own pid namespace (killing it kills its whole tree) and own network namespace "
                             "(loopback only" + (", the egress proxy the one way out)" if settings.network != "none"
                                                 else ": no network at all)")))
        return rows
    why = "namespaces: off" if mode == "off" else no_namespaces
    if mode == "required":
        rows.append(("FAIL", f"{name}: namespaces are required and this host cannot make them: {why}"))
        return rows
    rows.append(("WARN", f"{name}: no namespaces ({why}); floor: its own process group, which seccomp keeps every "
                         "descendant in (setpgid/setsid refused) and the warden kills and reaps as their subreaper"))
    if settings.network == "none":
        rows.append(("PASS", f"{name}: network none: seccomp allows no socket() at all (stdio only)"))
    elif abi_version() < 4:
        rows.append(("FAIL", f"{name}: allowed_domains without a network namespace needs Landlock TCP (ABI >= 4); "
                             "the server will not start"))
    else:
        rows.append(("WARN", f"{name}: allowed_domains without a network namespace: TCP only to the egress proxy's "
                             "port (Landlock), no UDP (seccomp); a connection to another host on that same port number "
                             "is not prevented. Run as root or allow user namespaces for loopback-only networking."))
    return rows
