"""Process flags: no_new_privs (no setuid/file-capability gain via exec, and the precondition of
unprivileged Landlock and seccomp) and dumpable 0 (no core dumps, /proc/<pid>/ files owned by
root, no ptrace attach by same-uid processes). pdeathsig is set by the zygote right after fork.

Through python-prctl, the maintained binding of prctl(2); capabilities are cleared in user.py
with capset(2) directly because python-prctl's capability table stops at the capabilities it
was built with, and a kernel newer than the binding has more.
"""

from __future__ import annotations

import prctl


def apply_prctl() -> str:
    prctl.set_no_new_privs(1)
    prctl.set_dumpable(False)
    if prctl.get_no_new_privs() != 1 or prctl.get_dumpable():
        raise OSError("no_new_privs / dumpable did not hold")
    return "no_new_privs, not dumpable"
