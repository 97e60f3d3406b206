"""The descriptors a worker starts with: stdio, its socket, and what its zygote opened for it."""

from __future__ import annotations

import os
from collections.abc import Iterable

FD_LIMIT = 1 << 20


def close_all_but(first: int, keep: Iterable[int]) -> None:
    """Close every descriptor from `first` up, except those in `keep` (the zygote's anchors:
    the filesystem roots it opened while still privileged)."""
    start = first
    for fd in sorted(k for k in set(keep) if k >= first):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, FD_LIMIT)
