"""A full disk under the audit log: every line stays whole, and the gateway recovers by itself.

The audit log lives on a small tmpfs mounted in a mount namespace of the gateway's own
(`unshare -m`); the test reaches that filesystem through /proc/<gateway>/root and fills it
while calls keep coming, then frees it and waits for /healthz without making a call.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import gateway_env
from tests.support.http_gateway import SERVING, McpHttp, http_config

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs in a new mount namespace needs root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed"),
]

MOUNT_THEN_SERVE = 'mount -t tmpfs -o size=256k,mode=0755 mcp-gw-audit "$0" && exec "$@"'


def _start(config: Path, audit_dir: Path) -> tuple[subprocess.Popen, Path, str]:
    stderr = config.with_name("gateway.stderr")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", MOUNT_THEN_SERVE, str(audit_dir),
         sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"), env=gateway_env(),
        cwd=str(config.parent))
    deadline = time.monotonic() + 30
    while not (m := SERVING.search(stderr.read_text(errors="replace"))):
        assert proc.poll() is None, stderr.read_text(errors="replace")
        assert time.monotonic() < deadline, stderr.read_text(errors="replace")
        time.sleep(0.05)
    return proc, stderr, m.group(1)


def _health(base: str) -> int:
    return httpx.get(base + "/healthz", timeout=5).status_code


def _wait_health(base: str, status: int, stderr: Path) -> None:
    deadline = time.monotonic() + 20
    while _health(base) != status:
        assert time.monotonic() < deadline, f"/healthz never turned {status}: {stderr.read_text()[-2000:]}"
        time.sleep(0.05)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses another byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 64, 1):
            while True:
                try:
                    if f.write(b"\0" * size) != size:
                        break
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    return filler


def test_a_full_disk_never_splits_a_record_and_health_recovers_without_a_call(gw_dir):
    audit_dir = gw_dir / "auditfs"
    audit_dir.mkdir()
    config = http_config(gw_dir, audit={"path": str(audit_dir / "audit.jsonl")})
    proc, stderr, url = _start(config, audit_dir)
    try:
        base = url.rsplit("/", 1)[0]
        _wait_health(base, 200, stderr)
        # The gateway's view of the directory: the tmpfs, not the empty directory we see.
        inside = Path(f"/proc/{proc.pid}/root") / audit_dir.relative_to("/")
        assert os.statvfs(inside).f_blocks * os.statvfs(inside).f_frsize <= 256 * 1024
        answered = []
        with McpHttp(url) as mcp:
            mcp.initialize()
            for n in range(60):
                if n == 15:
                    filler = _fill(inside)
                answered.append(mcp.call("fs.readFile", {"path": "hello.txt"}))
            refused = [r for r in answered if r["isError"]]
            assert refused, "the full disk refused no call"
            for r in refused:
                assert r["content"][0]["text"].startswith("INTERNAL_ERROR") and "audit" in r["content"][0]["text"]
                assert "hello world" not in json.dumps(r)
            assert _health(base) == 503
            filler.unlink()
            _wait_health(base, 200, stderr)  # no call in between: health re-probes by itself
            after = mcp.call("fs.readFile", {"path": "hello.txt"})
            assert not after["isError"], after
        data = (inside / "audit.jsonl").read_bytes()
        assert data.endswith(b"\n")
        lines = [json.loads(line) for line in data.splitlines()]  # every line parses
        allowed = [r for r in answered if not r["isError"]] + [after]
        assert len(lines) == len(allowed)
        assert all(x["tool"] == "fs.readFile" and x["decision"] == "allow" for x in lines)
        assert len({x["request_id"] for x in lines}) == len(lines)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
