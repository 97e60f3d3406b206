"""Process flags: no_new_privs (no setuid/file-capability gain via exec, and the precondition of
unprivileged Landlock and seccomp) and dumpable 0 (no core dumps, /proc/<pid>/ files owned by
root, no ptrace attach by same-uid processes). pdeathsig is set by the zygote right after fork.
"""

from __future__ import annotations

from mcp_gateway.sandbox._common import (
    PR_GET_DUMPABLE,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    prctl,
)


def apply_prctl() -> str:
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)
    if prctl(PR_GET_NO_NEW_PRIVS) != 1 or prctl(PR_GET_DUMPABLE) != 0:
        raise OSError("no_new_privs / dumpable did not hold")
    return "no_new_privs, not dumpable"
