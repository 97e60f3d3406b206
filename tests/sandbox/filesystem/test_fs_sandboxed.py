"""The connector inside the real worker sandbox (Landlock + seccomp + prctl + rlimits).

A forked child applies mcp_gateway.sandbox.apply() to the connector's own profile (the uid
drop is left off so the child can still reach pytest's tmp_path), then start()s and calls,
exactly as a worker does, and reports back over a pipe. This proves the design holds under
Landlock and the seccomp allowlist: O_PATH opens and openat(fd, "..") for the ancestry walk,
openat2 not refused, nothing lazily imported after warm().
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from mcp_gateway.config import ConnectorsSettings, GatewayConfig, SandboxLayers, SandboxSettings
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.connectors.filesystem.tools import ListDirArgs, ReadFileArgs
from mcp_gateway.connectors.filesystem.worker import FilesystemConnector
from mcp_gateway.ipc.errors import Refusal
from tests.support.fs_tree import LIMITS, Tree

sandbox = pytest.importorskip("mcp_gateway.sandbox")


def _run_child(conn: FilesystemConnector, cfg: GatewayConfig, calls: list, probe_outside: str) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(r)
        out: dict = {"calls": []}
        try:
            out["layers"] = sandbox.apply(conn.sandbox_profile(), cfg.sandbox)
            try:
                with open(probe_outside, "rb") as f:
                    out["outside_open"] = f.read().decode()
            except OSError as e:
                out["outside_open"] = f"refused: {e.errno}"
            conn.start()
            out["mechanism"] = conn.mechanism
            for tool, args in calls:
                a = ReadFileArgs(**args) if tool == "readFile" else ListDirArgs(**args)
                try:
                    res = conn.call(tool, a, LIMITS)
                    out["calls"].append(["ok", res])
                except Refusal as e:
                    out["calls"].append([e.code, e.reason])
        except BaseException as e:  # noqa: BLE001
            out["crash"] = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"worker died: status {status}"
    return json.loads(b"".join(chunks))


@pytest.mark.skipif(sys.platform != "linux", reason="Linux sandbox")
@pytest.mark.parametrize("walk", [False, True], ids=["openat2", "walk"])
def test_connector_under_real_sandbox(tree: Tree, walk: bool) -> None:
    os.symlink("secrets/key", tree.root / "innocent")
    os.symlink(str(tree.outside), tree.root / "out_abs")
    os.symlink("sub", tree.root / "sub_link")
    layers = SandboxLayers(user="off", prctl="best_effort", rlimits="best_effort",
                           landlock="best_effort", seccomp="best_effort")
    cfg = GatewayConfig(
        connectors=ConnectorsSettings(filesystem=FilesystemSettings(
            enabled=True, allowed_paths=[tree.root], denied_paths=[tree.secrets, tree.private])),
        sandbox=SandboxSettings(layers=layers),
    )
    conn = FilesystemConnector(cfg)
    conn.force_walk = walk
    conn.warm()
    calls = [
        ("readFile", {"path": "hello.txt"}),
        ("readFile", {"path": "sub_link/inner.txt"}),
        ("readFile", {"path": "hello.txt", "encoding": "base64"}),
        ("readFile", {"path": "innocent"}),
        ("readFile", {"path": "out_abs/secret.txt"}),
        ("readFile", {"path": "../outside/secret.txt"}),
        ("readFile", {"path": "secrets/key"}),
        ("readFile", {"path": "nope"}),
        ("readFile", {"path": "\u00e9\u00e8"}),
        ("readFile", {"path": "hello.txt", "offset": 1, "length": 2}),
        ("listDir", {"path": "."}),
        ("listDir", {"path": "sub"}),
    ]
    out = _run_child(conn, cfg, calls, str(tree.outside / "secret.txt"))
    assert "crash" not in out, out
    layers_applied = out["layers"]
    print(layers_applied, out["mechanism"], out["outside_open"])
    results = out["calls"]
    assert results[0] == ["ok", {"path": f"{tree.root}/hello.txt", "size": 5, "offset": 0, "length": 5,
                                 "encoding": "utf-8", "content": "hello"}]
    if walk:
        assert results[1][0] == "SECURITY_ERROR"  # the walk follows no symlink at all
    else:
        assert results[1][0] == "ok" and results[1][1]["content"] == "inner"
    assert results[2][0] == "ok" and results[2][1]["content"] == "aGVsbG8="
    assert results[3][0] == "SECURITY_ERROR" and ("symlink" if walk else "denied") in results[3][1]
    assert results[4][0] == "SECURITY_ERROR"
    assert results[5][0] == "SECURITY_ERROR"
    assert results[6][0] == "SECURITY_ERROR"
    assert results[7][0] == "NOT_FOUND"
    assert results[8][0] == "NOT_FOUND"
    assert results[9][1]["content"] == "el"
    assert "hello.txt" in [e["name"] for e in results[10][1]["entries"]]
    assert [e["name"] for e in results[11][1]["entries"]] == ["deeper", "inner.txt"]
    if layers_applied.get("landlock", "").startswith(("unavailable", "off")):
        pytest.skip(f"Landlock not active here ({layers_applied['landlock']}); the rest passed")
    assert out["outside_open"].startswith("refused"), out["outside_open"]
    if not layers_applied.get("seccomp", "").startswith(("unavailable", "off")):
        expected = "nofollow-walk" if walk else "openat2"
        assert out["mechanism"] == expected, "seccomp must allow openat2 for the filesystem worker"
