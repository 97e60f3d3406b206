"""Resource limits of a worker (applied after the uid drop: RLIMIT_NPROC does not bind uid 0).

Memory, two limits (docs/SANDBOX.md "Memory" says why):
* RLIMIT_AS = the worker's address space when it confines itself (its baseline: interpreter,
  libraries, the zygote's warm heap) + memory_mb. It counts every mapping kind, shared
  anonymous and MAP_GROWSDOWN included, which RLIMIT_DATA does not; memfd and SysV/POSIX
  shared memory are refused by seccomp anyway. A mapping past it fails with ENOMEM (a
  Python allocation raises MemoryError) instead of inviting the OOM killer.
* RLIMIT_DATA = the worker's data size when it confines itself + memory_mb: the heap and
  private writable mappings alone, the usual case. Both limits mean the same: memory_mb more
  than the warm process the worker was forked as.
glibc is told to keep a single malloc arena (a thread's arena would reserve 64 MiB of
address space up front); workers are single-threaded, this only keeps the budget honest.
NPROC 0 makes fork/clone fail with EAGAIN (counted per uid, so any process of
the uid counts: that is the point). FSIZE 0 forbids growing any regular file; SIGXFSZ is
ignored so such a write fails with EFBIG instead of killing the worker.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

from mcp_gateway.sandbox._common import libc, proc_status

MiB = 1024 * 1024
M_ARENA_MAX = -8


def _set(kind: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    cur_soft, cur_hard = resource.getrlimit(kind)
    # Never ask for more than the current hard limit (a non-root process cannot raise it).
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(kind, (soft, hard))


def _status_bytes(key: str) -> int:
    return int(proc_status()[key].split()[0]) * 1024


def address_space_now() -> int:
    """This process's mapped address space in bytes (VmSize)."""
    return _status_bytes("VmSize")


def apply_rlimits(memory_mb: int, cpu_s: int, nofile: int) -> str:
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt(M_ARENA_MAX, 1)
    baseline = address_space_now()
    data_baseline = _status_bytes("VmData")
    _set(resource.RLIMIT_AS, baseline + memory_mb * MiB)
    _set(resource.RLIMIT_DATA, data_baseline + memory_mb * MiB)
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
        for k in ("AS", "DATA", "CPU", "NOFILE", "NPROC", "FSIZE", "CORE")
    }
    return (
        f"address space {got['AS'][0] // MiB} MiB (baseline {baseline // MiB} + {memory_mb}), "
        f"data {got['DATA'][0] // MiB} MiB (baseline {data_baseline // MiB} + {memory_mb}), "
        f"cpu {got['CPU'][0]} s, nofile {got['NOFILE'][0]}, nproc {got['NPROC'][0]}, "
        f"fsize {got['FSIZE'][0]}, core {got['CORE'][0]}"
    )


def tasks_of(uid: int) -> int:
    """Threads now running under real uid `uid` (what RLIMIT_NPROC counts), zombies included."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = proc_status(name)
            if int(status["Uid"].split()[0]) == uid:
                count += int(status.get("Threads", "1"))
        except (OSError, ValueError, KeyError):
            continue  # gone while we looked
    return count


def apply_runtime_rlimits(memory_mb: int, cpu_s: int, nofile: int, processes: int, file_mb: int,
                          counted_here: int | None = None) -> str:
    """Limits of a process that execs a runtime (an upstream MCP server); they survive execve.

    * memory: RLIMIT_DATA = memory_mb (the runtime starts from nothing after execve, so no
      baseline). Not RLIMIT_AS: node reserves tens of GiB of address space it never touches
      (V8's pointer cage, WebAssembly guard regions) and aborts at start under a tight one;
    * RLIMIT_NPROC = `processes` more than the uid runs now: a runtime needs threads (node's
      libuv pool and V8 platform threads, CPython's thread pools), and NPROC counts threads.
      Its own uid (root) or its own user namespace: the count is the server's own tasks;
      a shared uid (not root, no user namespace): whatever else the uid runs counts too.
      `counted_here`: the tasks the kernel counts against it when it knows better than the
      host-wide count (in a user namespace of its own, only that namespace's tasks count);
    * RLIMIT_FSIZE = file_mb (its `write` paths need files; 0 without any);
    * CPU, NOFILE as configured; CORE, MEMLOCK, MSGQUEUE 0.
    """
    existing = tasks_of(os.getuid()) if counted_here is None else counted_here
    _set(resource.RLIMIT_DATA, memory_mb * MiB)
    _set(resource.RLIMIT_CPU, cpu_s, cpu_s + 2)
    _set(resource.RLIMIT_NOFILE, nofile)
    _set(resource.RLIMIT_NPROC, existing + processes)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across execve: EFBIG, not death
    _set(resource.RLIMIT_FSIZE, file_mb * MiB)
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_MEMLOCK, 0)
    _set(resource.RLIMIT_MSGQUEUE, 0)
    return (f"data {memory_mb} MiB, cpu {cpu_s} s, nofile {nofile}, nproc {existing} + {processes}, "
            f"fsize {file_mb} MiB, core 0")
