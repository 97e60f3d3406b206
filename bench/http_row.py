"""The HTTP row: the gateway's Streamable HTTP transport next to a stock SDK server.

The peer is the `mcp` SDK's own `MCPServer` (the version the gateway pins) with one
`read_file` tool, served by its `streamable-http` transport (uvicorn), JSON responses, reading
the same 1 KiB file the gateway's `fs.readFile` serves. Each of 1, 8, 32 and 128 clients opens
its own session and calls in a loop, all at once; the rounds alternate gateway and peer.

`python -m bench.http_row [--calls N] [--rounds R]` runs it alone and prints the table;
`python -m bench --transports` runs it next to the stdio row and writes both to docs/BENCHMARKS.md.
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

from bench.driver import CpuMeter
from bench.fixtures import FILE_MARKER, Workspace
from bench.report import cpu_split, machine
from bench.targets import GATEWAY_PYTHON, READ_FILE_TOOL, REPO, base_env, gateway_config

CLIENTS = (1, 8, 32, 128)
GATEWAY_LABEL = "mcp-gateway (HTTP)"
PROTOCOL = "2025-11-25"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}

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
                    if await _call(c, self.url, self.tool, self.args) is None:
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


async def _call(c: httpx.AsyncClient, url: str, tool: str, args: dict[str, Any]) -> str | None:
    """None when the call returned the file; else what came back instead."""
    r = await c.post(url, headers=HEADERS, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                 "params": {"name": tool, "arguments": args}})
    result = r.json().get("result") or {}
    if r.status_code == 200 and not result.get("isError") and FILE_MARKER in str(result.get("content")):
        return None
    return f"HTTP {r.status_code}: {r.text[:160]}"


async def load(server: HttpServer, clients: int, calls_each: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    ready = 0
    start = asyncio.Event()
    calls_done = asyncio.Semaphore(0)  # released by each client after its last call
    timed = asyncio.Event()  # then the sessions are closed, outside the timed part

    async def client() -> None:
        nonlocal ready
        async with httpx.AsyncClient(timeout=60) as c:
            await _open_session(c, server.url)
            ready += 1
            await start.wait()
            try:
                for _ in range(calls_each):
                    t = time.perf_counter()
                    try:
                        error = await _call(c, server.url, server.tool, server.args)
                    except (httpx.HTTPError, ValueError) as e:
                        error = f"{type(e).__name__}: {str(e)[:160]}"
                    latencies.append(time.perf_counter() - t)
                    if error is not None:
                        errors.append(error)
            finally:
                calls_done.release()
            await timed.wait()
            await c.delete(server.url)  # free its place: the session quota counts open sessions

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    while ready < clients:  # every client holds its session before the first call
        if any(t.done() for t in tasks):
            await asyncio.gather(*tasks)  # a client failed to open its session: raise it
        await asyncio.sleep(0.05)
    meter = CpuMeter(server.proc.pid)
    t0 = time.perf_counter()
    start.set()
    for _ in range(clients):
        await calls_done.acquire()
    elapsed = time.perf_counter() - t0
    cpu = meter.per_call(len(latencies))
    timed.set()
    await asyncio.gather(*tasks)
    return {"server": server.label, "clients": clients, "latencies": latencies,
            "elapsed": elapsed, "errors": errors, "cpu": cpu}


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of one server at one client count: calls / total wall time."""
    latencies = sorted(x for r in runs for x in r["latencies"])
    elapsed = sum(r["elapsed"] for r in runs)
    return {"server": runs[0]["server"], "clients": runs[0]["clients"], "rounds": len(runs),
            "calls": len(latencies), "rate": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies
            else float("nan"),
            "errors": sum(len(r["errors"]) for r in runs),
            "first_error": next((r["errors"][0] for r in runs if r["errors"]), ""),
            "cpu_us": [sum(r["cpu"][i] for r in runs) / len(runs) * 1e6 for i in range(3)]}


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
        HttpServer(GATEWAY_LABEL, [GATEWAY_PYTHON, "-m", "mcp_gateway", "serve", "--config", str(config)],
                   f"http://127.0.0.1:{gw_port}/mcp", READ_FILE_TOOL, {"path": ws.file.name}, env, ws.root),
        HttpServer("mcp 2.3.0 MCPServer (stock streamable HTTP)",
                   [GATEWAY_PYTHON, str(stock), str(ws.data), str(peer_port)],
                   f"http://127.0.0.1:{peer_port}/mcp", "read_file", {"path": ws.file.name}, env, ws.root),
    ]


async def run_rows(calls_total: int = 512, rounds: int = 1) -> list[dict[str, Any]]:
    """Rounds alternate gateway and peer at each client count, so both see the same machine load."""
    ws = Workspace()
    servers = _servers(ws)
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    try:
        for s in servers:
            await s.wait_ready()
        for _ in range(rounds):
            for n in CLIENTS:
                for s in servers:
                    runs.setdefault((n, s.label), []).append(await load(s, n, max(4, calls_total // n)))
    finally:
        for s in servers:
            s.stop()
        ws.cleanup()
    return [pooled(r) for r in runs.values()]


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The goal of issue 16: the gateway's HTTP calls/s at least the stock server's, per client count."""
    out = []
    for n in CLIENTS:
        gw = next((r for r in rows if r["clients"] == n and r["server"] == GATEWAY_LABEL), None)
        peer = next((r for r in rows if r["clients"] == n and r["server"] != GATEWAY_LABEL), None)
        if gw and peer and peer["rate"]:
            out.append({"target": f"HTTP: gateway calls/s ≥ stock SDK server's, {n} client(s)",
                        "ok": gw["rate"] >= peer["rate"],
                        "evidence": f"{gw['rate']:.0f} vs {peer['rate']:.0f} calls/s "
                                    f"({gw['rate'] / peer['rate']:.2f}x)"})
    return out


def render(rows: list[dict[str, Any]], m: dict[str, str]) -> str:
    out = [f"### HTTP: concurrent clients, one session each ({READ_FILE_TOOL} of 1 KiB)\n",
           f"Run of {m.get('date', '?')} on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load average "
           f"{m.get('load average at start (1/5/15 min)', '?')} at start. "
           "Gateway: default config, 2 filesystem workers, every sandbox layer on, an audit line per "
           "call. Peer: the SDK's stock server, in-process, no sandbox, no audit.\n",
           "| clients | server | calls (rounds) | calls/s | p50 ms | p99 ms | CPU µs/call: server / its children "
           "/ client | errors | first error |",
           "|---:|---|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        out.append(f"| {r['clients']} | {r['server']} | {r['calls']} ({r['rounds']}) | {r['rate']:.0f} | "
                   f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {cpu_split(r.get('cpu_us'))} | {r['errors']} | "
                   f"{r.get('first_error', '').replace('|', '/')} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.http_row", description=__doc__)
    ap.add_argument("--calls", type=int, default=512, help="calls per server per client count and round")
    ap.add_argument("--rounds", type=int, default=1)
    opts = ap.parse_args(argv)
    m = machine(GATEWAY_PYTHON)
    rows = asyncio.run(run_rows(opts.calls, opts.rounds))
    print(render(rows, m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
