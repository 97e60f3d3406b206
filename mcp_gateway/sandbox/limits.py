"""Resource limits of a worker (applied after the uid drop: RLIMIT_NPROC does not bind uid 0).

RLIMIT_DATA caps the heap and every private writable mapping (Linux >= 4.7), which is what a
Python worker allocates with, so an allocation past it raises MemoryError rather than inviting
the OOM killer. NPROC 0 makes fork/clone fail with EAGAIN (counted per uid, so any process of
the uid counts: that is the point). FSIZE 0 forbids growing any regular file; SIGXFSZ is
ignored so such a write fails with EFBIG instead of killing the worker.
"""

from __future__ import annotations

import resource
import signal

MiB = 1024 * 1024


def _set(kind: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    cur_soft, cur_hard = resource.getrlimit(kind)
    # Never ask for more than the current hard limit (a non-root process cannot raise it).
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(kind, (soft, hard))


def apply_rlimits(memory_mb: int, cpu_s: int, nofile: int) -> str:
    _set(resource.RLIMIT_DATA, memory_mb * MiB)
    # The soft limit sends SIGXCPU (fatal by default); the hard one, a little later, SIGKILL.
    _set(resource.RLIMIT_CPU, cpu_s, cpu_s + 2)
    _set(resource.RLIMIT_NOFILE, nofile)
    _set(resource.RLIMIT_NPROC, 0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _set(resource.RLIMIT_FSIZE, 0)
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_MEMLOCK, 0)
    _set(resource.RLIMIT_MSGQUEUE, 0)
    got = {
        k: resource.getrlimit(getattr(resource, f"RLIMIT_{k}"))
        for k in ("DATA", "CPU", "NOFILE", "NPROC", "FSIZE", "CORE")
    }
    return (
        f"data {got['DATA'][0] // MiB} MiB, cpu {got['CPU'][0]} s, nofile {got['NOFILE'][0]}, "
        f"nproc {got['NPROC'][0]}, fsize {got['FSIZE'][0]}, core {got['CORE'][0]}"
    )
