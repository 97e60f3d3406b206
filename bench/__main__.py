"""`python -m bench [--quick] [--only fs,db,fetch] [--calls N] [--rounds R] [--no-doc]`,
or `python -m bench --transports [--rounds R]`: issue 16's goal in one run, side by side: stdio
(fs.readFile vs the Node filesystem server, windows 1 and 16) and Streamable HTTP (vs the SDK's
stock server, 1/8/32/128 clients), every sandbox layer on."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import peers
from bench.driver import LoadResult, StdioServer, reply_error, tree_rss
from bench.fixtures import (
    FILE_MARKER,
    PAGE_MARKER,
    QUERY,
    ROW_MARKER,
    Database,
    PageServer,
    Workspace,
)
from bench.report import TRANSPORTS_BEGIN, TRANSPORTS_END, machine, render, write_doc
from bench.targets import (
    FETCH_TOOL,
    FILESYSTEM,
    GATEWAY_PYTHON,
    QUERY_TOOL,
    READ_FILE_TOOL,
    REPO,
    base_env,
    gateway_config,
    gateway_server,
)
from tests.support.gateway_process import children

WINDOWS = (1, 16)
WARMUP = 50


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass
class Target:
    label: str
    make: Callable[[], StdioServer] | None
    tool: str
    args: dict[str, Any]
    error: str | None = None
    server: StdioServer | None = None
    results: dict[int, LoadResult] = field(default_factory=dict)

    def start(self, marker: str) -> None:
        if self.make is None:
            return
        try:
            self.server = self.make()
            self.server.start()
            for i in range(WARMUP):
                reply, _ = self.server.call_tool(self.tool, self.args)
                err = reply_error(reply)
                if err:
                    raise RuntimeError(f"warm-up call failed: {err}")
                if i == 0 and marker not in json.dumps(reply):
                    raise RuntimeError("warm-up call returned unexpected content")
        except Exception as e:  # noqa: BLE001 - reported in the table
            tail = self.server.stderr_tail(300) if self.server else ""
            self.error = f"failed to start: {str(e)[:200]}" + (f" ({tail})" if tail and tail not in str(e) else "")
            log(f"{self.label}: {self.error}")
            self.stop()

    def stop(self) -> None:
        if self.server:
            self.server.close()
            self.server = None

    def run(self, n: int, window: int) -> None:
        if self.server is None:
            return
        res = self.server.load(n, window, self.tool, self.args)
        if res.aborted:
            log(f"{self.label} window {window}: aborted: {res.aborted}")
        self.results.setdefault(window, LoadResult()).merge(res)
        log(f"{self.label:<40} w={window:<2} {res.rate:8.0f} calls/s  p50 {res.p50_ms:7.2f} ms  "
            f"p99 {res.p99_ms:7.2f} ms  rss {res.peak_rss / 2**20:5.0f} MiB  errors {res.errors}")


@dataclass
class Item:
    key: str
    title: str
    calls: int
    marker: str
    gateway: Target
    peer: Target


@dataclass
class _Replacements:
    """Kill → served times of one replacement scenario, and the calls that failed in between."""

    ms: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    codes: set[str] = field(default_factory=set)
    note: str = ""

    def add(self, ms: float, failed: int) -> None:
        self.ms.append(ms)
        self.failed.append(failed)

    def row(self, scenario: str, what: str, note: str) -> dict[str, Any]:
        codes = f" ({', '.join(sorted(self.codes))})" if self.codes else ""
        return {"scenario": scenario, "what": what, "runs": len(self.ms),
                "median_ms": statistics.median(self.ms) if self.ms else None,
                "max_ms": max(self.ms) if self.ms else None,
                "failed": f"{min(self.failed)}–{max(self.failed)} per kill{codes}" if self.failed else "—",
                "note": note + self.note}


class Bench:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.ws = Workspace()
        self.page: PageServer | None = None
        self.db: Database | None = None
        self.db_error: str | None = None
        self.r: dict[str, Any] = {"argv": sys.argv[1:], "load": [], "cold": [], "replace": [], "sandbox": [],
                                  "default_memory": {}, "targets": []}
        self.peer_defs: dict[str, peers.Peer] = {}

    # --- set-up -------------------------------------------------------------------------

    def setup(self) -> list[Item]:
        only = self.opts.only
        if "fetch" in only:
            self.page = PageServer()
        if "db" in only:
            try:
                log("starting a throwaway PostgreSQL cluster")
                self.db = Database.start()
            except Exception as e:  # noqa: BLE001
                self.db_error = f"PostgreSQL cluster unavailable: {str(e)[:200]}"
                log(self.db_error)
        items: list[Item] = []
        scale = self.opts.calls
        if "fs" in only:
            peer = self.peer_defs["fs"] = peers.node_filesystem()
            cfg = gateway_config(self.ws.root, "fs", fs_root=self.ws.data)
            items.append(Item(
                "fs", "read a 1 KiB file", scale or (600 if self.opts.quick else 3000), FILE_MARKER,
                Target(f"gateway {READ_FILE_TOOL}", lambda c=cfg: gateway_server(c), READ_FILE_TOOL,
                       {"path": str(self.ws.file)}),
                self._peer_target(peer, "read_text_file", {"path": str(self.ws.file)},
                                  lambda p=peer: StdioServer(p.name, [*p.argv, str(self.ws.data)], env=base_env()))))
        if "db" in only:
            peer = self.peer_defs["db"] = peers.postgres_mcp()
            if self.db is not None:
                cfg = gateway_config(self.ws.root, "db", postgres=self.db.gateway_settings())
                pw = self.db.password
                gw = Target(f"gateway {QUERY_TOOL}",
                            lambda c=cfg, pw=pw: gateway_server(c, env={"POSTGRES_PASSWORD": pw}),
                            QUERY_TOOL, {"sql": QUERY})
                uri = self.db.uri()
                pt = self._peer_target(
                    peer, "execute_sql", {"sql": QUERY},
                    lambda p=peer, u=uri: StdioServer(p.name, p.argv, env=base_env({"DATABASE_URI": u})))
            else:
                gw = Target(f"gateway {QUERY_TOOL}", None, QUERY_TOOL, {}, error=self.db_error)
                pt = Target(peer.name, None, "execute_sql", {}, error=self.db_error)
            items.append(Item("db", "SELECT 100 rows", scale or (100 if self.opts.quick else 300), ROW_MARKER, gw, pt))
        if "fetch" in only:
            assert self.page is not None
            peer = self.peer_defs["fetch"] = peers.fetch_server()
            cfg = gateway_config(self.ws.root, "fetch", http_port=self.page.port)
            url = self.page.url
            items.append(Item(
                "fetch", "GET a 4 KiB page (loopback)", scale or (60 if self.opts.quick else 200), PAGE_MARKER,
                Target(f"gateway {FETCH_TOOL}", lambda c=cfg: gateway_server(c), FETCH_TOOL, {"url": url}),
                self._peer_target(peer, "fetch", {"url": url, "raw": True, "max_length": 100000},
                                  lambda p=peer: StdioServer(p.name, p.argv, env=base_env()))))
        return items

    @staticmethod
    def _peer_target(peer: peers.Peer, tool: str, args: dict[str, Any],
                     make: Callable[[], StdioServer]) -> Target:
        if peer.argv is None:
            return Target(peer.name, None, tool, args, error=peer.error)
        return Target(peer.name, make, tool, args)

    # --- work items ---------------------------------------------------------------------

    def run_item(self, item: Item) -> None:
        log(f"== {item.key}: {item.title}: {self.opts.rounds} rounds x {item.calls} calls per window")
        for t in (item.gateway, item.peer):
            t.start(item.marker)
        try:
            for _ in range(self.opts.rounds):
                for w in WINDOWS:
                    for t in (item.gateway, item.peer):
                        t.run(item.calls, w)
        finally:
            for t in (item.gateway, item.peer):
                t.stop()
        for w in WINDOWS:
            for t in (item.gateway, item.peer):
                res = t.results.get(w)
                row: dict[str, Any] = {"item": item.title, "window": w, "server": t.label}
                if t.error or res is None:
                    row["note"] = t.error or "not run"
                else:
                    row.update(rate=res.rate, p50_ms=res.p50_ms, p99_ms=res.p99_ms, peak_rss=res.peak_rss,
                               cpu_us=res.cpu_us,
                               errors=res.errors, calls=res.calls, note=(res.first_error or res.aborted or "")[:120])
                self.r["load"].append(row)
            g, p = item.gateway.results.get(w), item.peer.results.get(w)
            if g and p and g.calls and p.calls:
                self.r["targets"].append({
                    "target": f"{item.key}: gateway calls/s ≥ peer's, window {w}", "ok": g.rate >= p.rate,
                    "evidence": f"{g.rate:.0f} vs {p.rate:.0f} calls/s"})
                self.r["targets"].append({
                    "target": f"{item.key}: gateway p99 ≤ peer's, window {w}", "ok": g.p99_ms <= p.p99_ms,
                    "evidence": f"{g.p99_ms:.2f} vs {p.p99_ms:.2f} ms"})
            else:
                self.r["targets"].append({"target": f"{item.key}: gateway vs peer, window {w}", "ok": None,
                                          "evidence": item.peer.error or item.gateway.error or "not run"})

    # --- cold start ---------------------------------------------------------------------

    def cold_start(self, items: list[Item]) -> None:
        runs = 3 if self.opts.quick else 5
        log(f"== cold start: {runs} runs per server, interleaved")
        samples: dict[str, tuple[list[float], list[float], str]] = {}
        order = [t for it in items for t in (it.gateway, it.peer)]
        for _ in range(runs):
            for t in order:
                init_l, first_l, note = samples.setdefault(t.label, ([], [], ""))
                if t.make is None or t.error:
                    samples[t.label] = (init_l, first_l, t.error or "not available")
                    continue
                s = t.make()
                try:
                    t0 = time.perf_counter()
                    init_l.append(s.start(sample_rss=False))
                    reply, _ = s.call_tool(t.tool, t.args)
                    if reply_error(reply) is None:
                        first_l.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001
                    samples[t.label] = (init_l, first_l, str(e)[:120])
                finally:
                    s.close()
        for label, (init_l, first_l, note) in samples.items():
            self.r["cold"].append({"server": label, "runs": len(init_l),
                                   "init_ms": statistics.median(init_l) * 1000 if init_l else None,
                                   "first_call_ms": statistics.median(first_l) * 1000 if first_l else None,
                                   "note": note})
        gw = [c for c in self.r["cold"] if c["server"].startswith("gateway") and c["init_ms"]]
        node = [c for c in self.r["cold"] if c["server"].startswith(peers.NODE_FS_PACKAGE) and c["init_ms"]]
        if gw and node:
            worst = max(gw, key=lambda c: c["init_ms"])
            self.r["targets"].append({
                "target": "cold start no slower than the Node filesystem server",
                "ok": worst["init_ms"] <= node[0]["init_ms"],
                "evidence": f"gateway {worst['init_ms']:.0f} ms (slowest config, {worst['server']}) vs "
                            f"{node[0]['init_ms']:.0f} ms to `initialize`"})

    # --- worker replacement -------------------------------------------------------------

    def replacement(self) -> None:
        runs = 5 if self.opts.quick else 15
        log(f"== worker replacement: {runs} kills")
        if self.page is None:
            self.page = PageServer()
        cfg = gateway_config(self.ws.root, "replace", fs_root=self.ws.data, http_port=self.page.port, workers=1,
                             per_tool={FETCH_TOOL: {"timeout_ms": 200}})
        fs_args = {"path": str(self.ws.file)}
        kills, timeouts = _Replacements(), _Replacements()
        base_ms: list[float] = []
        with gateway_server(cfg) as gw:
            try:
                gw.start()
                for _ in range(20):
                    gw.call_tool(READ_FILE_TOOL, fs_args)
                for _ in range(20):
                    _, t = gw.call_tool(READ_FILE_TOOL, fs_args)
                    base_ms.append(t * 1000)
                self._kill_idle_worker(gw, runs, fs_args, kills)
                self._time_out_worker(gw, runs, timeouts)
            except Exception as e:  # noqa: BLE001
                kills.note += f" error: {str(e)[:150]}"
                log(f"replacement: {e}")
        base = statistics.median(base_ms) if base_ms else None
        self.r["replace"].append(kills.row(
            "SIGKILL of the idle fs worker (from outside)",
            f"kill → next {READ_FILE_TOOL} result (includes the call that finds the worker dead)",
            (f"baseline call {base:.2f} ms" if base else "")))
        self.r["replace"].append(timeouts.row(
            f"{FETCH_TOOL} past `timeout_ms: 200` (gateway kills the worker)",
            f"TIMEOUT result received → next {FETCH_TOOL} result", ""))
        if kills.ms:
            k, t = statistics.median(kills.ms), statistics.median(timeouts.ms) if timeouts.ms else None
            self.r["targets"].append({
                "target": "worker replaced within 20 ms of a kill",
                "ok": k <= 20 and (t is None or t <= 20),
                "evidence": f"median kill→served {k:.1f} ms (max {max(kills.ms):.1f})"
                            + (f"; timeout→served {t:.1f} ms" if t is not None else "")})

    def _kill_idle_worker(self, gw: StdioServer, runs: int, fs_args: dict[str, Any], out: _Replacements) -> None:
        """(a) SIGKILL the idle filesystem worker from outside; time kill → next good result."""
        for _ in range(runs):
            fs_worker = self._fs_worker(gw.pid)
            if fs_worker is None:
                out.note = "could not identify the filesystem worker"
                return
            time.sleep(0.05)
            t0 = time.perf_counter()
            os.kill(fs_worker, signal.SIGKILL)
            failed = 0
            while (err := reply_error(gw.call_tool(READ_FILE_TOOL, fs_args)[0])) is not None:
                failed += 1
                out.codes.add(err.split(":")[1].strip() if ":" in err else err)
                if failed > 50:
                    raise RuntimeError(f"no call served after a kill: {err}")
            out.add((time.perf_counter() - t0) * 1000, failed)

    def _time_out_worker(self, gw: StdioServer, runs: int, out: _Replacements) -> None:
        """(b) a call past its timeout: the gateway kills the worker itself; time TIMEOUT → next result."""
        assert self.page is not None
        slow = self.page.url.replace("/page", "/slow")
        for _ in range(runs):
            err = reply_error(gw.call_tool(FETCH_TOOL, {"url": slow})[0]) or ""
            if "TIMEOUT" not in err:
                out.note += f" slow call did not time out ({err[:60]})"
                return
            t0 = time.perf_counter()
            failed = 0
            while reply_error(gw.call_tool(FETCH_TOOL, {"url": self.page.url})[0]) is not None:
                failed += 1
                if failed > 50:
                    raise RuntimeError("no fetch served after a timeout kill")
            out.add((time.perf_counter() - t0) * 1000, failed)

    @staticmethod
    def _fs_worker(gateway_pid: int) -> int | None:
        """The only worker: a grandchild of the gateway (gateway → zygote → worker)."""
        zygotes = children(gateway_pid)
        for z in zygotes:
            try:
                cmd = Path(f"/proc/{z}/cmdline").read_bytes()
            except OSError:
                continue
            ws = children(z)
            if ws and (FILESYSTEM.encode() in cmd or len(zygotes) == 1):
                return ws[0]
        # Zygotes that don't name their connector: the first zygote (filesystem starts first).
        for z in zygotes:
            ws = children(z)
            if ws:
                return ws[0]
        return None

    # --- sandbox cost -------------------------------------------------------------------

    def sandbox_cost(self) -> None:
        n = self.opts.calls or (600 if self.opts.quick else 3000)
        log(f"== sandbox cost: {self.opts.rounds} rounds x {n} {READ_FILE_TOOL} calls, layers on vs off")
        on_cfg = gateway_config(self.ws.root, "layers-on", fs_root=self.ws.data)
        off_cfg = gateway_config(self.ws.root, "layers-off", fs_root=self.ws.data, layers_off=True)
        args = {"path": str(self.ws.file)}
        on = Target("gateway, all layers", lambda: gateway_server(on_cfg), READ_FILE_TOOL, args)
        off = Target("gateway, layers off", lambda: gateway_server(off_cfg), READ_FILE_TOOL, args)
        on.start(FILE_MARKER)
        off.start(FILE_MARKER)
        try:
            for _ in range(self.opts.rounds):
                for w in WINDOWS:
                    on.run(n, w)
                    off.run(n, w)
        finally:
            on.stop()
            off.stop()
        worst = None
        for w in WINDOWS:
            a, b = on.results.get(w), off.results.get(w)
            if a and b and a.calls and b.calls:
                cost = (b.rate - a.rate) / b.rate * 100
                worst = cost if worst is None else max(worst, cost)
                self.r["sandbox"].append({"window": w, "on": a.rate, "off": b.rate, "cost_pct": cost,
                                          "p50_on": a.p50_ms, "p50_off": b.p50_ms, "note": ""})
            else:
                self.r["sandbox"].append({"window": w, "note": on.error or off.error or "not run"})
        if worst is not None:
            self.r["targets"].append({"target": "sandbox cost < 10 %", "ok": worst < 10,
                                      "evidence": f"worst window: {worst:.1f} % fewer calls/s with every layer on"})

    # --- default config memory ----------------------------------------------------------

    def default_memory(self) -> None:
        log("== memory of the default config")
        d = self.ws.subdir("default")
        shutil.copy(REPO / "config.example.yaml", d / "config.yaml")
        (d / "config.yaml").chmod(0o644)
        (d / "data" / "secrets").mkdir(parents=True, exist_ok=True)
        (d / "data").chmod(0o755)
        f = d / "data" / "hello.txt"
        f.write_text("hello\n")
        f.chmod(0o644)
        out: dict[str, Any] = {}
        with gateway_server(d / "config.yaml") as gw:
            try:
                gw.start()
                for _ in range(20):
                    gw.call_tool(READ_FILE_TOOL, {"path": "hello.txt"})
                time.sleep(0.5)
                samples = []
                for _ in range(20):
                    samples.append(tree_rss(gw.pid))
                    time.sleep(0.05)
                from bench.driver import descendants

                out = {"processes": 1 + len(descendants(gw.pid)), "rss": int(statistics.median(samples)),
                       "peak": gw.sampler.take() if gw.sampler else None,
                       "note": "RSS summed over the gateway, zygote and workers (shared pages counted per process)"}
            except Exception as e:  # noqa: BLE001
                out = {"note": f"error: {str(e)[:200]}"}
        self.r["default_memory"] = out

    def http_rows(self) -> None:
        import asyncio

        from bench import http_row

        log("HTTP row: gateway vs the SDK's stock streamable-HTTP server, 1/8/32/128 clients")
        try:
            self.r["http"] = asyncio.run(http_row.run_rows(128 if self.opts.quick else 512, self.opts.rounds))
        except Exception as e:  # noqa: BLE001
            self.r["http_error"] = f"error: {str(e)[:200]}"
            return
        self.r["targets"] += http_row.targets(self.r["http"])

    # --- all ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.r["machine"] = machine(GATEWAY_PYTHON)
        try:
            items = self.setup()
            for item in items:
                self.run_item(item)
            if self.opts.transports:
                self.http_rows()
            elif not self.opts.skip_extras:
                self.cold_start(items)
                self.replacement()
                self.sandbox_cost()
                self.default_memory()
                self.http_rows()
        finally:
            self.close()
        return self.r

    def close(self) -> None:
        if self.page:
            self.page.close()
        if self.db:
            self.db.stop()
        self.ws.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer calls and rounds (a smoke run)")
    ap.add_argument("--only", default="fs,db,fetch", help="comma-separated work items: fs,db,fetch")
    ap.add_argument("--calls", type=int, default=0, help="calls per batch (default: per work item)")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds per window (default 3; quick 1)")
    ap.add_argument("--skip-extras", action="store_true", help="no cold start / replacement / sandbox / memory")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    ap.add_argument("--transports", action="store_true",
                    help=f"only the transport goal: stdio {READ_FILE_TOOL} vs Node, and HTTP vs the stock SDK server")
    opts = ap.parse_args(argv)
    if opts.transports:
        opts.only = "fs"
    opts.only = {x.strip() for x in opts.only.split(",") if x.strip()}
    bad = opts.only - {"fs", "db", "fetch"}
    if bad:
        ap.error(f"unknown work items: {', '.join(sorted(bad))}")
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    t0 = time.monotonic()
    try:
        result = Bench(opts).run()
    except Exception:
        traceback.print_exc()
        return 1
    section = render(result)
    print(section)
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"{stamp}.json").write_text(json.dumps(result, indent=1, default=str))
    (results_dir / f"{stamp}.md").write_text(section)
    if not opts.no_doc:
        write_doc(section, *((TRANSPORTS_BEGIN, TRANSPORTS_END) if opts.transports else ()))
        log("results written to docs/BENCHMARKS.md")
    log(f"done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
