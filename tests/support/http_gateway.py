"""Start the real gateway with the HTTP transport and talk to it with httpx."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.gateway_process import fs_config, gateway_env

PROTOCOL = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
SERVING = re.compile(r"serving MCP on (https?://\S+)")


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def http_config(directory: Path, http: dict | None = None, policy: dict | None = None,
                name: str = "config.yaml", **extra: Any) -> Path:
    """fs_config with transport http on 127.0.0.1 and an ephemeral port (the gateway logs it)."""
    server = {"transport": "http", "http": {"host": "127.0.0.1", "port": 0, **(http or {})}}
    path = fs_config(directory, policy=policy, server=server, **extra)
    if name != path.name:
        target = path.with_name(name)
        shutil.move(path, target)
        path = target
    return path


def stdio_variant(config: Path, name: str = "config-stdio.yaml") -> Path:
    data = yaml.safe_load(config.read_text())
    data["server"]["transport"] = "stdio"
    data["server"].pop("http", None)
    target = config.with_name(name)
    target.write_text(yaml.safe_dump(data))
    return target


class HttpGateway:
    """`python -m mcp_gateway serve` with transport http; stderr goes to a file next to the config."""

    def __init__(self, config: Path, wait: bool = True, prefix: list[str] | None = None) -> None:
        """`prefix`: a command to run the gateway under (e.g. prlimit)."""
        self.config = config
        self.stderr_path = config.with_name(config.stem + ".stderr")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            env=gateway_env(), cwd=str(config.parent))
        self.url = ""
        self.base = ""
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.close()  # never leave a gateway behind when it did not come up in time
                raise

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:  # bounded; generous for a loaded CI box
        deadline = time.monotonic() + timeout
        while not self.url:
            m = SERVING.search(self.stderr())
            if m:
                self.url = m.group(1)
                self.base = self.url.rsplit("/", 1)[0]
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway did not log its address: {self.stderr()[-3000:]}")
            time.sleep(0.02)
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"/healthz never answered 200: {self.stderr()[-3000:]}")
            time.sleep(0.02)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return self.proc.returncode

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.terminate()
        finally:
            self._stderr.close()

    def __enter__(self) -> HttpGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class McpHttp:
    """A minimal Streamable HTTP client: JSON-RPC over POST, session id kept."""

    def __init__(self, url: str, token: str | None = None, headers: dict[str, str] | None = None) -> None:
        h = {"accept": ACCEPT, "content-type": "application/json"}
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        h.update(headers or {})
        self.url = url
        self.client = httpx.Client(headers=h, timeout=30)
        self.session_id: str | None = None
        self._id = 0

    def post(self, message: dict, headers: dict[str, str] | None = None) -> httpx.Response:
        h = dict(headers or {})
        if self.session_id is not None:
            h.setdefault("mcp-session-id", self.session_id)
            h.setdefault("mcp-protocol-version", PROTOCOL)
        return self.client.post(self.url, json=message, headers=h)

    def initialize(self) -> dict:
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                                  "clientInfo": {"name": "http-test", "version": "0"}}})
        assert r.status_code == 200, (r.status_code, r.text)
        self.session_id = r.headers.get("mcp-session-id")
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202, (n.status_code, n.text)
        return r.json()["result"]

    def request(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self._id, "method": method}
        if params is not None:
            msg["params"] = params
        r = self.post(msg)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def tools(self) -> list[str]:
        return sorted(t["name"] for t in self.request("tools/list")["result"]["tools"])

    def call(self, tool: str, arguments: dict) -> dict:
        return self.request("tools/call", {"name": tool, "arguments": arguments})["result"]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> McpHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scrape(base: str, token: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    headers = {"authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(base + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
