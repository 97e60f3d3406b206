"""Bounded logging for lines a client can cause at will (bad tokens, refused connections).

A line per event would let one client fill the disk and drown the log an operator reads. Each
kind of line is let through a few times a minute; the
rest are counted, and the next line that gets through says how many were left out. A kind
is the line of code that logs, never client data, so the table stays small.
"""

from __future__ import annotations

import logging
import time


class LogThrottle(logging.Filter):
    """A logging filter: at most `burst` records per kind each `interval_s` seconds."""

    def __init__(self, burst: int = 5, interval_s: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self._windows: dict[tuple[str, int], list[float | int]] = {}  # kind -> [start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.pathname, record.lineno)  # the call site (messages may be f-strings)
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self.interval_s:
            dropped = int(window[2]) if window is not None else 0
            self._windows[kind] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} ({dropped} similar line(s) left out before this one)"
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False


def throttle(*loggers: logging.Logger | str, burst: int = 5, interval_s: float = 60.0) -> LogThrottle:
    """Attach one throttle to these loggers (by object or name) and return it."""
    f = LogThrottle(burst, interval_s)
    for logger in loggers:
        (logging.getLogger(logger) if isinstance(logger, str) else logger).addFilter(f)
    return f
