"""Reading and listing: caps, paging, encodings, listDir types."""

from __future__ import annotations

import base64
import os
import time

import pytest

from mcp_gateway.workers.connector import CallLimits
from tests.support.fs_tree import LIMITS, MiB, Tree, listdir, read, refused


def test_sparse_2gib_file_too_large_quickly(fs, tree: Tree) -> None:
    big = tree.root / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 * MiB)
    t0 = time.monotonic()
    e = refused(read, fs, "sparse.bin", CallLimits(5000, 1 * MiB))
    assert e.code == "RESULT_TOO_LARGE"
    assert "offset and length" in e.reason
    e = refused(read, fs, "sparse.bin", CallLimits(5000, 1 * MiB), length=1 * MiB + 1)
    assert e.code == "RESULT_TOO_LARGE"
    assert time.monotonic() - t0 < 1.0
    # a page of it is fine
    r = read(fs, "sparse.bin", CallLimits(5000, 1 * MiB), offset=1024 * MiB, length=4096, encoding="base64")
    assert base64.b64decode(r["content"]) == b"\0" * 4096
    assert r["size"] == 2 * 1024 * MiB and r["length"] == 4096 and r["offset"] == 1024 * MiB


def test_cap_boundaries(fs, tree: Tree) -> None:
    (tree.root / "ten").write_bytes(b"0123456789")
    assert read(fs, "ten", CallLimits(1000, 10))["content"] == "0123456789"
    assert refused(read, fs, "ten", CallLimits(1000, 9)).code == "RESULT_TOO_LARGE"
    assert read(fs, "ten", CallLimits(1000, 9), offset=1)["content"] == "123456789"
    # length beyond the cap but the file ends before the cap: fine
    assert read(fs, "ten", CallLimits(1000, 9), offset=2, length=100)["content"] == "23456789"


def test_paging(fs, tree: Tree) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    (tree.root / "data.bin").write_bytes(data)
    limits = CallLimits(1000, 4096)
    got = b""
    offset = 0
    while True:
        r = read(fs, "data.bin", limits, encoding="base64", offset=offset, length=4096)
        chunk = base64.b64decode(r["content"])
        assert r["length"] == len(chunk) and r["size"] == len(data)
        if not chunk:
            break
        got += chunk
        offset += len(chunk)
    assert got == data
    r = read(fs, "data.bin", limits, encoding="base64", offset=len(data) + 100)
    assert r["content"] == "" and r["length"] == 0
    r = read(fs, "data.bin", limits, encoding="base64", offset=5, length=0)
    assert r["content"] == "" and r["length"] == 0


def test_base64_round_trip(fs, tree: Tree) -> None:
    data = os.urandom(70_000)
    (tree.root / "rand.bin").write_bytes(data)
    r = read(fs, "rand.bin", encoding="base64")
    assert r["encoding"] == "base64" and r["size"] == len(data)
    assert base64.b64decode(r["content"], validate=True) == data


def test_utf8_strict(fs, tree: Tree) -> None:
    (tree.root / "text.txt").write_text("héllo wörld ✓", encoding="utf-8")
    assert read(fs, "text.txt")["content"] == "héllo wörld ✓"
    (tree.root / "bin").write_bytes(b"ok\xff\xfe")
    e = refused(read, fs, "bin")
    assert e.code == "VALIDATION_ERROR" and "base64" in e.reason and "offset 2" in e.reason
    # a page boundary splitting a character
    e = refused(read, fs, "text.txt", offset=0, length=2)
    assert e.code == "VALIDATION_ERROR"


def test_empty_file(fs, tree: Tree) -> None:
    (tree.root / "empty").write_bytes(b"")
    assert read(fs, "empty")["content"] == ""


def test_listdir_types_and_symlinks_not_followed(fs, tree: Tree) -> None:
    (tree.root / "lsd").mkdir()
    d = tree.root / "lsd"
    (d / "b_file").write_bytes(b"12345")
    (d / "a_dir").mkdir()
    os.symlink(str(tree.outside), d / "c_link_out")  # never followed by listing
    os.symlink("b_file", d / "d_link")
    os.mkfifo(d / "e_fifo")
    r = listdir(fs, "lsd")
    assert r["path"] == f"{d}"
    entries = r["entries"]
    assert [e["name"] for e in entries] == ["a_dir", "b_file", "c_link_out", "d_link", "e_fifo"]
    types = {e["name"]: e["type"] for e in entries}
    assert types == {"a_dir": "directory", "b_file": "file", "c_link_out": "symlink",
                     "d_link": "symlink", "e_fifo": "other"}
    sizes = {e["name"]: e["size"] for e in entries}
    assert sizes["b_file"] == 5 and sizes["d_link"] == len("b_file")
    assert sizes["c_link_out"] == len(str(tree.outside))


def test_listdir_root_and_relative(fs, tree: Tree) -> None:
    names = [e["name"] for e in listdir(fs, ".")["entries"]]
    assert names == sorted(names) and "hello.txt" in names and "sub" in names
    # the denied directory's name is visible; its content is not
    assert "secrets" in names
    assert listdir(fs, str(tree.root))["path"] == str(tree.root)
    assert [e["name"] for e in listdir(fs, "sub")["entries"]] == ["deeper", "inner.txt"]


def test_listdir_symlink_to_dir_inside_root(fs, tree: Tree, mode: str) -> None:
    os.symlink("sub", tree.root / "sub_link")
    if mode == "openat2":
        assert [e["name"] for e in listdir(fs, "sub_link")["entries"]] == ["deeper", "inner.txt"]
    else:
        assert refused(listdir, fs, "sub_link").code == "SECURITY_ERROR"


def test_listdir_caps(fs, tree: Tree) -> None:
    d = tree.root / "many"
    d.mkdir()
    for i in range(200):
        (d / f"file-{i:04d}").write_bytes(b"")
    assert len(listdir(fs, "many")["entries"]) == 200
    e = refused(listdir, fs, "many", CallLimits(1000, 2000))
    assert e.code == "RESULT_TOO_LARGE"


def test_listdir_entry_count_cap(fs, tree: Tree, monkeypatch) -> None:
    from mcp_gateway.connectors.filesystem import worker as filesystem

    monkeypatch.setattr(filesystem, "MAX_DIR_ENTRIES", 50)
    d = tree.root / "many"
    d.mkdir()
    for i in range(51):
        (d / f"f{i}").write_bytes(b"")
    e = refused(listdir, fs, "many")
    assert e.code == "RESULT_TOO_LARGE" and "50 entries" in e.reason


def test_listdir_non_utf8_name(fs, tree: Tree) -> None:
    d = os.fsencode(tree.root / "odd")
    os.mkdir(d)
    open(os.path.join(d, b"bad\xffname"), "wb").close()
    names = [e["name"] for e in listdir(fs, "odd")["entries"]]
    assert names == ["bad\\xffname"]
    for n in names:
        n.encode("utf-8")


def test_sandbox_profile(fs, tree: Tree) -> None:
    p = fs.sandbox_profile()
    assert p.instance == "fs" and p.extra_syscalls == ("openat2",)
    assert p.read_paths == (str(tree.root),)
    assert p.connect_ports == () and p.socket_families == ()


@pytest.mark.parametrize("limit", [1, 3, 4, 5])
def test_tiny_caps(fs, tree: Tree, limit: int) -> None:
    (tree.root / "four").write_bytes(b"abcd")
    if limit >= 4:
        assert read(fs, "four", CallLimits(1000, limit))["content"] == "abcd"
    else:
        assert refused(read, fs, "four", CallLimits(1000, limit)).code == "RESULT_TOO_LARGE"
        assert read(fs, "four", CallLimits(1000, limit), length=limit)["content"] == "abcd"[:limit]


def test_growing_file_never_holds_more_than_cap(fs, tree: Tree, monkeypatch) -> None:
    """fstat's size can lie (procfs says 0, files grow): reading stops at cap+1 anyway."""
    from mcp_gateway.connectors.filesystem import worker as filesystem

    (tree.root / "g").write_bytes(b"x" * 100)
    real_fstat = os.fstat

    class Shrunk:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 0 if name == "st_size" else getattr(self._st, name)

    calls = {"n": 0}

    def fake_fstat(fd):
        st = real_fstat(fd)
        calls["n"] += 1
        return Shrunk(st) if calls["n"] >= 3 else st

    seen: list[int] = []
    real_pread = os.pread

    def spy_pread(fd, n, off):
        seen.append(n)
        return real_pread(fd, n, off)

    monkeypatch.setattr(filesystem.os, "fstat", fake_fstat)
    monkeypatch.setattr(filesystem.os, "pread", spy_pread)
    e = refused(read, fs, "g", CallLimits(1000, 10))
    assert e.code == "RESULT_TOO_LARGE"
    assert sum(seen) <= 11


def test_limits_default(fs) -> None:
    assert read(fs, "hello.txt", LIMITS)["content"] == "hello"
