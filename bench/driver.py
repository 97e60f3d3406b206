"""A tiny pipelined JSON-RPC driver over stdio (raw pipes, no SDK) and a /proc RSS sampler.

The client side is deliberately thin: requests are pre-encoded byte templates, replies are
parsed with `json.loads` only to read their id and error flag, so the numbers measure the
server, not the client.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.gateway_process import descendants

PAGE = os.sysconf("SC_PAGE_SIZE")
PROTOCOL_VERSION = "2025-06-18"


# --- /proc ------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped (utime, stime, cutime, cstime)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU of `pid`, CPU of all its descendants). A worker that exits in between is still
    counted: its zygote reaps it, which adds its time to the zygote's cutime/cstime."""
    return cpu_seconds(pid), sum(cpu_seconds(p) for p in descendants(pid))


class CpuMeter:
    """CPU seconds per call spent by a server, its descendants and this (client) process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = (*tree_cpu(pid), time.process_time())

    def per_call(self, calls: int) -> tuple[float, float, float]:
        end = (*tree_cpu(self.pid), time.process_time())
        n = max(1, calls)
        return tuple((b - a) / n for a, b in zip(self._start, end, strict=True))  # type: ignore[return-value]


def tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants (shared pages are counted once per process)."""
    return sum(rss_bytes(p) for p in (pid, *descendants(pid)))


class RssSampler:
    """Samples the tree RSS of `pid` every `interval` s in a thread; `take()` returns the peak
    since the previous `take()` (or start)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            v = tree_rss(self.pid)
            with self._lock:
                if v > self._peak:
                    self._peak = v
            self._stop.wait(self.interval)

    def take(self) -> int:
        v = tree_rss(self.pid)
        with self._lock:
            peak, self._peak = max(self._peak, v), 0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --- results ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


@dataclass
class LoadResult:
    calls: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful and failed calls
    errors: int = 0
    first_error: str | None = None
    peak_rss: int = 0
    aborted: str | None = None
    cpu: list[tuple[float, float, float]] = field(default_factory=list)  # per call: server, children, client

    def merge(self, other: LoadResult) -> None:
        self.cpu += other.cpu
        self.calls += other.calls
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.peak_rss = max(self.peak_rss, other.peak_rss)
        self.aborted = self.aborted or other.aborted

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> tuple[float, float, float] | None:
        """Mean CPU µs per call over the batches: (server, its descendants, the client)."""
        if not self.cpu:
            return None
        return tuple(sum(c[i] for c in self.cpu) / len(self.cpu) * 1e6 for i in range(3))  # type: ignore[return-value]

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


class ServerError(Exception):
    pass


def reply_error(msg: dict[str, Any]) -> str | None:
    """None for a successful tools/call reply; else a short description of the failure."""
    if "error" in msg:
        e = msg["error"]
        return f"JSON-RPC error {e.get('code')}: {str(e.get('message'))[:200]}"
    result = msg.get("result") or {}
    if result.get("isError"):
        texts = [c.get("text", "") for c in result.get("content", []) if isinstance(c, dict)]
        return "isError: " + " ".join(texts)[:200]
    return None


# --- the stdio server -------------------------------------------------------------------


class StdioServer:
    """One MCP server process on raw pipes."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._next_id = 0
        self._stderr = tempfile.TemporaryFile()
        self.cold_start_s: float | None = None
        self.sampler: RssSampler | None = None

    # lifecycle

    def start(self, timeout: float = 60.0, sample_rss: bool = True) -> float:
        """Spawn and initialize; returns the seconds from spawn to the `initialize` reply."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=self.env, cwd=self.cwd, start_new_session=True, bufsize=0)
        if sample_rss:
            self.sampler = RssSampler(self.proc.pid)
        reply = self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "mcp-gateway-bench", "version": "0.1"}}, timeout=timeout)
        self.cold_start_s = time.perf_counter() - t0
        if "error" in reply:
            raise ServerError(f"{self.name}: initialize failed: {reply['error']}")
        self.notify("notifications/initialized")
        return self.cold_start_s

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr_tail(self, n: int = 1500) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.sampler:
            self.sampler.stop()
        p = self.proc
        if p is None:
            return
        try:
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if p.stdout:
            p.stdout.close()
        self._stderr.close()

    def __enter__(self) -> StdioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # wire

    def _write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self._write(json.dumps(msg).encode() + b"\n")

    def _read_messages(self, timeout: float) -> list[dict[str, Any]]:
        """Block up to `timeout` for at least one complete line; return every complete message."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.perf_counter() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"{self.name}: no reply within {timeout:.0f} s; stderr: {self.stderr_tail()}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise ServerError(f"{self.name}: closed stdout (exit {self.proc.poll()}); "
                                  f"stderr: {self.stderr_tail()}")
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            if not line.strip():
                continue
            msg = json.loads(line)
            if "method" in msg and "id" in msg:  # a server->client request: we support none
                self._write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {
                    "code": -32601, "message": "method not found"}}).encode() + b"\n")
                continue
            if "method" in msg:  # a notification (logging, progress...): ignored
                continue
            out.append(msg)
        return out

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        rid = self._next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self._write(json.dumps(msg).encode() + b"\n")
        while True:
            for reply in self._read_messages(timeout):
                if reply.get("id") == rid:
                    return reply

    def call_tool(self, tool: str, arguments: dict[str, Any], timeout: float = 30.0) -> tuple[dict[str, Any], float]:
        t0 = time.perf_counter()
        reply = self.request("tools/call", {"name": tool, "arguments": arguments}, timeout=timeout)
        return reply, time.perf_counter() - t0

    def load(self, n: int, window: int, tool: str, arguments: dict[str, Any],
             timeout: float = 180.0) -> LoadResult:
        """n tools/call requests with `window` in flight; latency is send-to-reply per call."""
        body = json.dumps({"name": tool, "arguments": arguments}, separators=(",", ":")).encode()
        prefix = b'{"jsonrpc":"2.0","method":"tools/call","params":' + body + b',"id":'
        res = LoadResult()
        pending: dict[int, float] = {}
        sent = done = 0
        if self.sampler:
            self.sampler.take()
        meter = CpuMeter(self.pid)
        t_start = time.perf_counter()
        deadline = t_start + timeout
        try:
            while done < n:
                if sent < n and len(pending) < window:
                    k = min(window - len(pending), n - sent)
                    ids = range(self._next_id + 1, self._next_id + 1 + k)
                    self._next_id += k
                    data = b"".join(prefix + str(i).encode() + b"}\n" for i in ids)
                    now = time.perf_counter()
                    for i in ids:
                        pending[i] = now
                    self._write(data)
                    sent += k
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise TimeoutError(f"batch did not finish within {timeout:.0f} s")
                msgs = self._read_messages(left)
                now = time.perf_counter()
                for msg in msgs:
                    t = pending.pop(msg.get("id"), None)  # type: ignore[arg-type]
                    if t is None:
                        continue
                    done += 1
                    res.latencies.append(now - t)
                    err = reply_error(msg)
                    if err:
                        res.errors += 1
                        res.first_error = res.first_error or err
        except (TimeoutError, ServerError, OSError) as e:
            res.aborted = str(e)[:300]
            res.errors += n - done
        res.seconds = time.perf_counter() - t_start
        res.calls = done
        res.cpu.append(meter.per_call(done))
        if self.sampler:
            res.peak_rss = self.sampler.take()
        return res
