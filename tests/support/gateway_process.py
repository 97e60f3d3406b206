"""Run the real gateway as a subprocess: configs, the SDK client, a raw JSON-RPC pipe, /proc."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO


def gateway_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "POSTGRES_PASSWORD")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def fs_config(tmp_path: Path, policy: dict | None = None, **extra: Any) -> Path:
    """A config serving tmp_path/data (with data/secrets denied) and auditing to tmp_path."""
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)
    (data / "hello.txt").write_text("hello world\n")
    (data / "secrets" / "key.txt").write_text("TOP-SECRET\n")
    cfg: dict[str, Any] = {
        "server": {"transport": "stdio", "actor": "tester"},
        "audit": {"path": str(tmp_path / "audit.jsonl")},
        "policy": {"default_deny": True, "allow_tools": ["fs.readFile", "fs.listDir"], **(policy or {})},
        "connectors": {"filesystem": {"enabled": True, "allowed_paths": [str(data)],
                                      "denied_paths": [str(data / "secrets")]}},
    }
    _merge(cfg, extra)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


ERROR_META = "io.mcp-gateway/error"


def error_of(result: Any) -> dict:
    """A refusal's structured error (raw JSON result or the SDK's CallToolResult).

    It lives in `_meta`, never in `structuredContent` (clients check that against the tool's
    outputSchema even on errors)."""
    if isinstance(result, dict):
        assert result.get("isError") is True and "structuredContent" not in result, result
        return result["_meta"][ERROR_META]
    assert result.is_error and result.structured_content is None, result
    return result.meta[ERROR_META]


def audit_lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def server_parameters(config: Path):
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_gateway", "serve", "--config", str(config)],
                                 env=gateway_env(), cwd=str(config.parent))


@asynccontextmanager
async def sdk_client(config: Path):
    from mcp.client import Client

    async with Client(server_parameters(config), read_timeout_seconds=30) as client:
        yield client


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def descendants(pid: int) -> list[int]:
    result: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        result.append(p)
        todo += children(p)
    return result


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class RawGateway:
    """The gateway on raw pipes: write bytes, read JSON-RPC lines with deadlines."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=gateway_env(),
            cwd=str(config.parent))
        self._buf = b""
        self._next_id = 1000
        self._stderr = b""
        self.config = config

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send_json(self, obj: Any) -> None:
        self.send(json.dumps(obj).encode() + b"\n")

    def read(self, timeout: float = 20.0) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no reply within {timeout} s; stderr: {self.stderr_tail()}")
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError(f"gateway closed stdout; stderr: {self.stderr_tail()}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def request(self, method: str, params: dict | None = None, timeout: float = 20.0) -> dict:
        self._next_id += 1
        rid = self._next_id
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_json(msg)
        reply = self.read(timeout)
        assert reply.get("id") == rid, reply
        return reply

    def initialize(self) -> dict:
        reply = self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                            "clientInfo": {"name": "raw-test", "version": "0"}})
        self.send_json({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def call(self, tool: str, arguments: dict, timeout: float = 20.0) -> dict:
        return self.request("tools/call", {"name": tool, "arguments": arguments}, timeout)["result"]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every enabled instance's pool has logged that its workers are ready."""
        cfg = yaml.safe_load(self.config.read_text())
        pools = sum(sum(1 for i in c["instances"].values() if i.get("enabled", True)) if "instances" in c
                    else bool(c.get("enabled")) for c in (cfg.get("connectors") or {}).values())
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while self._stderr.count(b"workers ready") < pools:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"workers not ready within {timeout} s; stderr: {self._stderr[-3000:]!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError(f"gateway exited; stderr: {self._stderr.decode(errors='replace')[-3000:]}")
            self._stderr += chunk

    def stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        self._stderr += self.proc.stderr.read()
        return self._stderr.decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@contextmanager
def raw_gateway(config: Path):
    gw = RawGateway(config)
    try:
        gw.initialize()
        gw.wait_ready()
        yield gw
    finally:
        gw.close()


def worker_pids(gateway_pid: int) -> list[int]:
    """Workers are the zygotes' children (grandchildren of the gateway)."""
    return [w for z in children(gateway_pid) for w in children(z)]


def wait_until(predicate, timeout: float = 10.0, what: str = "condition not reached in time"):
    """The first truthy value of predicate(), polled until `timeout` seconds; AssertionError after."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout} s)")
        time.sleep(0.01)
