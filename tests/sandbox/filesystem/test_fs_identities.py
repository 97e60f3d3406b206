"""Denied paths recognised however they are reached, with identities taken by the trusted side.

* Through the real gateway (both passes): an allowed root under a 0700 directory, a denied
  file under a 0700 directory hard-linked elsewhere in the root, a denied path nobody can
  identify (fail closed).
* In a mount namespace the test creates (root only: mounts need CAP_SYS_ADMIN): a bind mount
  of a denied directory's child, of a denied file, of the denied directory itself, and an
  overlay whose lower layer is the denied directory, inside the root.
* A denied directory renamed into the root after the worker started.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mcp_gateway.config import DEFAULT_UID_RANGE, ConnectorsSettings, GatewayConfig
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.ipc.errors import Refusal
from tests.support.fs_tree import Tree, listdir, read, refused
from tests.support.gateway_process import fs_config, gateway_env, raw_gateway
from tests.support.sandbox_probe import run_child

IS_ROOT = os.geteuid() == 0
SECRET = "TOP-SECRET-IDENTITY"  # noqa: S105 - file content, not a credential
CLONE_NEWNS = 0x00020000


def _gateway_tree(gw_dir: Path) -> tuple[Path, Path]:
    """gw_dir/private (0700) / data (the root) with data/vault (0700) / key.txt (denied) and a
    hard link data/pub/key-link to it. Returns (root, denied file)."""
    private = gw_dir / "private"
    root = private / "data"
    (root / "pub").mkdir(parents=True)
    (root / "vault").mkdir()
    (root / "hello.txt").write_text("hello\n")
    key = root / "vault" / "key.txt"
    key.write_text(SECRET)
    os.link(key, root / "pub" / "key-link")
    for d in (root, root / "pub"):
        d.chmod(0o755)
    for f in (root / "hello.txt", key):
        f.chmod(0o644)
    (root / "vault").chmod(0o700)
    private.chmod(0o700)
    return root, key


def _config(gw_dir: Path, root: Path, denied: list[Path]) -> Path:
    return fs_config(gw_dir, connectors={"filesystem": {"allowed_paths": [str(root)],
                                                        "denied_paths": [str(d) for d in denied]}})


def _text(reply: dict) -> str:
    return " ".join(c.get("text", "") for c in reply.get("content", []))


def test_a_root_under_0700_and_a_hard_link_to_a_denied_file_under_0700(gw_dir: Path) -> None:
    """Both failed before the zygote opened roots and identified denied paths: the root was
    NOT_FOUND (the worker's uid cannot search gw_dir/private), and with the root reachable the
    hard link read the secret back (the worker could not stat the denied file: fail open)."""
    root, key = _gateway_tree(gw_dir)
    with raw_gateway(_config(gw_dir, root, [key])) as gw:
        ok = gw.call("fs.readFile", {"path": "hello.txt"})
        assert ok.get("structuredContent", {}).get("content") == "hello\n", (ok, gw.stderr_tail())
        leak = gw.call("fs.readFile", {"path": "pub/key-link"})
        assert leak["isError"] and SECRET not in str(leak), leak
        assert "denied file (or a hard link to one)" in _text(leak)
        assert "'pub/key-link'" in _text(leak) and str(root) not in _text(leak)  # as the agent sent it


def test_a_denied_path_nobody_can_identify_stops_the_gateway_or_is_identified(gw_dir: Path) -> None:
    root, key = _gateway_tree(gw_dir)
    (gw_dir / "private").chmod(0o755)
    sealed = root / "sealed"
    sealed.mkdir()
    (sealed / "inner").write_text(SECRET)
    sealed.chmod(0)  # not even its owner can look inside without CAP_DAC_OVERRIDE
    try:
        config = _config(gw_dir, root, [sealed / "inner"])
        if IS_ROOT:  # the zygote, still root, identifies it; the worker cannot, need not
            with raw_gateway(config) as gw:
                reply = gw.call("fs.readFile", {"path": "hello.txt"})
                assert reply.get("structuredContent", {}).get("content") == "hello\n", reply
        else:  # the start check refuses, before any worker exists
            served = subprocess.run([sys.executable, "-m", "mcp_gateway", "serve", "--config", str(config)],
                                    input="", capture_output=True, text=True, env=gateway_env(), timeout=60)
            assert served.returncode == 1 and "cannot be identified" in served.stderr, served.stderr
    finally:
        sealed.chmod(0o700)


def test_the_worker_fails_closed_on_a_denied_path_it_cannot_identify() -> None:
    """Past the start check (say the path became unreadable later, before it was ever
    identified): every call refused, the path named in the log only."""
    base = Path(tempfile.mkdtemp(prefix="mcp-fs-sealed-"))
    base.chmod(0o755)
    root = base / "root"
    (root / "sealed").mkdir(parents=True)
    root.chmod(0o755)
    (root / "hello.txt").write_text("hello")
    (root / "hello.txt").chmod(0o644)
    (root / "sealed").chmod(0)
    nobody = DEFAULT_UID_RANGE[0] + DEFAULT_UID_RANGE[1] + 7  # outside every range, no account

    def probe():
        if IS_ROOT:  # a uid without CAP_DAC_OVERRIDE, like a worker
            os.setresgid(nobody, nobody, nobody)
            os.setresuid(nobody, nobody, nobody)
        from tests.support.fs_tree import make_connector

        fs = make_connector([root], [root / "sealed" / "inner"])
        try:
            read(fs, "hello.txt")
        except Refusal as e:
            return [e.code, e.reason]
        return "LEAK: served"

    try:
        got = run_child(probe).result
        assert got[0] == "SECURITY_ERROR" and "cannot be verified" in got[1], got
        assert str(root) not in got[1]
    finally:
        (root / "sealed").chmod(0o700)


def test_a_denied_directory_renamed_into_the_root_stays_denied(tree: Tree) -> None:
    from tests.support.fs_tree import make_connector

    outside_denied = tree.outside / "vault"
    outside_denied.mkdir()
    (outside_denied / "key").write_text(SECRET)
    conn = make_connector([tree.root], [outside_denied])
    try:
        os.rename(outside_denied, tree.root / "moved")
        e = refused(read, conn, "moved/key")
        assert e.code == "SECURITY_ERROR" and SECRET not in e.reason
        assert refused(listdir, conn, "moved").code == "SECURITY_ERROR"
    finally:
        conn.close()


# --- mount points inside a root (root only) ---------------------------------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=10)


def _in_mount_namespace(tree: Tree, cross_mounts: bool, mode: str) -> dict:
    """In a child with a private mount namespace: mount attacks into the root, then call."""

    def probe():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        _mount("--make-rprivate", "/")
        sub = tree.secrets / "sub"
        sub.mkdir()
        (sub / "file").write_text(SECRET)
        empty = tree.base / "empty"
        empty.mkdir()
        for name in ("b-sub", "b-whole", "ov"):
            (tree.root / name).mkdir()
        (tree.root / "b-key").write_text("")
        _mount("--bind", str(sub), str(tree.root / "b-sub"))
        _mount("--bind", str(tree.secrets / "key"), str(tree.root / "b-key"))
        _mount("--bind", str(tree.secrets), str(tree.root / "b-whole"))
        _mount("-t", "overlay", "overlay", "-o", f"lowerdir={tree.secrets}:{empty}", str(tree.root / "ov"))
        cfg = GatewayConfig(connectors=ConnectorsSettings(filesystem=FilesystemSettings(
            enabled=True, allowed_paths=[tree.root], denied_paths=[tree.secrets], cross_mounts=cross_mounts)))
        from mcp_gateway.connectors.filesystem.worker import FilesystemConnector
        from mcp_gateway.ipc.errors import Refusal

        conn = FilesystemConnector(cfg)
        conn.force_walk = mode == "walk"
        conn.warm()
        conn.start()
        out = {}
        for label, tool, path in (("bind child", read, "b-sub/file"), ("bind file", read, "b-key"),
                                  ("bind whole", read, "b-whole/key"), ("overlay", read, "ov/key"),
                                  ("overlay list", listdir, "ov"), ("bind list", listdir, "b-sub"),
                                  ("plain", read, "hello.txt")):
            try:
                res = tool(conn, path)
                out[label] = "LEAK " + str(res.get("content", res.get("entries")))
            except Refusal as e:
                out[label] = f"{e.code}: {e.reason}"
        return out

    o = run_child(probe, timeout=30)
    assert o.error is None, o
    return o.result


@pytest.mark.skipif(not IS_ROOT, reason="bind and overlay mounts need root")
def test_mount_points_inside_a_root_are_refused_by_default(tree: Tree, mode: str) -> None:
    got = _in_mount_namespace(tree, cross_mounts=False, mode=mode)
    assert got.pop("plain").startswith("LEAK hello")  # (ordinary content still reads)
    if mode == "walk":
        # The walk compares st_dev: a bind mount of the same filesystem looks like a plain
        # directory to it (docs/FILESYSTEM.md); the overlay has a device of its own.
        got = {k: v for k, v in got.items() if k.startswith("overlay")}
    for label, outcome in got.items():
        assert outcome.startswith("SECURITY_ERROR"), (label, outcome)
        assert SECRET not in outcome
    if mode == "openat2":
        assert "crosses a mount point" in got["bind child"] or "mount point" in got["bind child"]


@pytest.mark.skipif(not IS_ROOT, reason="bind and overlay mounts need root")
def test_with_cross_mounts_a_mounted_denied_directory_is_still_recognised(tree: Tree) -> None:
    got = _in_mount_namespace(tree, cross_mounts=True, mode="openat2")
    print(got)  # what leaks with the switch on is listed in docs/FILESYSTEM.md
    assert got["bind whole"].startswith("SECURITY_ERROR"), got
    assert got["plain"].startswith("LEAK hello")
