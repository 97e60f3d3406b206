"""The audit log: one JSON line per tools/call, written before the response leaves.

Each record is a single `write(2)` on an O_APPEND descriptor (no user-space buffer, so it is
"flushed" when the call returns; a line is never interleaved with another). That costs
microseconds, so it runs on the trio thread. A failed write raises AuditError and the
caller refuses the call: there is no unaudited call. SIGHUP reopens the file for logrotate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Any

import msgspec


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
        self.last_error: str | None = None
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the log; on failure remember why, and refuse calls until it works."""
        old, self._fd = self._fd, None
        if old is not None and self.path != "stderr":
            os.close(old)
        try:
            if self.path == "stderr":
                self._fd = sys.stderr.fileno()
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self.last_error = None
        except OSError as e:
            self.last_error = f"cannot open audit log {self.path}: {e.strerror}"

    @property
    def healthy(self) -> bool:
        return self._fd is not None and self.last_error is None

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            # Try again: the operator may have fixed the path without sending SIGHUP.
            self.reopen()
            if self._fd is None:
                raise AuditError(self.last_error or "audit log is not open")
        line = encode_record(record)
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(0, f"short write ({written} of {len(line)} bytes)")
        except OSError as e:
            self.last_error = f"cannot write audit log {self.path}: {e.strerror}"
            raise AuditError(self.last_error) from None
        self.last_error = None

    def close(self) -> None:
        if self._fd is not None and self.path != "stderr":
            os.close(self._fd)
        self._fd = None
