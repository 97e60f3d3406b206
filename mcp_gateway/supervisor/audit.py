"""The audit log: one JSON line per tools/call, written before the response leaves.

Each record is a single `write(2)` on an O_APPEND descriptor (no user-space buffer, so it is
"flushed" when the call returns; a line is never interleaved with another). That costs
microseconds, so it runs on the trio thread. A failed write raises AuditError and the
caller refuses the call: there is no unaudited call. SIGHUP reopens the file for logrotate.

A record is in the file whole or not at all: when the filesystem fills up mid-record (a short
write, then ENOSPC) the file is truncated back to its size before the record, so the next
record never joins a partial line. This assumes one gateway appends to the file (the
rollback would cut another writer's record). On a stream (stderr) a partial line cannot be
taken back; the next record then starts on a new line. While the log is unwritable for lack
of space, `healthy` asks the filesystem again each time, so /healthz recovers by itself.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import sys
import time
from typing import Any

import msgspec

# Below this much free space the log counts as full: a record is a few hundred bytes, and a
# filesystem at its last blocks refuses writes in whole blocks.
MIN_FREE_BYTES = 16 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(fd: int) -> int | None:
    """Bytes this process may still write on fd's filesystem (root may use the reserved
    blocks), or None when the filesystem does not say (pseudo filesystems)."""
    try:
        vfs = os.fstatvfs(fd)
    except OSError:
        return None
    if vfs.f_blocks == 0:
        return None
    blocks = vfs.f_bfree if os.geteuid() == 0 else vfs.f_bavail
    return blocks * vfs.f_frsize


class AuditError(Exception):
    """The audit record could not be written; the call must be refused."""


def canonical_args(args: Any) -> bytes:
    """DESIGN.md's canonical JSON. Raises UnicodeEncodeError for lone surrogates."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def args_sha256(args: Any) -> str:
    """SHA-256 of the canonical JSON; for unencodable arguments (refused anyway) a hash of the
    same JSON with surrogates kept as is, so the record still correlates."""
    try:
        data = canonical_args(args)
    except UnicodeEncodeError:
        data = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError):
        data = repr(args).encode("utf-8", "backslashreplace")
    return hashlib.sha256(data).hexdigest()


_second: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """UTC, millisecond precision, e.g. 2026-01-15T10:30:00.000Z (the formatted second is cached)."""
    global _second
    now = time.time()
    sec = int(now)
    if sec != _second[0]:
        _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{_second[1]}.{int((now - sec) * 1000):03d}Z"


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line. U+2028/2029 are escaped: some log tools break lines on them."""
    try:
        data = msgspec.json.encode(record)
    except (msgspec.EncodeError, UnicodeEncodeError):  # lone surrogates in a reason
        data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")
    return data.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029") + b"\n"


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._regular = False
        self.last_error: str | None = None
        # Set when a write failed for lack of space: health then re-probes the filesystem.
        self._out_of_space = False
        # A partial record that could not be rolled back yet: cut at this size first (files),
        # or start the next record on a new line (streams).
        self._cut_at: int | None = None
        self._broken_line = False
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the log; on failure remember why, and refuse calls until it works."""
        old, self._fd = self._fd, None
        if old is not None and self.path != "stderr":
            os.close(old)
        self._cut_at = None
        try:
            if self.path == "stderr":
                self._fd = sys.stderr.fileno()
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
            self.last_error = None
            self._out_of_space = False
        except OSError as e:
            self.last_error = f"cannot open audit log {self.path}: {e.strerror}"

    @property
    def healthy(self) -> bool:
        if self._fd is None:
            return False
        # Only a regular file's filesystem can say that space is back (/dev/full "has" space).
        if self.last_error is not None and self._out_of_space and self._regular:
            free = free_bytes(self._fd)
            if free is not None and free >= MIN_FREE_BYTES and self._cut_partial():
                self.last_error = None
                self._out_of_space = False
        return self.last_error is None

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            # Try again: the operator may have fixed the path without sending SIGHUP.
            self.reopen()
            if self._fd is None:
                raise AuditError(self.last_error or "audit log is not open")
        line = encode_record(record)
        if not self._cut_partial():
            raise AuditError(self.last_error or "audit log holds a partial record")
        if self._broken_line:
            line = b"\n" + line
        try:
            self._append(self._fd, line)
        except OSError as e:
            self._out_of_space = e.errno in _NO_SPACE
            self.last_error = f"cannot write audit log {self.path}: {e.strerror}"
            raise AuditError(self.last_error) from None
        self._broken_line = False
        self.last_error = None
        self._out_of_space = False

    def _append(self, fd: int, line: bytes) -> None:
        """Write `line` whole, or leave the log as it was (OSError)."""
        before = os.fstat(fd).st_size if self._regular else 0
        done = 0
        try:
            while done < len(line):
                n = os.write(fd, line[done:])
                if n == 0:
                    raise OSError(errno.EIO, "write returned 0")
                done += n
        except OSError:
            if done:
                if self._regular:
                    self._cut_at = before
                    self._cut_partial()
                else:
                    self._broken_line = True
            raise

    def _cut_partial(self) -> bool:
        """Roll back a partial record still in the file; False if that fails (yet)."""
        if self._cut_at is None or self._fd is None:
            return True
        try:
            os.ftruncate(self._fd, self._cut_at)
        except OSError as e:
            self.last_error = f"cannot remove a partial record from audit log {self.path}: {e.strerror}"
            return False
        self._cut_at = None
        return True

    def close(self) -> None:
        if self._fd is not None and self.path != "stderr":
            os.close(self._fd)
        self._fd = None
