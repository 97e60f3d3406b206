"""Peak RSS the supervisor adds to answer one large fs.readFile (docs/BENCHMARKS.md, "Large results").

    .venv/bin/python -m bench.large_result [--mib 10]

A real gateway over stdio: after `initialize` and one small call, the supervisor's VmHWM
(its peak RSS so far) is the baseline; then one read of a file of N MiB, on the fast path (a
plain tools/call) and, in a fresh gateway, on the SDK path (the same call with `_meta`). The
figure is VmHWM after minus before: what the supervisor held at its peak for that answer.
fs.readFile's max_bytes is raised so the answer (the content twice, as text and structured)
fits.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.targets import READ_FILE_TOOL
from tests.support.gateway_process import RawGateway, fs_config

MIB = 1024 * 1024


def _hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


# Text whose characters take 1 to 4 bytes in UTF-8 (Python holds such a string at 4 bytes a character).
UNICODE_CHUNK = "aé€😀".encode() * 1000


def measure(mib: int, sdk_path: bool, unicode: bool = False) -> tuple[float, int]:
    d = Path(tempfile.mkdtemp(prefix="mcp-gw-large-"))
    d.chmod(0o755)
    config = fs_config(d, policy={"per_tool": {READ_FILE_TOOL: {"max_bytes": 4 * mib * MIB}}})
    chunk = UNICODE_CHUNK if unicode else b"0123456789abcdef"
    (d / "data" / "big.txt").write_bytes(chunk * (mib * MIB // len(chunk)))
    gw = RawGateway(config)
    try:
        gw.initialize()
        gw.wait_ready()
        extra = {"_meta": {}} if sdk_path else {}
        assert not gw.request("tools/call", {"name": READ_FILE_TOOL, "arguments": {"path": "hello.txt"}, **extra})[
            "result"]["isError"]
        before = _hwm_kib(gw.proc.pid)
        reply = gw.request("tools/call", {"name": READ_FILE_TOOL, "arguments": {"path": "big.txt"}, **extra},
                           timeout=60)
        assert reply["result"]["isError"] is False, reply["result"]["content"][0]["text"][:300]
        after = _hwm_kib(gw.proc.pid)
        return (after - before) / 1024, reply["result"]["structuredContent"]["size"]
    finally:
        gw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=10)
    args = parser.parse_args()
    for text, unicode in (("ASCII", False), ("mixed UTF-8", True)):
        for name, sdk in (("stdio fast path", False), ("stdio SDK path", True)):
            added, size = measure(args.mib, sdk, unicode)
            print(f"{name}, {text}: a {size / MIB:.1f} MiB read added {added:.0f} MiB to the supervisor's peak "
                  f"RSS ({added / (size / MIB):.1f}x the file)")


if __name__ == "__main__":
    main()
