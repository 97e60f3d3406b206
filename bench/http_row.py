"""The HTTP row: the gateway's Streamable HTTP transport next to a stock SDK server.

The peer is the `mcp` SDK's own `MCPServer` (the version the gateway pins) with one
`read_file` tool, served by its `streamable-http` transport (uvicorn), JSON responses, reading
the same 1 KiB file the gateway's `fs.readFile` serves. Each of 1, 8, 32 and 128 clients opens
its own session and calls in a loop, all at once; the rounds alternate gateway and peer.

`python -m bench.http_row [--calls N] [--no-doc]` runs it alone (and rewrites only its own
section of docs/BENCHMARKS.md); `python -m bench` runs it with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.fixtures import FILE_MARKER, Workspace
from bench.report import machine
from bench.targets import GATEWAY_PYTHON, REPO, base_env, gateway_config

CLIENTS = (1, 8, 32, 128)
PROTOCOL = "2025-11-25"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
DOC = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- http-row:begin -->", "<!-- http-row:end -->"

STOCK_SERVER = """
import sys
from pathlib import Path
from mcp.server.mcpserver import MCPServer

root, port = Path(sys.argv[1]), int(sys.argv[2])
server = MCPServer("stock-sdk-http")

@server.tool()
def read_file(path: str) -> str:
    return (root / path).read_text()

server.run("streamable-http", host="127.0.0.1", port=port, json_response=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    def __init__(self, label: str, argv: list[str], url: str, tool: str, args: dict[str, Any],
                 env: dict[str, str], cwd: Path) -> None:
        self.label, self.url, self.tool, self.args = label, url, tool, args
        self.proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as c:
            while True:
                try:
                    await _open_session(c, self.url)
                    if await _call(c, self.url, self.tool, self.args):
                        return
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.label} did not come up")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def _open_session(c: httpx.AsyncClient, url: str) -> None:
    c.headers.pop("mcp-session-id", None)
    r = await c.post(url, headers=HEADERS, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
    r.raise_for_status()
    c.headers["mcp-session-id"] = r.headers["mcp-session-id"]
    c.headers["mcp-protocol-version"] = PROTOCOL
    await c.post(url, headers=HEADERS, json={"jsonrpc": "2.0", "method": "notifications/initialized"})


async def _call(c: httpx.AsyncClient, url: str, tool: str, args: dict[str, Any]) -> bool:
    r = await c.post(url, headers=HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                 "params": {"name": tool, "arguments": args}})
    result = r.json().get("result") or {}
    return r.status_code == 200 and not result.get("isError") and FILE_MARKER in str(result.get("content"))


async def load(server: HttpServer, clients: int, calls_each: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    ready = 0
    start = asyncio.Event()

    async def client() -> None:
        nonlocal errors, ready
        async with httpx.AsyncClient(timeout=60) as c:
            await _open_session(c, server.url)
            ready += 1
            await start.wait()
            for _ in range(calls_each):
                t = time.perf_counter()
                try:
                    ok = await _call(c, server.url, server.tool, server.args)
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += not ok

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    while ready < clients:  # every client holds its session before the first call
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # a client failed to open its session: raise it
        await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"server": server.label, "clients": clients, "rate": len(latencies) / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, "errors": errors}


def _servers(ws: Workspace) -> list[HttpServer]:
    env = base_env({"PYTHONPATH": str(REPO)})
    gw_port, peer_port = _free_port(), _free_port()
    config = gateway_config(ws.root, "http-row", fs_root=ws.data)
    data = yaml.safe_load(config.read_text())
    data["server"]["transport"] = "http"
    data["server"]["http"] = {"host": "127.0.0.1", "port": gw_port}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    stock = ws.root / "stock_http_server.py"
    stock.write_text(STOCK_SERVER)
    return [
        HttpServer("mcp-gateway (HTTP)", [GATEWAY_PYTHON, "-m", "mcp_gateway", "serve", "--config", str(config)],
                   f"http://127.0.0.1:{gw_port}/mcp", "fs.readFile", {"path": ws.file.name}, env, ws.root),
        HttpServer("mcp 2.3.0 MCPServer (stock streamable HTTP)",
                   [GATEWAY_PYTHON, str(stock), str(ws.data), str(peer_port)],
                   f"http://127.0.0.1:{peer_port}/mcp", "read_file", {"path": ws.file.name}, env, ws.root),
    ]


async def run_rows(calls_total: int = 512) -> list[dict[str, Any]]:
    ws = Workspace()
    servers = _servers(ws)
    rows: list[dict[str, Any]] = []
    try:
        for s in servers:
            await s.wait_ready()
        for n in CLIENTS:
            for s in servers:  # alternate, so both see the same machine load
                rows.append(await load(s, n, max(4, calls_total // n)))
    finally:
        for s in servers:
            s.stop()
        ws.cleanup()
    return rows


def render(rows: list[dict[str, Any]], m: dict[str, str]) -> str:
    out = ["### HTTP: concurrent clients, one session each (fs.readFile of 1 KiB)\n",
           f"Run of {m.get('date', '?')} on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average "
           f"{m.get('load average at start (1/5/15 min)', '?')} at start. "
           "Gateway: default config, 2 filesystem workers, every sandbox layer on, an audit line per "
           "call. Peer: the SDK's stock server, in-process, no sandbox, no audit.\n",
           "| clients | server | calls/s | p50 ms | p99 ms | errors |", "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['clients']} | {r['server']} | {r['rate']:.0f} | {r['p50_ms']:.1f} | "
                   f"{r['p99_ms']:.1f} | {r['errors']} |")
    return "\n".join(out) + "\n"


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n## HTTP transport\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{section}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.http_row", description=__doc__)
    ap.add_argument("--calls", type=int, default=512, help="calls per server per client count")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    opts = ap.parse_args(argv)
    rows = asyncio.run(run_rows(opts.calls))
    section = render(rows, machine(GATEWAY_PYTHON))
    print(section)
    if not opts.no_doc:
        write_doc(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
