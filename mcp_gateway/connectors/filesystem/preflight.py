"""Preflight of a filesystem instance: its paths, tried as the worker identity will use them.

The allowed roots are opened by the trusted side first (as the zygote does), so only the data
itself must be readable by the workers' identity; a child that took that identity lists each
root through those descriptors.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import sys
import time
from pathlib import Path

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Instance
from mcp_gateway.preflight import (
    PROBE_TIMEOUT_S,
    Finding,
    describe_mode,
    describe_path,
    first_blocking,
    first_missing,
    worker_identity,
)


def check_paths(instance: Instance, config: GatewayConfig) -> list[Finding]:
    """Each allowed path opened by the trusted side, then read by a child that took the
    worker identity; each denied path identified."""
    fs = instance.settings
    key = instance.key
    identity = worker_identity(config)
    opened: dict[str, Finding | int] = {}  # each allowed path: why it cannot be opened, or its fd
    try:
        for p in fs.allowed_paths:
            problem = _open_problem(p, "allowed path", key)
            opened[str(p)] = (Finding(False, problem) if problem is not None
                              else os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        roots = {path: fd for path, fd in opened.items() if isinstance(fd, int)}
        probe = _probe_as_worker(config, identity, roots) if roots else {"as": "", "paths": {}}
    finally:
        for fd in opened.values():
            if isinstance(fd, int):
                os.close(fd)
    if "error" in probe:
        return [Finding(False, f"{instance.name} workers: cannot take their identity ({probe['error']}): "
                               "fix sandbox.uid_range (or sandbox.user/sandbox.group)")]
    who = f"the worker identity ({probe['as']})"
    findings: list[Finding] = []
    for path, state in opened.items():
        if isinstance(state, Finding):
            findings.append(state)
        elif (error := probe["paths"].get(path)) is None:
            findings.append(Finding(True, f"allowed path {path} is readable by {who}"))
        else:
            findings.append(Finding(False, _unreadable_message(Path(path), error, probe["as"], identity)))
    if not any(f.ok for f in findings):
        findings.append(Finding(False, f"instance {instance.name} has no usable allowed path: every call "
                                       f"of its tools would fail ({key}.allowed_paths)"))
    findings += [_denied_finding(p, key) for p in fs.denied_paths]
    return findings


def _open_problem(p: Path, what: str, key: str) -> str | None:
    """Why the trusted side (this process) cannot open directory `p`, or None."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        missing = first_missing(p)
        where = "" if missing == p else f" ({missing} is missing)"
        return (f"{what} {p} does not exist{where}: create it, or fix "
                f"{key}.allowed_paths")
    except NotADirectoryError:
        return f"{what} {p} is not a directory (a component of it is a file): fix {key}.allowed_paths"
    except PermissionError:
        blocker = first_blocking(p)
        return (f"{what} {p} cannot be reached by the gateway (uid {os.geteuid()}): directory {blocker} "
                f"({describe_path(blocker)}) is not searchable. Make it searchable, or run the gateway "
                "as the data's owner")
    except OSError as e:
        return f"{what} {p} cannot be opened: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {p} is not a directory ({describe_mode(st)}): allowed paths are directories"
    return None


def _denied_finding(p: Path, key: str) -> Finding:
    try:
        os.stat(p)
    except FileNotFoundError:
        return Finding(False, (
            f"denied path {p} does not exist: a denied path that names nothing protects nothing "
            f"(a typo?). Fix it, create it, or remove it from {key}.denied_paths"))
    except PermissionError:
        blocker = first_blocking(p)
        return Finding(False, (
            f"denied path {p} cannot be identified by the gateway (uid {os.geteuid()}): {blocker} "
            f"({describe_path(blocker)}) is not searchable, so the workers could not recognise it. Make it "
            "searchable by the gateway, or run the gateway as the data's owner"))
    except OSError as e:
        return Finding(False, f"denied path {p} cannot be identified: {e.strerror}")
    return Finding(True, f"denied path {p} exists and is identified")


def _unreadable_message(p: Path, error: str, taken: str, identity: str | None) -> str:
    if identity is None:
        fix = "make it readable and searchable by the gateway's own uid"
    elif "uid_range" in identity:
        fix = ("make it readable and searchable by every user (chmod o+rx; the workers' uids own "
               "nothing and belong to no group), or run the gateway as the data's owner (not root: "
               "workers then keep its uid)")
    else:
        fix = ("make it readable and searchable by that identity (for example chmod o+rx), set "
               "sandbox.user/sandbox.group to an identity that may read it, or run the gateway as the "
               "data's owner")
    return (f"allowed path {p} cannot be read by the workers ({taken}; {identity or 'the gateway uid'}): "
            f"{error} ({describe_path(p)}): {fix}")


def _probe_as_worker(config: GatewayConfig, identity: str | None, roots: dict[str, int]) -> dict:
    """Fork a child that takes the worker identity and lists each root through the descriptor
    the trusted side opened: {"as": "uid U gid G", "paths": {path: None if readable, else the
    error}}, or {"error": why the identity could not be taken}."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            answer = json.dumps(_as_worker(config, identity, roots)).encode()
            os.write(write_fd, answer[:60000])
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = b""
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0 and select.select([read_fd], [], [], left)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
        try:
            return json.loads(data)
        except ValueError:
            return {"error": "the probe process died or did not answer"}
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _as_worker(config: GatewayConfig, identity: str | None, roots: dict[str, int]) -> dict:
    from mcp_gateway.sandbox import become_worker_identity

    if identity is not None:
        try:
            become_worker_identity(config.sandbox)
        except Exception as e:  # noqa: BLE001 - reported to the operator as the reason
            return {"error": str(e)}
    paths: dict[str, str | None] = {}
    for path, fd in roots.items():
        try:
            # "." beneath the root's descriptor needs search permission, listing needs read.
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                os.listdir(listing)
            finally:
                os.close(listing)
            paths[path] = None
        except OSError as e:
            paths[path] = e.strerror or str(e)
    return {"as": f"uid {os.getuid()} gid {os.getgid()}", "paths": paths}
