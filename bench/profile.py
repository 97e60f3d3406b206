"""Profile the gateway's per-call path: `python -m bench.profile [--seconds S] [--window W] [--tool fs|db|fetch]`.

Runs the gateway under a steady pipelined load and samples it with py-spy (installed into
bench/.peers/tools on first use), supervisor and workers alike (`--subprocesses`). Writes
collapsed stacks and a flame graph to bench/results/, and prints the top self-time and
inclusive-time frames per process role.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import peers
from bench.fixtures import QUERY, Database, PageServer, Workspace
from bench.targets import FETCH_TOOL, QUERY_TOOL, READ_FILE_TOOL, gateway_config, gateway_server

RESULTS = Path(__file__).resolve().parent / "results"


def summarize(collapsed: Path, top: int = 25) -> str:
    self_t: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    per_proc: collections.Counter[str] = collections.Counter()
    total = 0
    lines = [ln.rpartition(" ") for ln in collapsed.read_text().splitlines()]
    for stack, _, n in lines:
        if not stack:
            continue
        k = int(n)
        # py-spy nests a child's stacks under its parent's "process" frame: the gateway's own
        # stacks have one, the zygotes' and workers' more.
        frames = [f for f in stack.split(";")]
        nprocs = sum(f.startswith("process ") for f in frames)
        role = "supervisor" if nprocs <= 1 else "worker"
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        per_proc[role] += k
        total += k
        self_t[role][frames[-1]] += k
        for f in set(frames):
            incl[role][f] += k
    out = [f"on-CPU samples: {total}; " + ", ".join(f"{r} {v / total:.0%}" for r, v in per_proc.most_common())]
    for role, n in per_proc.most_common():
        out.append(f"\n[{role}] top self time (% of the {role}'s {n} samples):")
        out += [f"  {v / n:6.1%}  {f}" for f, v in self_t[role].most_common(top)]
        out.append(f"\n[{role}] top inclusive time:")
        out += [f"  {v / n:6.1%}  {f}" for f, v in incl[role].most_common(top * 2) if not f.startswith("process ")]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--tool", choices=("fs", "db", "fetch"), default="fs")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    opts = ap.parse_args()
    spy = peers.py_spy()
    if spy is None:
        return 1
    ws = Workspace()
    page = db = None
    try:
        if opts.tool == "fs":
            cfg = gateway_config(ws.root, "profile", fs_root=ws.data)
            tool, args, env = READ_FILE_TOOL, {"path": str(ws.file)}, None
        elif opts.tool == "db":
            db = Database.start()
            cfg = gateway_config(ws.root, "profile", postgres=db.gateway_settings())
            tool, args, env = QUERY_TOOL, {"sql": QUERY}, {"POSTGRES_PASSWORD": db.password}
        else:
            page = PageServer()
            cfg = gateway_config(ws.root, "profile", http_port=page.port)
            tool, args, env = FETCH_TOOL, {"url": page.url}, None
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"profile-{opts.tool}-w{opts.window}"
        with gateway_server(cfg, env=env) as gw:
            gw.start(sample_rss=False)
            for _ in range(200):
                gw.call_tool(tool, args)
            stop = threading.Event()
            count = [0]

            def load() -> None:
                while not stop.is_set():
                    r = gw.load(500, opts.window, tool, args)
                    count[0] += r.calls

            t = threading.Thread(target=load, daemon=True)
            t.start()
            time.sleep(0.5)
            cmd = [spy, "record", "-p", str(gw.pid), "--subprocesses", "-r", str(opts.rate), "-d",
                   str(opts.seconds), "-f", "raw", "-o", f"{out}.txt", "--nonblocking"]
            subprocess.run(cmd, check=False, capture_output=True)
            subprocess.run([*cmd[:-3], "-f", "flamegraph", "-o", f"{out}.svg", "--nonblocking", "-d", "5"],
                           check=False, capture_output=True)
            stop.set()
            t.join(timeout=60)
        print(f"calls during profile: {count[0]}; stacks: {out}.txt, flame graph: {out}.svg")
        print(summarize(Path(f"{out}.txt")))
    finally:
        if page:
            page.close()
        if db:
            db.stop()
        ws.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
