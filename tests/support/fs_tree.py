"""The filesystem connector tests' tree (a root, secrets and an outside) and its fixtures.

Everything lives under pytest's tmp_path, so the tests run the same as root and as an
unprivileged user. The fixtures (tree, mode, fs) are made visible by the conftest.py of each
folder that uses them (tests/unit/filesystem, tests/sandbox/filesystem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcp_gateway.config import ConnectorsSettings, GatewayConfig
from mcp_gateway.connectors.filesystem.openat2 import openat2_available
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.connectors.filesystem.tools import ListDirArgs, ReadFileArgs
from mcp_gateway.connectors.filesystem.worker import FilesystemConnector
from mcp_gateway.ipc.errors import Refusal
from mcp_gateway.workers.connector import CallLimits

MiB = 1024 * 1024
LIMITS = CallLimits(timeout_ms=5000, max_bytes=1 * MiB)

MODES = ["openat2", "walk"]


@dataclass
class Tree:
    base: Path
    root: Path  # the allowed path
    secrets: Path  # denied directory, beneath root
    private: Path  # denied file, beneath root
    outside: Path  # a sibling of root, never allowed
    evil: Path  # root-evil: a sibling sharing root's name as a string prefix


def build_tree(base: Path) -> Tree:
    base = base.resolve()
    root = base / "root"
    t = Tree(base, root, root / "secrets", root / "private.key", base / "outside", base / "root-evil")
    for d in (root, root / "sub" / "deeper", t.secrets, t.outside, t.evil):
        d.mkdir(parents=True, exist_ok=True)
    (root / "hello.txt").write_text("hello")
    (root / "sub" / "inner.txt").write_text("inner")
    (root / "sub" / "deeper" / "deep.txt").write_text("deep")
    (t.secrets / "key").write_text("TOPSECRET")
    t.private.write_text("PRIVATE")
    (t.outside / "secret.txt").write_text("OUTSIDE-SECRET")
    (t.evil / "secret.txt").write_text("EVIL-SECRET")
    return t


def make_config(roots: list[Path], denied: list[Path]) -> GatewayConfig:
    fs = FilesystemSettings(enabled=True, allowed_paths=roots, denied_paths=denied)
    return GatewayConfig(connectors=ConnectorsSettings(filesystem=fs))


def make_connector(roots: list[Path], denied: list[Path], mode: str = "openat2") -> FilesystemConnector:
    conn = FilesystemConnector(make_config(roots, denied))
    conn.force_walk = mode == "walk"
    conn.warm()
    conn.start()
    assert conn.mechanism == ("openat2" if mode == "openat2" else "nofollow-walk")
    return conn


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return build_tree(tmp_path / "t")


@pytest.fixture(params=MODES)
def mode(request) -> str:
    if request.param == "openat2" and not openat2_available():
        pytest.skip("openat2 is not available on this kernel")
    return request.param


@pytest.fixture
def fs(tree: Tree, mode: str):
    conn = make_connector([tree.root], [tree.secrets, tree.private], mode)
    yield conn
    conn.close()


def read(conn: FilesystemConnector, path: str, limits: CallLimits = LIMITS, **kw) -> dict:
    return conn.call("readFile", ReadFileArgs(path=path, **kw), limits)


def listdir(conn: FilesystemConnector, path: str, limits: CallLimits = LIMITS) -> dict:
    return conn.call("listDir", ListDirArgs(path=path), limits)


def refused(fn, *args, **kw) -> Refusal:
    """Run a call that must fail; return its Refusal."""
    try:
        result = fn(*args, **kw)
    except Refusal as e:
        return e
    raise AssertionError(f"expected a Refusal, got a result: {result!r}")


def naive_read(root: Path, path: str, denied: tuple[Path, ...] = ()) -> bytes:
    """What a careless connector does: string-prefix checks, then open() following everything.

    The attack tests run each hostile input through this first, to prove the input really
    leaks data without the guard (so the guard, not the test setup, is what stops it).
    """
    full = path if path.startswith("/") else os.path.join(root, path)
    if not full.startswith(str(root)):
        raise PermissionError("outside root")
    for d in denied:
        if full.startswith(str(d)):
            raise PermissionError("denied")
    with open(full, "rb") as f:
        return f.read()
