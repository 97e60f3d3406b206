"""The openat2 wrapper and the O_NOFOLLOW-walk fallback, directly."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mcp_gateway.connectors.filesystem import openat2 as o2

needs_openat2 = pytest.mark.skipif(not o2.openat2_available(), reason="openat2 not available")


@pytest.fixture
def layout(tmp_path: Path):
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_text("f")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("OUT")
    os.symlink("../out", root / "rel_out")
    os.symlink(str(tmp_path / "out"), root / "abs_out")
    os.symlink("d", root / "in_link")
    os.symlink("/proc/self/root", root / "magic")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _errno(fn, *a) -> int:
    with pytest.raises(OSError) as ei:
        fd = fn(*a)
        os.close(fd)
    return ei.value.errno


@needs_openat2
def test_openat2_beneath(layout: int) -> None:
    fd = o2.openat2(layout, "d/f", os.O_RDONLY | os.O_CLOEXEC)
    assert os.read(fd, 10) == b"f"
    os.close(fd)
    fd = o2.openat2(layout, "in_link/f", os.O_RDONLY)  # a symlink that stays beneath: followed
    os.close(fd)
    for p in ("../x", "d/../../x", "rel_out/f", "abs_out/f", "/etc/passwd", "magic/etc/passwd"):
        assert _errno(o2.openat2, layout, p, os.O_RDONLY) in (errno.EXDEV, errno.ELOOP), p
    assert _errno(o2.openat2, layout, "nope", os.O_RDONLY) == errno.ENOENT
    assert _errno(o2.openat2, layout, "a\0b", os.O_RDONLY) == errno.EINVAL


@needs_openat2
def test_openat2_refuses_magic_links() -> None:
    """RESOLVE_NO_MAGICLINKS: /proc/self/root and /proc/self/fd/N refused even beneath /proc."""
    proc = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY)
    try:
        assert _errno(o2.openat2, proc, "root/etc/passwd", os.O_RDONLY) == errno.ELOOP
        assert _errno(o2.openat2, proc, "cwd", os.O_PATH) == errno.ELOOP
        assert _errno(o2.openat2, proc, f"fd/{proc}", os.O_PATH) == errno.ELOOP
        # the same lookups without the flag succeed: the flag is what stops them
        fd = o2.openat2(proc, "root/etc/passwd", os.O_RDONLY, 0, 0)
        os.close(fd)
    finally:
        os.close(proc)


def test_walk(layout: int) -> None:
    fd = o2.walk_open(layout, "d/f", os.O_RDONLY)
    assert os.read(fd, 10) == b"f"
    os.close(fd)
    fd = o2.walk_open(layout, "./d//f", os.O_RDONLY)
    os.close(fd)
    fd = o2.walk_open(layout, ".", os.O_PATH | os.O_DIRECTORY)
    os.close(fd)
    # every symlink refused, even one that stays beneath, even as O_PATH
    for p in ("in_link/f", "in_link", "rel_out/f", "abs_out/f", "magic/etc/passwd", "magic"):
        assert _errno(o2.walk_open, layout, p, os.O_PATH) == errno.ELOOP, p
        assert _errno(o2.walk_open, layout, p, os.O_RDONLY) == errno.ELOOP, p
    for p in ("..", "d/../d/f", "/etc/passwd"):
        assert _errno(o2.walk_open, layout, p, os.O_RDONLY) == errno.EXDEV, p
    assert _errno(o2.walk_open, layout, "d/f/x", os.O_RDONLY) == errno.ENOTDIR
    assert _errno(o2.walk_open, layout, "nope/f", os.O_RDONLY) == errno.ENOENT


def test_walk_closes_its_fds(layout: int) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        for p in ("d/f", "in_link/f", "d/nope", "d/f/x"):
            try:
                os.close(o2.walk_open(layout, p, os.O_RDONLY))
            except OSError:
                pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_opener_choice() -> None:
    assert o2.BeneathOpener(True).mechanism == "openat2"
    assert o2.BeneathOpener(True).follows_symlinks
    assert o2.BeneathOpener(False).mechanism == "nofollow-walk"
    assert not o2.BeneathOpener(False).follows_symlinks


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_unavailable_openat2_means_walk(monkeypatch, tmp_path: Path, err: int) -> None:
    """Old kernel (ENOSYS) or a seccomp filter refusing openat2 (ENOSYS/EPERM): fall back."""
    import ctypes

    from mcp_gateway.connectors.filesystem.worker import FilesystemConnector
    from tests.support.fs_tree import build_tree, make_config

    def fake(*_a):
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(o2, "_syscall", fake)
    assert not o2.openat2_available()
    t = build_tree(tmp_path / "t")
    conn = FilesystemConnector(make_config([t.root], [t.secrets]))
    conn.start()
    try:
        assert conn.mechanism == "nofollow-walk"
    finally:
        conn.close()


@needs_openat2
def test_eagain_is_retried(monkeypatch, layout: int) -> None:
    import ctypes

    real = o2._syscall
    calls = {"n": 0}

    def flaky(*a):
        calls["n"] += 1
        if calls["n"] <= 2:
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return real(*a)

    monkeypatch.setattr(o2, "_syscall", flaky)
    os.close(o2.openat2(layout, "d/f", os.O_RDONLY))
    assert calls["n"] == 3

    def always(*_a):
        ctypes.set_errno(errno.EAGAIN)
        return -1

    monkeypatch.setattr(o2, "_syscall", always)
    assert _errno(o2.openat2, layout, "d/f", os.O_RDONLY) == errno.EAGAIN
