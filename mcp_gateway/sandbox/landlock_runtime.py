"""Landlock for a process that execs a runtime: read, write and execute rights per path.

A pool worker only reads (landlock.py). An upstream MCP server is a whole runtime (node, a
Python venv): it must read its runtime's files, write its `write` paths, and execute its own
command's binaries and nothing else. LANDLOCK_ACCESS_FS_EXECUTE is granted on exactly those
files (the command, the interpreter its shebang names, their ELF interpreters): the kernel
checks it on every execve(2) and on the ELF interpreter it opens, so /bin/sh, or a binary the
server writes into its own `write` paths, cannot be executed. Shared libraries are mapped, not
executed: reading them is enough.

As in landlock.py, each path is opened O_PATH before the uid drop and the rules are built from
those descriptors; a path that does not exist is skipped and named in the report.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from mcp_gateway.sandbox.landlock import (
    ACCESS_FS_EXECUTE,
    ACCESS_FS_MAKE_DIR,
    ACCESS_FS_MAKE_REG,
    ACCESS_FS_MAKE_SYM,
    ACCESS_FS_READ_DIR,
    ACCESS_FS_READ_FILE,
    ACCESS_FS_REFER,
    ACCESS_FS_REMOVE_DIR,
    ACCESS_FS_REMOVE_FILE,
    ACCESS_FS_TRUNCATE,
    ACCESS_FS_WRITE_FILE,
    describe_net,
    enforce,
)

READ_FILE = ACCESS_FS_READ_FILE
READ_TREE = ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
EXECUTE_FILE = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE
# A file the server may write (a device such as /dev/null, or a single data file).
WRITE_FILE = ACCESS_FS_READ_FILE | ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE
# A directory it may write beneath: files, directories and symlinks made, renamed, removed.
# Never devices, FIFOs or sockets, and never execute.
WRITE_TREE = (READ_TREE | ACCESS_FS_WRITE_FILE | ACCESS_FS_TRUNCATE | ACCESS_FS_MAKE_REG | ACCESS_FS_MAKE_DIR
              | ACCESS_FS_MAKE_SYM | ACCESS_FS_REMOVE_FILE | ACCESS_FS_REMOVE_DIR | ACCESS_FS_REFER)


class RuntimeRules:
    """O_PATH anchors of every read, write and execute path, opened while still privileged."""

    def __init__(self, read: Iterable[str], write: Iterable[str], execute: Iterable[str]) -> None:
        self.rules: list[tuple[int, int]] = []
        self.skipped: list[str] = []
        self.counts = {"read": 0, "write": 0, "execute": 0}
        for kind, paths in (("execute", execute), ("write", write), ("read", read)):
            for path in dict.fromkeys(paths):
                self._open(kind, path)

    def _open(self, kind: str, path: str) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            self.skipped.append(f"{path} ({e.strerror})")
            return
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if kind == "execute":
            if is_dir:  # execute is granted on files only, never a tree
                os.close(fd)
                self.skipped.append(f"{path} (a directory cannot be an executable)")
                return
            access = EXECUTE_FILE
        elif kind == "write":
            access = WRITE_TREE if is_dir else WRITE_FILE
        else:
            access = READ_TREE if is_dir else READ_FILE
        self.rules.append((fd, access))
        self.counts[kind] += 1

    def close(self) -> None:
        for fd, _ in self.rules:
            os.close(fd)
        self.rules.clear()


def apply_runtime_landlock(rules: RuntimeRules, connect_ports: Iterable[int]) -> str:
    """Restrict the calling process (and what it executes) for good. Returns a status string."""
    ports = tuple(connect_ports)
    abi = enforce(rules.rules, ports)
    c = rules.counts
    parts = [f"ABI {abi}: read {c['read']} paths, write {c['write']}, execute {c['execute']} files"]
    if rules.skipped:
        parts.append(f"skipped missing {', '.join(rules.skipped)}")
    return ", ".join(parts + describe_net(abi, ports))
