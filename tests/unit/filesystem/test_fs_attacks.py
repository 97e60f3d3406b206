"""Hostile paths against the filesystem connector, in openat2 mode and with the walk fallback.

Each attack is first run through `naive_read` (string-prefix checks + open()) to prove that
the input really leaks without the guard.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from mcp_gateway.connectors.filesystem.tools import ReadFileArgs
from tests.support.fs_tree import LIMITS, Tree, build_tree, listdir, make_connector, naive_read, read, refused


def assert_refused(fs, path: str, code: str = "SECURITY_ERROR", tool=read) -> str:
    e = refused(tool, fs, path)
    assert e.code == code, (path, e.code, e.reason)
    for leak in ("OUTSIDE-SECRET", "EVIL-SECRET", "TOPSECRET", "PRIVATE", "root:x:0"):
        assert leak not in e.reason
    return e.reason


def test_baseline_reads_work(fs, tree: Tree) -> None:
    r = read(fs, "hello.txt")
    assert r == {"path": f"{tree.root}/hello.txt", "size": 5, "offset": 0, "length": 5,
                 "encoding": "utf-8", "content": "hello"}
    assert read(fs, f"{tree.root}/sub/deeper/deep.txt")["content"] == "deep"
    assert read(fs, "sub/../sub/./inner.txt")["content"] == "inner"
    assert read(fs, "secrets/../hello.txt")["content"] == "hello"  # lexically not in secrets


# --- prefix tricks and `..` -----------------------------------------------------------------


def test_prefix_sibling(fs, tree: Tree) -> None:
    path = f"{tree.evil}/secret.txt"  # /.../root-evil/secret.txt starts with /.../root
    assert naive_read(tree.root, path) == b"EVIL-SECRET"
    assert "outside" in assert_refused(fs, path)
    assert_refused(fs, "../root-evil/secret.txt")


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../outside/secret.txt",
                                  "sub/deeper/../../../outside/secret.txt", "./../outside/secret.txt"])
def test_dotdot(fs, tree: Tree, path: str) -> None:
    assert naive_read(tree.root, path) == b"OUTSIDE-SECRET"
    assert_refused(fs, path)
    assert_refused(fs, f"{tree.root}/{path}")


def test_dotdot_after_symlink(fs, tree: Tree, mode: str) -> None:
    # link_to_deeper -> sub/deeper; physically link_to_deeper/../../.. is tree.base
    os.symlink("sub/deeper", tree.root / "link_to_deeper")
    path = "link_to_deeper/../../../outside/secret.txt"
    assert naive_read(tree.root, path) == b"OUTSIDE-SECRET"
    assert_refused(fs, path)  # lexically climbs out
    # `..` after a symlink, kept lexically inside: means root/sub/x lexically, never the
    # physical parent of the link target
    os.symlink("sub/deeper/deep.txt", tree.root / "deep_link")
    if mode == "openat2":
        assert read(fs, "link_to_deeper/deep.txt")["content"] == "deep"
        assert read(fs, "deep_link")["content"] == "deep"
    else:
        assert_refused(fs, "link_to_deeper/deep.txt")
        assert_refused(fs, "deep_link")
    # a symlink whose target itself climbs out through ..
    os.symlink("sub/../../outside", tree.root / "climb")
    assert naive_read(tree.root, "climb/secret.txt") == b"OUTSIDE-SECRET"
    assert_refused(fs, "climb/secret.txt")
    os.symlink("../../outside/secret.txt", tree.root / "sub" / "climb_file")
    assert naive_read(tree.root, "sub/climb_file") == b"OUTSIDE-SECRET"
    assert_refused(fs, "sub/climb_file")


# --- symlinks out of the root and into denied paths -------------------------------------------


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_symlink_out_of_root(fs, tree: Tree, kind: str) -> None:
    target_dir = str(tree.outside) if kind == "absolute" else "../outside"
    target_file = f"{target_dir}/secret.txt"
    os.symlink(target_dir, tree.root / "dirlink")
    os.symlink(target_file, tree.root / "filelink")
    nested = target_file if kind == "absolute" else f"../{target_file}"
    os.symlink(nested, tree.root / "sub" / "nested_filelink")
    assert naive_read(tree.root, "sub/nested_filelink") == b"OUTSIDE-SECRET"
    for p in ("dirlink/secret.txt", "filelink"):
        assert naive_read(tree.root, p) == b"OUTSIDE-SECRET"
        assert_refused(fs, p)
    assert_refused(fs, "sub/nested_filelink")
    assert_refused(fs, "dirlink", tool=listdir)


def test_symlink_into_denied_file_in_denied_dir(fs, tree: Tree, mode: str) -> None:
    os.symlink("secrets/key", tree.root / "innocent")
    assert naive_read(tree.root, "innocent", (tree.secrets, tree.private)) == b"TOPSECRET"
    reason = assert_refused(fs, "innocent")
    if mode == "openat2":
        assert "denied" in reason
    os.symlink("../secrets/key", tree.root / "sub" / "innocent2")
    assert_refused(fs, "sub/innocent2")
    # a chain of links ending in the denied directory
    os.symlink("innocent", tree.root / "chain")
    assert_refused(fs, "chain")


def test_symlinked_directory_into_denied(fs, tree: Tree, mode: str) -> None:
    os.symlink("secrets", tree.root / "notsecret")
    os.symlink("../secrets", tree.root / "sub" / "up")
    assert naive_read(tree.root, "notsecret/key", (tree.secrets,)) == b"TOPSECRET"
    assert_refused(fs, "notsecret/key")
    assert_refused(fs, "sub/up/key")
    assert_refused(fs, "notsecret", tool=listdir)
    assert_refused(fs, "sub/up", tool=listdir)
    reason = assert_refused(fs, "notsecret")
    assert ("denied" if mode == "openat2" else "symlink") in reason  # not "is a directory"


def test_deeper_dir_inside_denied_via_symlink(fs, tree: Tree) -> None:
    (tree.secrets / "inner").mkdir()
    (tree.secrets / "inner" / "k2").write_text("TOPSECRET2")
    os.symlink("secrets/inner", tree.root / "x")
    assert_refused(fs, "x/k2")
    assert_refused(fs, "x", tool=listdir)


def test_symlink_to_denied_file(fs, tree: Tree) -> None:
    os.symlink("private.key", tree.root / "public.key")
    assert naive_read(tree.root, "public.key", (tree.private,)) == b"PRIVATE"
    assert_refused(fs, "public.key")
    assert_refused(fs, "private.key")


def test_hardlinks(fs, tree: Tree) -> None:
    """A hard link to a denied *file* shares its inode: refused by identity. A hard link to an
    outside file placed inside the root by the operator is root content and readable
    (documented in docs/FILESYSTEM.md)."""
    try:
        os.link(tree.private, tree.root / "hl_private")
        os.link(tree.outside / "secret.txt", tree.root / "hl_outside")
    except PermissionError:
        pytest.skip("hard links forbidden here (protected_hardlinks)")
    assert "denied" in assert_refused(fs, "hl_private")
    assert read(fs, "hl_outside")["content"] == "OUTSIDE-SECRET"


def test_denied_directly(fs, tree: Tree) -> None:
    assert_refused(fs, "secrets/key")
    assert_refused(fs, f"{tree.secrets}/key")
    assert_refused(fs, "secrets", tool=listdir)
    assert_refused(fs, "sub/../secrets", tool=listdir)
    assert_refused(fs, "private.key")


def test_denied_created_after_start(fs, tree: Tree) -> None:
    """Denied identities are refreshed on every call, not only at start()."""
    import shutil

    shutil.rmtree(tree.secrets)
    fs.start()  # a fresh worker: the denied directory does not exist yet
    tree.secrets.mkdir()
    (tree.secrets / "key").write_text("TOPSECRET")
    os.symlink("secrets", tree.root / "late")
    assert_refused(fs, "late/key")


# --- /proc magic links ------------------------------------------------------------------------


def test_proc_paths_outside_root(fs, tree: Tree) -> None:
    assert_refused(fs, "/proc/self/root/etc/passwd")
    assert_refused(fs, "/proc/self/fd/0")
    assert_refused(fs, "/proc/self/environ")


def test_symlink_to_proc_magic(fs, tree: Tree) -> None:
    os.symlink("/proc/self/root", tree.root / "magic")
    os.symlink("/proc/self/root/etc/passwd", tree.root / "magic_file")
    os.symlink("/proc/self/cwd", tree.root / "magic_cwd")
    assert b"root:" in naive_read(tree.root, "magic/etc/passwd")
    assert_refused(fs, "magic/etc/passwd")
    assert_refused(fs, "magic_file")
    assert_refused(fs, "magic", tool=listdir)
    assert_refused(fs, "magic_cwd", tool=listdir)


def test_root_containing_procfs_magic_links(tmp_path, mode: str) -> None:
    """Even an allowed root that contains magic links (here: /proc/self itself) never lets
    them resolve: RESOLVE_NO_MAGICLINKS (or the walk's no-symlinks rule) refuses them."""
    conn = make_connector([Path("/proc/self")], [], mode)
    try:
        assert b"root:" in naive_read("/proc/self", "/proc/self/root/etc/passwd")
        for p in ("/proc/self/root/etc/passwd", "/proc/self/cwd", "/proc/self/exe"):
            assert_refused(conn, p)
        assert_refused(conn, "/proc/self/root", tool=listdir)
        assert_refused(conn, "/proc/self/fd/0")
    finally:
        conn.close()


# --- encodings taken literally ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["%2e%2e%2foutside%2fsecret.txt", "%2e%2e/outside/secret.txt",
                                  "..%2foutside%2fsecret.txt", "..\\outside\\secret.txt",
                                  "..\\..\\outside\\secret.txt", "%252e%252e/outside/secret.txt",
                                  "sub\\..\\..\\outside\\secret.txt", "..%c0%afoutside/secret.txt"])
def test_encoded_forms_literal(fs, path: str) -> None:
    assert_refused(fs, path, "NOT_FOUND")


def test_encoded_names_are_real_names(fs, tree: Tree) -> None:
    (tree.root / "%2e%2e").mkdir()
    (tree.root / "%2e%2e" / "x").write_text("pct")
    (tree.root / "a\\b").write_text("bs")
    assert read(fs, "%2e%2e/x")["content"] == "pct"
    assert read(fs, "a\\b")["content"] == "bs"


def test_nul_and_overlong(fs) -> None:
    assert "NUL" in assert_refused(fs, "hello.txt\0.png")
    assert "NUL" in assert_refused(fs, "\0")
    # Past PATH_MAX the arguments themselves cannot exist (the struct refuses them, as its decoder
    # does for an agent's); paths.check_path, which the worker runs too, refuses them as well.
    with pytest.raises(ValueError, match="longer than 4096 bytes"):
        ReadFileArgs(path="é" * 2049)


# --- special files ----------------------------------------------------------------------------


def test_fifo_refused_without_hanging(fs, tree: Tree) -> None:
    fifo = tree.root / "pipe"
    os.mkfifo(fifo)
    # naive: open() blocks until a writer shows up
    box: list = []
    t = threading.Thread(target=lambda: box.append(naive_read(tree.root, "pipe")), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive(), "the naive open of a FIFO should block"
    w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # release it
    os.close(w)
    t.join(2)
    t0 = time.monotonic()
    assert "FIFO" in assert_refused(fs, "pipe")
    assert time.monotonic() - t0 < 1.0
    os.symlink("pipe", tree.root / "pipe_link")
    t0 = time.monotonic()
    assert_refused(fs, "pipe_link")
    assert time.monotonic() - t0 < 1.0
    assert listdir(fs, ".")["entries"]  # listing a dir holding a FIFO is fine


def test_device_node(fs, tree: Tree) -> None:
    dev = tree.root / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot mknod here: {e}")
    assert "device" in assert_refused(fs, "null")
    os.symlink("/dev/zero", tree.root / "zero")
    assert_refused(fs, "zero")


def test_dev_zero_symlink(fs, tree: Tree) -> None:
    os.symlink("/dev/zero", tree.root / "zero")
    assert_refused(fs, "zero")


def test_unix_socket(fs, tree: Tree) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(tree.root / "sock"))
    except OSError as e:
        pytest.skip(f"cannot bind a unix socket here: {e}")
    try:
        assert "socket" in assert_refused(fs, "sock")
        entries = {e["name"]: e["type"] for e in listdir(fs, ".")["entries"]}
        assert entries["sock"] == "other"
    finally:
        s.close()


def test_directory_as_file_and_file_as_directory(fs) -> None:
    assert "directory" in assert_refused(fs, "sub", "VALIDATION_ERROR")
    assert "directory" in assert_refused(fs, ".", "VALIDATION_ERROR")
    assert "directory" in assert_refused(fs, "sub/", "VALIDATION_ERROR")
    assert "not a directory" in assert_refused(fs, "hello.txt", "VALIDATION_ERROR", tool=listdir)
    assert_refused(fs, "hello.txt/x", "NOT_FOUND")
    assert_refused(fs, "nope", "NOT_FOUND")
    assert_refused(fs, "nope", "NOT_FOUND", tool=listdir)


def test_symlink_loop(fs, tree: Tree) -> None:
    os.symlink("loop_b", tree.root / "loop_a")
    os.symlink("loop_a", tree.root / "loop_b")
    assert_refused(fs, "loop_a")
    assert_refused(fs, "loop_a/x")
    assert_refused(fs, "loop_a", tool=listdir)


def test_multiple_roots(tmp_path, mode: str) -> None:
    a = build_tree(tmp_path / "a")
    b = build_tree(tmp_path / "b")
    conn = make_connector([a.root, b.root], [a.secrets, b.secrets], mode)
    try:
        assert read(conn, "hello.txt")["path"] == f"{a.root}/hello.txt"
        assert read(conn, f"{b.root}/hello.txt")["path"] == f"{b.root}/hello.txt"
        assert_refused(conn, f"{b.secrets}/key")
        # a symlink from one root into another is refused: it leaves its own root
        os.symlink(str(b.root), a.root / "to_b")
        assert_refused(conn, "to_b/hello.txt")
    finally:
        conn.close()


def test_missing_root_is_not_found(tmp_path, mode: str) -> None:
    t = build_tree(tmp_path / "t")
    conn = make_connector([t.root, tmp_path / "gone"], [], mode)
    try:
        assert_refused(conn, f"{tmp_path}/gone/x", "NOT_FOUND")
        assert read(conn, "hello.txt")["content"] == "hello"
    finally:
        conn.close()


def test_no_fd_leak(fs, tree: Tree) -> None:
    os.symlink("secrets/key", tree.root / "innocent")
    os.mkfifo(tree.root / "pipe")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        for p in ("hello.txt", "innocent", "pipe", "nope", "sub", "../outside/secret.txt"):
            try:
                read(fs, p)
            except Exception:  # noqa: S110
                pass
        for p in (".", "sub", "secrets", "hello.txt"):
            try:
                listdir(fs, p)
            except Exception:  # noqa: S110
                pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_unknown_tool(fs) -> None:
    from mcp_gateway.connectors.filesystem.tools import ReadFileArgs

    e = refused(fs.call, "fs.writeFile", ReadFileArgs(path="x"), LIMITS)
    assert e.code == "VALIDATION_ERROR"
